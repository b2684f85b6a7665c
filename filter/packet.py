"""Find the IP and transport headers of a frame in place: offsets and the fields that
connection tracking, NAT and rules need, for IPv4 and IPv6 over the common link types.

    info = locate(frame, linktype)            # PacketInfo, or None (not IP / malformed)
    info_or_reason = examine(frame, linktype) # PacketInfo, or a reason string for counting

Nothing here raises on any byte sequence. Offsets are absolute in ``frame``. A PacketInfo is
a snapshot: after mangling the frame (NAT, TTL) locate it again for fresh field values.

Choices:
- Link types: Ethernet (up to two 802.1Q/802.1ad tags), raw IP (101, 228, 229), Linux cooked
  v1 (113) and v2 (276), BSD loopback (0 host order, 108 network order).
- The IP version must agree with the link layer's type field (or link type 228 / 229).
- The IP datagram must be complete (total/payload length within the frame; bytes after it,
  such as Ethernet padding, are ignored). The IPv4 header checksum is not verified.
- IPv6 extension headers walked: hop-by-hop, routing, destination options, fragment, AH
  (RFC 8200 section 4). ESP and "no next header" end the walk without transport fields.
- Fragments (RFC 791 / RFC 8200 section 4.5): ``fragment`` is True for any piece of a
  fragmented datagram; ``frag_offset`` > 0 means no transport header (``l4`` = -1);
  ``frag_id`` is the datagram's identification (IPv4 header or IPv6 fragment header).
- ICMP errors (ICMPv4 types 3, 4, 5, 11, 12; ICMPv6 types 1-4) carry ``inner``: the quoted
  datagram located in the same frame, allowed to be truncated, with at least 8 bytes of its
  transport header (RFC 792 "Internet Header + 64 bits of Original Data Datagram").
"""

from __future__ import annotations

from dataclasses import dataclass
from struct import unpack_from

__all__ = [
    "PacketInfo", "locate", "examine",
    "TCP_FIN", "TCP_SYN", "TCP_RST", "TCP_PSH", "TCP_ACK", "TCP_URG", "TCP_ECE", "TCP_CWR",
    "PROTO_ICMP", "PROTO_TCP", "PROTO_UDP", "PROTO_ICMPV6",
    "ICMP_ERROR_TYPES", "ICMPV6_ERROR_TYPES",
]

TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK, TCP_URG, TCP_ECE, TCP_CWR = (
    1, 2, 4, 8, 16, 32, 64, 128)
PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_ICMPV6 = 1, 6, 17, 58
ICMP_ERROR_TYPES = frozenset((3, 4, 5, 11, 12))
ICMPV6_ERROR_TYPES = frozenset((1, 2, 3, 4))
_PORTED = frozenset((PROTO_TCP, PROTO_UDP, 33, 132, 136))   # + DCCP, SCTP, UDP-Lite
_V6_EXT = frozenset((0, 43, 60))
_ETH_TAGS = (0x8100, 0x88A8)
_LINK_ETYPE = {228: 0x0800, 229: 0x86DD}


@dataclass(slots=True)
class PacketInfo:
    """Where the headers of one IP datagram are, and their fields (read-only by convention).

    Fields not present in the packet hold -1 (ports hold 0 for protocols without ports).
    ``ip_len`` is the datagram's length per its header; ``payload_len`` the transport
    payload (TCP data, UDP data) length; ``wscale`` the TCP window-scale shift (-1: no option).
    """

    l3: int
    family: int
    proto: int
    l4: int
    src: bytes
    dst: bytes
    ip_len: int
    ttl: int
    tos: int
    fragment: bool = False
    frag_offset: int = 0
    sport: int = 0
    dport: int = 0
    icmp_type: int = -1
    icmp_code: int = -1
    icmp_id: int = -1
    tcp_flags: int = 0
    seq: int = 0
    ack: int = 0
    window: int = 0
    wscale: int = -1
    payload_len: int = 0
    end: int = 0
    inner: PacketInfo | None = None
    frag_id: int = 0


