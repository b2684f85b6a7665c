"""Rule fields of a whole batch at once, read in place from the data region with numpy.

``extract(data, offsets, lengths, linktype)`` returns one int64 array per field (-1 where the
field is absent) and, for IPv6 addresses, ``S17`` keys (a 0x01 byte then the 16 address bytes;
empty where absent) whose byte order is the numeric order. The rules are those of
``filter.rules.fields`` and exactly the reference parser's (``filter.reference.packet_fields``):
no per-frame Python loop.
"""

from __future__ import annotations

import numpy as np

from filter.classify import fast
from filter.rules.fields import PORT_PROTOCOLS

RAW_LINKTYPES = (12, 14, 101, 228, 229)
LOOPBACK_LINKTYPES = (0, 108)             # BSD loopback: a 4-byte address family first
SLL_LINKTYPES = {113: (14, 16), 276: (0, 20)}   # Linux cooked v1/v2: (type at, IP header at)
ABSENT = -1
WINDOW = 96                   # bytes of each frame read in one row copy


class _Frames:
    """Byte and big-endian word reads at per-frame positions, never outside the region.

    The first ``WINDOW`` bytes of every frame are copied once into an (N, WINDOW) matrix (one
    row copy per frame through a strided view); reads past the window gather from the region.
    """

    def __init__(self, data: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> None:
        self.data, self.off = data, offsets.astype(np.int64)
        self.len = lengths.astype(np.int64)
        self.last = len(data) - 1
        n = len(self.off)
        self.rows = np.arange(n)
        self.head = np.zeros((n, WINDOW), dtype=np.uint8)
        if len(data) >= WINDOW and n:
            windows = np.ndarray(shape=(len(data) - WINDOW + 1,), buffer=data,
                                 dtype=np.dtype((np.void, WINDOW)), strides=(1,))
            inside = self.off <= len(data) - WINDOW
            if inside.all():
                self.head = windows[self.off].view(np.uint8).reshape(n, WINDOW)
            else:
                self.head[inside] = windows[self.off[inside]].view(np.uint8).reshape(-1, WINDOW)
            tail = np.flatnonzero(~inside)
        else:
            tail = np.arange(n)
        for i in tail:                        # a frame starting in the region's last bytes
            chunk = data[self.off[i]:self.off[i] + WINDOW]
            self.head[i, :len(chunk)] = chunk

    def u8(self, pos) -> np.ndarray:
        if np.isscalar(pos):
            if pos < WINDOW:
                return self.head[:, pos].astype(np.int64)
            return self.data[np.minimum(self.off + pos, self.last)].astype(np.int64)
        values = self.head[self.rows, np.minimum(pos, WINDOW - 1)].astype(np.int64)
        far = pos >= WINDOW
        if far.any():
            values[far] = self.data[np.minimum(self.off[far] + pos[far], self.last)]
        return values

    def u16(self, pos) -> np.ndarray:
        return (self.u8(pos) << 8) | self.u8(pos + 1)

    def u32(self, pos) -> np.ndarray:
        return (self.u16(pos) << 16) | self.u16(pos + 2)

    def has(self, end) -> np.ndarray:
        """Frames at least ``end`` bytes long."""
        return self.len >= end


def _put(fields: dict, name: str, where: np.ndarray, values) -> None:
    fields[name] = np.where(where, values, ABSENT)


L4_FIELDS = frozenset({"meta.l4proto", "th.sport", "th.dport", "tcp.flags", "icmp.type",
                       "icmp.code", "icmpv6.type", "icmpv6.code"})


def _is_port_protocol(proto: np.ndarray) -> np.ndarray:
    out = proto == PORT_PROTOCOLS[0]
    for p in PORT_PROTOCOLS[1:]:
        out |= proto == p
    return out


def _is_extension(nxt: np.ndarray) -> np.ndarray:
    return (nxt == 0) | (nxt == 43) | (nxt == 44) | (nxt == 60)


def extract(data: np.ndarray, offsets: np.ndarray, lengths: np.ndarray,
            linktype: int = 1, wanted=None) -> dict[str, np.ndarray]:
    """The rule fields of each frame ``data[offsets[i] : offsets[i] + lengths[i]]`` (only those
    in ``wanted``, and what they depend on, when given). Untagged Ethernet frames with IPv4
    (20-byte header) or IPv6 (no extension header) take the fixed-offset path (``fast``); the others are parsed in full."""
    want = (lambda name: True) if wanted is None else wanted.__contains__
    l4_wanted = wanted is None or not L4_FIELDS.isdisjoint(wanted)
    offsets, lengths = offsets.astype(np.int64), lengths.astype(np.int64)
    head = fast.gather_heads(data, offsets) if linktype == 1 else None
    if head is None:
        return _parse(data, offsets, lengths, linktype, want, l4_wanted)
    v4, v6 = fast.shapes(head, lengths)
    common = v4 | v6
    if common.all():
        return fast.common_fields(head, lengths, v4, v6, want, l4_wanted)
    rest = np.flatnonzero(~common)
    parsed = _parse(data, offsets[rest], lengths[rest], linktype, want, l4_wanted)
    if len(rest) == len(offsets):
        return parsed
    out = fast.common_fields(head, lengths, v4, v6, want, l4_wanted)
    for name, values in parsed.items():
        out[name] = merged = out[name].copy()
        merged[rest] = values
    return out


def _parse(data: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, linktype: int, want,
           l4_wanted: bool) -> dict[str, np.ndarray]:
    """``extract`` by the general parser: every link type, tags, IPv6 extension headers."""
    fr = _Frames(data, offsets, lengths)
    n = len(fr.off)
    out: dict[str, np.ndarray] = {"meta.length": fr.len}
    link = _link(fr, linktype)
    if link is None:
        _absent_ip(out, n)
        return out
    out["ether.type"], etype, l3, vlan = link
    out["meta.protocol"] = etype
    out["vlan.id"], out["vlan.pcp"], out["vlan.type"] = vlan
    vbyte = fr.u8(l3)
    # IPv4, RFC 791 section 3.1
    ihl = (vbyte & 15) * 4
    v4 = (etype == 0x0800) & fr.has(l3 + 20) & (vbyte >> 4 == 4) & (ihl >= 20) & fr.has(l3 + ihl)
    proto4 = fr.u8(l3 + 9)
    for name, value in (("ip.ttl", lambda: fr.u8(l3 + 8)), ("ip.protocol", lambda: proto4),
                        ("ip.saddr", lambda: fr.u32(l3 + 12)),
                        ("ip.daddr", lambda: fr.u32(l3 + 16))):
        if want(name):
            _put(out, name, v4, value())
    # IPv6, RFC 8200 sections 3 and 4
    v6 = (etype == 0x86DD) & fr.has(l3 + 40) & (vbyte >> 4 == 6)
    if want("meta.nfproto"):
        out["meta.nfproto"] = np.select([v4, v6], [2, 10], ABSENT)
    any6 = bool(v6.any())
    nxt = np.where(v6, fr.u8(l3 + 6), ABSENT) if any6 else np.full(n, ABSENT, dtype=np.int64)
    if want("ip6.nexthdr"):
        out["ip6.nexthdr"] = nxt
    if want("ip6.hoplimit"):
        _put(out, "ip6.hoplimit", v6, fr.u8(l3 + 7))
    for name, start in (("ip6.saddr", 8), ("ip6.daddr", 24)):
        if want(name):
            out[name] = _addr6(fr, v6, l3 + start)
    if not l4_wanted:
        return out
    pos = np.full(n, l3 + 40, dtype=np.int64)
    first6 = v6.copy()
    for _ in range(4):
        ext = v6 & _is_extension(nxt)
        if not ext.any():
            break
        short = ext & ~fr.has(pos + 8)
        nxt = np.where(short, ABSENT, nxt)
        go = ext & ~short
        frag = go & (nxt == 44)
        first6 &= ~(frag & ((fr.u16(pos + 2) & 0xFFF8) != 0))
        step = np.where(nxt == 44, 8, (fr.u8(pos + 1) + 1) * 8)
        nxt = np.where(go, fr.u8(pos), nxt)
        pos = np.where(go, pos + step, pos)
    proto6_ok = v6 & (nxt >= 0) & ~_is_extension(nxt)
    proto = np.where(v4, proto4, np.where(proto6_ok, nxt, ABSENT))
    out["meta.l4proto"] = proto
    l4 = np.where(v4, l3 + ihl, pos)
    has_l4 = (v4 & ((fr.u16(l3 + 6) & 0x1FFF) == 0)) | (proto6_ok & first6)
    ports = has_l4 & _is_port_protocol(proto) & fr.has(l4 + 4)
    if want("th.sport"):
        _put(out, "th.sport", ports, fr.u16(l4))
    if want("th.dport"):
        _put(out, "th.dport", ports, fr.u16(l4 + 2))
    if want("tcp.flags"):
        _put(out, "tcp.flags", ports & (proto == 6) & fr.has(l4 + 14), fr.u8(l4 + 13))
    if any(want(k) for k in ("icmp.type", "icmp.code", "icmpv6.type", "icmpv6.code")):
        icmp_head = has_l4 & fr.has(l4 + 2)
        t, c = fr.u8(l4), fr.u8(l4 + 1)
        icmp4, icmp6 = icmp_head & v4 & (proto == 1), icmp_head & v6 & (proto == 58)
        _put(out, "icmp.type", icmp4, t)
        _put(out, "icmp.code", icmp4, c)
        _put(out, "icmpv6.type", icmp6, t)
        _put(out, "icmpv6.code", icmp6, c)
    return out


def _link(fr: _Frames, linktype: int):
    """(outer ether type, the IP layer's ether type, where the IP header starts (an int, or an
    array when frames differ), (vlan id, pcp, type)) per frame; None for a link type without
    IP. Ethernet frames are seen through up to two 802.1Q/802.1ad tags (IEEE 802.1Q section
    9.6: TPID, then a TCI of PCP (3 bits), DEI (1) and VID (12), then the next type)."""
    n = len(fr.off)
    absent = np.full(n, ABSENT, dtype=np.int64)
    no_vlan = (absent, absent, absent)
    if linktype in RAW_LINKTYPES or linktype in LOOPBACK_LINKTYPES:
        l3 = 0 if linktype in RAW_LINKTYPES else 4
        version = np.where(fr.has(l3 + 1), fr.u8(l3) >> 4, -1)
        etype = np.select([version == 4, version == 6], [0x0800, 0x86DD], ABSENT)
        if linktype in LOOPBACK_LINKTYPES:
            family = fr.u32(0)
            if linktype == 0:             # host (little-endian) order
                family = ((family & 0xFF) << 24) | ((family & 0xFF00) << 8) | \
                    ((family >> 8) & 0xFF00) | (family >> 24)
            v6_family = (family == 24) | (family == 28) | (family == 30)
            etype = np.select([fr.has(4) & (family == 2), fr.has(4) & v6_family],
                              [0x0800, 0x86DD], ABSENT)
        elif linktype == 228:
            etype = np.where(fr.has(1), 0x0800, ABSENT)
        elif linktype == 229:
            etype = np.where(fr.has(1), 0x86DD, ABSENT)
        return etype, etype, l3, no_vlan
    if linktype in SLL_LINKTYPES:
        where, l3 = SLL_LINKTYPES[linktype]
        etype = np.where(fr.has(l3), fr.u16(where), ABSENT)
        return etype, etype, l3, no_vlan
    if linktype != 1:
        return None
    outer = np.where(fr.has(14), fr.u16(12), ABSENT)
    first = _is_tag(outer) & fr.has(18)
    if not first.any():
        return outer, outer, 14, no_vlan
    tci = fr.u16(14)
    vlan = (np.where(first, tci & 0x0FFF, ABSENT), np.where(first, tci >> 13, ABSENT),
            np.where(first, fr.u16(16), ABSENT))
    etype = np.where(_is_tag(outer) & ~first, ABSENT, np.where(first, vlan[2], outer))
    second = first & _is_tag(etype)
    etype = np.where(second, np.where(fr.has(22), fr.u16(20), ABSENT), etype)
    l3 = 14 + 4 * first.astype(np.int64) + 4 * second.astype(np.int64)
    return outer, etype, l3, vlan


def _is_tag(etype: np.ndarray) -> np.ndarray:
    return (etype == 0x8100) | (etype == 0x88A8)


def _addr6(fr: _Frames, present: np.ndarray, start) -> np.ndarray:
    keys = np.empty((len(fr.off), 17), dtype=np.uint8)
    keys[:, 0] = 1
    if np.isscalar(start):
        keys[:, 1:] = fr.head[:, start:start + 16]
    else:
        keys[:, 1:] = fr.head[fr.rows[:, None], np.minimum(start[:, None] + np.arange(16),
                                                             WINDOW - 1)]
    keys[~present] = 0
    return keys.view("S17").ravel()


def _absent_ip(out: dict, n: int) -> None:
    for name in ("ether.type", "meta.protocol", "vlan.id", "vlan.pcp", "vlan.type",
                 "meta.nfproto", "ip.ttl", "ip.protocol", "ip.saddr", "ip.daddr", "ip6.nexthdr",
                 "ip6.hoplimit", "meta.l4proto", "th.sport", "th.dport", "tcp.flags",
                 "icmp.type", "icmp.code", "icmpv6.type", "icmpv6.code"):
        out[name] = np.full(n, ABSENT, dtype=np.int64)
    empty = np.zeros((n, 17), dtype=np.uint8).view("S17").ravel()
    out["ip6.saddr"], out["ip6.daddr"] = empty, empty.copy()


def addr6_key(value: int) -> bytes:
    """The S17 key of an IPv6 address (or of 2**128 + value bounds used by the compiler)."""
    return (value + (1 << 128)).to_bytes(17, "big")
