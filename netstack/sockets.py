"""BSD-style socket objects over the sans-I/O cores of one host.

A ``Host`` joins an ``Interface`` (ARP, IP, ICMP, UDP) and a ``TcpLayer`` and keeps the socket
tables. It is sans-I/O too: frames go in with ``receive(frame, now)``; ``poll()`` turns the
cores' events into socket state; ``frames_to_send(now)`` hands TCP's segments to IP and returns
the Ethernet frames to transmit; ``next_deadline()`` / ``handle_timeout(now)`` drive the timers.
The clock is a callable returning int ns (the component's ``now``), so socket calls need no
``now`` argument, as with the BSD API.

Sockets are non-blocking only (a protection domain runs one entry point at a time and must not
block): an operation that would block raises ``BlockingIOError``, exactly as a non-blocking BSD
socket does; ``connect`` returns at once and completes later (``connect_ex`` gives
``errno.EINPROGRESS``). Readiness is told by a callback, ``sock.on_event`` (called with no
argument whenever the socket may have become readable or writable or failed) plus
``readable()`` / ``writable()``: the asyncio layer (``netstack.aio``) is built on that.

Addresses are ``(host, port)`` with ``host`` a numeric IPv4 or IPv6 string (no resolver), as
``socket.getsockname()`` gives them. Errors surface as the OS's exceptions:
``ConnectionRefusedError`` (RST in answer to our SYN), ``ConnectionResetError``, ``TimeoutError``,
``OSError(EADDRINUSE)``, ``OSError(EBADF)`` after close.

Events from the cores are matched by type name (``Connected``, ``Accepted``, ``DataReady``,
``SendSpace``, ``PeerClosed``, ``Closed``, ``Reset``, ``TimedOut``; ``UdpDatagram``, ``EchoReply``)
so this layer depends only on the documented API of ``netstack.interface`` and ``netstack.tcp``.
"""

from __future__ import annotations

import errno
import ipaddress
from collections import deque
from collections.abc import Callable
from typing import Any

UDP_QUEUE = 512                     # datagrams a UDP socket holds before dropping (SO_RCVBUF)
EPHEMERAL = range(49152, 65536)     # RFC 6335 section 6: the dynamic port range
IPPROTO_TCP = 6
SHUT_RD, SHUT_WR, SHUT_RDWR = 0, 1, 2

Address = tuple[str, int]


def parse_address(address: Any, what: str = "address") -> tuple[Any, int]:
    """``(host, port)`` -> ``(ipaddress object or None for '' / '0.0.0.0', port)``; ValueError."""
    if not isinstance(address, tuple | list) or len(address) < 2:
        raise ValueError(f"{what}: expected (host, port), got {address!r}")
    host, port = address[0], address[1]
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"{what}: port must be 0..65535, got {port!r}")
    if host in ("", None, "0.0.0.0", "::"):
        return None, port
    try:
        return ipaddress.ip_address(host), port
    except ValueError:
        raise ValueError(f"{what}: {host!r} is not a numeric IP address (capnet has no "
                         "resolver)") from None


