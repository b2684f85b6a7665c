"""`capnet replay`: what goes in comes out byte for byte, at the rate asked, with counters."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess

import numpy as np
import pytest

from drivers.capture import CaptureWriter
from tests.capnet_run import ROOT, capnet, start, wait_for

EXAMPLE = ROOT / "examples" / "imix.pcap"


def _tcpdump(path) -> str:
    tool = shutil.which("tcpdump")
    if tool is None:
        pytest.fail("tcpdump is required (bash scripts/dev installs it)")
    return subprocess.run([tool, "-r", str(path), "-nn", "-S", "-tt", "-xx"], capture_output=True,
                          text=True, check=True).stdout


def test_topspeed_replay_writes_the_input_back_unchanged(tmp_path):
    out, summary = tmp_path / "out.pcap", tmp_path / "s.json"
    proc = capnet("replay", str(EXAMPLE), "-w", str(out), "--topspeed", "--json", str(summary),
                  "--latency-plot", str(tmp_path / "lat.png"))
    assert proc.returncode == 0, proc.stderr
    assert _tcpdump(out) == _tcpdump(EXAMPLE)           # same bytes, same timestamps
    s = json.loads(summary.read_text())
    assert s["frames"]["in"] == s["frames"]["out"] == 20000 and s["balanced"]
    assert s["bytes"]["in"] == s["bytes"]["out"] == EXAMPLE.stat().st_size - 24 - 16 * 20000
    lat = s["latency_ns"]
    assert lat["count"] == 20000 and 0 < lat["p50"] <= lat["p99"] <= lat["max"]
    assert (tmp_path / "lat.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "frames in / out / dropped" in proc.stdout


def test_loop_replays_the_file_n_times(tmp_path):
    out, summary = tmp_path / "out.pcap", tmp_path / "s.json"
    proc = capnet("replay", str(EXAMPLE), "-w", str(out), "-t", "--loop", "2",
                  "--json", str(summary))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(summary.read_text())["frames"]["out"] == 40000
    assert _tcpdump(out) == _tcpdump(EXAMPLE) * 2


def test_a_polling_pipeline_writes_the_same_and_is_never_signalled(tmp_path):
    out, summary = tmp_path / "out.pcap", tmp_path / "s.json"
    proc = capnet("replay", str(EXAMPLE), "-w", str(out), "--pps", "50000", "--poll",
                  "--json", str(summary))
    assert proc.returncode == 0, proc.stderr
    assert _tcpdump(out) == _tcpdump(EXAMPLE)
    s = json.loads(summary.read_text())
    assert s["frames"]["out"] == 20000 and s["balanced"]
    assert s["wakeups_sent"] == {"replay": 0, "stage": 0, "capture": 0}


def test_a_pcapng_of_only_a_section_header_comes_out_as_one(tmp_path):
    # pcapng's own test suite has such files (hadrielk/pcapng-test-generator, test002):
    # no interface, so no packet; the output is a section with no interface either
    src, out = tmp_path / "shb.pcapng", tmp_path / "out.pcapng"
    body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
    src.write_bytes(struct.pack("<II", 0x0A0D0D0A, 12 + len(body)) + body
                    + struct.pack("<I", 12 + len(body)))
    proc = capnet("replay", str(src), "-t", "-w", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert out.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.fail("tshark is required (bash scripts/dev installs it)")
    read = subprocess.run([tshark, "-r", str(out)], capture_output=True, text=True)
    assert read.returncode == 0 and read.stdout == "", read.stderr


def test_truncated_capture_replays_what_precedes_the_bad_record(tmp_path):
    data = EXAMPLE.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:100_000])
    summary = tmp_path / "s.json"
    out = tmp_path / "out.pcap"
    proc = capnet("replay", str(cut), "-t", "--json", str(summary), "-w", str(out))
    # what precedes the bad record is replayed, counted and written; the input was bad: exit 2,
    # as tshark (2) and tcpdump (1) end on a cut capture
    assert proc.returncode == 2, proc.stderr
    assert "offset" in proc.stderr
    result = json.loads(summary.read_text())
    frames = result["frames"]
    assert 0 < frames["out"] == frames["in"] < 20000
    assert "offset" in result["input_error"]
    written = _tcpdump(out)
    assert written and _tcpdump(EXAMPLE).startswith(written)   # the frames before, unchanged


def test_not_a_capture_is_bad_input(tmp_path):
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"this is not a capture file")
    proc = capnet("replay", str(junk))
    assert proc.returncode == 2 and "not a pcap or pcapng file" in proc.stderr
    assert capnet("replay", str(EXAMPLE), "--pps", "-3").returncode == 2


SYSTEM = """
[system]
name = "sampler"

[regions.frames]
size = "8 MiB"

[components.nic]
program = "drivers.pcap:Replay"
priority = 200
maps = [{ region = "frames", perms = "rw" }]

[components.sample]
program = "harness.forward:Forward"
priority = 150
config = { drop_every = 4, dropped = "thrown" }
maps = [{ region = "frames", perms = "r" }]

[components.kept]
program = "drivers.pcap:Capture"
priority = 100
maps = [{ region = "frames", perms = "r" }]

[components.dropped]
program = "drivers.pcap:Capture"
priority = 90
maps = [{ region = "frames", perms = "r" }]

