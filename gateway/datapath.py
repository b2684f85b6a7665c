"""``gateway.datapath:Gateway`` — the GATEWAY component: WireGuard's data path between a red
queue pair (bare IP packets, plaintext) and a black queue pair (bare IPv4/UDP packets for a
TUN-mode NIC, ciphertext).

It never sees the private key: handshakes go to the key component (``gateway.keys:KeyStore``)
by protected call on the channel named by ``config.keys`` (default ``"keys"``), which answers
with session keys only (``RemoteHandshaker``). The peers' public configuration comes from the
same call at ``init``.

Queues (names configurable): ``red_in`` (consumed: packets to seal), ``red_out`` (produced:
opened packets, buffers of a region this component originates), ``black_in`` (consumed:
IPv4/UDP datagrams addressed to ``address:listen_port``), ``black_out`` (produced). Frames
are taken in batches; each is sealed (or opened) from its input buffer and written once into
an output buffer, and the input batch goes back at once.

Config: ``address`` (our black-side IPv4 source address, required), ``listen_port`` (default:
the config's ListenPort, else 51820), ``mtu`` (1420), ``load_threshold`` (handshake messages
per second above which we are under load and answer with cookie replies; default 128),
``timing`` (a table of ``Timing`` fields in seconds, e.g. ``{ rekey_after_time = 3 }``, to
shorten the protocol's timers for tests), ``udp_checksum`` (false: RFC 768 lets IPv4 senders
leave it zero, and it costs as much as the encryption in Python; true: computed).

Black frames are built whole: IPv4 header (checksummed, DF, TTL 64) + UDP header + WireGuard
message. Sealing cannot be in place here: plaintext and ciphertext live in different regions
(red and black share no memory), so each frame crosses from one region to the other.

Counters: ``in`` = frames taken from both sides + frames created (initiations, keepalives,
handshake replies; also counted as ``created``); ``out`` = frames handed to an output queue;
handshake messages and keepalives the protocol consumes count as ``dropped.handshake_consumed``
/ ``dropped.keepalive_consumed``; packets waiting for a handshake are ``pending``. ``stats()``
adds the core's own counters and the CPU time spent sealing and opening (``busy_*_ns``).
"""

from __future__ import annotations

import ipaddress
import struct
import time

from gateway.wireguard.device import Device, Output
from gateway.wireguard.handshaker import Outcome
from gateway.wireguard.timers import SECOND, Timing
from harness import Component, ProtectedCallError

IP_UDP = 28
_IPV4 = struct.Struct(">BBHHHBBH4s4s")
_UDP = struct.Struct(">HHHH")
TIMER = "wg"


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


