"""Seeded, vectorised traffic generator: ``capnet gen OUT.pcap [--count N] [--flows F] ...``.

Frames are built for whole arrays at once with numpy: ``flows`` 5-tuples with Zipf-like
popularity (flow i is chosen with weight 1/(i+1)), ~80/20 IPv4/IPv6, ~70/25/5 TCP/UDP/ICMP
(ICMPv6 echo on IPv6). A TCP flow starts with a SYN, carries ACK / PSH-ACK data segments
with consistent sequence numbers, and ends with FIN-ACK when it has at least three frames.
Sizes by ``--mix``: imix 7:4:1 of 64/576/1500-byte Ethernet frames (FCS not included),
small 64, large 1500; a frame is never shorter than its headers (74 bytes for IPv6/TCP) nor
than the 60-byte Ethernet minimum (zero padding). IPv4 header checksums and TCP/UDP/ICMP
checksums are correct. Timestamps are ns, strictly increasing, with exponential gaps
(Poisson arrivals) at ``--rate`` frames/s from 2023-11-14T22:13:20Z. Addresses come only from
192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32; MACs are locally
administered unicast. Same arguments -> same bytes.
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass

import numpy as np

from drivers.capture import CaptureWriter, open_writer

MIXES = {"imix": ([64, 576, 1500], [7, 4, 1]), "small": ([64], [1]), "large": ([1500], [1])}
START_NS = 1_700_000_000 * 1_000_000_000
TCP, UDP, ICMP = 0, 1, 2
V4_NETS = np.array([[192, 0, 2], [198, 51, 100], [203, 0, 113]], np.uint8)
TCP_PORTS = np.array([443, 8443, 993, 5001, 5201, 50000])
UDP_PORTS = np.array([5201, 9000, 27015, 40000, 50000, 60000])
ETH, IP4, IP6, TCPH, UDPH, ICMPH = 14, 20, 40, 20, 8, 8
HDR_WIDTH = ETH + IP6 + TCPH
CHUNK_FRAMES = 16384
PER_FRAME = ("flow", "v6", "kind", "l4_col", "hdr", "k", "last", "syn", "fin", "payload",
             "l4_total", "length", "offsets", "index", "before")


@dataclass
class Flows:
    """The flow table: per flow, IP version, L4 kind (TCP/UDP/ICMP), addresses, ports."""

    ipv6: np.ndarray          # bool
    kind: np.ndarray          # 0 TCP, 1 UDP, 2 ICMP/ICMPv6
    src: np.ndarray           # (F, 16) uint8; IPv4 uses the first 4 bytes
    dst: np.ndarray
    sport: np.ndarray         # ICMP: echo identifier
    dport: np.ndarray         # ICMP: 0
    src_mac: np.ndarray       # (F, 6)
    dst_mac: np.ndarray
    isn: np.ndarray           # TCP initial sequence numbers
    peer_isn: np.ndarray

    def proto(self) -> np.ndarray:
        """IP protocol number per flow (6, 17, 1 or 58)."""
        icmp = np.where(self.ipv6, 58, 1)
        return np.select([self.kind == TCP, self.kind == UDP], [6, 17], icmp)


@dataclass
class Traffic:
    """Generated frames: frame i is ``data[offsets[i]:offsets[i] + lengths[i]]``."""

    data: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    ts_ns: np.ndarray
    flow: np.ndarray          # flow index of each frame
    flows: Flows


def make_flows(rng: np.random.Generator, count: int) -> Flows:
    ipv6 = rng.random(count) < 0.2
    kind = rng.choice(3, count, p=[0.70, 0.25, 0.05])
    src, dst = (_addresses(rng, ipv6) for _ in range(2))
    sport = rng.integers(1024, 65536, count)
    dport = np.where(kind == TCP, rng.choice(TCP_PORTS, count), rng.choice(UDP_PORTS, count))
    dport[kind == ICMP] = 0
    macs = [rng.integers(0, 256, (count, 6), dtype=np.uint8) for _ in range(2)]
    for mac in macs:
        mac[:, 0] = (mac[:, 0] & 0xFC) | 0x02
    isn, peer = (rng.integers(0, 1 << 32, count, dtype=np.uint64) for _ in range(2))
    return Flows(ipv6, kind, src, dst, sport, dport, macs[0], macs[1], isn, peer)


def _addresses(rng: np.random.Generator, ipv6: np.ndarray) -> np.ndarray:
    out = rng.integers(0, 256, (ipv6.size, 16), dtype=np.uint8)
    out[ipv6, 0:4] = [0x20, 0x01, 0x0D, 0xB8]
    v4 = ~ipv6
    out[v4, 0:3] = V4_NETS[rng.integers(0, 3, int(v4.sum()))]
    out[v4, 3] = rng.integers(1, 255, int(v4.sum()))
    out[v4, 4:] = 0
    return out


def generate(count: int = 20_000, flows: int = 100, mix: str = "imix", seed: int = 1,
             rate: float = 100_000.0) -> Traffic:
    """Generate ``count`` frames over ``flows`` flows (see the module docstring)."""
    if count < 0 or flows < 1 or rate <= 0 or mix not in MIXES:
        raise ValueError("need count >= 0, flows >= 1, rate > 0 and a known mix")
    rng = np.random.default_rng(seed)
    table = make_flows(rng, flows)
    weights = 1.0 / np.arange(1, flows + 1)
    flow = rng.choice(flows, count, p=weights / weights.sum())
    sizes, ratio = MIXES[mix]
    size = np.asarray(sizes)[rng.choice(len(sizes), count, p=np.asarray(ratio) / sum(ratio))]
    gaps = np.maximum(1, rng.exponential(1e9 / rate, count).astype(np.int64))
    ts = (START_NS + np.cumsum(gaps)).astype(np.uint64)
    frames = _Frames(table, flow, size)
    nbytes = int(frames.slot_end) + 2                                       # +2: a sum's end
    data = rng.bit_generator.random_raw(nbytes // 8 + 1).view(np.uint8)[:nbytes]
    frames.fill(data)
    return Traffic(data, frames.offsets, frames.length, ts, flow, table)


class _Frames:
    """Per-frame header fields, computed for the whole batch, written chunk by chunk."""

    def __init__(self, t: Flows, flow: np.ndarray, size: np.ndarray) -> None:
        n = flow.size
        self.t, self.flow, self.n = t, flow, n
        self.v6 = t.ipv6[flow]
        self.kind = t.kind[flow]
        ip_len = np.where(self.v6, IP6, IP4)
        l4_len = np.where(self.kind == TCP, TCPH, UDPH)
        self.l4_col = ETH + ip_len
        self.hdr = self.l4_col + l4_len
        self.k, self.last = _position_in_flow(flow, t.ipv6.size)
        tcp = self.kind == TCP
        self.syn = tcp & (self.k == 0)
        self.fin = tcp & self.last & (self.k >= 2)
        payload = np.maximum(0, size - self.hdr)
        payload[self.syn | self.fin] = 0
        self.payload = payload
        self.l4_total = l4_len + payload
        self.length = np.maximum(60, self.hdr + payload)
        slots = (self.length + 1) & ~1
        self.offsets = np.zeros(n, np.int64)
        if n:
            np.cumsum(slots[:-1], out=self.offsets[1:])
        self.slot_end = int(slots.sum())
        self.index = np.arange(n)
        self.before = self._bytes_before()

    def part(self, lo: int, hi: int) -> _Frames:
        """The same frames lo..hi-1 (a shallow copy with every per-frame array sliced)."""
        piece = copy.copy(self)
        for name in PER_FRAME:
            setattr(piece, name, getattr(self, name)[lo:hi])
        piece.n = hi - lo
        return piece

    def fill(self, data: np.ndarray) -> None:
        """Write headers, padding and checksums into ``data``, a cache-sized chunk at a time."""
        for lo in range(0, self.n, CHUNK_FRAMES):
            self.part(lo, min(lo + CHUNK_FRAMES, self.n))._fill(data)

    def _fill(self, data: np.ndarray) -> None:
        head = self._headers()
        _scatter_rows(data, self.offsets, head, np.zeros(self.n, np.int64), self.hdr)
        pad = self.length - self.hdr - self.payload
        if pad.any():
            zeros = np.zeros((self.n, int(pad.max())), np.uint8)
            _scatter_rows(data, self.offsets + self.hdr + self.payload, zeros,
                          np.zeros(self.n, np.int64), pad)
        self._l4_checksums(data)

    def _headers(self) -> np.ndarray:
        t, f, n = self.t, self.flow, self.n
        h = np.zeros((n, HDR_WIDTH), np.uint8)
        h[:, 0:6] = t.dst_mac[f]
        h[:, 6:12] = t.src_mac[f]
        h[:, 12:14] = _be(np.where(self.v6, 0x86DD, 0x0800), 2)
        proto = t.proto()[f]
        v4, v6 = ~self.v6, self.v6
        ip4 = np.zeros((n, IP4), np.uint8)
        ip4[:, 0] = 0x45
        ip4[:, 2:4] = _be(IP4 + self.l4_total, 2)
        ip4[:, 4:6] = _be(self.index * 7919 + f * 131, 2)
        ip4[:, 6] = 0x40
        ip4[:, 8] = 64
        ip4[:, 9] = proto
        ip4[:, 12:16] = t.src[f, :4]
        ip4[:, 16:20] = t.dst[f, :4]
        ip4[:, 10:12] = _be(_fold(ip4.view(">u2").sum(axis=1, dtype=np.uint64)) ^ 0xFFFF, 2)
        h[v4, ETH:ETH + IP4] = ip4[v4]
        ip6 = np.zeros((n, IP6), np.uint8)
        ip6[:, 0] = 0x60
        ip6[:, 4:6] = _be(self.l4_total, 2)
        ip6[:, 6] = proto
        ip6[:, 7] = 64
        ip6[:, 8:24] = t.src[f]
        ip6[:, 24:40] = t.dst[f]
        h[v6, ETH:ETH + IP6] = ip6[v6]
        l4 = self._l4_headers()
        h[v4, ETH + IP4:ETH + IP4 + TCPH] = l4[v4]
        h[v6, ETH + IP6:ETH + IP6 + TCPH] = l4[v6]
        return h

    def _l4_headers(self) -> np.ndarray:
        t, f, n, kind = self.t, self.flow, self.n, self.kind
        l4 = np.zeros((n, TCPH), np.uint8)
        tcp, udp, icmp = kind == TCP, kind == UDP, kind == ICMP
        ports = np.concatenate([_be(t.sport[f], 2), _be(t.dport[f], 2)], axis=1)
        l4[~icmp, 0:4] = ports[~icmp]
        seq = (t.isn[f] + (self.k > 0) + self.before) & 0xFFFFFFFF
        ack = np.where(self.syn, 0, (t.peer_isn[f] + 1) & 0xFFFFFFFF)
        flags = np.select([self.syn, self.fin, self.payload > 0], [0x02, 0x11, 0x18], 0x10)
        l4[tcp, 4:8] = _be(seq, 4)[tcp]
        l4[tcp, 8:12] = _be(ack, 4)[tcp]
        l4[tcp, 12] = 0x50
        l4[tcp, 13] = flags[tcp]
        l4[tcp, 14:16] = [0xFF, 0xFF]
        l4[udp, 4:6] = _be(self.l4_total, 2)[udp]
        l4[icmp, 0] = np.where(self.v6, 128, 8)[icmp]
        l4[icmp, 4:6] = _be(t.sport[f], 2)[icmp]
        l4[icmp, 6:8] = _be(self.k & 0xFFFF, 2)[icmp]
        return l4

    def _bytes_before(self) -> np.ndarray:
        """Payload bytes of the flow's earlier frames (for TCP sequence numbers)."""
        order = np.argsort(self.flow, kind="stable")
        pay = self.payload[order].astype(np.uint64)
        before = np.cumsum(pay) - pay
        first = order[self.k[order] == 0]
        base = np.zeros(self.t.ipv6.size, np.uint64)
        base[self.flow[first]] = before[self.k[order] == 0]
        out = np.empty(self.n, np.uint64)
        out[order] = before - base[self.flow[order]]
        return out

    def _l4_checksums(self, data: np.ndarray) -> None:
        t, f = self.t, self.flow
        start = self.offsets + self.l4_col
        total = self.l4_total
        # RFC 1071 sums are byte-order independent: add little-endian words, swap at the end
        s = _segment_sums(data, start, total)
        s = ((s & 0xFF) << 8 | (s >> 8)).astype(np.uint64)
        odd = (total & 1).astype(bool)
        s[odd] += data[start[odd] + total[odd] - 1].astype(np.uint64) << np.uint64(8)
        addr_words = np.concatenate([t.src, t.dst], axis=1).view(">u2").astype(np.uint64)
        addr_sum = np.where(t.ipv6, addr_words.sum(axis=1),
                            addr_words[:, [0, 1, 8, 9]].sum(axis=1))[f]
        pseudo = addr_sum + t.proto()[f].astype(np.uint64) + total.astype(np.uint64)
        icmp4 = (self.kind == ICMP) & ~self.v6
        s = s + np.where(icmp4, 0, pseudo).astype(np.uint64)
        csum = _fold(s) ^ 0xFFFF
        csum[(self.kind == UDP) & (csum == 0)] = 0xFFFF
        field = np.select([self.kind == TCP, self.kind == UDP], [16, 6], 2)
        pos = start + field
        data[pos] = csum >> 8
        data[pos + 1] = csum & 0xFF


