"""Supervise a running system: faults, restarts, live statistics, orderly shutdown.

Every component's death is seen at once through its pidfd. A fault is reported with the signal
or exit status and the component's last traceback (its own report, or the tail of its stderr),
then its restart policy applies; the other components keep running. Shutdown (Ctrl-C, SIGTERM,
end of input, ``--duration``, or ``capnet stop``) goes upstream to downstream: a component is
stopped only once every ring feeding it is empty, so counters are final and nothing is lost in
flight; then every process is reaped and every memfd closed.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import select
import signal
import time
from dataclasses import dataclass, field

from harness import messages
from harness.control import ControlServer
from harness.description import System
from harness.launcher import Build, Child, spawn
from shmring.queue import buffers_on_rings, occupancy

READY_TIMEOUT_S = 30.0
REPLY_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 15.0       # a component's last drain before its final counters may take longer
DRAIN_TIMEOUT_S = 5.0


@dataclass
class Record:
    """What the supervisor knows about one component."""

    name: str
    child: Child | None = None
    state: str = "starting"          # starting, running, finished, stopped, failed
    restarts: int = 0
    faults: list[dict] = field(default_factory=list)
    final: dict | None = None
    sandbox: dict | None = None
    launch_ns: int = 0
    tail: list[str] = field(default_factory=list)
    partial: dict[int, bytes] = field(default_factory=dict)
    last_report: str | None = None
    pids: list[int] = field(default_factory=list)
    cpu_s: float = 0.0               # user + system CPU time of every incarnation that ended


class Supervisor:
    def __init__(self, system: System, *, emit=print, control_path: str | None = None) -> None:
        self.system = system
        self.emit = emit                         # where component lines and reports go
        self.build: Build | None = None
        self.records = {name: Record(name) for name in system.components}
        self.epoll = select.epoll()
        self.keys: dict[int, tuple[str, str]] = {}
        self.replies: dict[tuple[str, int], dict] = {}
        self.ids = itertools.count(1)
        self.stop_reason: str | None = None
        self.control = ControlServer(control_path, system.name) if control_path != "" else None
        self.started_ns = 0
        self.launch_ns = 0
        self._signal_r, self._signal_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    # -- start ---------------------------------------------------------------------------------
    def start(self) -> None:
        t0 = time.monotonic_ns()
        if self.control:
            self.control.check_free()
        self.build = Build.create(self.system)
        self._watch(self._signal_r, "*", "signal")
        for name in self.system.components:
            self._launch(name)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while any(r.state == "starting" for r in self.records.values()):
            if time.monotonic() > deadline:
                late = [r.name for r in self.records.values() if r.state == "starting"]
                raise RuntimeError(f"components did not become ready: {', '.join(late)}")
            self.pump(0.05)
            failed = [r for r in self.records.values() if r.state == "failed"]
            if failed:
                raise RuntimeError(f"component '{failed[0].name}' failed to start:\n"
                                   + (failed[0].last_report or ""))
        for record in self.records.values():
            messages.send(record.child.control, {"op": "start"})
            record.state = "running"
        self.launch_ns = time.monotonic_ns() - t0
        if self.control:        # reachable once every component runs
            self.control.open()
            self._watch(self.control.sock.fileno(), "*", "control-server")
        self.started_ns = time.monotonic_ns()

    def _launch(self, name: str, resume: bool = False, hold: dict | None = None) -> None:
        record = self.records[name]
        child = spawn(self.build, name, resume, hold, record.restarts)
        record.child = child
        record.pids.append(child.pid)
        record.state = "starting"
        self._watch(child.pidfd, name, "death")
        self._watch(child.control.fileno(), name, "control")
        for stream, kind in ((child.process.stdout, "stdout"), (child.process.stderr, "stderr")):
            os.set_blocking(stream.fileno(), False)
            self._watch(stream.fileno(), name, kind)

    def _watch(self, fd: int, name: str, kind: str) -> None:
        self.keys[fd] = (name, kind)
        self.epoll.register(fd, select.EPOLLIN)

    def _unwatch(self, fd: int) -> None:
        if self.keys.pop(fd, None) is not None:
            try:
                self.epoll.unregister(fd)
            except (OSError, ValueError):
                pass

    # -- the event pump ------------------------------------------------------------------------
    def pump(self, timeout_s: float) -> None:
        for fd, _events in self.epoll.poll(timeout_s):
            key = self.keys.get(fd)
            if key is None:
                continue
            name, kind = key
            if kind == "death":
                self._died(name)
            elif kind == "control":
                self._from_component(name)
            elif kind in ("stdout", "stderr"):
                self._lines(name, kind, fd)
            elif kind == "control-server":
                self.control.serve_one(self)
            elif kind == "signal":
                try:
                    os.read(self._signal_r, 64)
                except BlockingIOError:
                    pass

    def _from_component(self, name: str) -> None:
        record = self.records[name]
        try:
            msg = messages.recv(record.child.control)
        except (EOFError, OSError, messages.MessageError):
            self._unwatch(record.child.control.fileno())
            return
        if not isinstance(msg, dict):
            return
        if "id" in msg:
            self.replies[(name, msg["id"])] = msg
        elif msg.get("ev") == "ready":
            record.sandbox = msg.get("sandbox")
            record.launch_ns = msg.get("launch_ns", 0)
            record.state = "ready"
        elif msg.get("ev") == "finished":
            record.state = "finished"
        elif msg.get("ev") == "fault":
            record.last_report = str(msg.get("traceback", ""))

    def _lines(self, name: str, kind: str, fd: int) -> bool:
        """Read once from a component's stdout/stderr; False when nothing more is there now."""
        record = self.records[name]
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return False
        if not data:
            self._unwatch(fd)
            rest = record.partial.pop(fd, b"")
            if rest:
                self._line(record, kind, rest)
            return False
        data = record.partial.pop(fd, b"") + data
        *lines, rest = data.split(b"\n")
        if rest:
            record.partial[fd] = rest
        for line in lines:
            self._line(record, kind, line)
        return True

    def _line(self, record: Record, kind: str, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace")
        if kind == "stderr":
            record.tail = (record.tail + [text])[-40:]
        self.emit(f"[{record.name}] {text}")

    def _died(self, name: str) -> None:
        record = self.records[name]
        child = record.child
        self._unwatch(child.pidfd)
        for stream in (child.process.stdout, child.process.stderr):
            self._drain_stream(name, stream)
        _pid, raw, usage = os.wait4(child.pid, 0)
        status = child.process.returncode = os.waitstatus_to_exitcode(raw)
        record.cpu_s += usage.ru_utime + usage.ru_stime
        os.close(child.pidfd)
        # what it sent before it exited (its final counters, above all) is still to be read:
        # the exit and the reply can come in one poll, the exit first
        control = child.control.fileno()
        while control in self.keys and select.select([child.control], [], [], 0)[0]:
            self._from_component(name)
        self._unwatch(control)
        child.control.close()
        if record.state in ("stopped",) or (status == 0 and self.stop_reason):
            record.state = "stopped"
            return
        fault = {"component": name, "pid": child.pid, "at_s": self._elapsed()}
        if status < 0:
            sig = signal.Signals(-status)
            fault["signal"] = sig.name
            fault["reason"] = _signal_reason(sig)
        else:
            fault["exit_status"] = status
            fault["reason"] = "exited" if status == 0 else "failed"
        fault["traceback"] = record.last_report or "\n".join(record.tail[-20:])
        record.faults.append(fault)
        record.last_report = None
        self._report_fault(fault)
        spec = self.system.components[name]
        again = spec.restart == "always" or (spec.restart == "on-failure" and status != 0)
        restarting = again and record.restarts < spec.max_restarts and not self.stop_reason
        recovered = self._recover_buffers(name, to_dead_origin=restarting)
        if restarting:
            record.restarts += 1
            self.emit(f"capnet: restarting '{name}' ({record.restarts}/{spec.max_restarts})")
            self._launch(name, resume=True, hold=recovered)
            deadline = time.monotonic() + READY_TIMEOUT_S
            while record.state == "starting" and time.monotonic() < deadline:
                self.pump(0.05)
            if record.state == "ready":
                messages.send(record.child.control, {"op": "start"})
                record.state = "running"
                return
        record.state = "failed" if status != 0 else "finished"

    # -- buffers a dead component held ---------------------------------------------------------
    def _recover_buffers(self, dead: str, to_dead_origin: bool) -> dict[str, list[int]]:
        """Give the buffers a dead component held back to their origin.

        A buffer is in limbo when it is on no ring and held by no live component. The census is
        taken twice and only buffers missing from both are recovered, so a buffer merely moving
        between a ring and a component is not mistaken for a lost one. Buffers whose origin is
        the dead component itself are returned (for its next incarnation to hold at launch);
        others are handed to their live origin with an ``adopt`` request."""
        regions = sorted({q.data for q in self.system.queues_of(dead)})
        for_dead: dict[str, list[int]] = {}
        for region in regions:
            first = self._limbo(region, dead)
            if not first:
                continue
            self.pump(0.02)
            lost = sorted(first & self._limbo(region, dead))
            for origin, (start, count) in self.system.initial_buffers(region).items():
                mine = [i for i in lost if start <= i < start + count]
                if not mine:
                    continue
                if origin == dead:
                    if to_dead_origin:
                        for_dead[region] = mine
                elif self.request(origin, {"op": "adopt", "region": region, "indices": mine}):
                    self.emit(f"capnet: {len(mine)} buffers of '{region}' held by '{dead}' "
                              f"returned to '{origin}'")
        return for_dead

    def _limbo(self, region: str, dead: str) -> set[int]:
        spec = self.system.regions[region]
        seen: set[int] = set()
        for q in self.system.queues.values():
            if q.data == region and q.kind == "pair":
                offsets = buffers_on_rings(self.build.queues[q.name].rings, q.capacity)
                seen.update((offsets // spec.buffer_size).tolist())
        for name, record in self.records.items():
            if name == dead or not self.system.components[name].perms_for(region):
                continue
            if record.state not in ("running", "finished", "ready"):
                continue
            reply = self.request(name, {"op": "held"})
            if reply is None:
                return set()            # cannot take a census: recover nothing
            seen.update(reply.get("held", {}).get(region, []))
        return set(range(spec.size // spec.buffer_size)) - seen

    def _drain_stream(self, name: str, stream) -> None:
        """Read what a dead component left in its pipe, then close it."""
        fd = stream.fileno()
        kind = "stderr" if stream is self.records[name].child.process.stderr else "stdout"
        while fd in self.keys and self._lines(name, kind, fd):
            pass
        if fd in self.keys:
            rest = self.records[name].partial.pop(fd, b"")
            if rest:
                self._line(self.records[name], kind, rest)
            self._unwatch(fd)
        stream.close()

    def _report_fault(self, fault: dict) -> None:
        how = fault.get("signal") or f"exit status {fault.get('exit_status')}"
        self.emit(f"capnet: component '{fault['component']}' (pid {fault['pid']}) "
                  f"{fault['reason']}: {how}")
        if fault.get("traceback"):
            for line in fault["traceback"].rstrip().splitlines()[-15:]:
                self.emit(f"capnet:   {line}")

    # -- requests ------------------------------------------------------------------------------
    def request(self, name: str, msg: dict, timeout_s: float = REPLY_TIMEOUT_S) -> dict | None:
        """Send ``msg`` to a running component and pump events until its reply arrives."""
        record = self.records[name]
        if record.child is None or record.state not in ("running", "finished", "ready"):
            return None
        ident = next(self.ids)
        try:
            messages.send(record.child.control, dict(msg, id=ident))
        except OSError:
            return None
        deadline = time.monotonic() + timeout_s
        while (name, ident) not in self.replies:
            left = deadline - time.monotonic()
            if left <= 0 or record.state in ("failed", "stopped"):
                return None
            self.pump(min(left, 0.05))
        return self.replies.pop((name, ident))

    def stats(self) -> dict:
        """Live counters of every component."""
        out = {}
        for name, record in self.records.items():
            reply = self.request(name, {"op": "stats"}) if record.final is None else None
            out[name] = {"state": record.state, "restarts": record.restarts,
                         "stats": (reply or {}).get("stats") or record.final}
        return out

    def call(self, name: str, msg: object) -> dict:
        if name not in self.records:
            return {"error": f"no component '{name}' (components: {', '.join(self.records)})"}
        reply = self.request(name, {"op": "call", "msg": msg})
        if reply is None:
            return {"error": f"component '{name}' did not answer"}
        reply.pop("id", None)
        return reply

    # -- running and stopping ------------------------------------------------------------------
    def request_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        try:
            os.write(self._signal_w, b"x")
        except BlockingIOError:
            pass

    def run(self, duration_s: float | None = None, tick=None) -> str:
        """Pump events until a stop condition; returns the reason. ``tick()``, if given, is
        called between pumps (at most every 0.2 s), e.g. to draw progress."""
        # end of input: every source (a producer that consumes nothing) has finished; in a
        # system without queues, every component has
        sources = [n for n in self.system.components if not self._inputs(n)
                   and any(q.producer == n for q in self.system.queues.values())]
        sources = sources or list(self.system.components)
        deadline = None if duration_s is None else time.monotonic() + duration_s
        while self.stop_reason is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                self.stop_reason = "duration reached"
                break
            self.pump(0.2 if left is None else min(left, 0.2))
            if tick is not None:
                tick()
            if sources and all(self.records[n].state in ("finished", "failed", "stopped")
                               for n in sources):
                if any(self.records[n].state == "finished" for n in sources):
                    self.stop_reason = "end of input"
            if all(r.state in ("failed", "stopped") for r in self.records.values()):
                self.stop_reason = self.stop_reason or "every component has ended"
        return self.stop_reason

    def _inputs(self, name: str) -> list[str]:
        return [q.name for q in self.system.queues.values() if q.consumer == name]

    def shutdown(self) -> dict:
        """Stop components upstream first, each once its input rings are drained."""
        self.stop_reason = self.stop_reason or "shutdown"
        for name in self._stop_order():
            record = self.records[name]
            if record.child is None or record.state in ("failed", "stopped"):
                continue
            self._wait_drained(name)
            reply = self.request(name, {"op": "stop"}, timeout_s=STOP_TIMEOUT_S)
            if reply is not None:
                record.final = reply.get("stats")
            record.state = "stopped"
            self._reap(record)
            self.build.close_calls_to(self.system, name)   # its callers must not wait for it
        self._close()
        return self.summary()

    def _stop_order(self) -> list[str]:
        remaining = set(self.system.components)
        order: list[str] = []
        while remaining:
            ready = [n for n in remaining
                     if not any(q.producer in remaining and q.producer != n
                                for q in self.system.queues.values() if q.consumer == n)]
            if not ready:    # a cycle: break it at the highest priority
                ready = [max(remaining, key=lambda n: self.system.components[n].priority)]
            for n in sorted(ready, key=lambda n: -self.system.components[n].priority):
                order.append(n)
                remaining.discard(n)
        return order

    def _wait_drained(self, name: str) -> None:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        queues = [q for q in self.system.queues.values()
                  if q.consumer == name and q.kind == "pair"]
        while time.monotonic() < deadline and self.records[name].state in ("running", "finished"):
            if all(occupancy(self.build.queues[q.name].rings, q.capacity)[0] == 0 for q in queues):
                return
            self.pump(0.01)

    def _reap(self, record: Record) -> None:
        child = record.child
        deadline = time.monotonic() + 3.0
        while child.pidfd in self.keys and time.monotonic() < deadline:
            self.pump(0.05)
        if child.pidfd in self.keys:
            self.emit(f"capnet: component '{record.name}' did not exit; killing pid {child.pid}")
            signal.pidfd_send_signal(child.pidfd, signal.SIGKILL)
            while child.pidfd in self.keys:
                self.pump(0.05)

    def kill_all(self) -> None:
        for record in self.records.values():
            if record.child is not None and record.child.pidfd in self.keys:
                try:
                    signal.pidfd_send_signal(record.child.pidfd, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                record.state = "stopped"
                self._reap(record)

    @contextlib.contextmanager
    def stopping_on_signals(self):
        """While inside, SIGINT and SIGTERM stop the system in order instead of raising; on
        any exception every component is killed and the control socket removed."""
        previous = {sig: signal.signal(sig, lambda s, f: self.request_stop(
            f"interrupted ({signal.Signals(s).name})")) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        except BaseException:
            self.kill_all()
            self._close()
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _close(self) -> None:
        if self.control:
            self.control.close()
        if self.build:
            self.build.close()
            self.build = None
        if self._signal_r is not None:
            for fd in (self._signal_r, self._signal_w):
                os.close(fd)
            self._signal_r = self._signal_w = None
            self.epoll.close()

    def _elapsed(self) -> float:
        return round((time.monotonic_ns() - self.started_ns) / 1e9, 3) if self.started_ns else 0.0

    def summary(self) -> dict:
        from harness.accounting import conservation
        comps = {}
        for name, record in self.records.items():
            comps[name] = {"state": record.state, "restarts": record.restarts,
                           "faults": record.faults, "stats": record.final,
                           "pids": record.pids, "sandbox": record.sandbox,
                           "cpu_s": round(record.cpu_s, 3),
                           "launch_ms": round(record.launch_ns / 1e6, 1)}
        return {"system": self.system.name, "stop_reason": self.stop_reason,
                "launch_ms": round(self.launch_ns / 1e6, 1), "run_s": self._elapsed(),
                "components": comps, "conservation": conservation(self.system, comps)}


def _signal_reason(sig: signal.Signals) -> str:
    return {
        signal.SIGSYS: "was killed for a system call outside its allow-list (seccomp)",
        signal.SIGSEGV: "was killed for an invalid memory access (e.g. a store to a read-only region)",
        signal.SIGBUS: "was killed for a bus error",
        signal.SIGKILL: "was killed",
        signal.SIGXCPU: "exceeded its CPU time limit",
    }.get(sig, f"was killed by {sig.name}")
