"""``wait = "poll"``: a busy-polling component delivers everything a blocking one does, keeps
its timers, answers the supervisor, and never costs its producers a wake-up. The system is the
bundled example (source -> forward -> sink), paced so that blocking consumers do sleep."""

from __future__ import annotations

import json

import pytest

from harness.description import load
from tests.capnet_run import ROOT, capnet

EXAMPLE = ROOT / "examples" / "pipeline.toml"
PACED = ("--set", "gen.count=20000", "--set", "gen.batch=16", "--set", "gen.pps=50000",
         "--set", "fwd.drop_every=0")


def _run(tmp_path, *args: str) -> dict:
    stats = tmp_path / "stats.json"
    proc = capnet("run", str(EXAMPLE), "--quiet", "--stats-json", str(stats),
                  "--control", str(tmp_path / "ctl.sock"), *PACED, *args)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(stats.read_text())
    assert summary["conservation"]["balanced"]
    return summary


def _signals(summary: dict, component: str, queue: str) -> int:
    return summary["components"][component]["stats"]["queues"][queue]["signals"]


@pytest.mark.parametrize("polling", [(), ("fwd", "sink"), ("gen", "fwd", "sink")])
def test_polling_components_deliver_everything_and_are_never_signalled(tmp_path, polling):
    sets = [arg for name in polling for arg in ("--set", f"{name}.wait=poll")]
    summary = _run(tmp_path, *sets)
    assert summary["components"]["sink"]["stats"]["counters"]["in"] == 20000
    # a producer signals its consumer only when the consumer asked to be woken; a polling
    # consumer never asks (and the paced source leaves gaps, so a blocking consumer does)
    for producer, queue, consumer in (("gen", "ingress", "fwd"), ("fwd", "egress", "sink")):
        if consumer in polling:
            assert _signals(summary, producer, queue) == 0
        else:
            assert _signals(summary, producer, queue) > 0


def test_a_polling_component_stops_in_order_when_asked(tmp_path):
    summary = _run(tmp_path, "--set", "gen.count=0", "--duration", "1",
                   "--set", "sink.wait=poll", "--set", "fwd.wait=poll")
    assert summary["components"]["sink"]["stats"]["counters"]["in"] > 0


def test_wait_is_read_from_the_description_and_from_set(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(EXAMPLE.read_text().replace(
        'program = "harness.forward:Forward"', 'program = "harness.forward:Forward"\nwait = "poll"'))
    system = load(path)
    assert system.components["fwd"].wait == "poll"
    assert system.components["sink"].wait == "block"
    assert load(path, ["sink.wait=poll"]).components["sink"].wait == "poll"


def test_a_bad_wait_mode_is_refused_with_its_place():
    proc = capnet("check", str(EXAMPLE), "--set", "fwd.wait=spin")
    assert proc.returncode == 2
    assert "components.fwd.wait" in proc.stderr and "'block', 'poll'" in proc.stderr