class RemoteHandshaker:
    """The ``Handshaker`` interface, answered by the key component over a protected call.

    If the key component cannot answer (restarting, or already stopped during an orderly
    shutdown), no handshake happens: ``initiate`` returns None and ``receive`` an outcome
    ``keys_unavailable``; sessions already made keep working.
    """

    def __init__(self, component: Component, channel: str) -> None:
        self.component, self.channel = component, channel

    def initiate(self, peer: bytes, now: int) -> bytes | None:
        try:
            return bytes(self.component.ppcall(self.channel, {"op": "initiate", "peer": peer}))
        except ProtectedCallError:
            return None

    def receive(self, datagram: bytes, source: bytes, now: int, under_load: bool) -> Outcome:
        try:
            reply = self.component.ppcall(self.channel, {
                "op": "receive", "datagram": datagram, "source": source,
                "under_load": under_load})
        except ProtectedCallError:
            return Outcome("keys_unavailable")
        return Outcome.from_wire(reply)


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
        self.device = Device([_PeerView(p) for p in public["peers"]],
                             RemoteHandshaker(self, channel),
                             timing=_timing(dict(cfg.get("timing", {}))),
                             mtu=int(cfg.get("mtu", 1420)),
                             load_threshold=int(cfg.get("load_threshold", 128)))
        self.frames_in = self.frames_out = 0
        self.busy_seal = self.busy_open = 0       # CPU ns spent sealing / opening batches
        self.lost: dict[str, int] = {}
        self.deadline: int | None = None
        self.udp_checksum = bool(cfg.get("udp_checksum", False))
        self._hosts: dict[str, bytes] = {}
        self._names: dict[bytes, str] = {}
        self._headers: dict = {}
        self.red_mem = memoryview(self.red_out.data.mem)
        self.black_mem = memoryview(self.black_out.data.mem)
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

    def timeout(self, token) -> None:
        self.deadline = None
        self._emit(self.device.tick(self.now()))
        self._arm()

    def stop(self) -> None:
        self._sync_counters()

    def stats(self) -> dict:
        self._sync_counters()
        peers = {}
        for p in self.device.peers.values():
            peers[p.public_key.hex()[:16]] = {
                "endpoint": list(p.endpoint) if p.endpoint else None, "handshakes": p.handshakes,
                "rx_bytes": p.rx_bytes, "tx_bytes": p.tx_bytes, "staged": len(p.staged)}
        return {"wireguard": dict(self.device.counters), "peers": peers,
                "busy_seal_ns": self.busy_seal, "busy_open_ns": self.busy_open}

    # -- red -> black --------------------------------------------------------------------------
    def _seal_red(self) -> None:
        while True:
            room = min(self.black_out.space(), len(self.black_pool))
            if room <= 0:
                return
            batch = self.red_in.receive(min(room, 64))
            if not len(batch):
                return
            self.frames_in += len(batch)
            data = self.red_in_mem
            packets = [bytes(data[off:off + length]) for off, length in
                       zip(batch["offset"].tolist(), batch["length"].tolist(), strict=True)]
            self.red_in.release(batch)
            out = Output()
            self.device.send_batch(packets, self.now(), out)
            self._emit(out)

    # -- black -> red --------------------------------------------------------------------------
    def _open_black(self) -> None:
        while True:
            room = min(self.red_out.space(), len(self.red_pool), self.black_out.space())
            if room <= 0:
                return
            batch = self.black_in.receive(min(room, 64))
            if not len(batch):
                return
            self.frames_in += len(batch)
            data = self.black_in_mem
            out = Output()
            now = self.now()
            for off, length in zip(batch["offset"].tolist(), batch["length"].tolist(),
                                   strict=True):
                self._datagram(data[off:off + length], now, out)
            self.black_in.release(batch)
            self._emit(out)

    def _datagram(self, frame: memoryview, now: int, out: Output) -> None:
        """Take the UDP payload of a bare IPv4 packet sent to our address and port."""
        n = len(frame)
        if n < IP_UDP or frame[0] >> 4 != 4:
            self._lose("not_ipv4_udp")
            return
        ihl = (frame[0] & 0x0F) * 4
        head = bytes(frame[:ihl + 8])
        total = int.from_bytes(head[2:4], "big")
        if ihl < 20 or n < ihl + 8 or head[9] != 17 or total > n or total < ihl + 8 or \
                int.from_bytes(head[6:8], "big") & 0x3FFF:       # fragments: not ours to join
            self._lose("not_ipv4_udp")
            return
        if head[16:20] != self.address or int.from_bytes(head[ihl + 2:ihl + 4], "big") \
                != self.listen_port:
            self._lose("not_for_us")
            return
        raw = head[12:16]
        host = self._names.get(raw)
        if host is None:
            if len(self._names) > 4096:
                self._names.clear()
            host = self._names[raw] = str(ipaddress.IPv4Address(raw))
        source = (host, int.from_bytes(head[ihl:ihl + 2], "big"))
        self.device.receive(bytes(frame[ihl + 8:total]), source, now, out)

    # -- output --------------------------------------------------------------------------------
    def _emit(self, out: Output) -> None:
        if out.datagrams:
            self._send_datagrams(out.datagrams)
        if out.packets:
            self._send_packets(out.packets)

    def _send_datagrams(self, datagrams: list) -> None:
        bufs = self.black_pool.take(min(len(datagrams), self.black_out.space()))
        mem = self.black_mem
        src, udp_sum = self.address, self.udp_checksum
        offsets = bufs["offset"].tolist()
        lengths = []
        filled = 0
        headers = self._headers
        for endpoint, payload in datagrams[:len(bufs)]:
            total = IP_UDP + len(payload)
            header = headers.get((endpoint, total))
            if header is None:
                header = self._header(endpoint, total)
                if header is None:
                    self._lose("endpoint_not_ipv4")
                    continue
            off = offsets[filled]
            if udp_sum:          # RFC 768: zero means "no checksum", allowed over IPv4
                dst = header[16:20]
                header = header[:26] + udp_checksum(src, dst, header[20:] + payload).to_bytes(
                    2, "big")
            mem[off:off + IP_UDP] = header
            mem[off + IP_UDP:off + total] = payload
            lengths.append(total)
            filled += 1
        bufs["length"][:filled] = lengths
        if len(datagrams) > len(bufs):
            self._lose("black_full", len(datagrams) - len(bufs))
        self._ship(self.black_out, self.black_pool, bufs, filled)

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
        bufs = self.red_pool.take(min(len(packets), self.red_out.space()))
        mem = self.red_mem
        offsets = bufs["offset"].tolist()
        for i, packet in enumerate(packets[:len(bufs)]):
            off = offsets[i]
            mem[off:off + len(packet)] = packet
            bufs["length"][i] = len(packet)
        if len(packets) > len(bufs):
            self._lose("red_full", len(packets) - len(bufs))
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
