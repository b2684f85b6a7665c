"""Build a system's kernel objects and start its components, one fresh interpreter each.

The launcher alone creates authority: a sealed memfd per region and per queue (the queue's two
rings), an eventfd per notification direction, a SOCK_SEQPACKET pair per protected-call channel
and per component (its control link to the supervisor). A component receives exactly the file
descriptors its description grants, as SCM_RIGHTS on its control link, with a msgpack manifest
saying what each one is. Read-only region grants are O_RDONLY descriptors, so no mapping of them
can ever be made writable.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness import messages
from harness.description import NETWORK_DEVICE_KINDS, System, program_paths
from harness.devices import open_device
from shmring import Region, queue_bytes
from shmring.diode import diode_bytes
from shmring.notify import make_eventfd


@dataclass
class QueueObjects:
    rings: Region
    to_consumer: int      # eventfd the consumer sleeps on (active ring has frames)
    to_producer: int      # eventfd the producer sleeps on (free ring has buffers)


@dataclass
class ChannelObjects:
    wake: dict[str, int]                       # end -> eventfd that end sleeps on
    call: tuple[socket.socket, socket.socket] | None = None   # (caller end, callee end)


@dataclass
class Build:
    """Every kernel object of one system, owned by the supervisor for the system's lifetime."""

    system: System
    regions: dict[str, Region] = field(default_factory=dict)
    queues: dict[str, QueueObjects] = field(default_factory=dict)
    channels: dict[str, ChannelObjects] = field(default_factory=dict)
    devices: dict[tuple[str, int], int] = field(default_factory=dict)

    def device_fd(self, component: str, dev) -> int:
        """The descriptor of a component's device. Files are opened afresh for each launch;
        a TAP interface or packet socket is opened once and kept, so a restarted driver finds the
        same one."""
        if dev.kind not in NETWORK_DEVICE_KINDS:
            return open_device(Path(self.system.path).resolve().parent, dev)
        key = (component, self.system.components[component].devices.index(dev))
        if key not in self.devices:
            self.devices[key] = open_device(Path(self.system.path).resolve().parent, dev)
        return self.devices[key]

    @classmethod
    def create(cls, system: System) -> Build:
        build = cls(system)
        try:
            for spec in system.regions.values():
                build.regions[spec.name] = Region.create(spec.name, spec.size)
            for q in system.queues.values():
                size = diode_bytes(q.capacity) if q.kind == "diode" else queue_bytes(q.capacity)
                rings = Region.create("queue." + q.name, size)
                build.queues[q.name] = QueueObjects(rings, make_eventfd(), make_eventfd())
            for ch in system.channels.values():
                objs = ChannelObjects({end: make_eventfd() for end in ch.ends})
                if ch.pp:
                    objs.call = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                build.channels[ch.name] = objs
        except BaseException:
            build.close()
            raise
        return build

    def grants(self, name: str, resume: bool = False, hold: dict[str, list[int]] | None = None,
               incarnation: int = 0) -> tuple[dict, list[int], list[int]]:
        """The manifest and fds for component ``name``; the third list holds fds to close after
        sending (new fds made for this grant)."""
        system = self.system
        spec = system.components[name]
        fds: list[int] = []
        temporary: list[int] = []

        def add(fd: int) -> int:
            fds.append(fd)
            return len(fds) - 1

        regions = []
        for m in spec.maps:
            fd = self.regions[m.region].grant_fd(m.perms)
            temporary.append(fd)
            regions.append({"name": m.region, "perms": m.perms,
                            "size": self.regions[m.region].size, "fd": add(fd)})
        queues, data_regions = [], set()
        for q in system.queues_of(name):
            objs = self.queues[q.name]
            producer = q.producer == name
            rings_fd = objs.rings.fd
            if q.kind == "diode":       # the consumer of a diode cannot write its rings
                rings_fd = objs.rings.grant_fd("rw" if producer else "r")
                temporary.append(rings_fd)
            else:
                data_regions.add(q.data)
            wait = objs.to_producer if producer else objs.to_consumer
            notify = objs.to_consumer if producer else objs.to_producer
            diode = q.kind == "diode"   # nothing may travel back: no wake-up for the producer
            queues.append({
                "name": q.name, "role": "producer" if producer else "consumer",
                "peer": q.consumer if producer else q.producer,
                "data": q.data, "capacity": q.capacity, "kind": q.kind,
                "buffer_size": system.regions[q.data].buffer_size,
                "rings_fd": add(rings_fd),
                "wait_fd": None if diode and producer else add(wait),
                "notify_fd": None if diode and not producer else add(notify),
            })
        ledgers = []
        for region in sorted(data_regions):
            initial = None if resume else system.initial_buffers(region).get(name)
            ledgers.append({"region": region, "buffer_size": system.regions[region].buffer_size,
                            "initial": list(initial) if initial else None,
                            "hold": (hold or {}).get(region, []),
                            "origin": name in system.origins(region)})
        channels = []
        for ch in system.channels_of(name):
            objs = self.channels[ch.name]
            peer = ch.ends[1] if ch.ends[0] == name else ch.ends[0]
            entry = {"name": ch.name, "peer": peer,
                     "wait_fd": add(objs.wake[name]), "notify_fd": add(objs.wake[peer]),
                     "call_fd": None, "serve_fd": None}
            if objs.call is not None:
                if ch.pp == name:
                    entry["call_fd"] = add(objs.call[0].fileno())
                else:
                    entry["serve_fd"] = add(objs.call[1].fileno())
            channels.append(entry)
        devices = []
        for dev in spec.devices:
            fd = self.device_fd(name, dev)
            if dev.kind not in NETWORK_DEVICE_KINDS:
                temporary.append(fd)
            devices.append({"kind": dev.kind, "mode": dev.mode, "path": dev.path,
                            "name": dev.name, "fd": add(fd)})
        limits = {k: v for k, v in (("memory", spec.limits.memory),
                                     ("cpu_seconds", spec.limits.cpu_seconds),
                                     ("open_files", spec.limits.open_files)) if v is not None}
        manifest = {
            "name": name, "program": spec.program, "priority": spec.priority,
            "config": spec.config, "regions": regions, "queues": queues, "ledgers": ledgers,
            "channels": channels, "limits": limits, "resume": resume, "devices": devices,
            "incarnation": incarnation, "wait": spec.wait,
            "paths": program_paths(system.path),
        }
        return manifest, fds, temporary

    def close_calls_to(self, system: System, name: str) -> None:
        """Close our copy of the serving end of every protected-call channel ``name`` answers,
        once it is gone for good: a caller still waiting on it gets end-of-file (a failed call)
        instead of waiting for ever."""
        for ch in system.channels.values():
            objs = self.channels.get(ch.name)
            if ch.pp and ch.pp != name and name in ch.ends and objs is not None and objs.call:
                objs.call[1].close()

    def close(self) -> None:
        for region in self.regions.values():
            region.close()
        for objs in self.queues.values():
            objs.rings.close()
            os.close(objs.to_consumer)
            os.close(objs.to_producer)
        for objs in self.channels.values():
            for fd in objs.wake.values():
                os.close(fd)
            if objs.call:
                for sock in objs.call:
                    sock.close()
        for fd in self.devices.values():
            os.close(fd)
        self.devices.clear()
        self.regions.clear()
        self.queues.clear()
        self.channels.clear()


@dataclass
class Child:
    """One running component process, seen from the supervisor."""

    name: str
    process: subprocess.Popen
    pidfd: int
    control: socket.socket

    @property
    def pid(self) -> int:
        return self.process.pid


def spawn(build: Build, name: str, resume: bool = False,
          hold: dict[str, list[int]] | None = None, incarnation: int = 0) -> Child:
    """Start component ``name`` in a fresh interpreter and hand it its grants."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(program_paths(build.system.path)),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }
    for key in ("CAPNET_ALLOW_NO_LANDLOCK", "COVERAGE_PROCESS_START"):
        if key in os.environ:
            env[key] = os.environ[key]
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "harness.pd", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env, cwd=os.getcwd(), close_fds=True,
            start_new_session=True)
    finally:
        theirs.close()
    pidfd = os.pidfd_open(process.pid)
    manifest, fds, temporary = build.grants(name, resume, hold, incarnation)
    try:
        messages.send(ours, manifest, fds)
    finally:
        for fd in temporary:
            os.close(fd)
    return Child(name, process, pidfd, ours)
