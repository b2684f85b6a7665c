"""asyncio over capnet: ordinary asyncio code runs on the stack, inside its component.

``CapnetLoop`` is an asyncio event loop that never blocks and never touches an OS socket (a
protection domain cannot create one: seccomp). Its owner drives it: ``Runner.step(now)`` runs
the ready callbacks, moves the cores' events into sockets and transports, and returns the frames
to transmit; ``Runner.next_deadline()`` (the earlier of the cores' timers and asyncio's next
scheduled callback) becomes a runtime timer. The loop's network methods are served by
``netstack.sockets``, so the standard API works unchanged inside a coroutine::

    reader, writer = await asyncio.open_connection("10.77.0.1", 8080)   # real StreamReader/Writer
    server = await asyncio.start_server(handle, "0.0.0.0", 80)
    transport, protocol = await loop.create_datagram_endpoint(Proto, local_addr=("0.0.0.0", 7))

The module functions ``open_connection``, ``start_server`` and ``create_datagram_endpoint`` are
the same calls for code that wants to name capnet explicitly, and ``ping(host)`` sends an ICMP
echo and returns the round-trip time in seconds. Hosts are numeric addresses (no resolver).

Flow control is TCP's: a transport whose protocol paused reading stops taking bytes from the
core, so the receive window closes; ``write`` buffers above the high-water mark pause the
protocol (``StreamWriter.drain`` waits) until the core's send buffer takes the bytes.
"""

from __future__ import annotations

import asyncio
import errno
import heapq
import itertools
import socket
import threading
from asyncio import events
from collections.abc import Callable
from typing import Any

from netstack.sockets import Host, TcpSocket, UdpSocket, parse_address

READ_CHUNK = 256 * 1024
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
STEP_ROUNDS = 256            # loop/core rounds per step before yielding to the runtime


class _NoWait:
    """The selector a CapnetLoop hands to asyncio: never blocks, never reports I/O."""

    def select(self, timeout: float | None = None) -> list:
        return []

    def close(self) -> None:
        pass


class CapnetLoop(asyncio.BaseEventLoop):
    """An asyncio loop whose I/O is a capnet ``Host`` (see the module docstring)."""

    def __init__(self, host: Host) -> None:
        super().__init__()
        self.host = host
        self._selector = _NoWait()

    # -- driving ------------------------------------------------------------------------------------
    def run_once(self) -> None:
        """Run the callbacks that are ready now (timers due included), once."""
        previous = events._get_running_loop()
        events._set_running_loop(self)
        self._thread_id = threading.get_ident()
        try:
            self._run_once()
        finally:
            self._thread_id = None
            events._set_running_loop(previous)

    def has_ready(self) -> bool:
        if self._ready:
            return True
        return bool(self._scheduled) and self._scheduled[0].when() <= self.time()

    def next_deadline_ns(self) -> int | None:
        """When asyncio's next scheduled callback is due, in monotonic ns (0: now)."""
        while self._scheduled and self._scheduled[0].cancelled():
            handle = heapq.heappop(self._scheduled)
            handle._scheduled = False
            self._timer_cancelled_count -= 1
        if self._ready:
            return 0
        return int(self._scheduled[0].when() * 1e9) if self._scheduled else None

    def _process_events(self, event_list: list) -> None:
        pass

    def _write_to_self(self) -> None:
        pass

    # -- the network, served by the host --------------------------------------------------------------
    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        ip, _port = parse_address((host or "0.0.0.0", int(port or 0)), "getaddrinfo")
        fam = socket.AF_INET6 if ip is not None and ip.version == 6 else socket.AF_INET
        return [(fam, type or socket.SOCK_STREAM, proto, "", (str(ip or "0.0.0.0"), port))]

    async def create_connection(self, protocol_factory, host=None, port=None, *,
                                local_addr=None, ssl=None, sock=None, **_kw):
        if ssl:
            raise ValueError("capnet streams carry no TLS")
        if sock is not None and not isinstance(sock, TcpSocket):
            raise TypeError("capnet connects its own TcpSocket objects, not OS sockets")
        tcp = sock or self.host.tcp_socket()
        if local_addr is not None:
            tcp.bind(local_addr)
        if sock is None:
            done = self.create_future()

            def settle() -> None:
                if done.done():
                    return
                if tcp.error is not None:
                    error, tcp.error = tcp.error, None
                    done.set_exception(error)
                elif tcp.connected:
                    done.set_result(None)

            tcp.on_event = settle
            code = tcp.connect_ex((host, int(port)))
            if code != errno.EINPROGRESS:
                raise OSError(code, errno.errorcode.get(code, "connect failed"))
            try:
                await done
            except BaseException:
                tcp.abort()
                raise
        protocol = protocol_factory()
        transport = TcpTransport(self, tcp, protocol)
        protocol.connection_made(transport)
        transport._schedule()
        return transport, protocol

    async def create_server(self, protocol_factory, host=None, port=None, *, backlog=100,
                            start_serving=True, sock=None, ssl=None, **_kw):
        if ssl:
            raise ValueError("capnet streams carry no TLS")
        hosts = host if isinstance(host, list | tuple) else [host]
        listeners = []
        for h in hosts:
            listener = self.host.tcp_socket()
            listener.bind((h or "", int(port or 0)))
            listener.listen(backlog)
            listeners.append(listener)
        server = Server(self, listeners, protocol_factory)
        if start_serving:
            await server.start_serving()
        return server

    async def create_datagram_endpoint(self, protocol_factory, local_addr=None, remote_addr=None,
                                       **_kw):
        udp = self.host.udp_socket()
        udp.bind(local_addr or ("", 0))
        if remote_addr is not None:
            udp.connect(remote_addr)
        protocol = protocol_factory()
        transport = DatagramTransport(self, udp, protocol)
        protocol.connection_made(transport)
        return transport, protocol


