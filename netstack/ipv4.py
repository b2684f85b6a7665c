"""IPv4 fragmentation on send and reassembly on receive (RFC 791, RFC 1122, RFC 5722).

TTL (RFC 1122 section 3.2.1.7): "A host MUST NOT send a datagram with a Time-to-Live (TTL)
value of zero" (the interface sends 64) and "MUST NOT discard a datagram just because it was
received with TTL less than 2" (a host does not forward, so it never decrements it).
Options (RFC 1122 section 3.2.1.8) are skipped: the header length covers them.

Fragmentation (RFC 791 section 3.2, "An Example Fragmentation Procedure"): every fragment but
the last carries a multiple of 8 data bytes and the MF flag; offsets count 8-byte units; the
header (no options here) is repeated.

Reassembly (:class:`Reassembler`, shared with IPv6): fragments are keyed by (source,
destination, protocol, identification) (RFC 791 section 3.2; for IPv6 the protocol is not
part of the key, RFC 8200 section 4.5). Limits: at most ``max_datagrams`` in progress,
``max_bytes`` held in total, ``max_fragments`` per datagram (enough for 64 KiB over a 576-byte
MTU), and no datagram beyond 65535 bytes; a datagram beyond a limit is refused. Overlapping
fragments make the whole datagram invalid, as RFC 5722 section 4 requires for IPv6 ("the
entire datagram ... MUST be silently discarded") and as we choose for IPv4 too; later
fragments of it are discarded until its timer runs out. Exact duplicates are
ignored. The timer (RFC 791's reassembly timer; RFC 1122 section 3.3.2 suggests 60 to 120 s,
RFC 8200 uses 60 s) starts with the first fragment; on expiry the datagram is dropped and, if
fragment zero had arrived, the caller sends ICMP Time Exceeded code 1 (RFC 792; RFC 1122 section
3.3.2 "MUST NOT be sent if fragment zero is not available").
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from netstack.wire.ipv4 import Ipv4

SECOND = 1_000_000_000
MAX_DATAGRAM = 65535


def fragment(header: Ipv4, payload: bytes, mtu: int) -> list[bytes]:
    """Split ``payload`` into IPv4 packets of at most ``mtu`` bytes (``header`` fields reused)."""
    header_len = 20 + len(header.options)
    if header_len + len(payload) <= mtu:
        return [header.header(len(payload)) + payload]
    step = (mtu - header_len) // 8 * 8
    if step <= 0:
        raise ValueError(f"MTU {mtu} too small to fragment")
    packets = []
    for start in range(0, len(payload), step):
        piece = payload[start:start + step]
        more = start + step < len(payload) or header.more_fragments
        h = Ipv4(header.src, header.dst, header.proto, b"", header.ttl, header.ident, False,
                 more, header.frag_offset + start, header.tos, header.options)
        packets.append(h.header(len(piece)) + piece)
    return packets


@dataclass(slots=True)
class _Datagram:
    deadline: int
    pieces: dict[int, bytes]            # offset -> data
    held: int = 0
    total: int | None = None            # set by the last fragment
    first_packet: bytes | None = None   # header + 8 bytes of fragment zero, for ICMP
    poisoned: bool = False


@dataclass(frozen=True, slots=True)
class Expired:
    """A datagram whose reassembly timer ran out; ``first_packet`` if fragment zero came."""

    key: tuple
    first_packet: bytes | None


class Reassembler:
    """Fragments in, whole payloads out; bounded and timed."""

    def __init__(self, counters: Counter | None = None, *, prefix: str = "ipv4",
                 timeout_ns: int = 30 * SECOND, max_datagrams: int = 64,
                 max_bytes: int = 1 << 20, max_fragments: int = 128) -> None:
        self.counters = counters if counters is not None else Counter()
        self.prefix, self.timeout_ns = prefix, timeout_ns
        self.max_datagrams, self.max_bytes = max_datagrams, max_bytes
        self.max_fragments = max_fragments  # bounds the per-fragment overlap scan, too
        self.datagrams: dict[tuple, _Datagram] = {}
        self.held = 0

    def add(self, key: tuple, offset: int, more: bool, data, now: int,
            first_packet: bytes | None = None) -> bytes | None:
        """Add one fragment; returns the reassembled payload once complete, else None.

        ``first_packet`` is what an ICMP error would quote (for the fragment at offset 0).
        """
        c, p = self.counters, self.prefix
        end = offset + len(data)
        dgram = self.datagrams.get(key)
        if dgram is None:
            if len(data) > self.max_bytes:
                c[f"{p}.reassembly.limit"] += 1
                return None
            # at the limits the oldest datagram in progress makes room: a burst of lost
            # fragments must not lock reassembly out until the timeouts fire
            while self.datagrams and (len(self.datagrams) >= self.max_datagrams
                                      or self.held + len(data) > self.max_bytes):
                self._remove(next(iter(self.datagrams)))
                c[f"{p}.reassembly.evicted"] += 1
            dgram = self.datagrams[key] = _Datagram(now + self.timeout_ns, {})
        if dgram.poisoned:
            c[f"{p}.reassembly.discarded"] += 1
            return None
        if end > MAX_DATAGRAM or (more and len(data) % 8) or \
                (dgram.total is not None and (end > dgram.total or not more and end != dgram.total)) \
                or (not more and any(o + len(d) > end for o, d in dgram.pieces.items())):
            return self._poison(dgram, "invalid")
        if len(dgram.pieces) >= self.max_fragments:
            return self._poison(dgram, "limit")
        for start, piece in dgram.pieces.items():
            if start < end and offset < start + len(piece):
                if start == offset and piece == bytes(data):
                    c[f"{p}.reassembly.duplicate"] += 1
                    break                            # an exact duplicate is harmless
                return self._poison(dgram, "overlap")
        else:
            if self.held + len(data) > self.max_bytes:
                c[f"{p}.reassembly.limit"] += 1
                self._remove(key)
                return None
            dgram.pieces[offset] = bytes(data)
            dgram.held += len(data)
            self.held += len(data)
        if not more:
            dgram.total = end
        if offset == 0 and first_packet is not None:
            dgram.first_packet = first_packet
        if dgram.total is None or dgram.held != dgram.total:
            return None
        self._remove(key)
        c[f"{p}.reassembly.done"] += 1
        return b"".join(dgram.pieces[o] for o in sorted(dgram.pieces))

    def _poison(self, dgram: _Datagram, why: str) -> None:
        self.counters[f"{self.prefix}.reassembly.{why}"] += 1
        self.held -= dgram.held
        dgram.pieces.clear()
        dgram.held, dgram.poisoned, dgram.first_packet = 0, True, None
        return None

    def _remove(self, key: tuple) -> None:
        dgram = self.datagrams.pop(key)
        self.held -= dgram.held

    def next_deadline(self) -> int | None:
        return min((d.deadline for d in self.datagrams.values()), default=None)

    def expire(self, now: int) -> list[Expired]:
        """Drop datagrams whose timer ran out; returns those not poisoned."""
        expired = []
        for key, dgram in list(self.datagrams.items()):
            if dgram.deadline <= now:
                self._remove(key)
                if not dgram.poisoned:
                    self.counters[f"{self.prefix}.reassembly.timeout"] += 1
                    expired.append(Expired(key, dgram.first_packet))
        return expired
