"""``gateway.datapath:Gateway`` — the GATEWAY component: WireGuard's data path between a red
queue pair (bare IP packets, plaintext) and a black queue pair (bare IPv4/UDP packets for a
TUN-mode NIC, ciphertext).

It never sees the private key: handshakes go to the key component (``gateway.keys:KeyStore``)
by protected call on the channel named by ``config.keys`` (default ``"keys"``), which answers
with session keys only (``gateway.remote.RemoteHandshaker``; it also keeps one initiation per
peer made ahead of need, so a handshake starts without a call). The peers' public
configuration comes from the same call at ``init``.

Queues (names configurable): ``red_in`` (consumed: packets to seal), ``red_out`` (produced:
opened packets, buffers of a region this component originates), ``black_in`` (consumed:
IPv4/UDP datagrams addressed to ``address:listen_port``), ``black_out`` (produced). Frames
are taken in batches; each is sealed (or opened) from its input buffer and written once into
an output buffer, and the input batch goes back at once.

Config: ``address`` (our black-side IPv4 source address, required), ``listen_port`` (default:
the config's ListenPort, else 51820), ``mtu`` (1420), ``load_threshold`` (handshake messages
per second above which we are under load and answer with cookie replies; default 128),
``batch`` (most frames taken from an input queue at once, default 256: a batch is what is
waiting, so a packet at a time still goes at once, and a flood spreads the queue operations'
fixed cost over more packets — in four floods each through the running system, 256 sealed
1.27–1.34 Gbit/s per CPU second against 0.95–1.08 for 64, end to end no slower), ``timing``
(a table of ``Timing`` fields in seconds, e.g. ``{ rekey_after_time = 3 }``, to
shorten the protocol's timers for tests), ``udp_checksum`` (false: RFC 768 lets IPv4 senders
leave it zero, and it costs as much as the encryption in Python; true: computed).

Black frames: IPv4 header (checksummed, DF, TTL 64) + UDP header + WireGuard message.
Plaintext and ciphertext live in different regions (red and black share no memory), so each
frame crosses once: it is encrypted from its red buffer straight into a black buffer behind
the headers (``Device.send_batch_into``, ``encrypt_into``), and decrypted from its black buffer
straight into a red one (``Device.receive_into``, ``decrypt_into``), with no intermediate copy.

Counters: ``in`` = frames taken from both sides + frames created (initiations, keepalives,
handshake replies; also counted as ``created``); ``out`` = frames handed to an output queue;
handshake messages and keepalives the protocol consumes count as ``dropped.handshake_consumed``
/ ``dropped.keepalive_consumed``; packets waiting for a handshake are ``pending``. ``stats()``
adds the core's own counters, the CPU time spent sealing and opening (``busy_*_ns``), the
number of red batches sealed (``seal_batches``), the key calls' wall time (``key_calls``),
the first handshake we initiated, timed from inside (``first_handshake_us``), and each of our
last 64 handshakes, from the initiation's need (a packet staged, or a rekey due) to its keys in
use after the response's key call (``handshakes_us``).
"""

from __future__ import annotations

import ipaddress
import struct
import time
from collections import deque

import numpy as np

from gateway.remote import RemoteHandshaker
from gateway.wireguard.device import Device, Output
from gateway.wireguard.timers import SECOND, Timing
from harness import Component

IP_UDP = 28
_HEADER_COLUMNS = np.arange(IP_UDP)
_IPV4 = struct.Struct(">BBHHHBBH4s4s")
_UDP = struct.Struct(">HHHH")
TIMER = "wg"
MARKS = ("staged", "initiation_out", "response_in", "data_out")
RECENT_HANDSHAKES = 64
BATCH = 256


def checksum(data) -> int:
    """The Internet checksum (RFC 1071): one's complement of the one's complement sum of the
    16-bit words. The sum of words modulo 0xFFFF equals the big-endian integer modulo 0xFFFF."""
    if len(data) & 1:
        data = bytes(data) + b"\0"
    value = int.from_bytes(data, "big")
    total = value % 0xFFFF or (0xFFFF if value else 0)
    return ~total & 0xFFFF


def udp_checksum(src: bytes, dst: bytes, udp: bytes) -> int:
    """RFC 768: the checksum over the pseudo header and the UDP header and data; 0 -> 0xFFFF."""
    value = checksum(src + dst + struct.pack(">BBH", 0, 17, len(udp)) + udp)
    return value or 0xFFFF


