"""`capnet replay`: what goes in comes out byte for byte, at the rate asked, with counters."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.capnet_run import ROOT, capnet

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


def test_truncated_capture_replays_what_precedes_the_bad_record(tmp_path):
    data = EXAMPLE.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:100_000])
    summary = tmp_path / "s.json"
    proc = capnet("replay", str(cut), "-t", "--json", str(summary))
    assert proc.returncode == 0, proc.stderr
    assert "offset" in proc.stderr
    frames = json.loads(summary.read_text())["frames"]
    assert 0 < frames["out"] == frames["in"] < 20000


def test_not_a_capture_is_bad_input(tmp_path):
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"this is not a capture file")
    proc = capnet("replay", str(junk))
    assert proc.returncode == 2 and "not a pcap or pcapng file" in proc.stderr
    assert capnet("replay", str(EXAMPLE), "--pps", "-3").returncode == 2
