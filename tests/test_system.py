"""Whole systems under `capnet run`: frames flow, counters conserve, calls, faults, shutdown."""

from __future__ import annotations

import json
import signal

from tests.capnet_run import ROOT, alive, capnet, run_system, start, wait_for, write_system

PIPELINE = """
[system]
name = "flow"

[regions.frames]
size = "1 MiB"
buffer_size = 2048

[components.gen]
program = "drivers.synthetic:Source"
priority = 200
config = { count = 30000, size = 200, batch = 32 }
maps = [{ region = "frames", perms = "rw" }]

[components.fwd]
program = "harness.forward:Forward"
priority = 150
config = { drop_every = 100 }
maps = [{ region = "frames", perms = "r" }]

[components.sink]
program = "drivers.synthetic:Sink"
priority = 100
maps = [{ region = "frames", perms = "r" }]

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
"""


def test_frames_flow_and_are_conserved(tmp_path):
    proc, summary = run_system(tmp_path, PIPELINE)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert summary["stop_reason"] == "end of input"
    cons = summary["conservation"]
    assert cons["balanced"], cons
    assert cons["in"] == 30000
    assert cons["dropped"] == {"sampled": 300}
    assert cons["out"] == 29700
    sink = summary["components"]["sink"]["stats"]["counters"]
    # every dropped frame but the very last leaves one gap; nothing reordered or corrupted
    assert sink["gaps"] == 299 and sink["reordered"] == 0 and sink["corrupt"] == 0
    for name in ("gen", "fwd", "sink"):
        comp = summary["components"][name]
        assert comp["state"] == "stopped" and comp["faults"] == []
        sandbox = comp["sandbox"]
        assert sandbox["landlock_abi"] >= 1 and "seccomp" in sandbox
        assert not any(alive(pid) for pid in comp["pids"])
    assert "conservation holds" in proc.stdout


def test_example_runs_as_documented(tmp_path):
    stats = tmp_path / "stats.json"
    proc = capnet("run", "examples/pipeline.toml", "--set", "gen.count=5000",
                  "--stats-json", str(stats), "--control", str(tmp_path / "c.sock"))
    assert proc.returncode == 0, proc.stderr + proc.stdout
    summary = json.loads(stats.read_text())
    assert summary["conservation"]["in"] == 5000 and summary["conservation"]["balanced"]


def test_bad_description_starts_nothing(tmp_path):
    bad = write_system(tmp_path / "bad.toml", PIPELINE.replace("priority = 150", "priority = 999"))
    proc = capnet("run", str(bad), "--control", str(tmp_path / "c.sock"))
    assert proc.returncode == 2
    assert "components.fwd.priority" in proc.stderr and str(bad) in proc.stderr
    assert not (tmp_path / "c.sock").exists()


def test_unknown_override_is_rejected(tmp_path):
    system = write_system(tmp_path / "s.toml", PIPELINE)
    proc = capnet("run", str(system), "--set", "nosuch.count=3")
    assert proc.returncode == 2 and "nosuch" in proc.stderr


CALLS = """
[system]
name = "calls"

[components.low]
program = "tests.components:Caller"
priority = 10

[components.high]
program = "tests.components:Callee"
priority = 50

[[channels]]
name = "rpc"
ends = ["low", "high"]
pp = "low"
"""


def test_protected_call_and_notification(tmp_path):
    proc, summary = run_system(tmp_path, CALLS, "--duration", "1.5")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "[low] reply {'doubled': 42, 'from': 'high'}" in proc.stdout
    assert "[low] refused 'high': expected {'x': number}" in proc.stdout
    assert "[high] notified on rpc" in proc.stdout
    assert summary["components"]["high"]["stats"]["extra"] == {"calls": 2, "wakeups": 1}


def test_a_caller_still_calling_when_its_callee_has_stopped_stops_too(tmp_path):
    # the callee (no queues, higher priority) is stopped first; the caller's next call must
    # fail at once rather than wait for ever, so the caller answers its own stop
    text = CALLS.replace("tests.components:Caller", "tests.components:KeepsCalling")
    proc, summary = run_system(tmp_path, text, "--duration", "1")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "did not exit" not in proc.stdout + proc.stderr
    low = summary["components"]["low"]
    assert low["state"] == "stopped" and low["faults"] == []
    assert low["stats"] is not None and low["stats"]["counters"]["answered"] > 10


def test_callee_end_cannot_call(tmp_path):
    text = CALLS.replace("tests.components:Callee", "tests.components:CallsUpward")
    proc, _summary = run_system(tmp_path, text, "--duration", "1")
    assert "[high] no call: no protected-call grant on channel 'rpc'" in proc.stdout


def test_fault_is_reported_and_restarted_while_others_run(tmp_path):
    text = PIPELINE.replace("count = 30000", "count = 0") + """
[components.crash]
program = "tests.components:Crasher"
priority = 1
restart = "on-failure"
max_restarts = 2
"""
    proc, summary = run_system(tmp_path, text, "--duration", "3")
    crash = summary["components"]["crash"]
    assert crash["restarts"] == 2 and len(crash["faults"]) == 3
    assert all(f["exit_status"] == 1 for f in crash["faults"])
    assert "RuntimeError: crash crashed on purpose" in crash["faults"][0]["traceback"]
    assert "component 'crash'" in proc.stdout and "restarting 'crash' (1/2)" in proc.stdout
    assert summary["components"]["sink"]["stats"]["counters"]["in"] > 0
    assert summary["conservation"]["balanced"]
    assert proc.returncode == 1      # a component ended failed


