"""The common case of field extraction in a few array operations: untagged Ethernet carrying
IPv4 with a 20-byte header (IHL 5, RFC 791 section 3.1) or IPv6 with no extension header
(RFC 8200 section 3).

For such frames every field the rules read sits at a fixed offset. IPv4: ether type at 12,
the header at 14 (flags and fragment offset at 20, TTL 22, protocol 23, addresses 26 and 30),
the transport header at 34. IPv6: the header at 14 (next header 20, hop limit 21, addresses 22
and 38), the transport header at 54. Ports are its first two 16-bit words, TCP flags its byte
13, ICMP type and code its bytes 0 and 1. The first ``HEAD`` bytes of every frame are
gathered in one copy; no per-frame Python. ``common`` says which frames are of these shapes;
the others are left to the general parser (``fields.extract``), whose answers these are.
"""

from __future__ import annotations

import numpy as np

from filter.rules.fields import PORT_PROTOCOLS

HEAD = 68                               # through IPv6's TCP flags byte (54 + 13)
ABSENT = -1
EXTENSIONS = (0, 43, 44, 60)            # hop-by-hop, routing, fragment, destination options
ICMP_FIELDS = ("icmp.type", "icmp.code", "icmpv6.type", "icmpv6.code")


def gather_heads(data: np.ndarray, offsets: np.ndarray,
                 size: int = HEAD) -> np.ndarray | None:
    """(N, >= size) uint8: the first ``size`` bytes at each offset, in one gather; None if some
    offset is too near the region's end to have them. When every offset is a multiple of a
    power of two >= ``size`` (a queue's buffers are), whole aligned blocks are taken: the
    fewest cache lines per frame."""
    if len(offsets) == 0 or len(data) < size or int(offsets.max()) > len(data) - size:
        return None
    block = 1 << (size - 1).bit_length()
    if not (offsets & (block - 1)).any() and int(offsets.max()) + block <= len(data):
        blocks = data[:len(data) // block * block].reshape(-1, block)
        return blocks.take(offsets // block, axis=0)
    windows = np.ndarray(shape=(len(data) - size + 1,), buffer=data,
                         dtype=np.dtype((np.void, size)), strides=(1,))
    return windows[offsets].view(np.uint8).reshape(len(offsets), size)


PORT_PROTOCOL = np.zeros(256, dtype=bool)
PORT_PROTOCOL[list(PORT_PROTOCOLS)] = True
EXTENSION = np.zeros(256, dtype=bool)
EXTENSION[list(EXTENSIONS)] = True


def shapes(head: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(IPv4 frames, IPv6 frames) of the common shapes: untagged Ethernet, then a whole
    20-byte IPv4 header, or a whole IPv6 header whose next header is not an extension."""
    word = head[:, 12:16].copy().view(">u4")[:, 0]       # ether type, then IP's first bytes
    v4 = ((word >> 8) == 0x080045) & (lengths >= 34)
    v6 = ((word >> 12) == 0x86DD6) & (lengths >= 54) & ~EXTENSION[head[:, 20]]
    return v4, v6


def _int(column: np.ndarray) -> np.ndarray:
    return column.astype(np.int64)


def _words(head: np.ndarray, at: int, size: int, count: int) -> np.ndarray:
    """(N, count) big-endian unsigned ``size``-byte words from byte ``at`` of each row, int64."""
    return head[:, at:at + size * count].copy().view(f">u{size}").astype(np.int64)


def common_fields(head: np.ndarray, lengths: np.ndarray, v4: np.ndarray, v6: np.ndarray,
                  want, l4_wanted: bool) -> dict[str, np.ndarray]:
    """What ``fields.extract`` gives (the same keys, for the same ``want`` and ``l4_wanted``)
    for frames that are all ``v4`` or ``v6`` (values of other rows are meaningless)."""
    n = len(head)
    only4, only6 = bool(v4.all()), bool(v6.all())
    mixed = not (only4 or only6)
    absent = np.full(n, ABSENT, dtype=np.int64)
    etype = np.where(v4, 0x0800, 0x86DD) if mixed else \
        np.full(n, 0x0800 if only4 else 0x86DD, dtype=np.int64)
    out: dict[str, np.ndarray] = {"meta.length": lengths, "ether.type": etype,
                                  "meta.protocol": etype, "vlan.id": absent,
                                  "vlan.pcp": absent, "vlan.type": absent}
    proto8 = np.where(v4, head[:, 23], head[:, 20]) if mixed else head[:, 23 if only4 else 20]
    proto = _int(proto8)
    if want("ip.ttl"):
        out["ip.ttl"] = np.where(v4, _int(head[:, 22]), ABSENT)
    if want("ip.protocol"):
        out["ip.protocol"] = np.where(v4, proto, ABSENT)
    if want("ip.saddr") or want("ip.daddr"):
        addresses = _words(head, 26, 4, 2)
        if not only4:
            addresses = np.where(v4[:, None], addresses, ABSENT)
        for k, name in enumerate(("ip.saddr", "ip.daddr")):
            if want(name):
                out[name] = addresses[:, k]
    if want("meta.nfproto"):
        out["meta.nfproto"] = np.where(v4, 2, 10)
    if want("ip6.nexthdr"):
        out["ip6.nexthdr"] = np.where(v6, proto, ABSENT)
    if want("ip6.hoplimit"):
        out["ip6.hoplimit"] = np.where(v6, _int(head[:, 21]), ABSENT)
    for name, at in (("ip6.saddr", 22), ("ip6.daddr", 38)):
        if want(name):
            keys = np.zeros((n, 17), dtype=np.uint8)
            keys[:, 0] = 1
            keys[:, 1:] = head[:, at:at + 16]
            keys[~v6] = 0
            out[name] = keys.view("S17").ravel()
    if not l4_wanted:
        return out
    out["meta.l4proto"] = proto
    # the transport header's first 8 bytes and TCP's flags byte (13), wherever it starts
    if mixed:
        l4 = np.where(v4[:, None], head[:, 34:42], head[:, 54:62])
        header = np.where(v4, 34, 54)
    else:
        header = 34 if only4 else 54
        l4 = head[:, header:header + 8]
    # an IPv4 fragment other than the first has no transport header (RFC 791 section 3.1)
    first = v6 | (head[:, 20:22].copy().view(">u2")[:, 0] & 0x1FFF == 0)
    if want("th.sport") or want("th.dport") or want("tcp.flags"):
        ports = first & (lengths >= header + 4) & PORT_PROTOCOL[proto8]
        if want("th.sport") or want("th.dport"):
            both = np.where(ports[:, None], _words(l4, 0, 2, 2), ABSENT)
            for k, name in enumerate(("th.sport", "th.dport")):
                if want(name):
                    out[name] = both[:, k]
        if want("tcp.flags"):
            flags8 = np.where(v4, head[:, 47], head[:, 67]) if mixed else head[:, header + 13]
            out["tcp.flags"] = np.where(ports & (proto8 == 6) & (lengths >= header + 14),
                                        _int(flags8), ABSENT)
    if any(want(k) for k in ICMP_FIELDS):
        icmp = first & (lengths >= header + 2)
        kind, code = _int(l4[:, 0]), _int(l4[:, 1])
        icmp4, icmp6 = icmp & v4 & (proto8 == 1), icmp & v6 & (proto8 == 58)
        out["icmp.type"] = np.where(icmp4, kind, ABSENT)
        out["icmp.code"] = np.where(icmp4, code, ABSENT)
        out["icmpv6.type"] = np.where(icmp6, kind, ABSENT)
        out["icmpv6.code"] = np.where(icmp6, code, ABSENT)
    return out
