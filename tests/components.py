"""Small well-behaved components used by the harness tests."""

from __future__ import annotations

import os

from harness import Component, ProtectedCallError
from harness.forward import Forward


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
