"""``wait = "poll"``: a busy-polling component delivers everything a blocking one does, keeps
its timers, answers the supervisor, and never costs its producers a wake-up."""

from __future__ import annotations

import pytest

from harness.description import load
from tests.capnet_run import capnet, run_system, write_system

SYSTEM = """
[system]
name = "poll"

[regions.frames]
size = "1 MiB"
buffer_size = 2048

[components.gen]
program = "drivers.synthetic:Source"
priority = 200
config = { count = 20000, size = 200, batch = 16, pps = 50000 }
maps = [{ region = "frames", perms = "rw" }]

[components.fwd]
program = "harness.forward:Forward"
priority = 150
maps = [{ region = "frames", perms = "r" }]

[components.sink]
program = "drivers.synthetic:Sink"
priority = 100
maps = [{ region = "frames", perms = "r" }]

[[queues]]
name = "in"
producer = "gen"
consumer = "fwd"
data = "frames"
capacity = 256

[[queues]]
name = "out"
producer = "fwd"
consumer = "sink"
data = "frames"
capacity = 256
"""


def _signals(summary: dict, component: str, queue: str) -> int:
    return summary["components"][component]["stats"]["queues"][queue]["signals"]


@pytest.mark.parametrize("polling", [(), ("fwd", "sink"), ("gen", "fwd", "sink")])
def test_polling_components_deliver_everything_and_are_never_signalled(tmp_path, polling):
    sets = [arg for name in polling for arg in ("--set", f"{name}.wait=poll")]
    proc, summary = run_system(tmp_path, SYSTEM, "--quiet", *sets)
    assert proc.returncode == 0, proc.stderr
    assert summary["conservation"]["balanced"]
    sink = summary["components"]["sink"]["stats"]["counters"]
    assert sink["in"] == 20000
    # a producer signals its consumer only when the consumer asked to be woken; a polling
    # consumer never asks (and the paced source sleeps between batches, so a blocking
    # consumer does)
    for producer, queue, consumer in (("gen", "in", "fwd"), ("fwd", "out", "sink")):
        if consumer in polling:
            assert _signals(summary, producer, queue) == 0
        else:
            assert _signals(summary, producer, queue) > 0


def test_a_polling_component_stops_in_order_when_asked(tmp_path):
    endless = SYSTEM.replace("count = 20000", "count = 0")
    proc, summary = run_system(tmp_path, endless, "--quiet", "--duration", "1",
                               "--set", "sink.wait=poll", "--set", "fwd.wait=poll")
    assert proc.returncode == 0, proc.stderr
    assert summary["conservation"]["balanced"]
    assert summary["components"]["sink"]["stats"]["counters"]["in"] > 0


def test_wait_is_read_from_the_description_and_from_set(tmp_path):
    path = write_system(tmp_path / "s.toml", SYSTEM.replace(
        'program = "harness.forward:Forward"', 'program = "harness.forward:Forward"\nwait = "poll"'))
    system = load(path)
    assert system.components["fwd"].wait == "poll"
    assert system.components["sink"].wait == "block"
    assert load(path, ["sink.wait=poll"]).components["sink"].wait == "poll"


def test_a_bad_wait_mode_is_refused_with_its_place(tmp_path):
    path = write_system(tmp_path / "s.toml", SYSTEM)
    proc = capnet("check", str(path), "--set", "fwd.wait=spin")
    assert proc.returncode == 2
    assert "components.fwd.wait" in proc.stderr and "'block', 'poll'" in proc.stderr