class TcpTransport(asyncio.Transport):
    """A stream transport over a ``TcpSocket``."""

    def __init__(self, loop: CapnetLoop, sock: TcpSocket, protocol: asyncio.BaseProtocol,
                 server: Server | None = None) -> None:
        super().__init__({"peername": sock.remote, "sockname": sock.local, "socket": sock})
        self._loop, self._sock, self._protocol, self._server = loop, sock, protocol, server
        self._buffer = bytearray()
        self._paused = False
        self._at_eof = False
        self._closing = False
        self._lost = False
        self._eof_out = False
        self._protocol_paused = False
        self._scheduled = False
        self._high, self._low = HIGH_WATER, LOW_WATER
        sock.on_event = self._schedule
        if server is not None:
            server._attach()

    # -- service ------------------------------------------------------------------------------------
    def _schedule(self) -> None:
        if not self._scheduled and not self._lost:
            self._scheduled = True
            self._loop.call_soon(self._service)

    def _service(self) -> None:
        self._scheduled = False
        if self._lost:
            return
        self._flush()
        if self._lost:
            return
        if self._can_read():
            self._read()
        elif self._sock.error is not None:          # reset while not reading: report it now
            error, self._sock.error = self._sock.error, None
            self._fatal(error)
            return
        if self._closing and not self._buffer and not self._lost:
            self._sock.close()
            self._connection_lost(None)

    def _can_read(self) -> bool:
        return not (self._paused or self._at_eof or self._closing or self._lost)

    def _read(self) -> None:
        while self._can_read():
            try:
                data = self._sock.recv(READ_CHUNK)
            except BlockingIOError:
                return
            except OSError as exc:
                self._fatal(exc)
                return
            if data:
                self._protocol.data_received(data)
                if not self._sock.readable():   # a short read emptied it: no EAGAIN to raise
                    return
                continue
            self._at_eof = True             # end of stream
            if not self._protocol.eof_received():
                self.close()
            return

    def _flush(self) -> None:
        while self._buffer:
            try:
                sent = self._sock.send(self._buffer)
            except BlockingIOError:
                break
            except OSError as exc:
                self._fatal(exc)
                return
            del self._buffer[:sent]
        if self._protocol_paused and len(self._buffer) <= self._low:
            self._protocol_paused = False
            self._protocol.resume_writing()
        if self._eof_out and not self._buffer and not self._sock.write_shut:
            self._sock.shutdown(socket.SHUT_WR)

    def _fatal(self, exc: BaseException) -> None:
        self._sock.abort()
        self._connection_lost(exc)

    def _connection_lost(self, exc: BaseException | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._buffer.clear()
        self._loop.call_soon(self._protocol.connection_lost, exc)
        if self._server is not None:
            self._server._detach()
            self._server = None

    # -- asyncio.Transport ------------------------------------------------------------------------------
    def write(self, data) -> None:
        if self._eof_out:
            raise RuntimeError("cannot write after write_eof()")
        if self._closing or self._lost or not data:
            return
        self._buffer += data
        self._flush()
        if not self._protocol_paused and len(self._buffer) > self._high:
            self._protocol_paused = True
            self._protocol.pause_writing()

    def writelines(self, list_of_data) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._closing or self._eof_out:
            return
        self._eof_out = True
        self._flush()

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        self._high = HIGH_WATER if high is None else high
        self._low = (self._high // 4) if low is None else low

    def is_reading(self) -> bool:
        return self._can_read()

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        if self._paused:
            self._paused = False
            self._schedule()

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def close(self) -> None:
        """Orderly: buffered bytes go first, then FIN; connection_lost(None) follows."""
        if self._closing or self._lost:
            return
        self._closing = True
        self._schedule()

    def abort(self) -> None:
        """Abortive: RST now, buffered bytes discarded."""
        if self._lost:
            return
        self._closing = True
        self._sock.abort()
        self._connection_lost(None)

    def set_protocol(self, protocol) -> None:
        self._protocol = protocol

    def get_protocol(self):
        return self._protocol


class DatagramTransport(asyncio.DatagramTransport):
    """A datagram transport over a ``UdpSocket``."""

    def __init__(self, loop: CapnetLoop, sock: UdpSocket, protocol) -> None:
        peer = (str(sock.peer[0]), sock.peer[1]) if sock.peer else None
        super().__init__({"sockname": sock.getsockname(), "peername": peer, "socket": sock})
        self._loop, self._sock, self._protocol = loop, sock, protocol
        self._scheduled = False
        self._closing = False
        sock.on_event = self._schedule

    def _schedule(self) -> None:
        if not self._scheduled and not self._closing:
            self._scheduled = True
            self._loop.call_soon(self._service)

    def _service(self) -> None:
        self._scheduled = False
        while not self._closing and self._sock.readable():
            data, addr = self._sock.recvfrom()
            self._protocol.datagram_received(data, addr)

    def sendto(self, data, addr=None) -> None:
        if self._closing:
            return
        try:
            if addr is None:
                self._sock.send(data)
            else:
                self._sock.sendto(data, addr)
        except OSError as exc:
            self._loop.call_soon(self._protocol.error_received, exc)

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()


class Server(asyncio.AbstractServer):
    """What ``create_server`` / ``start_server`` return: listening sockets and their accepts."""

    def __init__(self, loop: CapnetLoop, listeners: list[TcpSocket],
                 protocol_factory: Callable[[], asyncio.BaseProtocol]) -> None:
        self._loop = loop
        self._listeners = listeners
        self._factory = protocol_factory
        self._serving = False
        self._active = 0
        self._waiters: list[asyncio.Future] = []
        self._forever: asyncio.Future | None = None

    @property
    def sockets(self) -> tuple[TcpSocket, ...]:
        return tuple(self._listeners)

    def get_loop(self) -> CapnetLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        if self._serving or not self._listeners:
            return
        self._serving = True
        for listener in self._listeners:
            listener.on_event = lambda listener=listener: self._loop.call_soon(
                self._accept, listener)
            self._loop.call_soon(self._accept, listener)

    def _accept(self, listener: TcpSocket) -> None:
        while self._serving:
            try:
                sock, _addr = listener.accept()
            except (BlockingIOError, OSError):
                return
            protocol = self._factory()
            transport = TcpTransport(self._loop, sock, protocol, self)
            protocol.connection_made(transport)
            transport._schedule()

    def _attach(self) -> None:
        self._active += 1

    def _detach(self) -> None:
        self._active -= 1
        self._wake()

    def _wake(self) -> None:
        if self._listeners or self._active:
            return
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    def close(self) -> None:
        if not self._listeners:
            return
        self._serving = False
        for listener in self._listeners:
            listener.close()
        self._listeners = []
        if self._forever is not None and not self._forever.done():
            self._forever.cancel()
        self._wake()

    async def wait_closed(self) -> None:
        if not self._listeners and not self._active:
            return
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter

    async def serve_forever(self) -> None:
        await self.start_serving()
        self._forever = self._loop.create_future()
        try:
            await self._forever
        except asyncio.CancelledError:
            self.close()
            raise


class Runner:
    """Joins a ``Host`` and its ``CapnetLoop``: run both until quiet, collect the frames."""

    def __init__(self, host: Host, loop: CapnetLoop | None = None) -> None:
        self.host = host
        self.loop = loop or CapnetLoop(host)

    def step(self, now: int, sink: Callable[[list[bytes]], None] | None = None) -> list[bytes]:
        """Run events, callbacks and the cores until nothing is left to do (or STEP_ROUNDS);
        returns the Ethernet frames to transmit. With ``sink``, each round's frames go to
        ``sink(frames)`` as soon as they are made (and none are returned): the driver can put
        an answer on the wire while the rounds that only settle state still run."""
        frames: list[bytes] = []
        for _ in range(STEP_ROUNDS):
            handled = self.host.poll()
            ran = self.loop.has_ready()
            if ran:
                self.loop.run_once()
            out = self.host.frames_to_send(now) if (handled or ran or self.host.dirty) else []
            if out:
                if sink is None:
                    frames.extend(out)
                else:
                    sink(out)
            if not (handled or ran or out or self.host.dirty):
                break
        return frames

    def busy(self) -> bool:
        """Work is left over after a step (it yielded after STEP_ROUNDS)."""
        return self.loop.has_ready() or self.host.dirty

    def next_deadline(self) -> int | None:
        deadlines = [d for d in (self.host.next_deadline(), self.loop.next_deadline_ns())
                     if d is not None]
        return min(deadlines) if deadlines else None

    def handle_timeout(self, now: int) -> None:
        self.host.handle_timeout(now)


# -- the module-level API (the running loop must be a CapnetLoop) ----------------------------------------

def _loop() -> CapnetLoop:
    loop = asyncio.get_running_loop()
    if not isinstance(loop, CapnetLoop):
        raise RuntimeError("not running on a capnet loop (run the coroutine in netstack:Stack)")
    return loop


async def open_connection(host: str, port: int, *, limit: int = 2 ** 16, **kwds):
    """``asyncio.open_connection`` over capnet: returns (StreamReader, StreamWriter)."""
    _loop()
    return await asyncio.open_connection(host, port, limit=limit, **kwds)


async def start_server(client_connected_cb, host: str | None = None, port: int | None = None,
                       *, limit: int = 2 ** 16, **kwds) -> Server:
    """``asyncio.start_server`` over capnet."""
    _loop()
    return await asyncio.start_server(client_connected_cb, host, port, limit=limit, **kwds)


async def create_datagram_endpoint(protocol_factory, local_addr=None, remote_addr=None):
    """``loop.create_datagram_endpoint`` over capnet: returns (transport, protocol)."""
    return await _loop().create_datagram_endpoint(protocol_factory, local_addr=local_addr,
                                                  remote_addr=remote_addr)


_ping_ids = itertools.count(1)


async def ping(host: str, *, seq: int = 1, data: bytes = b"capnet-ping", timeout: float = 2.0,
               ident: int | None = None) -> float:
    """Send one ICMP echo request; returns the round-trip time in seconds (TimeoutError)."""
    loop = _loop()
    ident = (next(_ping_ids) & 0xFFFF) if ident is None else ident
    reply = loop.create_future()
    start = loop.time()

    def answered(_event: Any) -> None:
        if not reply.done():
            reply.set_result(loop.time() - start)

    loop.host.ping(host, ident, seq, data, answered)
    try:
        return await asyncio.wait_for(reply, timeout)
    finally:
        loop.host.forget_ping(ident, seq)
