"""Sockets and asyncio over capnet, in one process: two hosts (Interface + TcpLayer + Host +
CapnetLoop) joined by an in-memory link with seeded loss, driven as the Stack component drives
them. Ordinary asyncio code (streams, servers, datagram endpoints) runs unchanged on each side."""

from __future__ import annotations

import asyncio
import errno
import functools
import hashlib
import random
import socket
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netstack.aio import CapnetLoop, Runner
from netstack.apps import AppContext, parse_app, pattern_sha256
from netstack.apps.pattern import chunks, pattern_bytes
from netstack.interface import Interface
from netstack.sockets import Host
from netstack.stack import tcp_mss
from netstack.tcp import TcpConfig
from netstack.tcp.layer import TcpLayer

A, B = "10.79.0.1", "10.79.0.2"


class Pair:
    """Two capnet hosts on one in-memory cable; ``run`` drives both until the coroutines end."""

    def __init__(self, loss: float = 0.0, seed: int = 1, rto_min_ms: int = 50,
                 duplicate: float = 0.0, reorder: float = 0.0, corrupt: float = 0.0) -> None:
        self.rng = random.Random(seed)
        self.loss, self.duplicate, self.reorder, self.corrupt = loss, duplicate, reorder, corrupt
        self.lost = 0
        self.held: list[tuple[int, bytes]] = []     # (peer, frame) held back one round
        self.runners = [self._host(A, 1, rto_min_ms), self._host(B, 2, rto_min_ms)]

    @staticmethod
    def _host(ip: str, n: int, rto_min_ms: int) -> Runner:
        iface = Interface(bytes([2, 0, 0, 0, 0, n]), ipv4=f"{ip}/24", ipv6=False)
        config = TcpConfig(mss=tcp_mss({"ipv6": False}, 1500), rto_min_ns=rto_min_ms * 1_000_000,
                           rto_initial_ns=200_000_000)
        host = Host(iface, TcpLayer(config, secret=bytes([n]) * 32), time.monotonic_ns)
        iface.start(time.monotonic_ns())
        return Runner(host, CapnetLoop(host))

    @property
    def a(self) -> CapnetLoop:
        return self.runners[0].loop

    @property
    def b(self) -> CapnetLoop:
        return self.runners[1].loop

    def run(self, *coros_on: tuple[CapnetLoop, object], timeout: float = 30.0) -> list:
        tasks = [loop.create_task(coro) for loop, coro in coros_on]
        self.until(lambda: all(t.done() for t in tasks), timeout)
        return [t.result() for t in tasks]

    def until(self, predicate, timeout: float = 10.0) -> None:
        """Drive both hosts (frames, timers, asyncio callbacks) until ``predicate()``."""
        give_up = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < give_up, "the condition did not come true"
            now = time.monotonic_ns()
            moved = 0
            for me, peer in ((0, 1), (1, 0)):
                runner = self.runners[me]
                due = runner.next_deadline()
                if due is not None and due <= now:
                    runner.handle_timeout(now)
                for frame in runner.step(now):
                    moved += 1
                    self._carry(peer, frame, now)
            held, self.held = self.held, []
            for peer, frame in held:
                self.runners[peer].host.receive(frame, now)
            if not moved:
                dues = [d for d in (r.next_deadline() for r in self.runners) if d is not None]
                if not dues or min(dues) > now:         # idle: the event loop's own wait
                    time.sleep(min(0.001, (min(dues) - now) / 1e9) if dues else 0.001)

    def _carry(self, peer: int, frame: bytes, now: int) -> None:
        rng = self.rng
        if rng.random() < self.loss:
            self.lost += 1
            return
        if rng.random() < self.corrupt:
            bit = rng.randrange(len(frame) * 8)
            frame = bytearray(frame)
            frame[bit // 8] ^= 1 << (bit % 8)
            frame = bytes(frame)
        copies = 2 if rng.random() < self.duplicate else 1
        for _ in range(copies):
            if rng.random() < self.reorder:
                self.held.append((peer, frame))
            else:
                self.runners[peer].host.receive(frame, now)


def test_bsd_sockets_non_blocking_semantics():
    """The socket objects behave as non-blocking BSD sockets do."""
    pair = Pair()
    a, b = pair.runners[0].host, pair.runners[1].host
    listener = b.tcp_socket()
    listener.bind(("", 7000))
    listener.listen(8)
    clash = b.tcp_socket()
    clash.bind(("", 7000))
    with pytest.raises(OSError) as busy:
        clash.listen()
    assert busy.value.errno == errno.EADDRINUSE
    with pytest.raises(BlockingIOError):
        listener.accept()
    client = a.tcp_socket()
    with pytest.raises(BlockingIOError) as progress:
        client.connect((B, 7000))
    assert progress.value.errno == errno.EINPROGRESS
    pair.until(lambda: client.writable() and listener.readable())
    server, peer = listener.accept()
    assert peer == client.getsockname() and server.getpeername() == client.getsockname()
    with pytest.raises(BlockingIOError):
        server.recv(100)
    assert client.send(b"ping") == 4
    pair.until(server.readable)
    assert server.recv(100) == b"ping"
    client.shutdown(socket.SHUT_WR)
    pair.until(lambda: server.eof)
    assert server.recv(100) == b""                   # end of stream, as BSD says
    with pytest.raises(BrokenPipeError):
        client.send(b"more")
    server.close()
    pair.until(lambda: client.eof)
    assert client.recv(100) == b""
    client.close()
    with pytest.raises(OSError) as closed:
        client.recv(1)
    assert closed.value.errno == errno.EBADF

    udp_b, udp_a = b.udp_socket(), a.udp_socket()
    udp_b.bind(("", 5353))
    with pytest.raises(BlockingIOError):
        udp_b.recvfrom(100)
    udp_a.sendto(b"datagram", (B, 5353))
    pair.until(udp_b.readable)
    data, source = udp_b.recvfrom(100)
    assert data == b"datagram" and source == (A, udp_a.getsockname()[1])
    clash_udp = b.udp_socket()
    with pytest.raises(OSError):
        clash_udp.bind(("", 5353))


async def _echo_server(port: int, seen: list) -> asyncio.AbstractServer:
    async def serve(reader, writer):
        seen.append(writer.get_extra_info("peername"))
        while data := await reader.read(1000):
            writer.write(data)
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    return await asyncio.start_server(serve, "0.0.0.0", port)


def test_asyncio_streams_echo_and_orderly_close():
    pair, seen = Pair(), []

    async def server_side():
        server = await _echo_server(9, seen)
        async with server:
            while len(seen) < 2:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)

    async def client_side():
        await asyncio.sleep(0.01)
        answers = []
        for n in range(2):
            reader, writer = await asyncio.open_connection(B, 9)
            writer.write(b"hello %d " % n * 300)
            await writer.drain()
            writer.write_eof()                       # our FIN: the server echoes, then closes
            answers.append(await reader.read())      # to EOF: the server's FIN arrived
            writer.close()
            await writer.wait_closed()
        return answers

    _, answers = pair.run((pair.b, server_side()), (pair.a, client_side()))
    assert answers == [b"hello 0 " * 300, b"hello 1 " * 300]
    assert [peer[0] for peer in seen] == [A, A]
    assert seen[0][1] != seen[1][1]                   # two ephemeral ports


