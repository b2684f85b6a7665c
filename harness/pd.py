"""A protection domain's first code: receive grants, import the program, confine, run.

Started by the launcher as ``python -m harness.pd FD`` in a fresh interpreter, where FD is a
SOCK_SEQPACKET socket to the supervisor. The first message on it is the msgpack manifest with every
granted file descriptor attached (SCM_RIGHTS). The program is imported *before* confinement (it
needs the file system for that) and instantiated *after*: no component code runs with more
authority than its grants.
"""

from __future__ import annotations

import faulthandler
import gc
import importlib
import os
import socket
import sys
import time
import traceback

import numpy  # noqa: F401  (imported before confinement: components rely on it)
import numpy.ma  # noqa: F401  (numpy imports these lazily, e.g. inside np.unique; once
import numpy.random  # noqa: F401  confined, a lazy import cannot read its files)

from harness import messages
from harness.description import NETWORK_DEVICE_KINDS
from harness.eventloop import Runtime
from harness.runtime import Channel, Component, Device
from harness.sandbox import Confinement, SandboxError, confine
from harness.sandbox.privileges import prctl
from shmring import BufferLedger, BufferPool, QueueEnd, Region
from shmring.diode import DiodeConsumer, DiodeProducer

PR_SET_TIMERSLACK = 29
TIMER_SLACK_NS = 1_000
GC_THRESHOLDS = (20_000, 50, 50)     # allocations before a young collection (default 700)


def _load_program(program: str) -> type[Component]:
    module_name, _, class_name = program.partition(":")
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Component)):
        raise TypeError(f"program '{program}' is not a harness.Component subclass")
    return cls


def _diode_end(q: dict, fds: list[int], regions: dict):
    producer = q["role"] == "producer"
    rings = Region.attach("queue." + q["name"], fds[q["rings_fd"]], "rw" if producer else "r")
    if producer:
        return DiodeProducer(q["name"], rings, regions[q["data"]], q["capacity"],
                             q["buffer_size"], fds[q["notify_fd"]])
    # a diode's consumer has nothing to write with: no notify descriptor, read-only mappings
    return DiodeConsumer(q["name"], rings, regions[q["data"]], q["capacity"], q["buffer_size"])


def _build(manifest: dict, fds: list[int]):
    """Map regions, make queue ends and channels from the manifest. Returns the pieces."""
    regions = {r["name"]: Region.attach(r["name"], fds[r["fd"]], r["perms"], r["size"])
               for r in manifest["regions"]}
    ledgers, pools = {}, {}
    for led in manifest["ledgers"]:
        region = regions[led["region"]]
        ledger = BufferLedger(region.size, led["buffer_size"])
        if led["initial"]:
            first, count = led["initial"]
            ledger.hold_initial(first, count)
        if led.get("hold"):                 # a restarted origin: the buffers recovered for it
            ledger.hold(led["hold"])
        if led.get("origin"):
            pools[led["region"]] = BufferPool(ledger)
        ledgers[led["region"]] = ledger
    queues, channels, wait_fds, serve = {}, {}, {}, {}
    for q in manifest["queues"]:
        if q.get("kind") == "diode":
            queues[q["name"]] = _diode_end(q, fds, regions)
        else:
            rings = Region.attach("queue." + q["name"], fds[q["rings_fd"]], "rw")
            queues[q["name"]] = QueueEnd(q["name"], q["role"], rings, regions[q["data"]],
                                         q["capacity"], ledgers[q["data"]],
                                         fds[q["notify_fd"]], fds[q["wait_fd"]])
        channels[q["name"]] = Channel(q["name"], "queue", q["peer"])
        if q["wait_fd"] is not None:
            wait_fds[q["name"]] = fds[q["wait_fd"]]
    for c in manifest["channels"]:
        call = None
        if c.get("call_fd") is not None:
            call = socket.socket(fileno=fds[c["call_fd"]])
        if c.get("serve_fd") is not None:
            serve[c["name"]] = socket.socket(fileno=fds[c["serve_fd"]])
            serve[c["name"]].setblocking(False)
        channels[c["name"]] = Channel(c["name"], "channel", c["peer"],
                                      notify_fd=fds[c["notify_fd"]], call_sock=call)
        wait_fds[c["name"]] = fds[c["wait_fd"]]
    return regions, ledgers, pools, queues, channels, wait_fds, serve


def main(argv: list[str]) -> int:
    started = time.monotonic_ns()
    faulthandler.enable()
    control = socket.socket(fileno=int(argv[1]))
    manifest, fds = messages.recv(control, with_fds=True)
    name = manifest["name"]
    try:
        for path in reversed(manifest.get("paths", [])):
            if path not in sys.path:
                sys.path.insert(0, path)
        cls = _load_program(manifest["program"])
        regions, ledgers, pools, queues, channels, wait_fds, serve = _build(manifest, fds)
        limits = manifest.get("limits", {})
        keep = set(fds) | {control.fileno()}
        writes = any(d["mode"] == "w" for d in manifest.get("devices", []))
        # deadlines (a paced replay, protocol timers) are kept to the microsecond, not to the
        # default 50 µs of timer slack
        prctl(PR_SET_TIMERSLACK, TIMER_SLACK_NS)
        report = confine(Confinement(keep_fds=tuple(sorted(keep)),
                                     file_size=None if writes else 0,
                                     memory=limits.get("memory"),
                                     cpu_seconds=limits.get("cpu_seconds"),
                                     open_files=limits.get("open_files")))
    except (Exception, SandboxError):
        text = traceback.format_exc()
        sys.stderr.write(text)
        messages.send(control, {"ev": "fault", "stage": "launch", "traceback": text[-8000:]})
        return 1
    component = cls.__new__(cls)
    component.name = name
    component.config = manifest["config"]
    component.priority = manifest["priority"]
    component.incarnation = manifest.get("incarnation", 0)
    component.regions = regions
    component.queues = queues
    component.channels = channels
    component.pools = pools
    component.devices = [Device(d["kind"], d["mode"], d["path"], fds[d["fd"]], d.get("name", ""))
                         for d in manifest.get("devices", [])]
    device_fds = {}
    for dev in component.devices:
        if dev.kind in NETWORK_DEVICE_KINDS:   # readable devices wake the component like a peer
            channels[dev.name] = Channel(dev.name, "device", "outside")
            device_fds[dev.name] = dev.fd
    component.counters = {}
    runtime = Runtime(component, control, channels, serve, wait_fds, ledgers, device_fds,
                      poll=manifest.get("wait") == "poll")
    for ch in channels.values():
        ch._runtime = runtime
    component._runtime = runtime
    messages.send(control, {"ev": "ready", "sandbox": report,
                            "launch_ns": time.monotonic_ns() - started})
    go = messages.recv(control)
    if not isinstance(go, dict) or go.get("op") != "start":
        return 0
    try:
        component.__init__()
    except Exception:
        runtime._fault()
    # what init built lives as long as the component: out of the collector's sight, and the
    # young generation collected less often, so fewer collections fall between two frames
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return runtime.run()


if __name__ == "__main__":
    status = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