class _Socket:
    """What TCP and UDP sockets share: the host, the event callback, close state."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.on_event: Callable[[], None] | None = None
        self.error: OSError | None = None
        self.closed = False

    def _wake(self) -> None:
        if self.on_event is not None:
            self.on_event()

    def _check_open(self) -> None:
        if self.closed:
            raise OSError(errno.EBADF, "socket is closed")

    def _raise_error(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def setblocking(self, flag: bool) -> None:
        if flag:
            raise ValueError("capnet sockets are non-blocking (a component must not block)")


class TcpSocket(_Socket):
    """A TCP socket: ``bind``/``listen``/``accept`` or ``connect``, then ``send``/``recv``,
    ``shutdown``, ``close`` (orderly: FIN after queued data) or ``abort`` (RST)."""

    def __init__(self, host: Host, conn: Any = None, local: Address | None = None,
                 remote: Address | None = None) -> None:
        super().__init__(host)
        self.conn = conn
        self.local = local
        self.remote = remote
        self.listener: Any = None
        self.backlog: deque[TcpSocket] = deque()
        self.connected = conn is not None
        self.connecting = False
        self.eof = False
        self.finished = False           # the core closed the connection (Closed event)
        self.write_shut = False
        self.send_blocked = False
        self.data_ready = False
        if conn is not None:
            host._tcp_socks[conn] = self

    # -- set-up ---------------------------------------------------------------------------------
    def bind(self, address: Address) -> None:
        self._check_open()
        ip, port = parse_address(address, "bind")
        self.local = (str(ip) if ip else "", port)

    def listen(self, backlog: int = 128) -> None:
        self._check_open()
        ip, port = parse_address(self.local or ("", 0), "listen")
        if port == 0:
            port = self.host._free_tcp_port()
        key = (ip, port)
        if key in self.host._listeners_by_addr:
            raise OSError(errno.EADDRINUSE, f"TCP port {port} is already listening")
        self.listener = self.host.tcp.listen(key, backlog=backlog)
        self.host._listeners[self.listener] = self
        self.host._listeners_by_addr[key] = self
        self.local = (str(ip) if ip else "", port)

    def accept(self) -> tuple[TcpSocket, Address]:
        self._check_open()
        if self.listener is None:
            raise OSError(errno.EINVAL, "accept() on a socket that is not listening")
        if not self.backlog:
            raise BlockingIOError(errno.EAGAIN, "no connection waiting")
        sock = self.backlog.popleft()
        return sock, sock.remote

    def connect(self, address: Address) -> None:
        """Start the handshake; raises BlockingIOError(EINPROGRESS) as a non-blocking socket
        does. Completion is told by ``on_event`` (``writable()`` or an error)."""
        code = self.connect_ex(address)
        if code == errno.EINPROGRESS:
            raise BlockingIOError(errno.EINPROGRESS, "connection in progress")
        if code:
            raise OSError(code, errno.errorcode.get(code, "connect failed"))

    def connect_ex(self, address: Address) -> int:
        self._check_open()
        if self.conn is not None or self.listener is not None:
            return errno.EISCONN
        ip, port = parse_address(address, "connect")
        if ip is None or port == 0:
            raise ValueError(f"connect: needs a host and a port, got {address!r}")
        lip, lport = parse_address(self.local or ("", 0), "bind")
        lip = lip or self.host.iface.source_for(ip)
        if lip is None:
            return errno.ENETUNREACH
        self.conn = self.host.tcp.connect((lip, lport), (ip, port), self.host.clock())
        self.host._tcp_socks[self.conn] = self
        self.remote = (str(ip), port)
        self.local = (str(lip), lport)
        self.connecting = True
        self.host.kick()
        return errno.EINPROGRESS

    # -- data ------------------------------------------------------------------------------------
    def recv(self, bufsize: int = 65536) -> bytes:
        """Up to ``bufsize`` bytes; b"" at end of stream; BlockingIOError if nothing yet."""
        self._check_open()
        if self.conn is None:
            raise OSError(errno.ENOTCONN, "not connected")
        data = self._core_recv(bufsize)
        self.data_ready = len(data) == bufsize      # a short read emptied the buffer
        if data:
            self.host.kick()             # the window opened: the core may owe an update
            return data
        self._raise_error()
        if self.eof or self.finished:
            return b""
        raise BlockingIOError(errno.EAGAIN, "no data yet")

    def send(self, data: bytes | memoryview) -> int:
        """Bytes accepted into the send buffer; BlockingIOError when it is full."""
        self._check_open()
        self._raise_error()
        if self.conn is None or self.connecting:
            raise OSError(errno.ENOTCONN, "not connected")
        if self.write_shut or self.finished:
            raise BrokenPipeError(errno.EPIPE, "the socket was shut down for writing")
        if not len(data):
            return 0
        sent = self.host.tcp.send(self.conn, data, self.host.clock())
        if sent:
            self.host.kick()
            return sent
        self.send_blocked = True
        raise BlockingIOError(errno.EAGAIN, "send buffer full")

    def _core_recv(self, bufsize: int) -> bytes:
        try:
            return self.host.tcp.recv(self.conn, bufsize)
        except KeyError:                # the core forgot the connection (closed or reset)
            return b""

    # -- readiness --------------------------------------------------------------------------------
    def readable(self) -> bool:
        if self.listener is not None:
            return bool(self.backlog)
        return self.eof or self.finished or self.error is not None or (
            self.conn is not None and not self.connecting and self.data_ready)

    def writable(self) -> bool:
        return self.error is not None or (self.connected and not self.connecting
                                          and not self.send_blocked and not self.finished)

    # -- end ----------------------------------------------------------------------------------------
    def shutdown(self, how: int = SHUT_WR) -> None:
        """SHUT_WR (or RDWR) sends FIN after the queued data; SHUT_RD only stops reading."""
        self._check_open()
        if how in (SHUT_WR, SHUT_RDWR) and self.conn is not None and not self.write_shut:
            self.write_shut = True
            if not self.finished:
                self.host.tcp.close(self.conn, self.host.clock())
                self.host.kick()

    def close(self) -> None:
        """Orderly close: FIN after queued data; the core finishes the exchange on its own."""
        if self.closed:
            return
        if self.listener is not None:
            self._close_listener()
        elif self.conn is not None and not self.finished and not self.write_shut:
            self.host.tcp.close(self.conn, self.host.clock())
            self.write_shut = True
        self.closed = True
        self.on_event = None
        self.host.kick()

    def abort(self) -> None:
        """Abortive close (SO_LINGER 0): a RST now, queued data discarded."""
        if self.closed:
            return
        if self.listener is not None:
            self._close_listener()
        elif self.conn is not None and not self.finished:
            self.host.tcp.abort(self.conn, self.host.clock())
            self.finished = True
            self.host._tcp_socks.pop(self.conn, None)
        self.closed = True
        self.on_event = None
        self.host.kick()

    def _close_listener(self) -> None:
        unlisten = getattr(self.host.tcp, "unlisten", None)
        if unlisten is not None:
            unlisten(self.listener)
        self.host._listeners.pop(self.listener, None)
        ip, port = parse_address(self.local or ("", 0))
        self.host._listeners_by_addr.pop((ip, port), None)
        while self.backlog:                 # accepted by the core, never by the application
            self.backlog.popleft().abort()

    def getsockname(self) -> Address:
        return self.local or ("", 0)

    def getpeername(self) -> Address:
        if self.remote is None:
            raise OSError(errno.ENOTCONN, "not connected")
        return self.remote

    def info(self) -> dict:
        """The core's view of the connection (state, cwnd, srtt, rto, windows, ...)."""
        try:
            return dict(self.host.tcp.info(self.conn)) if self.conn is not None else {}
        except KeyError:
            return {}

    # -- events from the core -------------------------------------------------------------------
    def _event(self, kind: str, event: Any) -> None:
        if kind == "Connected":
            self.connected, self.connecting = True, False
            local = self.host.tcp.info(self.conn).get("local")
            if local:
                self.local = (str(local[0]), int(local[1]))
        elif kind == "DataReady":
            self.data_ready = True
        elif kind == "SendSpace":
            self.send_blocked = False
        elif kind == "PeerClosed":
            self.eof = True
        elif kind == "Closed":
            self.finished = True
            self.host._tcp_socks.pop(self.conn, None)
        elif kind == "Reset":
            refused = self.connecting or getattr(event, "reason", "") == "refused"
            self.error = (ConnectionRefusedError(errno.ECONNREFUSED, "connection refused")
                          if refused else
                          ConnectionResetError(errno.ECONNRESET, "connection reset by peer"))
            self.finished, self.connecting = True, False
            self.host._tcp_socks.pop(self.conn, None)
        elif kind == "TimedOut":
            self.error = TimeoutError(errno.ETIMEDOUT, "connection timed out")
            self.finished, self.connecting = True, False
            self.host._tcp_socks.pop(self.conn, None)
        self._wake()