def locate(frame, linktype: int) -> PacketInfo | None:
    """The headers of ``frame`` (bytes, bytearray, memoryview, numpy uint8), or None."""
    found = examine(frame, linktype)
    return found if type(found) is PacketInfo else None


def examine(frame, linktype: int) -> PacketInfo | str:
    """The headers of ``frame``, or a short reason it has none: 'not-ip', 'truncated',
    'bad-header', 'bad-length', 'bad-linktype', 'bad-frame' (not a byte buffer)."""
    try:
        mv = memoryview(frame).cast("B")
    except (TypeError, ValueError):
        return "bad-frame"
    l3 = _link_payload(mv, linktype)
    if type(l3) is str:
        return l3
    # the link layer's type field (or the link type itself) must agree with the IP version
    if linktype == 1 or linktype == 113:
        etype = (mv[l3 - 2] << 8) | mv[l3 - 1]
    elif linktype == 276:
        etype = (mv[0] << 8) | mv[1]
    else:
        etype = _LINK_ETYPE.get(linktype, 0)
    if etype and len(mv) > l3 and mv[l3] >> 4 != (4 if etype == 0x0800 else 6):
        return "bad-header"
    return _ip(mv, l3, len(mv), False)


def _link_payload(mv: memoryview, linktype: int) -> int | str:
    """The offset of the IP header after the link header, or a reason."""
    n = len(mv)
    if linktype == 1:
        if n < 14:
            return "truncated"
        off = 12
        etype = (mv[12] << 8) | mv[13]
        for _ in range(2):
            if etype not in _ETH_TAGS:
                break
            off += 4
            if n < off + 2:
                return "truncated"
            etype = (mv[off] << 8) | mv[off + 1]
        return off + 2 if etype in (0x0800, 0x86DD) else "not-ip"
    if linktype in (101, 228, 229, 12, 14):
        return 0
    if linktype == 113:
        if n < 16:
            return "truncated"
        return 16 if ((mv[14] << 8) | mv[15]) in (0x0800, 0x86DD) else "not-ip"
    if linktype == 276:
        if n < 20:
            return "truncated"
        return 20 if ((mv[0] << 8) | mv[1]) in (0x0800, 0x86DD) else "not-ip"
    if linktype in (0, 108):
        if n < 4:
            return "truncated"
        family = int.from_bytes(mv[:4], "little" if linktype == 0 else "big")
        return 4 if family in (2, 24, 28, 30) else "not-ip"
    return "bad-linktype"


def _ip(mv: memoryview, l3: int, limit: int, quoted: bool) -> PacketInfo | str:
    """Parse the IP datagram at ``l3``; ``quoted``: inside an ICMP error, may be truncated."""
    if limit - l3 < 1:
        return "truncated"
    version = mv[l3] >> 4
    if version == 4:
        return _ipv4(mv, l3, limit, quoted)
    if version == 6:
        return _ipv6(mv, l3, limit, quoted)
    return "not-ip"


def _ipv4(mv: memoryview, l3: int, limit: int, quoted: bool) -> PacketInfo | str:
    if limit - l3 < 20:
        return "truncated"
    vihl, tos, total, ident, frag, ttl, proto, _sum, src, dst = unpack_from(
        "!BBHHHBBH4s4s", mv, l3)
    ihl = (vihl & 15) * 4
    if ihl < 20 or total < ihl:
        return "bad-header"
    if limit - l3 < ihl:
        return "truncated"
    end = l3 + total
    if end > limit:
        if not quoted:
            return "bad-length"
        end = limit
    offset = (frag & 0x1FFF) * 8
    info = PacketInfo(l3, 4, proto, l3 + ihl, src, dst, total, ttl, tos, bool(frag & 0x3FFF),
                      offset, 0, 0, -1, -1, -1, 0, 0, 0, 0, -1, 0, end, None)
    if info.fragment:
        info.frag_id = ident
    if offset:
        info.l4 = -1
        return info
    return _transport(mv, info, total - ihl, quoted)


