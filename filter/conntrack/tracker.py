"""The connection table: lookup, confirm, expiry and bounded eviction.

Entries are indexed twice, by the tuple of each direction. Fragments (no reassembly): when
the first fragment of a datagram (the one with the transport header) is confirmed, its
(proto, src, dst, identification) is remembered for ``timeouts.fragment``; later fragments
with that key share its connection, state and direction; others are ``untracked``. Each entry sits in one timeout
class (an OrderedDict ordered by last update, so the front expires first: every entry of a
class has the same timeout and ``now`` only grows); ``expire`` and ``next_deadline`` look at
the fronts only, and an update is O(1).
"""

from __future__ import annotations

from collections import OrderedDict

from filter.conntrack.config import CtConfig
from filter.conntrack.entry import CtEntry, as_tuple, invert
from filter.conntrack.state import ORIGINAL, CtMatch, CtState
from filter.conntrack.tcp import TcpTrack
from filter.packet import (
    ICMP_ERROR_TYPES,
    ICMPV6_ERROR_TYPES,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    TCP_ACK,
    TCP_FIN,
    TCP_RST,
    TCP_SYN,
)

NEW, ESTABLISHED, RELATED = CtState.NEW, CtState.ESTABLISHED, CtState.RELATED
INVALID, UNTRACKED = CtState.INVALID, CtState.UNTRACKED
# ICMP query request -> reply types: echo, timestamp, information, address mask (RFC 792,
# RFC 950); ICMPv6 echo (RFC 4443 section 4).
_ICMP_QUERIES = {8: 0, 13: 14, 15: 16, 17: 18}
_ICMPV6_QUERIES = {128: 129}
_ICMP_REPLIES = frozenset(_ICMP_QUERIES.values())
_ICMPV6_REPLIES = frozenset(_ICMPV6_QUERIES.values())
_PORTED = frozenset((PROTO_TCP, PROTO_UDP, 33, 132, 136))
# Classes an entry may be evicted from when the table is full, most evictable first.
_EVICTABLE = (("tcp_closed", "tcp_finwait"),
              ("tcp_first", "tcp_opening", "udp_first", "icmp_first", "other_first"))
_UNTRACKED_MATCH = CtMatch(UNTRACKED, None, ORIGINAL)
_STATS = ("created", "expired", "evicted", "reopened", "refused_table_full",
          "refused_source_limit", "refused_nat_exhausted", "refused_clash",
          "invalid_tcp_flags", "invalid_tcp_window", "invalid_tcp_syn_established",
          "invalid_tcp_first", "invalid_icmp_orphan", "invalid_icmp_seq", "invalid_header", "untracked")


_new = tuple.__new__


def _match(fields: tuple) -> CtMatch:
    return _new(CtMatch, fields)


class _KlassByProto(dict):
    """Protocol number -> the name of a non-TCP timeout class (udp_*, icmp_*, other_*)."""

    def __init__(self, suffix: str, icmp_suffix: str) -> None:
        super().__init__()
        self.suffix, self.icmp_suffix = suffix, icmp_suffix

    def __missing__(self, proto: int) -> str:
        if proto in _PORTED:
            name = "udp" + self.suffix
        elif proto in (PROTO_ICMP, PROTO_ICMPV6):
            name = "icmp" + self.icmp_suffix
        else:
            name = "other" + self.suffix
        self[proto] = name
        return name


