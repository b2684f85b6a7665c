"""Rewrite a tracked packet in place as its connection's NAT binding says, with checksums.

A packet of direction ``d`` arrives as tuple ``in(d)`` and leaves as ``out(d)``:
``in(ORIGINAL) = original``, ``out(ORIGINAL) = invert(reply)``; ``in(REPLY) = reply``,
``out(REPLY) = invert(original)``. Each address and port equal to its ``in`` value becomes
the ``out`` value. Checksums follow by RFC 1624 incremental update: the IPv4 header
checksum, and the transport checksum whose pseudo-header (RFC 768, RFC 9293 section 3.1,
RFC 8200 section 8.1, RFC 4443 section 2.3) covers the addresses.

ICMP errors (pf and Linux do the same): the quoted datagram travelled the other way, so it is
mapped back from ``out(1 - d)`` to ``in(1 - d)`` (its IPv4 header checksum and, when quoted,
its transport checksum updated); the outer addresses that equal ``in(d)`` become ``out(d)``
(a router's own address stays); the ICMP checksum is then computed afresh.
"""

from __future__ import annotations

from struct import pack_into, unpack_from

from filter.checksum import internet_checksum, ones_sum, pseudo_header, update, update_word
from filter.conntrack.entry import invert
from filter.conntrack.state import ORIGINAL
from filter.packet import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP

__all__ = ["translate"]

_CHECKSUM_AT = {PROTO_TCP: 16, PROTO_UDP: 6, 33: 6, 136: 6, PROTO_ICMP: 2, PROTO_ICMPV6: 2}
_PORTED = frozenset((PROTO_TCP, PROTO_UDP, 33, 136))
_ICMP_REQUESTS = frozenset((8, 13, 15, 17, 128))


def translate(frame, info, entry, direction: int | None = None) -> bool:
    """Rewrite ``frame`` (writable; ``info`` located in it) for ``entry``'s NAT binding in
    ``direction`` (None: found from the packet; a direction the packet does not fit, as
    from a stale lookup, is corrected the same way). True when any byte changed; False for
    a packet that belongs to neither direction. Never raises on a malformed frame."""
    if entry is None or entry.nat is None or info is None:
        return False
    mv = memoryview(frame).cast("B")
    if mv.readonly:
        raise TypeError("translate needs a writable frame")
    inner = info.inner
    error = inner is not None and info.l4 >= 0 and info.proto in (PROTO_ICMP, PROTO_ICMPV6)
    if error and (inner.frag_offset or inner.l4 < 0):
        return False
    # a packet of direction d arrives as in(d); the packet an error quotes left as out(1 - d)
    probe = inner if error else info
    if error:
        forms = (invert(entry.original), invert(entry.reply))
    else:
        forms = (entry.original, entry.reply)
    if direction is None or not _fits(probe, forms[direction != ORIGINAL]):
        if _fits(probe, forms[0]):
            direction = ORIGINAL
        elif _fits(probe, forms[1]):
            direction = 1
        else:
            return False
    if direction == ORIGINAL:
        in_t, out_t = entry.original, invert(entry.reply)
    else:
        in_t, out_t = entry.reply, invert(entry.original)
    if error:
        # the quoted packet went the other way: back from out(1 - d) = invert(in(d)) to
        # in(1 - d) = invert(out(d))
        changed = _rewrite(mv, inner, invert(in_t), invert(out_t))
        changed |= _addresses(mv, info, in_t, out_t, None)
        if changed:
            _icmp_checksum(mv, info)
        return changed
    if info.frag_offset:            # a later fragment: addresses only (RFC 791 section 3.2:
        return _addresses(mv, info, in_t, out_t, None)   # the transport header is in the first)
    if info.l4 < 0:
        return False
    return _rewrite(mv, info, in_t, out_t)