def test_connection_refused_when_nothing_listens():
    pair = Pair()

    async def client():
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(B, 4444)
        return True

    assert pair.run((pair.a, client())) == [True]


def test_abort_resets_the_peer():
    pair = Pair()

    async def server_side():
        aborted = asyncio.Event()

        async def serve(reader, writer):
            await reader.read(10)
            writer.transport.abort()               # RST, nothing more
            aborted.set()

        server = await asyncio.start_server(serve, None, 80)
        await aborted.wait()
        server.close()
        await server.wait_closed()

    async def client_side():
        await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection(B, 80)
        writer.write(b"x")
        with pytest.raises(ConnectionResetError):
            await reader.read(100)
        return True

    assert pair.run((pair.b, server_side()), (pair.a, client_side()))[1] is True


def test_datagram_endpoints_both_ways():
    pair = Pair()

    class Echo(asyncio.DatagramProtocol):
        answered = 0

        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data.upper(), addr)
            self.answered += 1

    class Collect(asyncio.DatagramProtocol):
        def __init__(self):
            self.got = asyncio.Queue()

        def datagram_received(self, data, addr):
            self.got.put_nowait((data, addr))

    async def server_side():
        loop = asyncio.get_running_loop()
        transport, echo = await loop.create_datagram_endpoint(Echo, local_addr=("0.0.0.0", 7))
        while echo.answered < 2:
            await asyncio.sleep(0.01)
        transport.close()

    async def client_side():
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_datagram_endpoint(Collect, remote_addr=(B, 7))
        replies = []
        for word in (b"one", b"two"):
            transport.sendto(word)
            replies.append(await asyncio.wait_for(proto.got.get(), 2))
        transport.close()
        return replies

    _, replies = pair.run((pair.b, server_side()), (pair.a, client_side()))
    assert [data for data, _ in replies] == [b"ONE", b"TWO"]
    assert replies[0][1] == (B, 7)


