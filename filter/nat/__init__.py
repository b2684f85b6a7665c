"""NAT and mangling in place: source/destination NAT with port maps, masquerade, TTL /
hop-limit and DSCP edits, with RFC 1624 incremental checksum updates.

    from filter.nat import NatAction, translate, set_ttl, dec_ttl, set_hoplimit, set_dscp
    action = NatAction.snat(addresses=(first, last), ports=(1024, 65535))   # bytes addresses
    action = NatAction.dnat(addresses=(server,), ports=(8080, 8080))
    action = NatAction.masquerade(interface_address, ports=None)
    entry = tracker.confirm(info, match, now, nat=action)  # the tracker asks the action for a
                                                            # reply tuple nobody else uses
    changed = translate(frame, info, entry, direction)      # frame: writable buffer;
                                            # direction None (or stale): found from the packet

``translate`` rewrites addresses, ports (ICMP query identifiers) and checksums of a packet of
``entry`` travelling in ``direction`` (ORIGINAL: as the reply tuple expects; REPLY: back to
what the originator sent). For a RELATED ICMP error it rewrites the outer addresses that
match the connection, the quoted header (addresses, ports, its IPv4 header checksum and the
quoted transport checksum when quoted) and recomputes the ICMP checksum. IPv4 UDP datagrams
with checksum zero (none, RFC 768) keep zero; a computed zero is sent as 0xFFFF. Later
fragments of a datagram (matched through their first fragment) get their addresses
rewritten; the first fragment carries the ports and the transport checksum.

``set_ttl(frame, info, ttl)``, ``set_hoplimit`` (alias), ``dec_ttl(frame, info, by=1) -> int``
(the new TTL, floor 0) and ``set_dscp(frame, info, dscp)`` (ECN bits kept) edit in place and
update the IPv4 header checksum incrementally. ``info`` is stale afterwards.
"""

from filter.nat.action import NatAction
from filter.nat.mangle import dec_ttl, set_dscp, set_hoplimit, set_ttl
from filter.nat.translate import translate

__all__ = ["NatAction", "translate", "set_ttl", "dec_ttl", "set_hoplimit", "set_dscp"]
