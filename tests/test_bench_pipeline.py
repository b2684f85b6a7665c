"""`capnet bench pipeline` runs its ladder and reports every rate, as table, JSON and plot."""

from __future__ import annotations

import json

from tests.capnet_run import capnet


def test_the_ladder_reports_each_offered_rate_and_top_speed(tmp_path):
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    proc = capnet("bench", "pipeline", "--rates", "2000,5000", "--seconds", "0.3", "--no-peers",
                  "--json", str(out), "--plot", str(png), timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    rows = result["ladder"]
    assert [r["offered_fps"] for r in rows] == [2000.0, 5000.0, None]
    for row in rows:
        assert row["balanced"] and row["lost"] == 0 and row["frames"] > 0
        assert 0 < row["latency_us"]["p50"] <= row["latency_us"]["p99"] <= row["latency_us"]["max"]
    # a paced step achieves its rate (frames between first and last ingress time): within 5 %
    for row in rows[:2]:
        assert abs(row["achieved_fps"] - row["offered_fps"]) <= 0.05 * row["offered_fps"]
    assert result["versus"]["topspeed_fps"] == rows[-1]["achieved_fps"]
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "top speed" in proc.stdout


def test_the_floor_measures_one_hop_and_the_bare_relay():
    from rich.console import Console

    from bench.pipeline import DEFAULT_CAPTURE, floors
    result = floors(DEFAULT_CAPTURE, 0.3, Console(quiet=True), rate=5000)
    for key in ("capnet_one_hop_block_us", "capnet_one_hop_poll_us", "bare_relay_unpinned_us",
                "bare_relay_pinned_us"):
        got = result[key]
        assert 0 < got["p50"] <= got["p90"] <= got["p99"], (key, got)


def test_the_bare_relay_delivers_every_timestamp():
    from bench.bare_relay import measure
    got = measure(20_000, 0.2)
    assert got["frames"] == 4000 and got["in_order"]
    assert 0 < got["p50"] <= got["p90"] <= got["p99"]
