"""A component's final counters reach the supervisor however its exit and its last reply are
ordered: both can be ready in one poll, and the exit handled first must not lose the reply."""

from __future__ import annotations

import os
import time

from harness import messages
from harness.description import load
from harness.supervisor import Supervisor
from tests.capnet_run import ROOT


def test_final_counters_survive_an_exit_handled_before_the_reply(tmp_path):
    system = load(ROOT / "examples" / "pipeline.toml")
    sup = Supervisor(system, emit=lambda line: None, control_path=str(tmp_path / "ctl.sock"))
    sup.start()
    try:
        record = sup.records["sink"]
        deadline = time.monotonic() + 30
        while not (sup.stats()["sink"]["stats"] or {}).get("counters", {}).get("in"):
            assert time.monotonic() < deadline, "the sink took nothing in"
            sup.pump(0.05)
        sup.stop_reason = "shutdown"        # as shutdown() sets it before stopping anything
        messages.send(record.child.control, {"op": "stop", "id": 12345})
        os.waitid(os.P_PIDFD, record.child.pidfd, os.WEXITED | os.WNOWAIT)   # it has exited
        sup._died("sink")           # the exit first, as a poll may hand it over
        reply = sup.replies[("sink", 12345)]
        assert reply["final"] is True and "in" in reply["stats"]["counters"]
        assert record.state == "stopped" and not record.faults
    finally:
        sup.kill_all()
        sup.shutdown()
