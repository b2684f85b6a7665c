"""A hostile-component suite under the real sandbox, in one running system.

Beside a trusted pipeline (gen -> fwd -> sink) run components that try to open files and sockets,
read a sibling's memory, steal a sibling's descriptor, make a read-only region writable by every
route, store into it, signal the supervisor, scribble over shared ring indices and descriptors,
and flood notifications. Every attempt must fail or be contained, the supervisor must report it,
and the trusted components must keep running with their data intact.
"""

from __future__ import annotations

import pytest

from tests.capnet_run import run_system

pytestmark = pytest.mark.sandbox

ATTACKERS = {
    "openfile": "OpenFile",
    "reopen": "ReopenReadOnlyRegion",
    "mprot": "MprotectReadOnlyRegion",
    "store": "StoreIntoReadOnlyRegion",
    "sock": "OpenSocket",
    "peek": "ReadSiblingMemory",
    "steal": "StealSiblingFd",
    "sig": "SignalSibling",
}

SYSTEM = """
[system]
name = "hostile"

[regions.frames]
size = "1 MiB"
[regions.frames2]
size = "256 KiB"
[regions.frames3]
size = "256 KiB"

[components.gen]
program = "drivers.synthetic:Source"
priority = 200
config = { count = 0, size = 256, batch = 32, pps = 20000 }
maps = [{ region = "frames", perms = "rw" }]

[components.fwd]
program = "harness.forward:Forward"
priority = 150
maps = [{ region = "frames", perms = "r" }]

[components.sink]
program = "drivers.synthetic:Sink"
priority = 100
maps = [{ region = "frames", perms = "r" }]

[components.gen2]
program = "drivers.synthetic:Source"
priority = 200
config = { count = 0, size = 64, batch = 16, pps = 5000 }
maps = [{ region = "frames2", perms = "rw" }]

[components.evil]
program = "tests.hostile:RingScribbler"
priority = 5
maps = [{ region = "frames2", perms = "r" }]

[components.sink2]
program = "drivers.synthetic:Sink"
priority = 100
maps = [{ region = "frames2", perms = "r" }]

[components.gen3]
program = "drivers.synthetic:Source"
priority = 200
config = { count = 0, size = 64, batch = 16, pps = 5000 }
maps = [{ region = "frames3", perms = "rw" }]

[components.victim]
program = "tests.hostile:FloodVictim"
priority = 100
maps = [{ region = "frames3", perms = "r" }]

[components.flood]
program = "tests.hostile:NotificationFlood"
priority = 5

[[queues]]
name = "ingress"
producer = "gen"
consumer = "fwd"
data = "frames"
capacity = 256

[[queues]]
name = "egress"
producer = "fwd"
consumer = "sink"
data = "frames"
capacity = 256

[[queues]]
name = "bad_in"
producer = "gen2"
consumer = "evil"
data = "frames2"
capacity = 64

[[queues]]
name = "bad_out"
producer = "evil"
consumer = "sink2"
data = "frames2"
capacity = 64

[[queues]]
name = "victim_in"
producer = "gen3"
consumer = "victim"
data = "frames3"
capacity = 64

[[channels]]
name = "doorbell"
ends = ["flood", "victim"]
"""


def _attackers() -> str:
    return "".join(f"""
[components.{name}]
program = "tests.hostile:{cls}"
priority = 5
maps = [{{ region = "frames", perms = "r" }}]
""" for name, cls in ATTACKERS.items())


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    return run_system(tmp, SYSTEM + _attackers(), "--duration", "4")


def test_no_attack_succeeds(hostile_run):
    proc, _ = hostile_run
    assert "SUCCEEDED" not in proc.stdout, proc.stdout


@pytest.mark.parametrize("component,attack,why", [
    ("openfile", "open-file", "EPERM"),
    ("reopen", "reopen-region-rw", "EPERM"),
    ("reopen", "map-region-rw", "EACCES"),
    ("mprot", "mprotect-rw", "EACCES"),
    ("peek", "proc-pid-mem", "EPERM"),
    ("sig", "signal-supervisor", "EPERM"),
])
def test_refused_attempts(hostile_run, component, attack, why):
    proc, _ = hostile_run
    assert f"[{component}] ATTACK {attack} blocked: {why}" in proc.stdout, proc.stdout


@pytest.mark.parametrize("component,sig", [
    ("store", "SIGSEGV"),        # a store into a read-only mapping
    ("sock", "SIGSYS"),          # socket()
    ("peek", "SIGSYS"),          # process_vm_readv
    ("steal", "SIGSYS"),         # pidfd_open / pidfd_getfd
])
def test_killed_attempts_are_reported(hostile_run, component, sig):
    proc, summary = hostile_run
    faults = summary["components"][component]["faults"]
    assert [f.get("signal") for f in faults] == [sig]
    assert f"component '{component}'" in proc.stdout and sig in proc.stdout


def test_trusted_pipeline_kept_running_intact(hostile_run):
    _, summary = hostile_run
    comps = summary["components"]
    per = summary["conservation"]["components"]
    for name in ("gen", "fwd", "sink"):
        assert comps[name]["state"] == "stopped" and comps[name]["faults"] == []
        assert per[name]["balanced"]
    sink = comps["sink"]["stats"]["counters"]
    assert sink["in"] > 1000
    assert sink["gaps"] == 0 and sink["reordered"] == 0 and sink["corrupt"] == 0
    assert per["sink"]["in"] == per["gen"]["out"]


def test_ring_scribbler_is_contained(hostile_run):
    proc, summary = hostile_run
    assert "[evil] ATTACK scribble done" in proc.stdout
    comps = summary["components"]
    for name in ("gen2", "sink2"):
        assert comps[name]["state"] == "stopped" and comps[name]["faults"] == [], name
    gen2 = comps["gen2"]["stats"]["queues"]["bad_in"]
    sink2 = comps["sink2"]["stats"]["queues"]["bad_out"]
    assert gen2["index_faults"] > 0
    assert sink2["index_faults"] > 0
    # the trusted ends kept their own buffers: the source still holds every buffer it owns
    # (those it never got back are with the scribbler, never double-counted)
    assert comps["gen2"]["stats"]["held"]["frames2"] <= 256 * 1024 // 2048


def test_notification_flood_is_coalesced(hostile_run):
    proc, summary = hostile_run
    assert "[flood] ATTACK flood done" in proc.stdout
    victim = summary["components"]["victim"]
    assert victim["state"] == "stopped" and victim["faults"] == []
    assert victim["stats"]["counters"]["in"] > 1000          # its real work went on
    assert 0 < victim["stats"]["extra"]["wakeups"] < 400000  # 400k signals, far fewer wake-ups