class UdpSocket(_Socket):
    """A UDP socket: ``bind``, ``sendto``/``recvfrom``, or ``connect`` then ``send``/``recv``."""

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self.port = 0
        self.bound_ip: Any = None
        self.peer: tuple[Any, int] | None = None
        self.queue: deque[tuple[bytes, Address]] = deque()
        self.dropped = 0

    def bind(self, address: Address) -> None:
        self._check_open()
        if self.port:
            raise OSError(errno.EINVAL, "already bound")
        ip, port = parse_address(address, "bind")
        port = port or self.host._free_udp_port()
        if port in self.host._udp_socks:
            raise OSError(errno.EADDRINUSE, f"UDP port {port} is in use")
        self.host.iface.udp_bind(port)
        self.host._udp_socks[port] = self
        self.port, self.bound_ip = port, ip

    def connect(self, address: Address) -> None:
        ip, port = parse_address(address, "connect")
        if ip is None or port == 0:
            raise ValueError(f"connect: needs a host and a port, got {address!r}")
        self.peer = (ip, port)
        if not self.port:
            self.bind(("", 0))

    def sendto(self, data: bytes | memoryview, address: Address) -> int:
        self._check_open()
        ip, port = parse_address(address, "sendto")
        if ip is None or port == 0:
            raise ValueError(f"sendto: needs a host and a port, got {address!r}")
        if not self.port:
            self.bind(("", 0))
        if not self.host.iface.udp_send(self.port, ip, port, bytes(data), self.host.clock()):
            raise OSError(errno.EHOSTUNREACH, f"cannot send to {ip}")
        self.host.kick()
        return len(data)

    def send(self, data: bytes | memoryview) -> int:
        if self.peer is None:
            raise OSError(errno.EDESTADDRREQ, "not connected")
        return self.sendto(data, (str(self.peer[0]), self.peer[1]))

    def recvfrom(self, bufsize: int = 65536) -> tuple[bytes, Address]:
        self._check_open()
        if not self.queue:
            raise BlockingIOError(errno.EAGAIN, "no datagram yet")
        data, addr = self.queue.popleft()
        return data[:bufsize], addr

    def recv(self, bufsize: int = 65536) -> bytes:
        return self.recvfrom(bufsize)[0]

    def readable(self) -> bool:
        return bool(self.queue)

    def writable(self) -> bool:
        return not self.closed

    def getsockname(self) -> Address:
        return (str(self.bound_ip) if self.bound_ip else "", self.port)

    def close(self) -> None:
        if self.closed:
            return
        if self.port and self.host._udp_socks.get(self.port) is self:
            del self.host._udp_socks[self.port]
            self.host.iface.udp_unbind(self.port)
        self.closed = True
        self.on_event = None

    def _deliver(self, data: bytes, src: Any, sport: int) -> None:
        if self.peer is not None and (src, sport) != self.peer:
            return                      # a connected UDP socket takes only its peer's datagrams
        if len(self.queue) >= UDP_QUEUE:
            self.dropped += 1
            self.host.counters["udp.rcvbuf_full"] = self.host.counters.get(
                "udp.rcvbuf_full", 0) + 1
            return
        self.queue.append((bytes(data), (str(src), sport)))
        self._wake()


