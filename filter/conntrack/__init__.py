"""Connection tracking: TCP with pf-style sequence-window checks, UDP and ICMP query
pseudo-connections, ICMP errors related to their connection, timeouts, a bounded table.

Sans-I/O: packets come in as :class:`filter.packet.PacketInfo`, time as ``now`` (int ns).

    from filter.conntrack import ConnTracker, CtConfig, CtState, CtTimeouts
    tracker = ConnTracker(CtConfig(max_entries=65536, per_source_limit=0,
                                   timeouts=CtTimeouts(tcp_established=86400)))
    match = tracker.lookup(info, now)     # CtMatch(state, entry, direction); no table change
    state, entry, direction = match
    ... the rules decide; if they accept:
    entry = tracker.confirm(info, match, now, nat=None)   # CtEntry, or None if refused
    translate(frame, info, entry, direction)              # filter.nat, when entry.nat is set
                                                          # (direction=None: from the packet)
    tracker.expire(now) -> int           # entries removed
    tracker.next_deadline() -> int|None  # ns when the next entry expires
    len(tracker); tracker.stats() -> dict[str, int]; tracker.entries() -> iterator

States (nftables' ``ct state`` meanings):
- ``new``: no entry yet (TCP: only a SYN without ACK may start one), or an entry whose
  replies have not been seen yet and this packet goes in the original direction.
- ``established``: an entry that has seen traffic both ways, or a packet in the reply
  direction.
- ``related``: an ICMP/ICMPv6 error whose quoted header belongs to an entry.
- ``invalid``: fails the TCP checks (out-of-window, bad flag combination, SYN on an
  established connection, a non-SYN first segment), an echo reply or ICMP error that matches
  nothing (or quotes a TCP sequence number outside the connection's window, as pf checks),
  or a transport header that could not be read.
- ``untracked``: later fragments whose first fragment was not confirmed (those whose first
  fragment was take its connection, state and direction; nothing is reassembled), ICMP
  types that are neither queries nor errors (for example neighbour discovery).

``confirm`` is called when the rules accept a packet: it creates the entry for ``new``
(refused, returning None, when the table is full and nothing is evictable, when the source
has ``per_source_limit`` entries, or when NAT finds no free tuple; ``stats()`` says which),
and advances TCP state, windows, counters and the timeout for existing entries. Call
``lookup`` then ``confirm`` per packet in order; ``confirm`` re-resolves a stale match (two
packets of one new flow in one batch make one entry).

Eviction when full prefers closed TCP entries, then embryonic ones (TCP not yet
established, UDP/ICMP/other not yet replied), oldest first, so a SYN flood can neither evict
established connections nor grow the table beyond ``max_entries``.

A CtEntry carries ``original`` and ``reply`` tuples (:class:`CtTuple`: proto, src, dst,
sport, dport; ICMP queries put the identifier in ``sport`` for requests and ``dport`` for
replies), ``tcp`` (:class:`TcpTrack` or None: ``peer(d)`` gives a :class:`TcpPeer`
snapshot of side d, ``established`` says both sides are), ``mark`` (free for the rules),
``nat`` (the NAT action that chose ``reply``, or None), ``klass`` (its timeout class, e.g.
``tcp_established``), ``created``, ``last_seen``, ``expires`` (ns), ``seen_reply``,
``packets`` and ``octets`` ([original, reply]).
"""

from filter.conntrack.config import CtConfig, CtTimeouts
from filter.conntrack.entry import CtEntry, CtTuple, invert
from filter.conntrack.state import ORIGINAL, REPLY, CtMatch, CtState
from filter.conntrack.tcp import TcpPeer, TcpTrack
from filter.conntrack.tracker import ConnTracker

__all__ = [
    "ConnTracker", "CtConfig", "CtTimeouts", "CtEntry", "CtTuple", "CtMatch", "CtState",
    "ORIGINAL", "REPLY", "TcpPeer", "TcpTrack", "invert",
]
