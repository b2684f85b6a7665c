"""`capnet bench pipeline`: the replay pipeline at a ladder of offered rates, and its peers.

    capnet bench pipeline [--capture F] [--rates 10000,50000,...] [--seconds S] [--json FILE]
                          [--plot FILE.png] [--no-peers]

1. The ipbench method sDDF uses: replay → pass-through → capture (three confined processes,
   the capture preloaded and resident in the data region) at each offered rate of a ladder, then
   at top speed; per rate the achieved frames/s (between the first and last ingress time), the
   frames lost, and latency percentiles (ingress → capture, HDR histogram).
2. tcpreplay --topspeed --preload from the same capture onto a veth pair in a network namespace
   the bench creates (and deletes), measured in the same run: capnet's top speed / tcpreplay's.
3. Reading the capture into a data region (capnet's index + one copy per frame) against dpkt's
   pcap reader + Ethernet parser: frames/s each, and the ratio.
4. What one hop costs here, at 100 k frames/s: capnet's replay → capture (two processes, no
   stage; blocking and polling), and three bare Python processes relaying timestamps through
   shared memory (``bench.bare_relay``; unpinned, and pinned as three best share two cores) —
   the floor the latency target is read against.
Prints a table, writes JSON and a plot (achieved vs offered rate; latency percentiles vs rate).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from bench import bare_relay
from drivers.capture import copy_frames, scan_file
from drivers.replay import options, replay

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CAPTURE = ROOT / "examples" / "imix.pcap"
DEFAULT_RATES = (10_000, 25_000, 50_000, 100_000, 200_000, 400_000)
PERCENTILES = ("p50", "p90", "p99", "p99.9", "max")
TARGETS = {"topspeed_fps": 1_000_000, "vs_tcpreplay": 1.5, "p50_at_100k_us": 25,
           "p99_at_100k_us": 100, "reader_vs_dpkt": 10}


def _step(capture: Path, frames_in_file: int, rate: float | None, seconds: float,
          console: Console) -> dict:
    wanted = int((rate or 1_000_000) * seconds)
    loops = max(1, math.ceil(wanted / frames_in_file))
    mode = ["--topspeed"] if rate is None else ["--pps", str(rate)]
    args = options([str(capture), *mode, "--loop", str(loops), "--preload",
                    "--duration", str(seconds * 3 + 5)])
    s = replay(args, console)
    lat = s["latency_ns"] or {}
    return {"offered_fps": rate, "frames": s["frames"]["out"],
            "lost": s["frames"]["in"] - s["frames"]["out"],
            "achieved_fps": s["throughput"]["frames_per_s"],
            "mbit_per_s": s["throughput"]["mbit_per_s"],
            "latency_us": {k: round(lat[k] / 1000, 1) for k in PERCENTILES if k in lat},
            "balanced": s["balanced"]}


def ladder(capture: Path, rates, seconds: float, console: Console) -> list[dict]:
    n = len(scan_file(capture)[0].records)
    rows = []
    for rate in [*rates, None]:
        label = "top speed" if rate is None else f"{int(rate):,} frames/s"
        console.print(f"[dim]replay at {label} …[/dim]")
        rows.append(_step(capture, n, rate, seconds, console))
    return rows


ONE_HOP = """
[system]
name = "one-hop"
description = "replay -> capture: what one hop costs"

[regions.frames]
size = {size}
buffer_size = {buffer_size}

[components.replay]
program = "drivers.pcap:Replay"
priority = 200
maps = [{{ region = "frames", perms = "rw" }}]

[components.capture]
program = "drivers.pcap:Capture"
priority = 100
config = {{ timestamps = "ingress" }}
maps = [{{ region = "frames", perms = "r" }}]