[[queues]]
name = "in"
producer = "nic"
consumer = "sample"
data = "frames"

[[queues]]
name = "out"
producer = "sample"
consumer = "kept"
data = "frames"

[[queues]]
name = "thrown"
producer = "sample"
consumer = "dropped"
data = "frames"
"""


def test_a_users_system_takes_the_capture_and_its_drops_are_written_apart(tmp_path):
    system = tmp_path / "sampler.toml"
    system.write_text(SYSTEM)
    out, dropped, summary = tmp_path / "out.pcap", tmp_path / "dropped.pcap", tmp_path / "s.json"
    proc = capnet("replay", str(EXAMPLE), "--system", str(system), "-t", "-w", str(out),
                  "--dropped", str(dropped), "--json", str(summary))
    assert proc.returncode == 0, proc.stderr
    s = json.loads(summary.read_text())
    assert s["frames"]["in"] == 20000 and s["frames"]["out"] == 15000
    assert s["frames"]["dropped"] == {"sampled": 5000} and s["balanced"]
    frames = _tcpdump(EXAMPLE).split("\n")
    records = [i for i, line in enumerate(frames) if line[:1].isdigit()]
    blocks = ["\n".join(frames[a:b]) for a, b in zip(records, records[1:] + [len(frames)],
                                                     strict=True)]
    # every 4th frame went to the dropped capture, the rest to -w, each in order and unchanged
    assert _tcpdump(dropped).strip() == "\n".join(blocks[3::4]).strip()
    assert _tcpdump(out).strip() == "\n".join(b for i, b in enumerate(blocks)
                                              if i % 4 != 3).strip()


def test_a_system_without_a_replay_component_is_bad_input(tmp_path):
    system = tmp_path / "s.toml"
    system.write_text(SYSTEM.replace("drivers.pcap:Replay", "drivers.synthetic:Source"))
    proc = capnet("replay", str(EXAMPLE), "--system", str(system))
    assert proc.returncode == 2
    assert "needs exactly one drivers.pcap:Replay component" in proc.stderr


def test_filter_keeps_what_tcpdump_matches_and_writes_the_rest_apart(tmp_path):
    kept, dropped, summary = tmp_path / "kept.pcap", tmp_path / "dropped.pcap", tmp_path / "s.json"
    expr = "tcp port 443 or (udp and greater 1000)"
    proc = capnet("replay", str(EXAMPLE), "-t", "--filter", expr, "-w", str(kept),
                  "--dropped", str(dropped), "--json", str(summary))
    assert proc.returncode == 0, proc.stderr
    tool = shutil.which("tcpdump")
    matched = subprocess.run([tool, "-r", str(EXAMPLE), "-nn", "-S", "-tt", "-xx", expr],
                             capture_output=True, text=True, check=True).stdout
    unmatched = subprocess.run([tool, "-r", str(EXAMPLE), "-nn", "-S", "-tt", "-xx",
                                f"not ({expr})"], capture_output=True, text=True,
                               check=True).stdout
    assert _tcpdump(kept) == matched and _tcpdump(dropped) == unmatched
    s = json.loads(summary.read_text())
    n_kept = sum(1 for line in matched.splitlines() if line[:1].isdigit())
    assert s["frames"]["out"] == n_kept and s["frames"]["dropped"] == {"policy": 20000 - n_kept}
    assert s["balanced"]


def test_capnet_stop_ends_a_paced_replay_at_once_with_every_frame_counted(tmp_path):
    control, summary = tmp_path / "ctl" / "replay.sock", tmp_path / "s.json"
    proc = start("replay", str(EXAMPLE), "--pps", "5000", "--loop", "10",   # 40 s of replay
                 "--control", str(control), "--json", str(summary))
    try:
        wait_for(control.exists, what="the replay's control socket")
        wait_for(lambda: capnet("stats", "--control", str(control), "--json").stdout.count(
            '"in"') and json.loads(capnet("stats", "--control", str(control), "--json").stdout)
            ["components"]["capture"]["stats"]["counters"].get("in", 0) > 1000,
            what="frames through the pipeline")
        assert capnet("stop", "--control", str(control)).returncode == 0
        proc.communicate(timeout=20)           # well before the replay's own end
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    s = json.loads(summary.read_text())
    assert s["stop_reason"] == "stopped through the control socket"
    assert 1000 < s["frames"]["in"] < 100000 and s["balanced"]
    assert s["frames"]["in"] == s["frames"]["out"]


def test_frames_past_64_kib_replay_whole(tmp_path):
    """BIG TCP and jumbo captures hold frames up to libpcap's 262144-byte snapshot length: the
    pipeline's buffers grow to fit, and the output is the input, byte for byte."""
    path, out = tmp_path / "big.pcap", tmp_path / "out.pcap"
    sizes = [60, 100_000, 262_144, 1500]
    rng = np.random.default_rng(9)
    data = rng.integers(0, 256, sum(sizes), dtype=np.uint8)
    with open(path, "wb") as fh:
        writer = CaptureWriter(fh, "pcap", snaplen=262144)
        writer.write_batch(data, np.cumsum([0, *sizes[:-1]]), np.array(sizes),
                           1_700_000_000 * 10**9 + np.arange(4) * 1000)
        writer.close()
    proc = capnet("replay", str(path), "-t", "-w", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == path.read_bytes()
