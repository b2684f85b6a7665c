"""Two TcpLayers over an in-memory link with seeded faults, on a virtual clock.

The link carries segments between hosts A (10.0.0.1) and B (10.0.0.2) with a delay, and can
lose, reorder, duplicate and corrupt them (a corrupted segment must fail its checksum and be
dropped by the receiver). Transfers of a few MB must arrive intact at 0%, 1%, 5% and 10% loss.
"""

from __future__ import annotations

import hashlib
import heapq
import random
import time
from ipaddress import ip_address

import pytest

from netstack.tcp import (
    Accepted,
    Closed,
    Connected,
    DataReady,
    PeerClosed,
    TcpConfig,
    TcpLayer,
)
from netstack.tcp.isn import initial_sequence_number
from netstack.tcp.seq import seq_sub

A, B = ip_address("10.0.0.1"), ip_address("10.0.0.2")
MS = 1_000_000


class Link:
    """A point-to-point link between layers keyed by address, with seeded faults."""

    def __init__(self, hosts: dict, seed: int = 1, loss: float = 0.0, reorder: float = 0.0,
                 duplicate: float = 0.0, corrupt: float = 0.0, delay_ns: int = 5 * MS,
                 jitter_ns: int = 0) -> None:
        self.hosts = hosts
        self.rng = random.Random(seed)
        self.loss, self.reorder, self.duplicate, self.corrupt = loss, reorder, duplicate, corrupt
        self.delay, self.jitter = delay_ns, jitter_ns
        self.now = 0
        self.queue: list = []
        self.order = 0
        self.delivered = self.lost = self.corrupted = 0
        self.trace: list[tuple[int, object, object, bytes]] = []
        self.tap = None              # optional filter: (src, dst, bytes) -> bytes | None

    def _put(self, when: int, src, dst, data: bytes) -> None:
        self.order += 1
        heapq.heappush(self.queue, (when, self.order, src, dst, data))

    def pump(self) -> None:
        """Take every host's output onto the wire, applying the faults."""
        for layer in self.hosts.values():
            for src, dst, data in layer.segments_to_send():
                self.trace.append((self.now, src, dst, data))
                if self.tap is not None:
                    data = self.tap(src, dst, data)
                    if data is None:
                        continue
                if self.rng.random() < self.loss:
                    self.lost += 1
                    continue
                if self.rng.random() < self.corrupt:
                    self.corrupted += 1
                    raw = bytearray(data)
                    i = self.rng.randrange(len(raw))
                    raw[i] ^= 1 << self.rng.randrange(8)
                    data = bytes(raw)
                when = self.now + self.delay + (self.rng.randrange(self.jitter + 1)
                                                 if self.jitter else 0)
                if self.rng.random() < self.reorder:
                    when += self.delay * 2
                self._put(when, src, dst, data)
                if self.rng.random() < self.duplicate:
                    self._put(when + self.rng.randrange(self.delay + 1), src, dst, data)

    def step(self) -> bool:
        """Advance the clock to the next delivery or timer; False when nothing is pending."""
        self.pump()
        deadlines = [d for layer in self.hosts.values()
                     if (d := layer.next_deadline()) is not None]
        times = deadlines + ([self.queue[0][0]] if self.queue else [])
        if not times:
            return False
        self.now = max(self.now, min(times))
        while self.queue and self.queue[0][0] <= self.now:
            _, _, src, dst, data = heapq.heappop(self.queue)
            self.delivered += 1
            self.hosts[dst].receive(src, dst, data, self.now)
        for layer in self.hosts.values():
            deadline = layer.next_deadline()
            if deadline is not None and deadline <= self.now:
                layer.handle_timeout(self.now)
        self.pump()
        return True

    def _next_time(self) -> int | None:
        times = [d for layer in self.hosts.values() if (d := layer.next_deadline()) is not None]
        times += [self.queue[0][0]] if self.queue else []
        return min(times) if times else None

    def advance(self, when: int) -> None:
        """Run everything due up to virtual time ``when``, then set the clock to it."""
        while True:
            self.pump()
            nxt = self._next_time()
            if nxt is None or nxt > when:
                break
            self.step()
        self.now = max(self.now, when)

    def run(self, until, limit_ns: int = 600_000 * MS) -> None:
        """Step until ``until()`` is true; fail after ``limit_ns`` of virtual time."""
        give_up = self.now + limit_ns
        while not until():
            if not self.step() or self.now > give_up:
                raise AssertionError(f"condition not reached by t={self.now / 1e9:.3f}s")


def pair(config_a=None, config_b=None, **faults):
    a = TcpLayer(config_a or TcpConfig(), secret=b"a" * 32)
    b = TcpLayer(config_b or TcpConfig(), secret=b"b" * 32)
    return a, b, Link({A: a, B: b}, **faults)


class Collector:
    """Drains a layer's events each step and reads every connection's data."""

    def __init__(self, layer: TcpLayer) -> None:
        self.layer = layer
        self.events: list = []
        self.data: dict[int, bytearray] = {}

    def poll(self) -> None:
        for ev in self.layer.events():
            if not isinstance(ev, DataReady):          # the data itself is read below
                self.events.append(ev)
        for conn in self.layer.connections():
            chunk = self.layer.recv(conn, 1 << 20)
            if chunk:
                self.data.setdefault(conn, bytearray()).extend(chunk)

    def got(self, conn: int) -> bytes:
        """Everything read from ``conn`` so far (reading what is buffered now)."""
        self.poll()
        return bytes(self.data.get(conn, b""))

    def of(self, kind) -> list:
        self.poll()
        return [e for e in self.events if isinstance(e, kind)]