[[queues]]
name = "egress"
producer = "replay"
consumer = "capture"
data = "frames"
capacity = 4096
"""
FLOOR_RATE = 100_000


def floors(capture: Path, seconds: float, console: Console, rate: float = FLOOR_RATE) -> dict:
    """One hop through capnet (blocking, polling) and the bare relay (unpinned, pinned)."""
    n = len(scan_file(capture)[0].records)
    loops = max(1, math.ceil(rate * seconds / n))
    result: dict = {"offered_fps": rate}
    with tempfile.TemporaryDirectory(prefix="capnet-hop-") as tmp:
        system = Path(tmp) / "one-hop.toml"
        system.write_text(ONE_HOP.format(size=(n + 2048) * 2048, buffer_size=2048))
        for wait in ("block", "poll"):
            console.print(f"[dim]one hop, {wait} …[/dim]")
            args = options([str(capture), "--system", str(system), "--pps", str(rate),
                            "--loop", str(loops), "--preload", "--duration",
                            str(seconds * 3 + 5), *(["--poll"] if wait == "poll" else [])])
            lat = replay(args, console)["latency_ns"] or {}
            result[f"capnet_one_hop_{wait}_us"] = {k: round(lat[k] / 1000, 1)
                                                   for k in ("p50", "p90", "p99") if k in lat}
    for pinned in (False, True):
        console.print(f"[dim]bare relay, {'pinned' if pinned else 'unpinned'} …[/dim]")
        got = bare_relay.measure(rate, seconds, pinned)
        result[f"bare_relay_{'pinned' if pinned else 'unpinned'}_us"] = \
            {k: got[k] for k in ("p50", "p90", "p99") if k in got} or got
    return result


def tcpreplay_topspeed(capture: Path, seconds: float) -> dict:
    """tcpreplay --topspeed --preload onto a veth in a namespace of our own."""
    tool = shutil.which("tcpreplay")
    if tool is None:
        return {"error": "tcpreplay is not installed (bash scripts/dev installs it)"}
    n = len(scan_file(capture)[0].records)
    loops = max(1, math.ceil(1_000_000 * seconds / n))
    ns = f"capnet-b{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        for cmd in (["link", "add", "cb0", "type", "veth", "peer", "name", "cb1"],
                    ["link", "set", "cb0", "up"], ["link", "set", "cb1", "up"]):
            subprocess.run(["ip", "-n", ns, *cmd], check=True)
        done = subprocess.run(["ip", "netns", "exec", ns, tool, "--topspeed", "--preload-pcap",
                               "-i", "cb0", "--loop", str(loops), str(capture)],
                              capture_output=True, text=True, timeout=600)
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)
    rated = re.search(r"Rated:\s*([\d.]+) Bps,\s*([\d.]+) Mbps,\s*([\d.]+) pps", done.stdout)
    if done.returncode != 0 or rated is None:
        return {"error": (done.stderr or done.stdout).strip()[-300:]}
    return {"fps": float(rated.group(3)), "mbit_per_s": float(rated.group(2)),
            "frames": n * loops}


def reader(capture: Path, repeat: int = 5) -> dict:
    """Frames/s into a data region (capnet) and through dpkt's reader + Ethernet parser."""
    import dpkt
    region = np.zeros(1 << 26, np.uint8)
    best_ours = best_dpkt = math.inf
    frames = 0
    for _ in range(repeat):
        start = time.perf_counter()
        result, mapping = scan_file(capture)
        recs = result.records
        frames = len(recs)
        slots = (np.arange(frames, dtype=np.int64) * 2048) % (region.size - 65536)
        copy_frames(mapping, recs, region, slots)
        best_ours = min(best_ours, time.perf_counter() - start)
        start = time.perf_counter()
        with open(capture, "rb") as fh:
            for _ts, buf in dpkt.pcap.Reader(fh):
                dpkt.ethernet.Ethernet(buf)
        best_dpkt = min(best_dpkt, time.perf_counter() - start)
    ours, theirs = frames / best_ours, frames / best_dpkt
    return {"frames": frames, "capnet_fps": round(ours), "dpkt_fps": round(theirs),
            "ratio": round(ours / theirs, 1)}


def run(capture: Path, rates, seconds: float, peers: bool, console: Console) -> dict:
    result = {"capture": str(capture), "seconds_per_step": seconds,
              "ladder": ladder(capture, rates, seconds, console)}
    if peers:
        console.print("[dim]tcpreplay --topspeed onto a veth …[/dim]")
        result["tcpreplay"] = tcpreplay_topspeed(capture, seconds)
        result["reader"] = reader(capture)
        result["floor"] = floors(capture, seconds, console)
    top = result["ladder"][-1]["achieved_fps"] or 0
    at_100k = next((r for r in result["ladder"] if r["offered_fps"] == 100_000), None)
    result["versus"] = {
        "topspeed_fps": top,
        "vs_tcpreplay": (round(top / result["tcpreplay"]["fps"], 2)
                         if peers and "fps" in result.get("tcpreplay", {}) else None),
        "p50_at_100k_us": at_100k["latency_us"].get("p50") if at_100k else None,
        "p99_at_100k_us": at_100k["latency_us"].get("p99") if at_100k else None,
        "reader_vs_dpkt": result["reader"]["ratio"] if peers else None,
        "targets": TARGETS,
    }
    return result