class Host:
    """One host's sockets over an ``Interface`` and a ``TcpLayer`` (see the module docstring)."""

    def __init__(self, iface: Any, tcp: Any, clock: Callable[[], int]) -> None:
        self.iface = iface
        self.tcp = tcp
        self.clock = clock
        self.counters: dict[str, int] = {}
        self._tcp_socks: dict[Any, TcpSocket] = {}
        self._listeners: dict[Any, TcpSocket] = {}
        self._listeners_by_addr: dict[tuple[Any, int], TcpSocket] = {}
        self._udp_socks: dict[int, UdpSocket] = {}
        self._ping_waiters: dict[tuple[int, int], Callable[[Any], None]] = {}
        self._next_udp = EPHEMERAL.start
        self._next_tcp = EPHEMERAL.start
        self.dirty = False              # something may be ready to send or report
        iface.register_protocol(IPPROTO_TCP, self._tcp_segment)

    # -- sockets ---------------------------------------------------------------------------------
    def tcp_socket(self) -> TcpSocket:
        return TcpSocket(self)

    def udp_socket(self) -> UdpSocket:
        return UdpSocket(self)

    def ping(self, dst: str, ident: int, seq: int, data: bytes,
             on_reply: Callable[[Any], None]) -> bool:
        """Send an ICMP echo request; ``on_reply(event)`` runs when its reply arrives."""
        self._ping_waiters[(ident, seq)] = on_reply
        sent = self.iface.ping(ipaddress.ip_address(dst), ident, seq, data, self.clock())
        self.kick()
        return sent

    def forget_ping(self, ident: int, seq: int) -> None:
        self._ping_waiters.pop((ident, seq), None)

    # -- driving -----------------------------------------------------------------------------------
    def kick(self) -> None:
        """Note that the cores may have output or events (the driver then polls and sends)."""
        self.dirty = True

    def receive(self, frame: bytes | memoryview, now: int) -> None:
        self.iface.receive(frame, now)
        self.dirty = True

    def handle_timeout(self, now: int) -> None:
        deadline = self.tcp.next_deadline()
        if deadline is not None and deadline <= now:
            self.tcp.handle_timeout(now)
        deadline = self.iface.next_deadline()
        if deadline is not None and deadline <= now:
            self.iface.handle_timeout(now)
        self.dirty = True

    def next_deadline(self) -> int | None:
        deadlines = [d for d in (self.tcp.next_deadline(), self.iface.next_deadline())
                     if d is not None]
        return min(deadlines) if deadlines else None

    def poll(self) -> int:
        """Turn the cores' events into socket state and wake the sockets; returns the number of
        events handled."""
        handled = 0
        for event in self.tcp.events():
            handled += 1
            self._tcp_event(event)
        for event in self.iface.events():
            handled += 1
            self._iface_event(event)
        return handled

    def frames_to_send(self, now: int) -> list[bytes]:
        """TCP's segments go to IP; returns every Ethernet frame now due out."""
        self.dirty = False
        for src, dst, segment in self.tcp.segments_to_send():
            if not self.iface.send_ip(dst, IPPROTO_TCP, segment, now, src=src):
                self.counters["tcp.segment_not_sent"] = self.counters.get(
                    "tcp.segment_not_sent", 0) + 1
        return self.iface.frames_to_send()

    # -- internals -----------------------------------------------------------------------------------
    def _tcp_segment(self, src: Any, dst: Any, payload: memoryview, now: int) -> None:
        try:
            self.tcp.receive(src, dst, payload, now)
        except Exception:               # a core's bug must not take the component down
            self.counters["tcp.internal_error"] = self.counters.get("tcp.internal_error", 0) + 1

    def _tcp_event(self, event: Any) -> None:
        kind = type(event).__name__
        if kind == "Accepted":
            listener = self._listeners.get(event.listener)
            remote = event.remote
            sock = TcpSocket(self, event.conn, remote=(str(remote[0]), int(remote[1])))
            info = self.tcp.info(event.conn) or {}
            local = info.get("local")
            if local:
                sock.local = (str(local[0]), int(local[1]))
            if listener is None or listener.closed:
                sock.abort()
                return
            listener.backlog.append(sock)
            listener._wake()
            return
        sock = self._tcp_socks.get(getattr(event, "conn", None))
        if sock is not None:
            sock._event(kind, event)

    def _iface_event(self, event: Any) -> None:
        kind = type(event).__name__
        if kind == "UdpDatagram":
            sock = self._udp_socks.get(event.dst_port)
            if sock is not None:
                sock._deliver(event.data, event.src, event.src_port)
            else:
                self.counters["udp.no_socket"] = self.counters.get("udp.no_socket", 0) + 1
        elif kind == "EchoReply":
            waiter = self._ping_waiters.pop((event.ident, event.seq), None)
            if waiter is not None:
                waiter(event)
        else:
            key = "event." + kind
            self.counters[key] = self.counters.get(key, 0) + 1

    def _free_udp_port(self) -> int:
        for _ in EPHEMERAL:
            port = self._next_udp
            self._next_udp = port + 1 if port + 1 < EPHEMERAL.stop else EPHEMERAL.start
            if port not in self._udp_socks:
                return port
        raise OSError(errno.EADDRINUSE, "no free UDP port")

    def _free_tcp_port(self) -> int:
        for _ in EPHEMERAL:
            port = self._next_tcp
            self._next_tcp = port + 1 if port + 1 < EPHEMERAL.stop else EPHEMERAL.start
            if not any(p == port for _ip, p in self._listeners_by_addr):
                return port
        raise OSError(errno.EADDRINUSE, "no free TCP port")