def _fits(info, t: tuple) -> bool:
    """True when ``info`` has the addresses (and ports, if it carries them) of tuple ``t``."""
    if info.src != t[1] or info.dst != t[2]:
        return False
    return info.proto not in _PORTED or info.l4 < 0 or (info.sport == t[3]
                                                        and info.dport == t[4])


def _rewrite(mv: memoryview, info, in_t: tuple, out_t: tuple) -> bool:
    """Map ``info``'s addresses and ports (or ICMP id) from ``in_t`` to ``out_t``."""
    proto = info.proto
    l4 = info.l4
    csum_at = _CHECKSUM_AT.get(proto, -1)
    if csum_at >= 0 and (l4 + csum_at + 2 > info.end
                         or (proto == PROTO_UDP and info.family == 4
                             and not unpack_from("!H", mv, l4 + 6)[0])):
        csum_at = -1              # not quoted in full, or an IPv4 UDP datagram without one
    l4_csum = [unpack_from("!H", mv, l4 + csum_at)[0]] if csum_at >= 0 else None
    # ICMPv4's checksum has no pseudo-header (RFC 792): addresses do not enter it
    changed = _addresses(mv, info, in_t, out_t, l4_csum if proto != PROTO_ICMP else None)
    if proto in _PORTED:
        for at, old, want, new in ((0, info.sport, in_t[3], out_t[3]),
                                   (2, info.dport, in_t[4], out_t[4])):
            if old == want and old != new:
                pack_into("!H", mv, l4 + at, new)
                if l4_csum is not None:
                    l4_csum[0] = update_word(l4_csum[0], old, new)
                changed = True
    elif proto in (PROTO_ICMP, PROTO_ICMPV6) and l4 + 8 <= info.end:
        at = 3 if info.icmp_type in _ICMP_REQUESTS else 4     # where the tuple keeps the id
        old, new = info.icmp_id, out_t[at]
        if old == in_t[at] and old != new:
            pack_into("!H", mv, l4 + 4, new)
            if l4_csum is not None:
                l4_csum[0] = update_word(l4_csum[0], old, new)
            changed = True
    if l4_csum is not None and changed:
        value = l4_csum[0]
        if proto == PROTO_UDP and value == 0:
            value = 0xFFFF                 # RFC 768: a computed zero is sent as all ones
        pack_into("!H", mv, l4 + csum_at, value)
    return changed


def _addresses(mv: memoryview, info, in_t: tuple, out_t: tuple, l4_csum) -> bool:
    """Rewrite source/destination addresses equal to ``in_t``'s; update the IPv4 header
    checksum and ``l4_csum[0]`` (a pseudo-header checksum) if given."""
    l3 = info.l3
    size = len(info.src)
    at_src, at_dst = (l3 + 12, l3 + 16) if size == 4 else (l3 + 8, l3 + 24)
    changed = False
    for at, old, want, new in ((at_src, info.src, in_t[1], out_t[1]),
                               (at_dst, info.dst, in_t[2], out_t[2])):
        if old == want and old != new:
            mv[at:at + size] = new
            if size == 4:
                hc = unpack_from("!H", mv, l3 + 10)[0]
                pack_into("!H", mv, l3 + 10, update(hc, old, new))
            if l4_csum is not None:
                l4_csum[0] = update(l4_csum[0], old, new)
            changed = True
    return changed


def _icmp_checksum(mv: memoryview, info) -> None:
    """Recompute the ICMP (RFC 792) or ICMPv6 (RFC 4443 section 2.3) checksum."""
    l4, end = info.l4, info.end
    pack_into("!H", mv, l4 + 2, 0)
    initial = 0
    if info.proto == PROTO_ICMPV6:
        l3 = info.l3
        initial = ones_sum(pseudo_header(bytes(mv[l3 + 8:l3 + 24]), bytes(mv[l3 + 24:l3 + 40]),
                                         PROTO_ICMPV6, end - l4))
    pack_into("!H", mv, l4 + 2, internet_checksum(mv[l4:end], initial))
