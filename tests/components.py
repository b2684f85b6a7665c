"""Small well-behaved components used by the harness tests."""

from __future__ import annotations

import os
import socket
import struct

import numpy as np

from harness import Component, ProtectedCallError
from harness.forward import Forward
from harness.origin import Origin


class Callee(Component):
    """Answers protected calls: doubles ``x``; counts notifications."""

    def init(self) -> None:
        self.wakeups = 0
        self.calls = 0

    def protected(self, channel, msg):
        self.calls += 1
        if channel == "control":
            return {"calls": self.calls, "wakeups": self.wakeups, "echo": msg}
        if not isinstance(msg, dict) or "x" not in msg:
            raise ProtectedCallError("expected {'x': number}")
        return {"doubled": msg["x"] * 2, "from": self.name}

    def notified(self, channel) -> None:
        self.wakeups += 1
        print(f"notified on {channel.name}", flush=True)

    def stats(self) -> dict:
        return {"calls": self.calls, "wakeups": self.wakeups}


class Caller(Component):
    """Calls its peer at init, prints the answers, notifies it, and tries a bad call."""

    def init(self) -> None:
        channel = next(iter(self.channels.values()))
        print(f"reply {self.ppcall(channel, {'x': 21})}", flush=True)
        try:
            self.ppcall(channel, {"y": 1})
        except ProtectedCallError as exc:
            print(f"refused {exc}", flush=True)
        channel.notify()
        self.set_timer(self.now() + 20_000_000, "done")

    def timeout(self, token) -> None:
        self.finish()


class KeepsCalling(Component):
    """Calls its peer every 2 ms and counts the answers and the failures."""

    def init(self) -> None:
        self.channel = next(iter(self.channels.values()))
        self.set_timer(self.now(), "call")

    def timeout(self, token) -> None:
        try:
            self.ppcall(self.channel, {"x": 1})
            self.count("answered")
        except ProtectedCallError:
            self.count("call_failed")
        self.set_timer(self.now() + 2_000_000, "call")


class CallsUpward(Component):
    """Holds the callee end of a channel but tries to call through it (not granted)."""

    def init(self) -> None:
        try:
            self.ppcall(next(iter(self.channels)), {"x": 1})
            print("call went through", flush=True)
        except ProtectedCallError as exc:
            print(f"no call: {exc}", flush=True)


class Crasher(Component):
    """Raises from init, so the supervisor sees a fault and applies the restart policy."""

    def init(self) -> None:
        raise RuntimeError(f"{self.name} crashed on purpose")


class CrashingForward(Forward):
    """A pass-through whose first incarnation dies holding frames it just received."""

    def notified(self, channel) -> None:
        if self.incarnation == 0 and self.counters.get("in", 0) >= self.config["crash_after"]:
            held = self.inputs[0].receive()
            if len(held):
                raise RuntimeError(f"crashing while holding {len(held)} frames")
        super().notified(channel)


class IdleConsumer(Component):
    """Takes nothing off its queues."""


class DiodeScribbler(Component):
    """The consumer end of a diode that tries to write into the diode's ring region."""

    def init(self) -> None:
        import ctypes  # noqa: F401  (already loaded by numpy; no file access needed)
        q = next(iter(self.queues.values()))
        print(f"ring mapping writable: {q.rings.array.flags.writeable}", flush=True)
        ctypes.memset(q.rings.array.ctypes.data, 0xFF, 64)
        print("scribbled the diode", flush=True)


class DeviceEcho(Component):
    """Copies its read device to its write device, upper-cased, then finishes."""

    def init(self) -> None:
        source = next(d for d in self.devices if d.mode == "r")
        sink = next(d for d in self.devices if d.mode == "w")
        data = os.read(source.fd, 1 << 16)
        os.write(sink.fd, data.upper())
        print(f"copied {len(data)} bytes from {source.path}", flush=True)
        self.finish()


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class TapProbe(Origin):
    """Talks to the kernel through a TAP driver with hand-made frames: ARP for the kernel's
    address, then an ICMP echo; prints what the kernel answers. With ``tun = true`` it speaks
    bare IPv4 (a TUN driver): the echo at once, no Ethernet, no ARP."""

    MAC = bytes.fromhex("020000000002")

    def init(self) -> None:
        super().init()
        self.rx = next(q for q in self.queues.values() if q.role == "consumer")
        self.me = socket.inet_aton(self.config["address"])
        self.peer = socket.inet_aton(self.config["peer"])
        self.peer_mac = None
        self.tun = bool(self.config.get("tun", False))
        if self.tun:
            self._send(self._echo())
            return
        arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, self.MAC, self.me,
                          b"\0" * 6, self.peer)
        self._send(b"\xff" * 6 + self.MAC + b"\x08\x06" + arp)

    def _send(self, frame: bytes) -> None:
        batch = self.pool.take(1)
        offset = int(batch["offset"][0])
        self.out.data.array[offset:offset + len(frame)] = np.frombuffer(frame, np.uint8)
        batch["length"] = len(frame)
        sent = self.out.send(batch)
        for key in ("entered", "in", "out"):     # an endpoint: frames begin here
            self.count(key, sent)

    def notified(self, channel) -> None:
        if channel != self.rx.name:
            return super().notified(channel)
        batch = self.rx.receive()
        for offset, length in zip(batch["offset"].tolist(), batch["length"].tolist(),
                                  strict=True):
            self._frame(bytes(self.rx.data.array[offset:offset + length]))
        for key in ("in", "out", "left"):        # an endpoint: frames end here
            self.count(key, len(batch))
        self.rx.release(batch)

    def _echo(self) -> bytes:
        """An IPv4 ICMP echo request to the peer."""
        icmp = struct.pack("!BBHHH", 8, 0, 0, 0x4242, 1) + b"capnet-probe"
        icmp = icmp[:2] + struct.pack("!H", _checksum(icmp)) + icmp[4:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 1, 0, 64, 1, 0,
                         self.me, self.peer)
        return ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:] + icmp

    def _frame(self, frame: bytes) -> None:
        if self.tun:    # bare IPv4: pretend an Ethernet header for the parsing below
            frame = b"\0" * 12 + b"\x08\x00" + frame
        kind = frame[12:14]
        if kind == b"\x08\x06" and frame[20:22] == b"\x00\x02" and frame[28:32] == self.peer:
            self.peer_mac = frame[22:28]
            print(f"ARP reply: {socket.inet_ntoa(self.peer)} is at {self.peer_mac.hex(':')}",
                  flush=True)
            self._send(self.peer_mac + self.MAC + b"\x08\x00" + self._echo())
        elif kind == b"\x08\x00" and frame[23] == 1 and frame[34] == 0:
            ident, seq = struct.unpack("!HH", frame[38:42])
            print(f"echo reply from {socket.inet_ntoa(frame[26:30])} id {ident:#x} seq {seq} "
                  f"payload {frame[42:].decode(errors='replace')}", flush=True)