def test_control_socket_stats_call_and_stop(tmp_path):
    calls = "[components.low]" + CALLS.split("[components.low]")[1]
    system = write_system(tmp_path / "live.toml",
                          PIPELINE.replace("count = 30000", "count = 0") + calls)
    sock = tmp_path / "ctl" / "live.sock"
    stats_file = tmp_path / "stats.json"
    proc = start("run", str(system), "--control", str(sock), "--stats-json", str(stats_file))
    try:
        wait_for(sock.exists, what="control socket")

        def frames_seen():
            r = capnet("stats", "--control", str(sock), "--json")
            if r.returncode != 0:
                return None
            live = json.loads(r.stdout)
            return live if live["components"]["sink"]["stats"]["counters"].get("in") else None

        live = wait_for(frames_seen, what="frames at the sink")
        assert live["system"] == "flow"
        assert oct(sock.stat().st_mode & 0o777) == "0o600"
        r = capnet("call", "--control", str(sock), "flow", "high", '{"hello": 1}')
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["echo"] == {"hello": 1}
        r = capnet("call", "--control", str(sock), "flow", "nosuch", "{}")
        assert r.returncode == 1 and "no component 'nosuch'" in r.stderr
        r = capnet("stop", "--control", str(sock))
        assert r.returncode == 0
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    summary = json.loads(stats_file.read_text())
    assert summary["stop_reason"] == "stopped through the control socket"
    assert summary["conservation"]["balanced"], summary["conservation"]
    assert not sock.exists()
    for comp in summary["components"].values():
        assert not any(alive(pid) for pid in comp["pids"])


def test_sigint_stops_in_order_with_final_counters(tmp_path):
    system = write_system(tmp_path / "s.toml", PIPELINE.replace("count = 30000", "count = 0"))
    stats_file = tmp_path / "stats.json"
    proc = start("run", str(system), "--control", str(tmp_path / "s.sock"),
                 "--stats-json", str(stats_file))
    try:
        wait_for((tmp_path / "s.sock").exists, what="control socket")
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    summary = json.loads(stats_file.read_text())
    assert summary["stop_reason"] == "interrupted (SIGINT)"
    assert summary["conservation"]["balanced"], summary["conservation"]
    assert summary["conservation"]["pending"] == 0


def test_check_prints_capability_tables():
    proc = capnet("check", "examples/pipeline.toml")
    assert proc.returncode == 0, proc.stderr
    for word in ("gen", "fwd", "sink", "ingress", "egress", "frames"):
        assert word in proc.stdout
    assert ROOT.joinpath("examples/pipeline.toml").exists()


def test_restart_gives_a_dead_components_buffers_back(tmp_path):
    text = (PIPELINE.replace("count = 30000", "count = 0")
            .replace('size = "1 MiB"', 'size = "128 KiB"')
            .replace('"harness.forward:Forward"', '"tests.components:CrashingForward"')
            .replace("config = { drop_every = 100 }",
                     'config = { crash_after = 3000 }\nrestart = "on-failure"')
            .replace("capacity = 256", "capacity = 64"))
    proc, summary = run_system(tmp_path, text, "--duration", "3")
    fwd = summary["components"]["fwd"]
    assert fwd["restarts"] == 1 and len(fwd["faults"]) == 1
    assert "crashing while holding" in fwd["faults"][0]["traceback"]
    recovered = summary["components"]["gen"]["stats"]["counters"]["buffers_recovered"]
    assert recovered > 0
    assert f"{recovered} buffers of 'frames' held by 'fwd' returned to 'gen'" in proc.stdout
    # the second incarnation carried on: far more frames reached the sink than before the crash
    sink = summary["components"]["sink"]["stats"]["counters"]
    assert sink["in"] > 6000 and sink["gaps"] == 1
    # the frames the dead incarnation held are lost, and the summary says so
    cons = summary["conservation"]
    assert not cons["balanced"]
    assert cons["in"] - cons["out"] == recovered
    assert f"{recovered} frames unaccounted for: lost with the failed incarnations of fwd" \
        in proc.stdout


def test_devices_are_opened_by_the_harness_and_granted(tmp_path):
    (tmp_path / "in.txt").write_text("frames from outside")
    proc, _summary = run_system(tmp_path, """
[system]
name = "dev"

[components.echo]
program = "tests.components:DeviceEcho"
devices = [{ kind = "file", path = "in.txt", mode = "r" },
           { kind = "file", path = "out.txt", mode = "w" }]
""", "--duration", "2")
    assert "[echo] copied 19 bytes from in.txt" in proc.stdout, proc.stdout + proc.stderr
    assert (tmp_path / "out.txt").read_text() == "FRAMES FROM OUTSIDE"


def test_a_missing_input_device_is_a_description_error(tmp_path):
    system = write_system(tmp_path / "s.toml", """
[system]
name = "dev"

[components.echo]
program = "tests.components:DeviceEcho"
devices = [{ kind = "file", path = "nosuch.pcap", mode = "r" }]
""")
    proc = capnet("check", str(system))
    assert proc.returncode == 2
    assert "components.echo.devices[0].path: no such file" in proc.stderr
