"""Replies for ``reject``: a TCP RST or an ICMP/ICMPv6 destination unreachable, built for the
sender of a frame and sent back out the side it came in on.

- TCP (RFC 9293 section 3.10.7.1): if the segment has ACK, ``<SEQ=SEG.ACK><CTL=RST>``; else
  ``<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`` (SYN and FIN count in SEG.LEN). A RST is never
  answered.
- ICMP (RFC 792; RFC 1812 section 4.3.2.3): type 3, code 3 (port), 1 (host) or 13
  (administratively prohibited), quoting as much of the datagram as keeps the reply within
  576 bytes. ICMPv6 (RFC 4443 section 3.1): type 1, code 4 (port) or 1 (administratively
  prohibited), quoting up to a 1280-byte reply.
- Nothing is sent in answer to an ICMP error, a fragment other than the first, or a
  multicast/broadcast destination (RFC 1122 section 3.2.2).
Ethernet frames get their MAC addresses swapped (VLAN tags kept); raw IP frames are answered
in raw IP, BSD loopback ones with the same family word, Linux cooked ones (113, 276) with the
same header marked outgoing (packet type 4).
"""

from __future__ import annotations

import struct

from filter.checksum import internet_checksum, transport_checksum
from filter.packet import ICMP_ERROR_TYPES, ICMPV6_ERROR_TYPES, locate

TTL = 64
SLL_PKTTYPE = {113: 0, 276: 10}     # where the cooked header's packet type is
PACKET_OUTGOING = 4
ICMP_CODES = {"icmp port-unreachable": 3, "icmp host-unreachable": 1,
              "icmp admin-prohibited": 13, "": 3, "admin": 13}
ICMPV6_CODES = {"icmpv6 port-unreachable": 4, "icmpv6 admin-prohibited": 1, "": 4, "admin": 1}


def build_reject(frame: bytes, linktype: int, how: str = "") -> bytes | None:
    """The reply to ``frame`` (None when none may be sent)."""
    info = locate(frame, linktype)
    if info is None or info.frag_offset > 0 or _multicast(info):
        return None
    if info.proto in (1, 58) and info.icmp_type in (
            ICMP_ERROR_TYPES if info.proto == 1 else ICMPV6_ERROR_TYPES):
        return None
    link = bytes(frame[:info.l3])                       # raw IP: none; loopback: the family
    if info.l3 >= 14 and linktype == 1:
        link = frame[6:12] + frame[0:6] + frame[12:info.l3]   # VLAN tags kept
    elif linktype in SLL_PKTTYPE:                       # Linux cooked: marked as sent by us
        at = SLL_PKTTYPE[linktype]
        width = 2 if linktype == 113 else 1
        link = link[:at] + PACKET_OUTGOING.to_bytes(width, "big") + link[at + width:]
    if info.proto == 6 and info.l4 >= 0 and how in ("", "tcp reset"):
        segment = _rst(frame, info)
        if segment is None:
            return None
        return link + _ip(info, 6, segment)
    if info.family == 4:
        code = ICMP_CODES.get(how, 3)
        quoted = frame[info.l3:info.end][:576 - 28]
        body = struct.pack("!BBHI", 3, code, 0, 0) + quoted
        body = body[:2] + struct.pack("!H", internet_checksum(body)) + body[4:]
        return link + _ip(info, 1, body)
    code = ICMPV6_CODES.get(how, 4)
    quoted = frame[info.l3:info.end][:1280 - 48]
    body = struct.pack("!BBHI", 1, code, 0, 0) + quoted
    checksum = transport_checksum(info.dst, info.src, 58, body)
    body = body[:2] + struct.pack("!H", checksum) + body[4:]
    return link + _ip(info, 58, body)


def _multicast(info) -> bool:
    if info.family == 4:
        return info.dst[0] >= 224 or info.dst == b"\xff\xff\xff\xff"
    return info.dst[0] == 0xFF


def _rst(frame: bytes, info) -> bytes | None:
    flags = info.tcp_flags
    if flags & 0x04:
        return None
    if flags & 0x10:
        seq, ack, ctl = info.ack, 0, 0x04
    else:
        length = info.payload_len + (1 if flags & 0x02 else 0) + (1 if flags & 0x01 else 0)
        seq, ack, ctl = 0, (info.seq + length) & 0xFFFFFFFF, 0x14
    segment = struct.pack("!HHIIBBHHH", info.dport, info.sport, seq, ack, 5 << 4, ctl, 0, 0, 0)
    checksum = transport_checksum(info.dst, info.src, 6, segment)
    return segment[:16] + struct.pack("!H", checksum) + segment[18:]


def _ip(info, proto: int, payload: bytes) -> bytes:
    """An IP header from the original's destination back to its source, then ``payload``."""
    if info.family == 4:
        header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, TTL, proto,
                             0, info.dst, info.src)
        header = header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:]
        return header + payload
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), proto, TTL, info.dst,
                       info.src) + payload
