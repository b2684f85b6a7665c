"""``netstack:Stack`` — the TCP/IP stack as a component, with its applications inside it.

Queues: exactly one it consumes (RX: Ethernet frames from a driver — TAP, wire, a filter) and
one it produces (TX: frames it sends, written into buffers of the region it originates). Frames
are parsed in place in the RX region (a memoryview per frame, no copy) and the buffers go back
at once; TCP copies only the payload bytes it keeps.

Config::

    mac = "02:00:00:00:00:02"     # default: 02:00 + the IPv4 address
    ipv4 = "10.77.0.2/24"         # address/prefix
    gateway = "10.77.0.1"         # optional default route
    ipv6 = true                   # link-local address, NDP, SLAAC
    mtu = 1500
    apps = ["udp-echo:7", "http:80", "tcp-echo:9"]      # see netstack.apps
    tcp = { congestion = "cubic", rto_min_ms = 200 }   # optional TcpConfig knobs
    offload = false               # true: the driver cuts TCP segments (a TAP with offload = true):
                                  # TCP sends up to 64 KiB per frame (TX buffers of 64 KiB)

The apps are plain asyncio coroutines run by this component's own event loop
(``netstack.aio.CapnetLoop``): after every notification and timer the component runs the ready
callbacks and the cores until they are quiet, transmits what they produced, and sets one runtime
timer for the earliest of the cores' deadlines and asyncio's next scheduled callback. Frames go
onto TX (and the driver is woken) the moment a round makes them; the RX buffers go back after
that, and the driver's return of TX buffers wakes this component only when it runs short of
them (``want_returns``): a request/response exchange costs one wake-up each way. A program
of one's own subclasses ``Stack`` and writes ``async def main(self)``; it runs beside the apps::

    class Hello(Stack):
        async def main(self):
            reader, writer = await asyncio.open_connection("10.77.0.1", 8080)
            ...
            return "what it found"        # -> stats: extra.apps.main.result

Counters (conservation, in = out + dropped + pending): ``in`` counts frames received and frames
the stack made; ``out`` counts frames the cores took (delivered to a protocol) and frames sent
on TX; ``dropped.<reason>`` the interface's drop reasons for received frames, ``tx_full`` /
``tx_too_big`` for frames that found no room; ``pending`` frames waiting for TX buffers. A frame
is a terminus here, so a system of driver <-> stack has no source or sink in the harness's sense.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import secrets
from collections import deque

from harness import Component, ProtectedCallError
from netstack.aio import CapnetLoop, Runner
from netstack.apps import AppContext, parse_app
from netstack.interface import Interface
from netstack.sockets import Host
from netstack.tcp import TcpConfig
from netstack.tcp.layer import TcpLayer

CONFIG_KEYS = {"mac", "ipv4", "gateway", "ipv6", "mtu", "apps", "tcp", "tx_backlog", "offload"}
TCP_KEYS = {"congestion": str, "nagle": bool, "sack": bool, "timestamps": bool,
            "window_scaling": bool, "send_buffer": int, "recv_buffer": int,
            "rto_min_ms": int, "delayed_ack_ms": int, "syn_cookies": bool}
MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
TX_BACKLOG = 4096           # frames held while the TX ring or pool is exhausted
TX_LOW_WATER = 128          # fewer free TX buffers than this: wake when the driver returns some
ANSWER_FIRST = 4            # RX batches up to this size go back after the answer is sent
RX_TURN = 256               # frames taken per entry point, so timers and control stay responsive
TIMER = "net"
HEADROOM = 14 + 40 + 60      # Ethernet, IPv6 and the largest TCP header, within one TX buffer


def _problems(config: dict) -> list[str]:
    """Everything wrong with a Stack config, one message each."""
    out = [f"unknown key {k!r}; valid: {', '.join(sorted(CONFIG_KEYS))}"
           for k in sorted(set(config) - CONFIG_KEYS)]
    mac = config.get("mac")
    if mac is not None and (not isinstance(mac, str) or not MAC.fullmatch(mac)):
        out.append(f"mac: expected six hex bytes like 02:00:00:00:00:02, got {mac!r}")
    elif isinstance(mac, str) and int(mac[:2], 16) & 1:
        out.append(f"mac: {mac} is a multicast address")
    try:
        net = ipaddress.IPv4Interface(config.get("ipv4", ""))
        if net.network.prefixlen == 32 or net.ip in (net.network.network_address,
                                                     net.network.broadcast_address):
            out.append(f"ipv4: {config['ipv4']} is not a host address in a subnet")
    except (ValueError, TypeError):
        out.append(f"ipv4: expected an address with prefix like 10.77.0.2/24, "
                   f"got {config.get('ipv4')!r}")
    gateway = config.get("gateway")
    if gateway is not None:
        try:
            ipaddress.IPv4Address(gateway)
        except (ValueError, TypeError):
            out.append(f"gateway: expected an IPv4 address, got {gateway!r}")
    if not isinstance(config.get("ipv6", True), bool):
        out.append(f"ipv6: expected true or false, got {config.get('ipv6')!r}")
    mtu = config.get("mtu", 1500)
    if not isinstance(mtu, int) or isinstance(mtu, bool) or not 576 <= mtu <= 9000:
        out.append(f"mtu: expected 576..9000, got {mtu!r}")
    apps = config.get("apps", [])
    if not isinstance(apps, list):
        out.append(f"apps: expected a list like [\"http:80\"], got {apps!r}")
    else:
        for i, spec in enumerate(apps):
            try:
                parse_app(spec)
            except ValueError as exc:
                out.append(f"apps[{i}]: {exc}")
    tcp = config.get("tcp", {})
    if not isinstance(tcp, dict):
        out.append(f"tcp: expected a table, got {tcp!r}")
    else:
        for key, value in tcp.items():
            kind = TCP_KEYS.get(key)
            if kind is None:
                out.append(f"tcp.{key}: unknown; valid: {', '.join(sorted(TCP_KEYS))}")
            elif type(value) is not kind:
                out.append(f"tcp.{key}: expected {kind.__name__}, got {value!r}")
        if not out:
            try:
                _tcp_config(config, 1460)
            except (ValueError, TypeError) as exc:
                out.append(f"tcp: {exc}")
    if not isinstance(config.get("offload", False), bool):
        out.append(f"offload: expected true or false, got {config.get('offload')!r}")
    backlog = config.get("tx_backlog", TX_BACKLOG)
    if not isinstance(backlog, int) or not 1 <= backlog <= 1 << 20:
        out.append(f"tx_backlog: expected 1..1048576, got {backlog!r}")
    return out


def _tcp_config(config: dict, mss: int, segment_offload: int = 0) -> TcpConfig:
    knobs = dict(config.get("tcp", {}))
    kwargs: dict = {"mss": mss, "segment_offload": segment_offload}
    if "rto_min_ms" in knobs:
        kwargs["rto_min_ns"] = knobs.pop("rto_min_ms") * 1_000_000
    if "delayed_ack_ms" in knobs:
        kwargs["delayed_ack_ns"] = knobs.pop("delayed_ack_ms") * 1_000_000
    kwargs.update(knobs)
    return TcpConfig(**kwargs)


def tcp_mss(config: dict, mtu: int) -> int:
    """The MSS handed to TCP: MTU - IP header (20, or 40 when IPv6 is on) - TCP header (20).

    The TCP core sizes its segments by one MSS for IPv4 and IPv6 alike, so the stack leaves
    room for the larger IPv6 header; the core itself takes its options off each segment
    (RFC 9293 section 3.7.1, RFC 6691)."""
    ip_header = 40 if config.get("ipv6", True) else 20
    return mtu - ip_header - 20


def _mac(config: dict) -> bytes:
    if config.get("mac"):
        return bytes.fromhex(config["mac"].replace(":", ""))
    return b"\x02\x00" + ipaddress.IPv4Interface(config["ipv4"]).ip.packed


class Stack(Component):
    """See the module docstring."""

    @classmethod
    def preflight(cls, config: dict, files: dict) -> list[str]:
        return _problems(config)

    def init(self) -> None:
        problems = _problems(self.config)
        if problems:
            raise ValueError(f"{self.name}: " + "; ".join(problems))
        consumed = [q for q in self.queues.values() if q.role == "consumer"]
        produced = [q for q in self.queues.values() if q.role == "producer"]
        if len(consumed) != 1 or len(produced) != 1:
            raise ValueError(f"{self.name}: needs one queue it consumes (RX) and one it "
                             f"produces (TX), has {len(consumed)} and {len(produced)}")
        self.rx, self.tx = consumed[0], produced[0]
        self.pool = self.pools[self.tx.data.name]
        self.rx_mem = memoryview(self.rx.data.mem)
        self.tx_mem = memoryview(self.tx.data.mem)
        self.buffer_size = self.tx.ledger.buffer_size
        self.tx_low_water = min(TX_LOW_WATER, max(1, self.tx.ledger.nbuf // 4))
        self.backlog: deque[bytes] = deque()
        self.backlog_limit = int(self.config.get("tx_backlog", TX_BACKLOG))
        mtu = int(self.config.get("mtu", 1500))
        offload = bool(self.config.get("offload", False))
        if offload and self.buffer_size < 2 * mtu:
            raise ValueError(f"{self.name}: offload needs TX buffers larger than the MTU "
                             f"(buffer_size 65536), has {self.buffer_size}")
        self.iface = Interface(_mac(self.config), ipv4=self.config["ipv4"],
                               gateway=self.config.get("gateway"),
                               ipv6=bool(self.config.get("ipv6", True)), mtu=mtu, gso=offload)
        tso = min(self.buffer_size, 65536) - HEADROOM if offload else 0
        self.tcp = TcpLayer(_tcp_config(self.config, tcp_mss(self.config, mtu), tso),
                            secret=secrets.token_bytes(32))
        self.host = Host(self.iface, self.tcp, self.now)
        self.loop = CapnetLoop(self.host)
        self.runner = Runner(self.host, self.loop)
        self.apps: dict[str, AppContext] = {}
        self.tasks: list[asyncio.Task] = []
        self._timer_at: int | None = None
        self._drops_seen: dict[str, int] = {}
        for spec in self.config.get("apps", []):
            _name, fn, args = parse_app(spec)
            ctx = self.apps[spec] = AppContext(f"{self.name}/{spec}")
            self._start(fn(ctx, *args), ctx)
        if type(self).main is not Stack.main:
            ctx = self.apps["main"] = AppContext(f"{self.name}/main")
            self._start(self.main(), ctx)
        self.iface.start(self.now())
        self._pump()

    async def main(self) -> object:
        """A subclass's own asyncio program (runs beside the configured apps); what it returns
        (plain data: strings, numbers, lists, dicts) appears in the statistics as
        ``apps.main.result``."""

    def _start(self, coro, ctx: AppContext) -> None:
        task = self.loop.create_task(coro)

        def ended(t: asyncio.Task) -> None:
            if t.cancelled():
                return
            error = t.exception()
            if error is not None:
                ctx.results["error"] = f"{type(error).__name__}: {error}"
                ctx.log(f"failed: {type(error).__name__}: {error}")
            else:
                ctx.results["done"] = True
                if t.result() is not None:
                    try:
                        json.dumps(t.result())
                        ctx.results["result"] = t.result()
                    except (TypeError, ValueError):   # statistics carry plain data only
                        ctx.results["result"] = repr(t.result())

        task.add_done_callback(ended)
        self.tasks.append(task)

    # -- entry points ------------------------------------------------------------------------------
    def notified(self, channel) -> None:
        if channel == self.tx.name:
            if not self.backlog and len(self.pool) >= self.tx_low_water and \
                    self.tx.pending() < self.tx.capacity // 2:
                return                  # buffers enough: these wait on the ring (not offered
                #                         again until news; _transmit takes them when short)
            self.pool.give(self.tx.reclaim())
            if not self.backlog:        # nothing waited for these buffers: nothing to run
                self.tx.want_returns = len(self.pool) < self.tx_low_water
                return
        elif channel == self.rx.name:
            batch = self._receive()
            if batch is not None and len(batch) > ANSWER_FIRST:
                self._release(batch)    # a stream: the driver refills while the apps digest
                batch = None
            self._pump()
            if batch is not None:       # a request or so: after the answer left
                self._release(batch)
            return
        self._pump()

    def timeout(self, token) -> None:
        self._timer_at = None
        self.runner.handle_timeout(self.now())
        self._pump()

    def stop(self) -> None:
        """The apps are cancelled and run their clean-up; nothing more is transmitted."""
        for task in self.tasks:
            task.cancel()
        for _ in range(8):
            if not self.loop.has_ready():
                break
            self.loop.run_once()
        self.counters["pending"] = len(self.backlog)

    def protected(self, channel, msg) -> object:
        """Operator queries (``capnet call SYSTEM COMPONENT '{"op": "connections"}'``):
        ``connections`` lists the TCP connections with the core's view of each."""
        if not isinstance(msg, dict) or msg.get("op") != "connections":
            raise ProtectedCallError('expected {"op": "connections"}')
        out = []
        for conn in self.tcp.connections():
            try:
                info = self.tcp.info(conn)
            except KeyError:
                continue
            out.append({k: (f"{v[0]}:{v[1]}" if k in ("local", "remote") else v)
                        for k, v in info.items() if isinstance(v, str | int | float | bool)
                        or k in ("local", "remote")})
        return out

    def stats(self) -> dict:
        addresses = [str(self.iface.ipv4)] + [str(a) for a in self.iface.ipv6_addresses]
        return {"addresses": addresses,
                "apps": {spec: dict(ctx.results) for spec, ctx in self.apps.items()},
                "interface": dict(self.iface.counters), "tcp": dict(self.tcp.counters),
                "sockets": dict(self.host.counters)}

    # -- frames ---------------------------------------------------------------------------------------
    def _receive(self):
        """Frames waiting on RX into the cores (parsed in place; TCP copies what it keeps);
        returns their descriptors, still held, or None. The caller releases them."""
        batch = self.rx.receive(RX_TURN)
        if not len(batch):
            return None
        now, mem = self.now(), self.rx_mem
        for offset, length in zip(batch["offset"].tolist(), batch["length"].tolist(),
                                  strict=True):
            self.host.receive(mem[offset:offset + length], now)
        return batch

    def _release(self, batch) -> None:
        self.rx.release(batch)
        self._account(len(batch))

    def _account(self, frames: int) -> None:
        """Received frames are delivered unless the interface counted them dropped."""
        self.count("in", frames)
        dropped = 0
        for key, value in self.iface.counters.items():
            if key.startswith("drop.") and value != self._drops_seen.get(key, 0):
                n = value - self._drops_seen.get(key, 0)
                self._drops_seen[key] = value
                self.drop(key[5:], n)
                dropped += n
        self.count("out", frames - dropped)
        self.count("left", frames - dropped)     # an endpoint: delivered frames end here

    def _pump(self) -> None:
        """Run the loop and the cores until quiet, sending frames as they are made; set the
        next timer."""
        self.runner.step(self.now(), self._send_now)
        self._transmit()
        self.tx.flush()
        # frames still on RX need no timer: the runtime offers a queue with work again
        deadline = self.now() if self.runner.busy() else self.runner.next_deadline()
        if deadline is not None and deadline != self._timer_at:
            self._timer_at = deadline
            self.set_timer(deadline, TIMER)

    def _send_now(self, frames: list[bytes]) -> None:
        """Frames the cores made: onto TX, and the driver woken at once — before the rest of
        the turn (rounds that only settle state, the RX buffers' release, timers): the frames
        going out are what the peer waits for."""
        self.count("in", len(frames))
        self.count("entered", len(frames))   # an endpoint: frames it makes begin here
        self.backlog.extend(frames)
        self._transmit()
        self.tx.flush()

    def _transmit(self) -> None:
        backlog, size = self.backlog, self.buffer_size
        if len(backlog) > len(self.pool):     # take back what the driver returned meanwhile
            self.pool.give(self.tx.reclaim())
        while backlog:
            n = min(len(backlog), self.tx.space(), len(self.pool))
            if n == 0:
                break
            frames = [backlog.popleft() for _ in range(n)]
            fitting = [f for f in frames if len(f) <= size]
            if len(fitting) < n:
                self.drop("tx_too_big", n - len(fitting))
            buffers = self.pool.take(len(fitting))
            for offset, frame in zip(buffers["offset"].tolist(), fitting, strict=True):
                self.tx_mem[offset:offset + len(frame)] = frame
            buffers["length"] = [len(f) for f in fitting]
            buffers["timestamp"] = self.now()
            sent = self.tx.send(buffers)
            self.count("out", sent)
            if sent < len(buffers):     # cannot happen: we took no more than the ring's room
                self.pool.give(buffers[sent:])
                self.drop("tx_full", len(buffers) - sent)
        excess = len(backlog) - self.backlog_limit
        if excess > 0:
            for _ in range(excess):
                backlog.popleft()
            self.drop("tx_full", excess)
        self.counters["pending"] = len(backlog)
        # wake-ups for returned TX buffers only when short of them: the driver's release then
        # costs it no eventfd write, nor this component a turn, per frame sent
        self.tx.want_returns = bool(backlog) or len(self.pool) < self.tx_low_water