class ConnTracker:
    """A bounded connection table (see the package docstring for the semantics)."""

    def __init__(self, config: CtConfig | None = None) -> None:
        self.config = config or CtConfig()
        self._timeouts = self.config.timeouts.in_ns()
        self._table: dict[tuple, tuple[CtEntry, int]] = {}
        self._classes: dict[str, OrderedDict] = {name: OrderedDict() for name in self._timeouts}
        self._per_source: dict[bytes, int] = {}
        self._size = 0
        self._pending = None            # (info, entry, TCP record) of the last lookup
        self._klass_first = _KlassByProto("_first", "_first")
        self._klass_replied = _KlassByProto("_multiple", "_replied")
        self._stats = dict.fromkeys(_STATS, 0)
        self._frags: OrderedDict = OrderedDict()   # (proto, src, dst, id) -> (match, expires)

    # ---- classification -------------------------------------------------------------
    def lookup(self, info, now: int) -> CtMatch:
        """Classify ``info`` against the table without changing it."""
        if info.frag_offset:
            return self._later_fragment(info, now)
        proto = info.proto
        if proto == PROTO_TCP or proto == PROTO_UDP:
            key = (proto, info.src, info.dst, info.sport, info.dport)
        else:
            key = self._key(info)
            if key is None:
                if info.inner is not None:
                    return self._related(info, now)
                return self._unkeyed(info)
        hit = self._table.get(key)
        if hit is None or hit[0].expires <= now:
            return self._first(info, hit)
        entry, direction = hit
        tcp = entry.tcp
        if tcp is not None:
            if info.tcp_flags & 2 and tcp.reopens(direction, info):     # SYN
                return _new(CtMatch, (NEW, entry, direction))
            found = tcp.evaluate(direction, info)
            if type(found) is str:
                self._stats["invalid_" + found] += 1
                return _new(CtMatch, (INVALID, entry, direction))
            self._pending = (info, entry, found)    # confirm need not evaluate again
        if direction or entry.seen_reply:
            return _new(CtMatch, (ESTABLISHED, entry, direction))
        return _new(CtMatch, (NEW, entry, direction))

    def _later_fragment(self, info, now: int) -> CtMatch:
        """A fragment without transport header: its first fragment's match, if seen."""
        hit = self._frags.get((info.proto, info.src, info.dst, info.frag_id))
        if hit is None or hit[1] <= now or not hit[0].entry.klass:
            self._stats["untracked"] += 1
            return _UNTRACKED_MATCH
        return hit[0]

    def _remember_fragments(self, info, state: CtState, entry: CtEntry, direction: int,
                            now: int) -> None:
        frags = self._frags
        frags[(info.proto, info.src, info.dst, info.frag_id)] = (
            _match((state, entry, direction)), now + self._timeouts["fragment"])
        if len(frags) > self.config.max_fragment_ids:
            frags.popitem(last=False)

    def _key(self, info) -> tuple | None:
        """The tuple ``info`` arrives with, or None for ICMP errors / untracked ICMP."""
        proto = info.proto
        if proto in _PORTED:
            return (proto, info.src, info.dst, info.sport, info.dport)
        if proto == PROTO_ICMP or proto == PROTO_ICMPV6:
            if info.l4 < 0:
                return None
            t = info.icmp_type
            queries, replies = ((_ICMP_QUERIES, _ICMP_REPLIES) if proto == PROTO_ICMP
                                else (_ICMPV6_QUERIES, _ICMPV6_REPLIES))
            if t in queries:
                return (proto, info.src, info.dst, info.icmp_id, 0)
            if t in replies:
                return (proto, info.src, info.dst, 0, info.icmp_id)
            return None
        return (proto, info.src, info.dst, 0, 0)

    def _first(self, info, stale) -> CtMatch:
        """A packet that matches no live entry: NEW if it may start one, else INVALID."""
        entry = stale[0] if stale is not None else None
        proto = info.proto
        if proto == PROTO_TCP:
            flags = info.tcp_flags
            if info.l4 < 0:
                self._stats["invalid_header"] += 1
                return _match((INVALID, None, ORIGINAL))
            if flags & TCP_SYN and flags & (TCP_RST | TCP_FIN | TCP_ACK):
                self._stats["invalid_tcp_flags"] += 1
                return _match((INVALID, None, ORIGINAL))
            if not flags & TCP_SYN and (not self.config.tcp_loose or flags & TCP_RST
                                        or not flags & TCP_ACK):
                self._stats["invalid_tcp_first"] += 1
                return _match((INVALID, None, ORIGINAL))
        elif proto == PROTO_ICMP or proto == PROTO_ICMPV6:
            replies = _ICMP_REPLIES if proto == PROTO_ICMP else _ICMPV6_REPLIES
            if info.icmp_type in replies:
                self._stats["invalid_icmp_orphan"] += 1
                return _match((INVALID, None, ORIGINAL))
        return _match((NEW, entry, ORIGINAL))

    def _unkeyed(self, info) -> CtMatch:
        """ICMP that is neither a query nor a located error."""
        errors = ICMP_ERROR_TYPES if info.proto == PROTO_ICMP else ICMPV6_ERROR_TYPES
        if info.icmp_type in errors or info.l4 < 0:
            self._stats["invalid_icmp_orphan"] += 1
            return _match((INVALID, None, ORIGINAL))
        self._stats["untracked"] += 1
        return _UNTRACKED_MATCH

    def _related(self, info, now: int) -> CtMatch:
        """An ICMP error: RELATED when the inverse of its quoted tuple is in the table (and,
        for TCP, the quoted sequence number lies in its sender's window, as pf checks:
        RFC 5927 section 4.1 against blind connection-reset and throughput attacks)."""
        inner = info.inner
        key = self._key(inner) if not inner.frag_offset else None
        hit = self._table.get(invert(key)) if key is not None else None
        if hit is None or hit[0].expires <= now:
            self._stats["invalid_icmp_orphan"] += 1
            return _match((INVALID, None, ORIGINAL))
        entry, direction = hit
        if entry.tcp is not None and not entry.tcp.quoted_in_window(1 - direction, inner.seq):
            self._stats["invalid_icmp_seq"] += 1
            return _match((INVALID, entry, direction))
        return _match((RELATED, entry, direction))

    # ---- acceptance -----------------------------------------------------------------
    def confirm(self, info, match: CtMatch, now: int, nat=None) -> CtEntry | None:
        """The rules accepted ``info``: create or advance its entry. None when refused."""
        pending, self._pending = self._pending, None
        state = match.state
        if state is INVALID or state is UNTRACKED:
            return None
        if state is RELATED or info.frag_offset:
            entry = match.entry
            if not entry.klass:                     # removed since the lookup
                return None
            entry.last_seen = now
            entry.packets[match.direction] += 1
            entry.octets[match.direction] += info.ip_len
            if info.fragment and not info.frag_offset:
                self._remember_fragments(info, state, entry, match.direction, now)
            return entry
        if info.fragment:
            entry = self._confirm(info, pending, now, nat)
            if entry is not None:
                direction = self._table.get(self._key(info), (None, ORIGINAL))[1]
                self._remember_fragments(info, state, entry, direction, now)
            return entry
        return self._confirm(info, pending, now, nat)

    def _confirm(self, info, pending, now: int, nat) -> CtEntry | None:
        """Create or advance the entry of a packet with a transport header."""
        proto = info.proto
        if proto == PROTO_TCP or proto == PROTO_UDP:
            key = (proto, info.src, info.dst, info.sport, info.dport)
        else:
            key = self._key(info)
            if key is None:
                return None
        hit = self._table.get(key)                  # re-resolve: the match may be stale
        if hit is not None:
            entry, direction = hit
            if entry.expires <= now:
                self._remove(entry)
                self._stats["expired"] += 1
            elif (entry.tcp is not None and info.tcp_flags & 2       # SYN
                  and entry.tcp.reopens(direction, info)):
                self._remove(entry)
                self._stats["reopened"] += 1
            else:
                return self._advance(entry, direction, info, now, pending)
        return self._create(key, info, now, nat)

    def _advance(self, entry: CtEntry, direction: int, info, now: int,
                 pending) -> CtEntry | None:
        tcp = entry.tcp
        if tcp is not None:
            if pending is not None and pending[0] is info and pending[1] is entry:
                tcp.record(*pending[2])
            elif tcp.advance(direction, info) is not None:
                return None
            # states move only on SYN, FIN, RST, or while a side is not yet established
            if entry.klass == "tcp_established" and not info.tcp_flags & 7:
                klass = "tcp_established"
            else:
                klass = tcp.klass()
        elif entry.seen_reply or direction:
            klass = self._klass_replied[entry.original[0]]
        else:
            klass = entry.klass
        if direction:
            entry.seen_reply = True
        entry.packets[direction] += 1
        entry.octets[direction] += info.ip_len
        entry.last_seen = now
        entry.expires = now + self._timeouts[klass]
        if klass == entry.klass:
            self._classes[klass].move_to_end(entry)
        else:
            self._place(entry, klass, now)
        return entry

    def _create(self, key: tuple, info, now: int, nat) -> CtEntry | None:
        stats = self._stats
        limit = self.config.per_source_limit
        if limit and self._per_source.get(key[1], 0) >= limit:
            stats["refused_source_limit"] += 1
            return None
        original = as_tuple(key)
        reply = invert(original)
        if nat is not None:
            reply = nat.choose(original, self._taken)
            if reply is None:
                stats["refused_nat_exhausted"] += 1
                return None
        elif reply in self._table:
            stats["refused_clash"] += 1
            return None
        if self._size >= self.config.max_entries and not self._evict_one():
            stats["refused_table_full"] += 1
            return None
        tcp = None
        if info.proto == PROTO_TCP:
            tcp = TcpTrack.start(info, self.config.tcp_loose)
        entry = CtEntry(original, reply, info.family, now, tcp, nat)
        entry.packets[ORIGINAL] = 1
        entry.octets[ORIGINAL] = info.ip_len
        table = self._table
        table[reply] = (entry, 1)
        table[original] = (entry, ORIGINAL)         # wins if both are one tuple
        self._size += 1
        src = original[1]
        self._per_source[src] = self._per_source.get(src, 0) + 1
        self._place(entry, tcp.klass() if tcp is not None else self._klass_first[key[0]], now)
        stats["created"] += 1
        return entry

    def _taken(self, reply: tuple) -> bool:
        """True when another entry already receives packets with tuple ``reply``."""
        return reply in self._table

    def _klass(self, entry: CtEntry) -> str:
        if entry.tcp is not None:
            return entry.tcp.klass()
        if entry.seen_reply:
            return self._klass_replied[entry.original[0]]
        return self._klass_first[entry.original[0]]

    def _place(self, entry: CtEntry, klass: str, now: int) -> None:
        """Put ``entry`` at the back of timeout class ``klass`` with a fresh deadline."""
        if entry.klass:
            self._classes[entry.klass].pop(entry, None)
        entry.klass = klass
        entry.expires = now + self._timeouts[klass]
        self._classes[klass][entry] = None

    def _remove(self, entry: CtEntry) -> None:
        if not entry.klass:                         # already gone
            return
        table = self._table
        table.pop(entry.original, None)
        if table.get(entry.reply, (None,))[0] is entry:
            del table[entry.reply]
        self._classes[entry.klass].pop(entry, None)
        entry.klass = ""
        self._size -= 1
        src = entry.original[1]
        left = self._per_source.get(src, 1) - 1
        if left > 0:
            self._per_source[src] = left
        else:
            self._per_source.pop(src, None)

    def _evict_one(self) -> bool:
        """Remove the oldest entry of the most evictable group; False if none is."""
        classes = self._classes
        for group in _EVICTABLE:
            oldest = None
            for name in group:
                od = classes[name]
                if od:
                    candidate = next(iter(od))
                    if oldest is None or candidate.last_seen < oldest.last_seen:
                        oldest = candidate
            if oldest is not None:
                self._remove(oldest)
                self._stats["evicted"] += 1
                return True
        return False

    # ---- time and inspection ---------------------------------------------------------
    def expire(self, now: int) -> int:
        """Remove every entry whose timeout has passed; the number removed."""
        removed = 0
        self._pending = None
        frags = self._frags
        while frags and next(iter(frags.values()))[1] <= now:
            frags.popitem(last=False)
        for od in self._classes.values():
            while od:
                entry = next(iter(od))
                if entry.expires > now:
                    break
                self._remove(entry)
                removed += 1
        self._stats["expired"] += removed
        return removed

    def next_deadline(self) -> int | None:
        """When the next entry expires (ns), or None for an empty table."""
        fronts = [next(iter(od)).expires for od in self._classes.values() if od]
        return min(fronts) if fronts else None

    def __len__(self) -> int:
        return self._size

    def entries(self):
        """Every live entry, in no particular order."""
        for od in self._classes.values():
            yield from od

    def stats(self) -> dict[str, int]:
        """Counters (created, expired, evicted, refused_*, invalid_*, untracked), entries."""
        return dict(self._stats, entries=self._size)

    def remove(self, entry: CtEntry) -> None:
        """Forget ``entry`` (for example when the rules flush a connection)."""
        self._pending = None
        self._remove(entry)