class _PeerView:
    __slots__ = ("public_key", "allowed_ips", "endpoint", "persistent_keepalive")

    def __init__(self, d: dict) -> None:
        self.public_key = bytes(d["public_key"])
        self.allowed_ips = tuple(ipaddress.ip_network(n) for n in d["allowed_ips"])
        self.endpoint = (d["endpoint"][0], int(d["endpoint"][1])) if d["endpoint"] else None
        self.persistent_keepalive = int(d["persistent_keepalive"])


def _timing(raw: dict) -> Timing:
    fields = {k: int(float(v) * SECOND) if not k.endswith("messages") else int(v)
              for k, v in raw.items()}
    return Timing(**fields)


class Gateway(Component):
    @classmethod
    def preflight(cls, config: dict, files) -> list[str]:
        problems = []
        try:
            ipaddress.IPv4Address(config.get("address", ""))
        except ValueError:
            problems.append("address: our black-side IPv4 address is required, e.g. "
                            "address = \"10.99.0.1\"")
        try:
            _timing(dict(config.get("timing", {})))
        except (TypeError, ValueError) as exc:
            problems.append(f"timing: {exc}")
        batch = config.get("batch", BATCH)
        if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= 4096:
            problems.append(f"batch: a whole number of frames from 1 to 4096, got {batch!r}")
        return problems

    def init(self) -> None:
        cfg = self.config
        names = {k: cfg.get(k, k) for k in ("red_in", "red_out", "black_in", "black_out")}
        self.red_in, self.red_out = self.queues[names["red_in"]], self.queues[names["red_out"]]
        self.black_in = self.queues[names["black_in"]]
        self.black_out = self.queues[names["black_out"]]
        self.red_pool = self.pools[self.red_out.data.name]
        self.black_pool = self.pools[self.black_out.data.name]
        self.address = ipaddress.IPv4Address(cfg["address"]).packed
        channel = cfg.get("keys", "keys")
        public = self.ppcall(channel, {"op": "peers"})
        self.listen_port = int(cfg.get("listen_port") or public["listen_port"] or 51820)
        self.keys = RemoteHandshaker(self, channel)
        self.device = Device([_PeerView(p) for p in public["peers"]], self.keys,
                             timing=_timing(dict(cfg.get("timing", {}))),
                             mtu=int(cfg.get("mtu", 1420)),
                             load_threshold=int(cfg.get("load_threshold", 128)))
        self.keys.wanted.update(p.public_key for p in self.device.peers.values()
                                if p.endpoint is not None)
        self.keys.prefetch()                      # the first handshake's initiation, made ahead
        self.frames_in = self.frames_out = 0
        self.seal_batches = 0
        self.batch = int(cfg.get("batch", BATCH))  # most frames taken from an input queue at once
        self.marks: dict[str, int] = {}           # the first handshake's timeline (monotonic ns)
        self.handshakes_ns: deque = deque(maxlen=RECENT_HANDSHAKES)   # ours, packet to keys
        self.busy_seal = self.busy_open = 0       # CPU ns spent sealing / opening batches
        self.lost: dict[str, int] = {}
        self.deadline: int | None = None
        self.udp_checksum = bool(cfg.get("udp_checksum", False))
        self._hosts: dict[str, bytes] = {}
        self._names: dict[bytes, str] = {}
        self._headers: dict = {}
        self.red_mem = memoryview(self.red_out.data.mem)
        self.black_mem = memoryview(self.black_out.data.mem)
        self.black_array = np.frombuffer(self.black_out.data.mem, np.uint8)
        self.red_in_mem = memoryview(self.red_in.data.mem)
        self.black_in_mem = memoryview(self.black_in.data.mem)

    # -- entry points --------------------------------------------------------------------------
    def notified(self, channel) -> None:
        if channel == self.red_out.name:
            self.red_pool.give(self.red_out.reclaim())
        elif channel == self.black_out.name:
            self.black_pool.give(self.black_out.reclaim())
        t0 = time.thread_time_ns()
        self._seal_red()
        t1 = time.thread_time_ns()
        self._open_black()
        self.busy_seal += t1 - t0
        self.busy_open += time.thread_time_ns() - t1
        self._arm()
        if self.keys.wanted:
            self.keys.prefetch()     # the turn's frames are out (the call flushes their signal)

    def timeout(self, token) -> None:
        self.deadline = None
        self._emit(self.device.tick(self.now()))
        self._arm()
        if self.keys.wanted:
            self.keys.prefetch()

    def stop(self) -> None:
        self._sync_counters()

    def stats(self) -> dict:
        self._sync_counters()
        peers = {}
        for p in self.device.peers.values():
            peers[p.public_key.hex()[:16]] = {
                "endpoint": list(p.endpoint) if p.endpoint else None, "handshakes": p.handshakes,
                "rx_bytes": p.rx_bytes, "tx_bytes": p.tx_bytes, "staged": len(p.staged),
                "handshake_ns": p.handshake_ns}
        calls = {op: {"calls": n, "mean_ns": total // n, "max_ns": longest}
                 for op, (n, total, longest) in self.keys.calls.items()}
        return {"wireguard": dict(self.device.counters), "peers": peers, "key_calls": calls,
                "initiations_made_ahead_used": self.keys.used_ready,
                "busy_seal_ns": self.busy_seal, "busy_open_ns": self.busy_open,
                "seal_batches": self.seal_batches, "first_handshake_us": self._timeline(),
                "handshakes_us": [ns // 1000 for ns in self.handshakes_ns]}

    def _timeline(self) -> dict:
        """The first handshake we initiated, as the gw saw it, in µs after the first packet
        waited for it: the initiation shipped, the response read, the staged packets shipped."""
        start = self.marks.get("staged")
        return {m: (self.marks[m] - start) // 1000 for m in MARKS
                if start is not None and m in self.marks}

    # -- red -> black --------------------------------------------------------------------------
    def _seal_red(self) -> None:
        """Seal red packets in batches: each common-case packet is encrypted from its red buffer
        straight into a black buffer behind the IPv4/UDP header (``Device.send_batch_into``)."""
        red_in, black_out, pool, mem = self.red_in, self.black_out, self.black_pool, \
            self.black_mem
        room = pool.ledger.buffer_size - IP_UDP
        while True:
            space = min(black_out.space(), len(pool))
            if space <= 0:
                return
            batch = red_in.receive(min(space, self.batch))
            if not len(batch):
                return
            self.frames_in += len(batch)
            self.seal_batches += 1
            data = self.red_in_mem
            packets = [data[off:off + length] for off, length in
                       zip(batch["offset"].tolist(), batch["length"].tolist(), strict=True)]
            bufs = pool.take(len(batch))
            offsets = bufs["offset"].tolist()
            out = Output()
            written = self.device.send_batch_into(
                packets, self.now(), out, mem, [o + IP_UDP for o in offsets], room)
            red_in.release(batch)            # after sealing: the views above read red buffers
            filled = self._headers_into(written, offsets, bufs)
            self._ship(black_out, pool, bufs, filled)
            self._emit(out)

    # -- black -> red --------------------------------------------------------------------------
    def _open_black(self) -> None:
        """Open black datagrams in batches: each transport message is decrypted from its black
        buffer straight into a red buffer (``Device.receive_into``), which goes up as it is;
        what else comes out (handshake replies, a packet too big for a buffer) is emitted after
        the batch."""
        red_pool, size = self.red_pool, self.red_pool.ledger.buffer_size
        while True:
            room = min(self.red_out.space(), len(red_pool), self.black_out.space())
            if room <= 0:
                return
            batch = self.black_in.receive(min(room, self.batch))
            if not len(batch):
                return
            self.frames_in += len(batch)
            data, red = self.black_in_mem, self.red_mem
            bufs = red_pool.take(len(batch))
            offsets = bufs["offset"].tolist()
            lengths: list[int] = []          # of the red buffers filled, in order
            out = Output()
            now = self.now()
            for off, length in zip(batch["offset"].tolist(), batch["length"].tolist(),
                                   strict=True):
                at = offsets[len(lengths)]
                opened = self._datagram(data[off:off + length], now, out, red[at:at + size])
                if opened:
                    lengths.append(opened)
            self.black_in.release(batch)     # after opening: the views above read black buffers
            bufs["length"][:len(lengths)] = lengths
            self._ship(self.red_out, red_pool, bufs, len(lengths))
            self._emit(out)

    def _datagram(self, frame: memoryview, now: int, out: Output, into: memoryview) -> int:
        """Take the UDP payload of a bare IPv4 packet sent to our address and port; returns the
        length of the packet it delivered into ``into`` (0 if none)."""
        n = len(frame)
        if n < IP_UDP or frame[0] >> 4 != 4:
            self._lose("not_ipv4_udp")
            return 0
        ihl = (frame[0] & 0x0F) * 4
        head = bytes(frame[:ihl + 8])
        total = int.from_bytes(head[2:4], "big")
        if ihl < 20 or n < ihl + 8 or head[9] != 17 or total > n or total < ihl + 8 or \
                int.from_bytes(head[6:8], "big") & 0x3FFF:       # fragments: not ours to join
            self._lose("not_ipv4_udp")
            return 0
        if head[16:20] != self.address or int.from_bytes(head[ihl + 2:ihl + 4], "big") \
                != self.listen_port:
            self._lose("not_for_us")
            return 0
        raw = head[12:16]
        host = self._names.get(raw)
        if host is None:
            if len(self._names) > 4096:
                self._names.clear()
            host = self._names[raw] = str(ipaddress.IPv4Address(raw))
        source = (host, int.from_bytes(head[ihl:ihl + 2], "big"))
        payload = frame[ihl + 8:total]
        if payload[:1] != b"\x02":
            return self.device.receive_into(payload, source, now, out, into)
        if "response_in" not in self.marks:
            self.marks["response_in"] = now
        started = {p: p.handshake_started for p in self.device.peers.values()
                   if p.handshake_started is not None}
        self.device.receive(bytes(payload), source, now, out)
        for peer, start in started.items():
            if peer.handshake_started is None:      # completed, keys in use: time it
                self.handshakes_ns.append(self.now() - start)
        return 0

    # -- output --------------------------------------------------------------------------------
    def _emit(self, out: Output) -> None:
        if out.datagrams:
            self._send_datagrams(out.datagrams)
        if out.packets:
            self._send_packets(out.packets)

    def _send_datagrams(self, datagrams: list) -> None:
        bufs = self.black_pool.take(min(len(datagrams), self.black_out.space()))
        mem = self.black_mem
        offsets = bufs["offset"].tolist()
        room = self.black_pool.ledger.buffer_size - IP_UDP
        written = []
        for endpoint, payload in datagrams[:len(bufs)]:
            if len(payload) > room:
                written.append((endpoint, None))
                continue
            off = offsets[len(written)] + IP_UDP
            mem[off:off + len(payload)] = payload
            written.append((endpoint, len(payload)))
        if len(datagrams) > len(bufs):
            self._lose("black_full", len(datagrams) - len(bufs))
        self._ship(self.black_out, self.black_pool, bufs,
                   self._headers_into(written, offsets, bufs))
        if len(self.marks) < len(MARKS):
            kinds = {payload[:1] for _, payload in datagrams}
            for kind, mark in ((b"\x01", "initiation_out"), (b"\x04", "data_out")):
                if kind in kinds and mark not in self.marks:
                    self.marks[mark] = self.now()
            if "initiation_out" in self.marks and "staged" not in self.marks:
                started = [p.handshake_started for p in self.device.peers.values()
                           if p.handshake_started is not None]
                if started:
                    self.marks["staged"] = min(started)

    def _headers_into(self, written: list, offsets: list, bufs) -> int:
        """Put the IPv4/UDP header in front of each WireGuard message ``written`` [(endpoint,
        length)] at ``offsets[i] + IP_UDP``; frames that cannot go (an endpoint that is not
        IPv4, a message too big for a buffer: length None) are dropped and the rest packed to
        the front of ``bufs``. Returns how many frames of ``bufs`` are filled."""
        mem, headers = self.black_mem, self._headers
        src, udp_sum = self.address, self.udp_checksum
        n = len(written)
        if n > 1 and not udp_sum and written.count(written[0]) == n and written[0][1] is not None:
            endpoint, length = written[0]    # one flow, one size (a flood): one header for all
            header = headers.get((endpoint, IP_UDP + length)) or \
                self._header(endpoint, IP_UDP + length)
            if header is not None:
                self.black_array[np.array(offsets[:n])[:, None] + _HEADER_COLUMNS] = \
                    np.frombuffer(header, np.uint8)
                bufs["length"][:n] = IP_UDP + length
                return n
        lengths = []
        filled = 0
        for i, (endpoint, length) in enumerate(written):
            if length is None:
                self._lose("too_big")
                continue
            total = IP_UDP + length
            header = headers.get((endpoint, total))
            if header is None:
                header = self._header(endpoint, total)
                if header is None:
                    self._lose("endpoint_not_ipv4")
                    continue
            off = offsets[i]
            if filled != i:                  # an earlier frame was dropped: move this one up
                to = offsets[filled]
                mem[to + IP_UDP:to + total] = mem[off + IP_UDP:off + total]
                off = to
            if udp_sum:          # RFC 768: zero means "no checksum", allowed over IPv4
                header = header[:26] + udp_checksum(
                    src, header[16:20], header[20:] + mem[off + IP_UDP:off + total]
                ).to_bytes(2, "big")
            mem[off:off + IP_UDP] = header
            lengths.append(total)
            filled += 1
        bufs["length"][:filled] = lengths
        return filled

    def _header(self, endpoint, total: int) -> bytes | None:
        """The IPv4 + UDP header (UDP checksum 0) for a datagram of ``total`` bytes, cached."""
        dst = self._ipv4(endpoint[0])
        if dst is None:
            return None
        ip = bytearray(_IPV4.pack(0x45, 0, total, 0, 0x4000, 64, 17, 0, self.address, dst))
        ip[10:12] = checksum(ip).to_bytes(2, "big")
        header = bytes(ip) + _UDP.pack(self.listen_port, endpoint[1], total - 20, 0)
        if len(self._headers) > 4096:
            self._headers.clear()
        self._headers[(endpoint, total)] = header
        return header

    def _ipv4(self, host: str) -> bytes | None:
        packed = self._hosts.get(host)
        if packed is None:
            try:
                packed = ipaddress.IPv4Address(host).packed
            except ValueError:
                return None
            if len(self._hosts) > 4096:
                self._hosts.clear()
            self._hosts[host] = packed
        return packed

    def _send_packets(self, packets: list) -> None:
        """Opened packets that did not go straight into a red buffer: copied into one each; one
        longer than a buffer (a peer's larger MTU) is dropped as ``too_big``."""
        size = self.red_pool.ledger.buffer_size
        fitting = [p for p in packets if len(p) <= size]
        if len(fitting) < len(packets):
            self._lose("too_big", len(packets) - len(fitting))
        bufs = self.red_pool.take(min(len(fitting), self.red_out.space()))
        mem = self.red_mem
        offsets = bufs["offset"].tolist()
        for i, packet in enumerate(fitting[:len(bufs)]):
            off = offsets[i]
            mem[off:off + len(packet)] = packet
            bufs["length"][i] = len(packet)
        if len(fitting) > len(bufs):
            self._lose("red_full", len(fitting) - len(bufs))
        self._ship(self.red_out, self.red_pool, bufs, len(bufs))

    def _ship(self, queue, pool, bufs, filled: int) -> None:
        if filled:
            bufs["timestamp"][:filled] = self.now()
            sent = queue.send(bufs[:filled])
            self.frames_out += sent
            if sent < filled:
                self._lose("output_full", filled - sent)
                pool.give(bufs[sent:filled])
        pool.give(bufs[filled:])

    def _lose(self, reason: str, n: int = 1) -> None:
        self.lost[reason] = self.lost.get(reason, 0) + n

    def _arm(self) -> None:
        deadline = self.device.next_deadline()
        if deadline != self.deadline:
            self.deadline = deadline
            if deadline is None:
                self.cancel_timer(TIMER)
            else:
                self.set_timer(deadline, TIMER)

    # -- conservation --------------------------------------------------------------------------
    def _sync_counters(self) -> None:
        c = self.device.counters
        created = c.get("initiation_sent", 0) + c.get("keepalive_sent", 0) + \
            c.get("handshake_reply_sent", 0)
        consumed = sum(v for k, v in c.items() if k.startswith("handshake.")
                       and k != "handshake.malformed")
        counters = self.counters
        for key in [k for k in counters if k.startswith("dropped.")]:
            del counters[key]
        counters["created"] = created
        counters["in"] = self.frames_in + created
        counters["out"] = self.frames_out
        counters["pending"] = sum(len(p.staged) for p in self.device.peers.values())
        for key, value in c.items():
            if key.startswith("dropped."):
                counters[key] = counters.get(key, 0) + value
        for reason, value in self.lost.items():
            self.drop(reason, value)
        if consumed:
            self.drop("handshake_consumed", consumed)
        if c.get("keepalive_received"):
            self.drop("keepalive_consumed", c["keepalive_received"])