def _ipv6(mv: memoryview, l3: int, limit: int, quoted: bool) -> PacketInfo | str:
    if limit - l3 < 40:
        return "truncated"
    word, plen, nxt, hlim, src, dst = unpack_from("!IHBB16s16s", mv, l3)
    end = l3 + 40 + plen
    if end > limit:
        if not quoted:
            return "bad-length"
        end = limit
    info = PacketInfo(l3, 6, nxt, l3 + 40, src, dst, 40 + plen, hlim, (word >> 20) & 0xFF,
                      False, 0, 0, 0, -1, -1, -1, 0, 0, 0, 0, -1, 0, end, None)
    off = l3 + 40
    for _ in range(16):
        if nxt in _V6_EXT or nxt == 51:
            if end - off < 8:
                return "truncated"
            length = (mv[off + 1] + 2) * 4 if nxt == 51 else (mv[off + 1] + 1) * 8
            nxt = mv[off]
            off += length
        elif nxt == 44:
            if end - off < 8:
                return "truncated"
            fo = (mv[off + 2] << 8) | mv[off + 3]
            info.fragment = True
            info.frag_offset = fo & 0xFFF8
            info.frag_id = unpack_from("!I", mv, off + 4)[0]
            nxt = mv[off]
            off += 8
        else:
            break
    else:
        return "bad-header"
    if off > end:
        return "truncated"
    info.proto = nxt
    info.l4 = off
    if info.frag_offset or nxt in (50, 59):
        info.l4 = -1
        return info
    return _transport(mv, info, end - off if quoted else info.ip_len - (off - l3), quoted)


def _transport(mv: memoryview, info: PacketInfo, l4_len: int, quoted: bool) -> PacketInfo | str:
    """Fill transport fields of ``info``; ``l4_len``: transport bytes per the IP header."""
    l4 = info.l4
    avail = info.end - l4
    proto = info.proto
    if proto == PROTO_TCP:
        if avail < (8 if quoted else 20):
            return "truncated"
        if quoted:
            info.sport, info.dport, info.seq = unpack_from("!HHI", mv, l4)
            return info
        info.sport, info.dport, info.seq, info.ack, offflags, info.window = unpack_from(
            "!HHIIHH", mv, l4)
        hlen = (offflags >> 12) * 4
        if hlen < 20 or hlen > avail:
            return "bad-header"
        info.tcp_flags = offflags & 0xFF
        info.payload_len = l4_len - hlen
        if hlen > 20 and offflags & TCP_SYN:
            info.wscale = _wscale(mv, l4 + 20, l4 + hlen)
        return info
    if proto in _PORTED:
        if avail < (4 if proto != PROTO_UDP else 8):
            return "truncated"
        info.sport, info.dport = unpack_from("!HH", mv, l4)
        if proto == PROTO_UDP:
            ulen = (mv[l4 + 4] << 8) | mv[l4 + 5]
            if not quoted and (ulen < 8 or (ulen > l4_len and not info.fragment)):
                return "bad-length"
            info.payload_len = max(ulen - 8, 0)
        return info
    if proto == PROTO_ICMP or proto == PROTO_ICMPV6:
        if avail < 8:
            return "truncated"
        info.icmp_type, info.icmp_code = mv[l4], mv[l4 + 1]
        info.icmp_id = (mv[l4 + 4] << 8) | mv[l4 + 5]
        info.payload_len = l4_len - 8
        errors = ICMP_ERROR_TYPES if proto == PROTO_ICMP else ICMPV6_ERROR_TYPES
        if not quoted and info.icmp_type in errors:
            inner = _ip(mv, l4 + 8, info.end, True)
            if type(inner) is PacketInfo and inner.family == info.family:
                info.inner = inner
        return info
    return info


def _wscale(mv: memoryview, off: int, end: int) -> int:
    """The window-scale shift in the TCP options at [off, end) (RFC 7323 section 2), or -1."""
    while off < end:
        kind = mv[off]
        if kind == 0:
            break
        if kind == 1:
            off += 1
            continue
        if off + 1 >= end or mv[off + 1] < 2:
            break
        if kind == 3 and mv[off + 1] == 3 and off + 2 < end:
            return min(mv[off + 2], 14)       # RFC 7323 section 2.3: values above 14 use 14
        off += mv[off + 1]
    return -1