def _position_in_flow(flow: np.ndarray, flows: int):
    """Index of each frame within its flow, and whether it is the flow's last frame."""
    order = np.argsort(flow, kind="stable")
    counts = np.bincount(flow, minlength=flows)
    starts = np.cumsum(counts) - counts
    k = np.empty(flow.size, np.int64)
    k[order] = np.arange(flow.size) - starts[flow[order]]
    return k, k == counts[flow] - 1


def _segment_sums(data: np.ndarray, start: np.ndarray, length: np.ndarray,
                  chunk: int = 4096) -> np.ndarray:
    """Folded sums of the little-endian 16-bit words of each even-aligned segment, omitting
    an odd last byte. Running sums are taken over chunks of segments to stay in cache."""
    words = data[: data.size // 2 * 2].view("<u2")
    first, end = start // 2, (start + length) // 2
    out = np.empty(start.size, np.int64)
    running = np.empty(0, np.uint64)
    for lo in range(0, start.size, chunk):
        hi = min(lo + chunk, start.size)
        base = int(first[lo]) - 1                       # segments never start at word 0
        span = words[base:int(end[hi - 1])]
        if running.size < span.size:
            running = np.empty(span.size, np.uint64)
        np.cumsum(span, dtype=np.uint64, out=running[: span.size])
        sums = running[end[lo:hi] - 1 - base] - running[first[lo:hi] - 1 - base]
        out[lo:hi] = _fold(sums)
    return out


def _scatter_rows(data, offsets, rows, first, lengths) -> None:
    """data[offsets[i] + j] = rows[i, first[i] + j] for j < lengths[i], grouped by length."""
    for length in np.unique(lengths).tolist():
        if length == 0:
            continue
        sel = np.flatnonzero(lengths == length)
        span = np.arange(length)
        data[offsets[sel, None] + span] = rows[sel[:, None], first[sel, None] + span]


def _be(values, width: int) -> np.ndarray:
    """Big-endian bytes of each value, shape (n, width)."""
    v = np.asarray(values, dtype=np.uint64)
    shifts = np.arange(8 * (width - 1), -1, -8, dtype=np.uint64)
    return ((v[:, None] >> shifts) & np.uint64(0xFF)).astype(np.uint8)


def _fold(total: np.ndarray) -> np.ndarray:
    """One's-complement fold of 64-bit sums to 16 bits."""
    total = np.asarray(total, dtype=np.uint64)
    for _ in range(4):
        total = (total & np.uint64(0xFFFF)) + (total >> np.uint64(16))
    return total.astype(np.int64)


def write_traffic(traffic: Traffic, writer: CaptureWriter) -> None:
    writer.write_batch(traffic.data, traffic.offsets, traffic.lengths, traffic.ts_ns)


def main(argv: list[str] | None = None) -> int:
    """``capnet gen``: write generated traffic to OUT (.pcapng -> pcapng, else pcap)."""
    parser = argparse.ArgumentParser(prog="capnet gen", description=__doc__.split("\n")[0])
    parser.add_argument("out", help="output file (.pcapng -> pcapng, otherwise pcap)")
    parser.add_argument("--count", type=int, default=20_000, help="frames (default 20000)")
    parser.add_argument("--flows", type=int, default=100, help="flows (default 100)")
    parser.add_argument("--mix", choices=sorted(MIXES), default="imix")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=100_000.0,
                        help="mean arrival rate, frames/s (default 100000)")
    parser.add_argument("--nano", action="store_true", help="nanosecond pcap timestamps")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.count < 0 or args.flows < 1 or args.rate <= 0:
        print("capnet gen: --count must be >= 0, --flows >= 1, --rate > 0", file=sys.stderr)
        return 2
    traffic = generate(args.count, args.flows, args.mix, args.seed, args.rate)
    pcapng = str(args.out).endswith(".pcapng")
    try:
        writer = open_writer(args.out, fmt="pcapng" if pcapng else "pcap",
                             nanosecond=True if pcapng else args.nano)
    except OSError as exc:
        print(f"capnet gen: {args.out}: {exc.strerror}", file=sys.stderr)
        return 2
    with writer:
        write_traffic(traffic, writer)
    print(f"{args.out}: {args.count} frames, {int(traffic.lengths.sum())} bytes, "
          f"{args.flows} flows, mix {args.mix}, seed {args.seed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
