"""All TCP connections of one host: demux by 4-tuple, listeners, SYN cookies, RSTs, timers.

The layer is sans-I/O: ``receive`` takes a segment with the IP addresses of its datagram,
``segments_to_send`` hands back (src, dst, bytes) for the IP layer, ``events`` reports what
happened, and ``next_deadline``/``handle_timeout`` drive the timers with the caller's clock.
See netstack.tcp's docstring for the whole API.
"""

from __future__ import annotations

import hashlib
import heapq
import os
from collections import defaultdict
from dataclasses import dataclass, field
from ipaddress import ip_address

from netstack.tcp.config import TcpConfig
from netstack.tcp.connection import Connection, _window_shift
from netstack.tcp.cookies import check_cookie, decode_ts_options, encode_ts_options, make_cookie
from netstack.tcp.isn import initial_sequence_number
from netstack.tcp.seq import MASK, seq_add, seq_gt
from netstack.tcp.states import Event, State
from netstack.wire import WireError
from netstack.wire.tcp import ACK, FIN, RST, SYN, Tcp, TcpOptions

__all__ = ["TcpLayer"]

EPHEMERAL_FIRST, EPHEMERAL_LAST = 49152, 65535        # RFC 6335 section 6


@dataclass
class _Listener:
    id: int
    address: object          # an IP address, or None for every address
    port: int
    backlog: int
    half_open: set = field(default_factory=set)


def _address(value):
    return None if value is None else ip_address(value)


