"""The per-component event loop: one entry point at a time, spin-then-block waiting.

The loop follows sDDF's signalling protocol on every incoming ring: drain, request a signal,
re-check, and only then sleep (``QueueEnd.arm``). A queue whose component left frames on it
(e.g. its downstream ring was full) is *stalled*: it is not offered again until some notification
arrives, so a blocked pipeline sleeps instead of spinning.

A component described with ``wait = "poll"`` busy-polls instead, as DPDK's poll-mode drivers
do: it never asks for a signal and never sleeps, so no peer pays for waking it and no frame
waits for a wake-up (on a VM, where waking a halted CPU costs ~100 µs, that is most of a hop's
latency). Between looks it yields the CPU (``sched_yield``), so pollers and other programs that
share a core take turns instead of waiting for the scheduler's time slice. It costs a whole CPU
per poller; DESIGN.md's spin-then-block stays the default for that reason.
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import sys
import time
import traceback

import numpy as np

from harness import messages
from harness.runtime import Channel, Component, ProtectedCallError
from shmring.descriptor import descriptors
from shmring.notify import Waiter, drain, signal

SPIN_NS = 50_000
SETTLE_NS = 200_000
LOOK_EVERY_NS = 1_000_000   # while busy, how often to look at the control socket, calls, devices     # how soon to retry releasing buffers the free ring had no room for


class Runtime:
    def __init__(self, component: Component, control: socket.socket, channels: dict[str, Channel],
                 serve_socks: dict[str, socket.socket], wait_fds: dict[str, int],
                 ledgers: dict, device_fds: dict[str, int] | None = None,
                 poll: bool = False) -> None:
        self.component = component
        self.poll = poll                    # busy-poll: never arm, never block
        self.control = control
        self.channels = channels
        self.serve_socks = serve_socks      # channel name -> socket on which lower PDs call us
        self.wait_fds = wait_fds            # channel name -> eventfd we are notified on
        self.ledgers = ledgers
        self.device_fds = device_fds or {}  # channel name -> device fd (read by the component)
        self.queues = component.queues
        self._deferred: dict[str, Channel] = {}
        self._timers: list[tuple[int, int, object]] = []
        self._timer_live: dict[object, int] = {}
        self._seq = itertools.count()
        self._stopping = False
        self._stalled: set[str] = set()
        self._waiter: Waiter | None = None
        self._cpu_start = time.process_time_ns()
        self._unwatched: set[str] = set()        # devices whose readiness wakes nothing now
        self.control_channel = Channel("control", "control", "supervisor", self)

    # -- services used by Component -------------------------------------------------------------
    def defer_notify(self, channel: Channel) -> None:
        self._deferred[channel.name] = channel

    def set_timer(self, deadline_ns: int, token: object) -> None:
        seq = next(self._seq)
        self._timer_live[token] = seq
        heapq.heappush(self._timers, (int(deadline_ns), seq, token))

    def cancel_timer(self, token: object) -> None:
        self._timer_live.pop(token, None)

    def finish(self) -> None:
        messages.send(self.control, {"ev": "finished"})

    def ppcall(self, channel: Channel | str, msg: object) -> object:
        ch = self.channels.get(channel if isinstance(channel, str) else channel.name)
        if ch is None or ch.call_sock is None:
            raise ProtectedCallError(f"no protected-call grant on channel '{channel}'")
        data = messages.pack(msg)
        if len(data) > messages.PPCALL_MAX:
            raise ProtectedCallError(f"message of {len(data)} bytes exceeds {messages.PPCALL_MAX}")
        self._flush()   # a call ends this PD's turn, as seL4's call does: deliver notifications
        try:
            ch.call_sock.send(data)
            reply = messages.unpack(ch.call_sock.recv(messages.PPCALL_MAX + 64) or b"\xc0")
        except OSError as exc:
            raise ProtectedCallError(f"protected call on '{ch.name}' failed: {exc}") from None
        if not isinstance(reply, dict):
            raise ProtectedCallError(f"'{ch.peer}' did not answer the call on '{ch.name}'")
        if "error" in reply:
            raise ProtectedCallError(f"'{ch.peer}': {reply['error']}")
        return reply.get("ok")

    def watch_device(self, name: str, watched: bool) -> None:
        """Wake (or stop waking) the component when device ``name`` is readable."""
        fd = self.device_fds[name]
        if watched == (name in self._unwatched):
            if watched:
                self._unwatched.discard(name)
                self._waiter.register(fd, ("device", name))
            else:
                self._unwatched.add(name)
                self._waiter.unregister(fd)

    # -- statistics ----------------------------------------------------------------------------
    def snapshot(self) -> dict:
        comp = self.component
        try:
            extra = comp.stats()
        except Exception as exc:   # a broken stats() must not take the component down
            extra = {"stats_error": repr(exc)}
        return {
            "counters": dict(comp.counters),
            "queues": {name: q.stats() for name, q in self.queues.items()},
            "held": {name: int(ledger.held_count()) for name, ledger in self.ledgers.items()},
            "cpu_ns": time.process_time_ns() - self._cpu_start,   # CPU used since init ended
            "extra": extra,
        }

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> int:
        waiter = self._waiter = Waiter()
        for name, fd in self.wait_fds.items():
            waiter.register(fd, ("notify", name))
        for name, sock in self.serve_socks.items():
            waiter.register(sock.fileno(), ("call", name))
        for name, fd in self.device_fds.items():
            waiter.register(fd, ("device", name))
        waiter.register(self.control.fileno(), ("control", None))
        if not self._entry(self.component.init):
            return 1
        self._cpu_start = time.process_time_ns()
        looked = time.monotonic_ns()
        spun = False
        while not self._stopping:
            self._fire_timers()
            if self._stopping:
                break
            if time.monotonic_ns() - looked >= LOOK_EVERY_NS:
                # a steady stream (or a spin that always finds work) must not starve the
                # control socket, protected calls and devices: look at them now and then
                looked = time.monotonic_ns()
                if not self._dispatch_all(waiter.ready()):
                    return 1
                continue
            if self._offer_queues():
                spun = False
                continue
            timeout = self._timeout_ns()
            if self.poll:
                if not self._poll(waiter, timeout):
                    return 1
                looked = time.monotonic_ns()
                continue
            if self._settle():      # released buffers wait for room: look again soon
                timeout = SETTLE_NS if timeout is None else min(timeout, SETTLE_NS)
            if not spun and SPIN_NS and timeout != 0:
                # spin before asking for signals: a peer then has no eventfd to write while
                # this end is awake anyway (on a VM a write that wakes a halted CPU is dear)
                spun = True
                budget = SPIN_NS if timeout is None else min(SPIN_NS, timeout)
                if waiter.spin(budget, self._any_pending):
                    spun = False
                continue
            if self._arm_all():
                spun = False
                continue
            keys = waiter.wait(timeout, 0)
            spun = False
            self._stalled.clear()       # news, or a bounded sleep ended: offer everything again
            if keys:
                looked = time.monotonic_ns()
            if not self._dispatch_all(keys):
                return 1
        return 0

    def _poll(self, waiter: Waiter, timeout: int | None) -> bool:
        """One look of a polling component: until a ring has work, an fd is ready or a timer is
        due, look again, yielding the CPU in between; then serve what the fds brought. Every
        look asks epoll too, so a busy ring cannot keep a readable device waiting."""
        self._settle()
        budget = LOOK_EVERY_NS if timeout is None else min(timeout, LOOK_EVERY_NS)
        ready: list = []

        def look() -> bool:
            ready[:] = waiter.ready()
            return bool(ready) or self._any_pending()

        waiter.spin(budget, look, yield_cpu=True)
        self._stalled.clear()       # news, or a while passed: offer everything again
        return self._dispatch_all(ready)

    def _dispatch_all(self, keys: list) -> bool:
        for kind, name in keys:
            if self._stopping:          # the final counters are taken: run nothing more
                break
            if not self._dispatch(kind, name):
                return False
        return True

    def _incoming(self):
        return self.queues.values()

    def _offer_queues(self, frames_only: bool = False) -> bool:
        """Hand the component what waits on its incoming rings (with ``frames_only``, filled
        buffers only: returned empties would let an origin go on producing)."""
        worked = False
        for q in self._incoming():
            if q.name in self._stalled or (frames_only and q.role != "consumer"):
                continue
            if not q.pending():
                continue
            worked = True
            before = q.taken()
            self._entry(self.component.notified, self.channels[q.name])
            if q.taken() == before:     # the component left everything there: wait for news
                self._stalled.add(q.name)
        return worked

    def _arm_all(self) -> bool:
        ready = False
        for q in self._incoming():
            if q.role == "producer" and not q.want_returns:
                continue
            if q.arm() and q.name not in self._stalled:
                q.disarm()
                ready = True
        return ready

    def _settle(self) -> int:
        waiting = sum(q.settle() for q in self.queues.values() if q.role == "consumer")
        self._flush()
        return waiting

    def _any_pending(self) -> bool:
        return any(q.pending() for q in self._incoming() if q.name not in self._stalled)

    def _timeout_ns(self) -> int | None:
        while self._timers and self._timer_live.get(self._timers[0][2]) != self._timers[0][1]:
            heapq.heappop(self._timers)
        if not self._timers:
            return None
        return max(0, self._timers[0][0] - time.monotonic_ns())

    def _fire_timers(self) -> None:
        now = time.monotonic_ns()
        while self._timers and self._timers[0][0] <= now:
            _deadline, seq, token = heapq.heappop(self._timers)
            if self._timer_live.get(token) != seq:
                continue
            del self._timer_live[token]
            self._entry(self.component.timeout, token)

    def _dispatch(self, kind: str, name: str | None) -> bool:
        if kind == "notify":
            drain(self.wait_fds[name])
            return self._entry(self.component.notified, self.channels[name])
        if kind == "device":
            return self._entry(self.component.notified, self.channels[name])
        if kind == "call":
            return self._serve_call(name)
        return self._control()

    def _serve_call(self, name: str) -> bool:
        sock = self.serve_socks[name]
        try:
            data = sock.recv(messages.PPCALL_MAX + 1)
        except BlockingIOError:
            return True
        if not data:    # the caller is gone; stop listening on this channel
            self._waiter.unregister(sock.fileno())
            return True
        if len(data) > messages.PPCALL_MAX:
            sock.send(messages.pack({"error": f"message exceeds {messages.PPCALL_MAX} bytes"}))
            return True
        try:
            msg = messages.unpack(data)
        except messages.MessageError as exc:
            sock.send(messages.pack({"error": str(exc)}))
            return True
        return self._answer(sock, self.channels[name], msg, messages.PPCALL_MAX)

    def _answer(self, sock: socket.socket, channel: Channel, msg: object, limit: int) -> bool:
        result: dict = {}
        ok = self._entry(self._protected_into, channel, msg, result)
        reply = result.get("reply", {"error": "the component failed while answering"})
        data = messages.pack(reply)
        if len(data) > limit:
            data = messages.pack({"error": f"reply of {len(data)} bytes exceeds {limit}"})
        sock.send(data)
        return ok

    def _protected_into(self, channel: Channel, msg: object, result: dict) -> None:
        try:
            value = self.component.protected(channel, msg)
            messages.pack(value)
            result["reply"] = {"ok": value}
        except ProtectedCallError as exc:
            result["reply"] = {"error": str(exc)}
        except (TypeError, ValueError) as exc:
            result["reply"] = {"error": f"{type(exc).__name__}: {exc}"}

    def _control(self) -> bool:
        try:
            msg = messages.recv(self.control)
        except BlockingIOError:
            return True
        except EOFError:        # the supervisor is gone: nothing left to serve
            self._stopping = True
            return True
        if not isinstance(msg, dict):
            return True
        op, ident = msg.get("op"), msg.get("id")
        if op == "stats":
            messages.send(self.control, {"id": ident, "stats": self.snapshot()})
        elif op == "stop":
            # take in what is already on the incoming rings (a diode's backlog is invisible to
            # the supervisor: its consumer's head is private), then stop
            for _ in range(1000):
                self._stalled.clear()
                if not self._offer_queues(frames_only=True) or self._stalled:
                    break
            ok = self._entry(self.component.stop)
            self._settle()
            messages.send(self.control, {"id": ident, "stats": self.snapshot(), "final": True})
            self._stopping = True
            return ok
        elif op == "held":
            held = {name: ledger.held_indices().tolist() for name, ledger in self.ledgers.items()}
            messages.send(self.control, {"id": ident, "held": held})
        elif op == "adopt":
            self._adopt(str(msg.get("region")), msg.get("indices") or [])
            messages.send(self.control, {"id": ident, "adopted": True})
        elif op == "call":
            result: dict = {}
            ok = self._entry(self._protected_into, self.control_channel, msg.get("msg"), result)
            reply = result.get("reply", {"error": "the component failed while answering"})
            reply["id"] = ident
            messages.send(self.control, reply)
            return ok
        return True

    def _adopt(self, region: str, indices: list) -> None:
        """Take back buffers a dead peer held (the supervisor found them on no ring)."""
        ledger, pool = self.ledgers.get(region), self.component.pools.get(region)
        if ledger is None or pool is None:
            return
        index = np.asarray([i for i in indices if isinstance(i, int) and 0 <= i < ledger.nbuf],
                           dtype=np.int64)
        index = index[~ledger.held[index]]
        ledger.hold(index)
        batch = descriptors(len(index))
        batch["offset"] = index.astype(np.uint64) * np.uint64(ledger.buffer_size)
        pool.give(batch)
        self.component.count("buffers_recovered", len(index))
        for q in self.queues.values():      # tell the component, as a returned buffer would
            if q.role == "producer" and q.data.name == region:
                self._entry(self.component.notified, self.channels[q.name])

    # -- entry points --------------------------------------------------------------------------
    def _entry(self, fn, *args) -> bool:
        """Run one entry point, then deliver deferred notifications. A fault ends the process."""
        try:
            fn(*args)
        except Exception:
            self._fault()
            return False
        finally:
            self._flush()
        return True

    def _flush(self) -> None:
        for q in self.queues.values():
            q.flush()
        if self._deferred:
            for ch in self._deferred.values():
                if ch.kind == "queue":
                    self.queues[ch.name].flush(force=True)
                elif ch.notify_fd is not None:
                    signal(ch.notify_fd)
            self._deferred.clear()

    def _fault(self) -> None:
        text = traceback.format_exc()
        sys.stderr.write(text)
        sys.stderr.flush()
        try:
            messages.send(self.control, {"ev": "fault", "traceback": text[-8000:]})
        except OSError:
            pass
        os._exit(1)