async def _http(host: str, request: bytes) -> tuple[bytes, bytes]:
    reader, writer = await asyncio.open_connection(host, 80)
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    body = await reader.readexactly(length)
    writer.close()
    return head, body


@pytest.mark.parametrize("loss", [0.0, 0.02])
def test_http_app_transfers_intact_through_loss(loss):
    """The HTTP app serves /bytes/N and POST /sha256; a megabyte each way survives loss and
    the stream's flow control (the reader pauses, the window closes, the writer drains)."""
    pair = Pair(loss=loss, seed=5)
    _name, http, args = parse_app("http:80")
    ctx = AppContext("http")
    size = 1_000_000

    async def client():
        await asyncio.sleep(0.01)
        head, body = await _http(B, b"GET /bytes/%d HTTP/1.1\r\nHost: b\r\n\r\n" % size)
        assert head.startswith(b"HTTP/1.1 200 OK")
        payload = pattern_bytes(size)
        _, digest = await _http(B, b"POST /sha256 HTTP/1.1\r\nContent-Length: %d\r\n\r\n"
                                % size + payload)
        return hashlib.sha256(body).hexdigest(), digest.decode().strip()

    server = pair.b.create_task(http(ctx, *args))
    (got, posted), = pair.run((pair.a, client()), timeout=60)
    server.cancel()
    assert got == pattern_sha256(size)
    assert posted == hashlib.sha256(pattern_bytes(size)).hexdigest()
    assert ctx.results["requests"] == 2
    assert (pair.lost > 0) == (loss > 0)


def test_pattern_is_deterministic_and_prefix_stable():
    assert pattern_bytes(10) == pattern_bytes(100_000)[:10]
    assert sum(len(c) for c in chunks(200_001)) == 200_001
    assert pattern_sha256(0) == hashlib.sha256(b"").hexdigest()
    assert len(set(pattern_bytes(65536))) == 256        # pseudo-random, not a fill


def test_ping_from_asyncio():
    from netstack import aio
    pair = Pair()

    async def pinger():
        return await aio.ping(B, seq=1)

    rtt, = pair.run((pair.a, pinger()))
    assert 0 < rtt < 2


@pytest.mark.parametrize("spec, message", [
    ("http", "expected http:PORT"),
    ("http:0", "port must be 1..65535"),
    ("bulk-send:10.0.0.1:80", "expected bulk-send:HOST:PORT:BYTES"),
    ("ping:example.com:3", "not a numeric IP address"),
    ("gopher:70", "unknown app 'gopher'"),
])
def test_bad_app_specs_are_named(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_app(spec)


@functools.cache
def _recorded_frames() -> list[bytes]:
    """Real frames of a short exchange (ARP, handshake, data, FIN, UDP) for mutation."""
    pair, frames = Pair(), []
    carry = pair._carry

    def record(peer, frame, now):
        frames.append(frame)
        carry(peer, frame, now)

    pair._carry = record

    async def server():
        server = await _echo_server(9, [])
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("", 7))
        await asyncio.sleep(0.2)
        server.close()

    async def client():
        await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection(B, 9)
        writer.write(b"x" * 3000)
        writer.write_eof()
        await reader.read()
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=(B, 7))
        transport.sendto(b"datagram")

    pair.run((pair.b, server()), (pair.a, client()))
    return frames


@functools.cache
def _fuzz_host() -> Runner:
    return Pair().runners[1]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=1600), st.integers(0, 10**6), st.integers(0, 1599), st.integers(0, 255))
def test_hostile_frames_never_raise(junk, which, where, value):
    """Random bytes, and real frames with one byte changed, go through the whole host (codecs,
    cores, sockets, asyncio) without an exception; every frame is accounted for."""
    runner, frames = _fuzz_host(), _recorded_frames()
    now = time.monotonic_ns()
    before = runner.host.iface.counters["rx.frames"]
    runner.host.receive(junk, now)
    frame = bytearray(frames[which % len(frames)])
    frame[where % len(frame)] = value
    runner.host.receive(bytes(frame), now)
    runner.step(now)
    assert runner.host.iface.counters["rx.frames"] == before + 2
    assert "tcp.internal_error" not in runner.host.counters