class TcpLayer:
    """The TCP of one host (see the package docstring for the API)."""

    def __init__(self, config: TcpConfig | None = None, secret: bytes | None = None) -> None:
        self.config = config or TcpConfig()
        self.secret = secret if secret is not None else os.urandom(32)
        self.counters: dict[str, int] = defaultdict(int)
        self._conns: dict[int, Connection] = {}
        self._by_tuple: dict[tuple, Connection] = {}
        self._listeners: dict[int, _Listener] = {}
        self._listen_index: dict[tuple, _Listener] = {}
        self._timers: list[tuple[int, int]] = []     # (deadline, conn id), lazily cleaned
        self._out: list[tuple] = []
        self._events: list = []
        self._next_id = 1
        self._port_cursor = 0
        self._challenge_second = -1
        self._challenge_count = 0

    # ------------------------------------------------------------------ user API
    def listen(self, address: tuple, backlog: int = 128) -> int:
        """Listen on (ip or None, port); returns the listener id."""
        ip, port = _address(address[0]), int(address[1])
        if not 0 < port <= 0xFFFF:
            raise ValueError(f"listen: port {port} is outside 1..65535")
        if (ip, port) in self._listen_index:
            raise ValueError(f"listen: {address} already has a listener")
        lid = self._new_id()
        listener = _Listener(lid, ip, port, max(int(backlog), 0))
        self._listeners[lid] = listener
        self._listen_index[(ip, port)] = listener
        return lid

    def unlisten(self, listener: int) -> None:
        """Stop listening; established connections are not affected."""
        entry = self._listeners.pop(listener)
        del self._listen_index[(entry.address, entry.port)]

    def connect(self, local: tuple, remote: tuple, now: int) -> int:
        """Active open (RFC 9293 3.10.1): sends a SYN; ``Connected`` follows on success."""
        lip, rip = ip_address(local[0]), ip_address(remote[0])
        rport = int(remote[1])
        if lip.version != rip.version:
            raise ValueError("connect: local and remote addresses are of different IP versions")
        if not 0 < rport <= 0xFFFF:
            raise ValueError(f"connect: remote port {rport} is outside 1..65535")
        lport = int(local[1]) or self._ephemeral_port(lip, rip, rport)
        key = (lip, lport, rip, rport)
        if key in self._by_tuple:
            raise ValueError(f"connect: {local} -> {remote} is already in use")
        conn = self._create((lip, lport), (rip, rport), now)
        conn.open_active(now)
        self._touch(conn)
        return conn.id

    def send(self, conn: int, data, now: int) -> int:
        c = self._conns[conn]
        taken = c.send(data, now)
        self._touch(c)
        return taken

    def recv(self, conn: int, max_bytes: int = 1 << 30) -> bytes:
        c = self._conns[conn]
        data = c.recv(max_bytes)
        self._touch(c)
        return data

    def eof(self, conn: int) -> bool:
        return self._conns[conn].eof

    def close(self, conn: int, now: int) -> None:
        c = self._conns[conn]
        c.close(now)
        self._touch(c)

    def abort(self, conn: int, now: int) -> None:
        self._conns[conn].abort(now)

    def info(self, conn: int) -> dict:
        return self._conns[conn].info()

    def connections(self) -> list[int]:
        return list(self._conns)

    def segments_to_send(self) -> list[tuple]:
        out, self._out = self._out, []
        return out

    def events(self) -> list:
        out, self._events = self._events, []
        return out

    def next_deadline(self) -> int | None:
        """The earliest timer of any connection (a heap of entries checked when they surface)."""
        timers = self._timers
        while timers:
            deadline, cid = timers[0]
            conn = self._conns.get(cid)
            actual = conn.deadline() if conn is not None else None
            if actual == deadline:
                return deadline
            heapq.heappop(timers)                      # stale: the connection moved on
            if conn is not None and actual != conn.timer_entry:
                self._touch(conn)
        return None

    def handle_timeout(self, now: int) -> None:
        """Run the timers due at ``now``."""
        due = []
        while self._timers and self._timers[0][0] <= now:
            _, cid = heapq.heappop(self._timers)
            conn = self._conns.get(cid)
            if conn is not None and conn not in due:
                conn.timer_entry = None
                due.append(conn)
        for conn in due:
            deadline = conn.deadline()
            if deadline is not None and deadline <= now:
                conn.on_timer(now)
            self._touch(conn)

    def _touch(self, conn: Connection) -> None:
        """Record a connection's current deadline in the timer heap (if it changed)."""
        deadline = conn.deadline()
        if deadline is not None and deadline != conn.timer_entry and conn.id in self._conns:
            conn.timer_entry = deadline
            heapq.heappush(self._timers, (deadline, conn.id))

    # ------------------------------------------------------------------ segment input
    def receive(self, src, dst, segment, now: int) -> None:
        """One segment from ``src`` to ``dst`` (IP addresses): checksum, demux, process."""
        self.counters["segments_in"] += 1
        try:
            seg = Tcp.parse(segment, src, dst)
        except WireError as err:
            self._drop("bad_checksum" if "checksum" in str(err) else "malformed")
            return
        if seg.src_port == 0 or seg.dst_port == 0:
            self._drop("port_zero")
            return
        conn = self._by_tuple.get((dst, seg.dst_port, src, seg.src_port))
        if conn is not None:
            if not (conn.state == State.TIME_WAIT and self._reopens_time_wait(conn, seg)):
                conn.segment(seg, now)
                self._touch(conn)
                return
            conn.fire(Event.RCV_SYN, now)
        listener = self._listen_index.get((dst, seg.dst_port)) or \
            self._listen_index.get((None, seg.dst_port))
        if listener is not None:
            self._listen_segment(listener, src, dst, seg, now)
        else:
            self._reset_unknown(src, dst, seg)

    def _reopens_time_wait(self, conn: Connection, seg: Tcp) -> bool:
        """RFC 9293 3.6.1 / RFC 6191: a new SYN beyond the old connection may reuse TIME-WAIT."""
        if seg.flags & (SYN | ACK | RST) != SYN:
            return False
        ts = seg.options.timestamp
        if conn.ts_ok and ts is not None:
            return seq_gt(ts[0], conn.ts_recent)
        return seq_gt(seg.seq, conn.rcv_nxt)

    def _listen_segment(self, listener: _Listener, src, dst, seg: Tcp, now: int) -> None:
        """RFC 9293 3.10.7.2 (LISTEN), with SYN cookies (RFC 4987 3.6) when the backlog is full."""
        flags = seg.flags
        if flags & RST:
            self._drop("rst_to_listener")
            return
        local, remote = (dst, seg.dst_port), (src, seg.src_port)
        if flags & ACK:
            if not flags & SYN and self.config.syn_cookies:
                mss = check_cookie(self.secret, local, remote, seq_add(seg.seq, -1),
                                   seq_add(seg.ack, -1), now)
                if mss is not None:
                    self.counters["syn_cookies_accepted"] += 1
                    wscale, sack = (None, False)
                    if seg.options.timestamp is not None:
                        wscale, sack = decode_ts_options(seg.options.timestamp[1])
                    conn = self._create(local, remote, now, seq_add(seg.ack, -1), listener.id)
                    conn.open_from_cookie(seg, mss, wscale, sack, now)
                    self._touch(conn)
                    return
            self._send_rst(dst, src, seg.dst_port, seg.src_port, seg.ack, 0, RST)
            self._drop("ack_to_listener")
            return
        if not flags & SYN:
            self._drop("no_syn_to_listener")
            return
        if len(listener.half_open) >= listener.backlog:
            if not self.config.syn_cookies:
                self._drop("backlog_full")
                return
            self._send_cookie(local, remote, seg, now)
            return
        iss = initial_sequence_number(self.secret, local, remote, now)
        conn = self._create(local, remote, now, iss, listener.id)
        listener.half_open.add(conn.id)
        conn.passive_open(seg, now)
        self._touch(conn)
        if flags & FIN or seg.payload:
            self.counters["syn_data_ignored"] += 1

    def _send_cookie(self, local: tuple, remote: tuple, seg: Tcp, now: int) -> None:
        """A stateless SYN-ACK whose ISN is the cookie (RFC 4987 3.6)."""
        cfg = self.config
        peer_mss = seg.options.mss or 536
        cookie, _ = make_cookie(self.secret, local, remote, seg.seq, min(peer_mss, cfg.mss), now)
        ts = wscale = None
        sack = False
        if cfg.timestamps and seg.options.timestamp is not None:
            peer_ws = seg.options.wscale if cfg.window_scaling else None
            peer_sack = cfg.sack and seg.options.sack_permitted
            tsval = encode_ts_options((now // 1_000_000) & MASK, peer_ws, peer_sack)
            ts = (tsval, seg.options.timestamp[0])
            if peer_ws is not None:
                wscale = _window_shift(cfg.recv_buffer)
            sack = peer_sack
        opts = TcpOptions(mss=cfg.mss, wscale=wscale, sack_permitted=sack, timestamp=ts)
        reply = Tcp(local[1], remote[1], cookie, seq_add(seg.seq, 1), SYN | ACK,
                    min(cfg.recv_buffer, 0xFFFF), opts)
        self.counters["syn_cookies_sent"] += 1
        self._transmit(local[0], remote[0], reply)

    def _reset_unknown(self, src, dst, seg: Tcp) -> None:
        """RFC 9293 3.10.7.1: a segment to no connection gets a RST (unless it is one)."""
        if seg.flags & RST:
            self._drop("rst_to_closed")
            return
        self._drop("no_connection")
        if seg.flags & ACK:
            self._send_rst(dst, src, seg.dst_port, seg.src_port, seg.ack, 0, RST)
        else:
            length = len(seg.payload) + (1 if seg.flags & SYN else 0) + (1 if seg.flags & FIN
                                                                          else 0)
            self._send_rst(dst, src, seg.dst_port, seg.src_port, 0, seq_add(seg.seq, length),
                           RST | ACK)

    def _send_rst(self, src, dst, sport: int, dport: int, seq: int, ack: int, flags: int) -> None:
        self.counters["rst_sent"] += 1
        self._transmit(src, dst, Tcp(sport, dport, seq, ack, flags, 0))

    # ------------------------------------------------------------------ for connections
    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _create(self, local: tuple, remote: tuple, now: int, iss: int | None = None,
                listener: int | None = None) -> Connection:
        if iss is None:
            iss = initial_sequence_number(self.secret, local, remote, now)
        conn = Connection(self, self._new_id(), local, remote, iss, now, listener)
        self._conns[conn.id] = conn
        self._by_tuple[(local[0], local[1], remote[0], remote[1])] = conn
        return conn

    def _ephemeral_port(self, lip, rip, rport: int) -> int:
        """RFC 6056 3.3.3-style: a keyed per-destination offset plus a counter."""
        digest = hashlib.blake2s(lip.packed + rip.packed + rport.to_bytes(2, "big"),
                                 key=self.secret[:32], digest_size=2).digest()
        span = EPHEMERAL_LAST - EPHEMERAL_FIRST + 1
        base = int.from_bytes(digest, "big")
        for i in range(span):
            port = EPHEMERAL_FIRST + (base + self._port_cursor + i) % span
            if (lip, port, rip, rport) not in self._by_tuple:
                self._port_cursor += i + 1
                return port
        raise OSError("connect: no free ephemeral port")

    def _transmit(self, src, dst, seg: Tcp) -> None:
        self._transmit_bytes(src, dst, seg.emit(src, dst))

    def _transmit_bytes(self, src, dst, segment: bytes) -> None:
        self.counters["segments_out"] += 1
        self._out.append((src, dst, segment))

    def _event(self, event) -> None:
        listener = getattr(event, "listener", None)
        if listener is not None and listener in self._listeners:
            self._listeners[listener].half_open.discard(event.conn)
        self._events.append(event)

    def _drop(self, reason: str) -> None:
        self.counters["dropped." + reason] += 1

    def _challenge_allowed(self, now: int) -> bool:
        """RFC 5961 section 7: at most ``challenge_ack_limit`` challenge ACKs per second."""
        second = now // 1_000_000_000
        if second != self._challenge_second:
            self._challenge_second, self._challenge_count = second, 0
        self._challenge_count += 1
        return self._challenge_count <= self.config.challenge_ack_limit

    def _forget(self, conn: Connection) -> None:
        self._conns.pop(conn.id, None)
        key = (conn.local[0], conn.local[1], conn.remote[0], conn.remote[1])
        if self._by_tuple.get(key) is conn:
            del self._by_tuple[key]
        if conn.listener in self._listeners:
            self._listeners[conn.listener].half_open.discard(conn.id)