def render(result: dict, console: Console) -> None:
    table = Table(title=f"replay → pass → capture, {Path(result['capture']).name}")
    for col in ("offered fps", "achieved fps", "Mbit/s", "lost", *PERCENTILES):
        table.add_column(col + (" µs" if col in PERCENTILES else ""), justify="right")
    for row in result["ladder"]:
        offered = "top speed" if row["offered_fps"] is None else f"{int(row['offered_fps']):,}"
        lat = row["latency_us"]
        table.add_row(offered, f"{row['achieved_fps'] or 0:,}", f"{row['mbit_per_s'] or 0}",
                      str(row["lost"]), *(f"{lat.get(k, float('nan')):.1f}" for k in PERCENTILES))
    console.print(table)
    v = result["versus"]
    lines = [f"top speed: {v['topspeed_fps']:,} frames/s (target ≥ {TARGETS['topspeed_fps']:,})"]
    if "tcpreplay" in result:
        t = result["tcpreplay"]
        lines.append(f"tcpreplay --topspeed onto a veth: {t['fps']:,.0f} frames/s → capnet "
                     f"{v['vs_tcpreplay']}× (target ≥ {TARGETS['vs_tcpreplay']}×)"
                     if "fps" in t else f"tcpreplay: {t['error']}")
    if v["p50_at_100k_us"] is not None:
        lines.append(f"latency at 100 k frames/s: p50 {v['p50_at_100k_us']} µs (target ≤ "
                     f"{TARGETS['p50_at_100k_us']}), p99 {v['p99_at_100k_us']} µs (target ≤ "
                     f"{TARGETS['p99_at_100k_us']})")
    if "reader" in result:
        r = result["reader"]
        lines.append(f"reading into a data region: {r['capnet_fps']:,} frames/s vs dpkt reader + "
                     f"parser {r['dpkt_fps']:,} → {r['ratio']}× (target ≥ "
                     f"{TARGETS['reader_vs_dpkt']}×)")
    if "floor" in result:
        f = result["floor"]

        def p(key: str) -> str:
            got = f.get(key, {})
            return (f"p50 {got['p50']} µs, p99 {got['p99']} µs" if "p50" in got
                    else str(got.get("error")))
        lines.append(f"one hop at {f['offered_fps']:,} frames/s — capnet replay → capture: "
                     f"{p('capnet_one_hop_block_us')} (polling: {p('capnet_one_hop_poll_us')}); "
                     f"three bare Python processes relaying a timestamp: "
                     f"{p('bare_relay_unpinned_us')} (pinned: {p('bare_relay_pinned_us')})")
    for line in lines:
        console.print(line, markup=False, highlight=False)


def plot(result: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in result["ladder"] if r["offered_fps"] is not None and r["achieved_fps"]]
    offered = np.array([r["offered_fps"] for r in rows], float)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(offered, [r["achieved_fps"] for r in rows], "o-", label="achieved")
    left.plot(offered, offered, "--", color="grey", label="offered")
    top = result["ladder"][-1]["achieved_fps"]
    if top:
        left.axhline(top, color="tab:red", linestyle=":", label="top speed")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("offered frames/s")
    left.set_ylabel("achieved frames/s")
    left.legend()
    for key in PERCENTILES:
        right.plot(offered, [r["latency_us"].get(key, np.nan) for r in rows], "o-", label=key)
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("offered frames/s")
    right.set_ylabel("latency (µs)")
    right.legend()
    fig.suptitle("capnet replay → pass → capture")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="capnet bench pipeline",
                                description=__doc__.splitlines()[0])
    p.add_argument("--capture", type=Path, default=DEFAULT_CAPTURE)
    p.add_argument("--rates", default=",".join(map(str, DEFAULT_RATES)),
                   help="offered frames/s, comma-separated")
    p.add_argument("--seconds", type=float, default=2.0, help="length of each step")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--plot", metavar="FILE.png")
    p.add_argument("--no-peers", action="store_true", help="skip tcpreplay and dpkt")
    args = p.parse_args(argv)
    try:
        rates = [float(r) for r in args.rates.split(",") if r.strip()]
    except ValueError:
        p.error(f"--rates: comma-separated numbers, got {args.rates!r}")
    if any(r <= 0 for r in rates) or args.seconds <= 0:
        p.error("--rates and --seconds must be > 0")
    if args.plot and not args.plot.endswith(".png"):
        p.error("--plot must name a .png file")
    if not args.capture.is_file():
        p.error(f"--capture: no such file: {args.capture}")
    console = Console(width=None if Console().is_terminal else 130)
    result = run(args.capture, rates, args.seconds, not args.no_peers, console)
    render(result, console)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if args.plot:
        plot(result, args.plot)
    return 0