def transfer(size: int, seed: int, config=None, **faults):
    """Send ``size`` seeded bytes A -> B, close both ways; returns (received, link, a, b)."""
    a, b, link = pair(config, config, seed=seed, **faults)
    b.listen((None, 80))
    payload = random.Random(seed).randbytes(size)
    conn = a.connect((A, 0), (B, 80), now=0)
    ca, cb = Collector(a), Collector(b)
    sent = 0

    def progress() -> bool:
        nonlocal sent
        ca.poll()
        cb.poll()
        if any(isinstance(e, Connected) for e in ca.events) and sent < size:
            sent += a.send(conn, payload[sent:sent + 65536], link.now)
            if sent == size:
                a.close(conn, link.now)
        return bool(cb.of(PeerClosed))

    link.run(progress)
    (server_conn,) = [e.conn for e in cb.events if isinstance(e, Accepted)]
    b.close(server_conn, link.now)
    link.run(lambda: bool(ca.of(Closed)) and bool(cb.of(Closed)))
    return bytes(cb.data.get(server_conn, b"")), payload, link, a, b


@pytest.mark.parametrize("loss", [0.0, 0.01, 0.05, 0.10])
def test_rfc9293_reliable_transfer_under_loss(loss):
    """RFC 9293 3.4/3.8: every byte arrives once, in order, whatever the link loses."""
    got, payload, link, a, b = transfer(2_000_000, seed=7, loss=loss)
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    if loss:
        assert link.lost > 0 and a.counters["retransmitted_segments"] > 0


@pytest.mark.parametrize("congestion", ["newreno", "cubic"])
def test_rfc9293_transfer_survives_reordering_duplication_and_corruption(congestion):
    """Reordered and duplicated segments are put in order once; corrupted ones fail the
    checksum (RFC 9293 3.1), are dropped and counted, and are recovered like losses."""
    got, payload, link, a, b = transfer(
        1_000_000, seed=11, config=TcpConfig(congestion=congestion), loss=0.02, reorder=0.05,
        duplicate=0.05, corrupt=0.02, jitter_ns=2 * MS)
    assert got == payload
    assert link.corrupted > 0
    assert a.counters["dropped.bad_checksum"] + b.counters["dropped.bad_checksum"] > 0


def test_rfc9293_bidirectional_transfer_over_ipv6():
    a6, b6 = ip_address("2001:db8::a"), ip_address("2001:db8::b")
    a = TcpLayer(TcpConfig(mss=1440), secret=b"a" * 32)
    b = TcpLayer(TcpConfig(mss=1440), secret=b"b" * 32)
    link = Link({a6: a, b6: b}, seed=5, loss=0.01)
    b.listen((b6, 443))
    conn = a.connect((a6, 0), (b6, 443), now=0)
    ca, cb = Collector(a), Collector(b)
    up, down = random.Random(1).randbytes(300_000), random.Random(2).randbytes(300_000)
    link.run(lambda: bool(cb.of(Accepted)))
    server = cb.of(Accepted)[0].conn
    sent = {conn: 0, server: 0}

    def pump() -> bool:
        for layer, cid, data in ((a, conn, up), (b, server, down)):
            if sent[cid] < len(data):
                sent[cid] += layer.send(cid, data[sent[cid]:], link.now)
        return ca.got(conn) == down and cb.got(server) == up

    link.run(pump)
    assert a.info(conn)["mss"] == 1440 and a.info(conn)["remote"] == (b6, 443)


def test_rfc9293_3_4_transfer_across_sequence_number_wraparound():
    """Start A's ISN 1000 below 2**32 so the data's sequence numbers wrap mid-transfer."""
    a, b, link = pair(seed=3, loss=0.02)
    port = 41000
    offset = initial_sequence_number(a.secret, (A, port), (B, 80), 0)
    link.now = ((2**32 - 1000 - offset) % 2**32) * 4000          # RFC 6528's 4 us clock
    b.listen((None, 80))
    conn = a.connect((A, port), (B, 80), now=link.now)
    assert seq_sub(0, a.info(conn)["snd_nxt"]) == 999
    cb = Collector(b)
    payload = random.Random(9).randbytes(200_000)
    link.run(lambda: bool(cb.of(Accepted)))
    server = cb.of(Accepted)[0].conn
    a.send(conn, payload, link.now)
    link.run(lambda: cb.got(server) == payload)
    assert a.counters["retransmitted_segments"] > 0


def goodput(loss: float, size: int = 8_000_000, congestion: str = "cubic") -> tuple[float, float]:
    """(MB per CPU-second for both ends and the link, MB per virtual second) for one transfer
    over a 5 ms link (10 ms RTT)."""
    start = time.process_time()
    got, payload, link, *_ = transfer(size, seed=1, config=TcpConfig(congestion=congestion),
                                      loss=loss)
    spent = time.process_time() - start
    assert got == payload
    return size / spent / 1e6, size / (link.now / 1e9) / 1e6


if __name__ == "__main__":          # python -m tests.test_tcp_link: goodput on this link
    for congestion in ("cubic", "newreno"):
        for loss in (0.0, 0.01):
            cpu, virtual = goodput(loss, congestion=congestion)
            print(f"{congestion:8} loss {loss:4.0%}: {cpu:6.2f} MB/s of CPU time, "
                  f"{virtual:6.2f} MB/s of virtual time (10 ms RTT)")
