"""The wire: seeded loss, duplication, reordering, corruption and delay between two regions."""

from __future__ import annotations

from tests.capnet_run import run_system

SYSTEM = """
[system]
name = "wire"

[regions.near]
size = "512 KiB"
[regions.far]
size = "512 KiB"

[components.gen]
program = "drivers.synthetic:Source"
priority = 200
config = { count = 5000, size = 100, batch = 16, pps = 50000 }
maps = [{ region = "near", perms = "rw" }]

[components.wire]
program = "drivers.wire:Wire"
priority = 150
maps = [{ region = "near", perms = "r" }, { region = "far", perms = "rw" }]

[components.wire.config]
seed = SEED

[[components.wire.config.links]]
from = "a"
to = "b"
loss = 0.1
duplicate = 0.05
reorder = 0.05
corrupt = 0.05
delay_us = 200
jitter_us = 50

[components.sink]
program = "drivers.synthetic:Sink"
priority = 100
maps = [{ region = "far", perms = "r" }]

[[queues]]
name = "a"
producer = "gen"
consumer = "wire"
data = "near"
capacity = 256

[[queues]]
name = "b"
producer = "wire"
consumer = "sink"
data = "far"
capacity = 256
"""


def _run(tmp_path, seed):
    tmp_path.mkdir(exist_ok=True)
    proc, summary = run_system(tmp_path, SYSTEM.replace("SEED", str(seed)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return summary


def test_faults_happen_at_their_rates_and_frames_are_conserved(tmp_path):
    summary = _run(tmp_path, 7)
    wire = summary["components"]["wire"]["stats"]["counters"]
    assert abs(wire["dropped.loss"] - 500) < 100              # 10 % of 5000
    for key in ("duplicated", "reordered", "corrupted"):
        assert 150 < wire[key] < 400, (key, wire[key])       # 5 % of ~4500
    assert wire["in"] == 5000 + wire["duplicated"]
    assert summary["conservation"]["balanced"], summary["conservation"]
    sink = summary["components"]["sink"]["stats"]["counters"]
    assert sink["in"] == wire["out"]
    assert sink["reordered"] > 0 and sink["gaps"] > 0 and sink["corrupt"] > 0


def test_the_same_seed_gives_the_same_faults(tmp_path):
    first = _run(tmp_path / "1", 11)["components"]["wire"]["stats"]["counters"]
    again = _run(tmp_path / "2", 11)["components"]["wire"]["stats"]["counters"]
    other = _run(tmp_path / "3", 12)["components"]["wire"]["stats"]["counters"]
    keys = ("dropped.loss", "duplicated", "reordered", "corrupted")
    assert [first[k] for k in keys] == [again[k] for k in keys]
    assert [first[k] for k in keys] != [other[k] for k in keys]
