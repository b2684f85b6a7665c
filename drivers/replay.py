"""``capnet replay``: replay a capture through a pipeline and report what came out.

    capnet replay CAPTURE [--system SYSTEM.toml | --rules RULES | --filter EXPR]
                  [-w OUT] [--dropped OUT] [--topspeed | --multiplier X | --pps N | --mbps N]
                  [--maxsleep MS] [--loop N] [--duration S] [--preload]
                  [--timestamps original|ingress|egress] [--poll]
                  [--json FILE] [--latency-plot FILE.png] [--control PATH]

The standard pipeline is replay → stage → capture, each a confined component; the stage is a
pass-through, or ``filter:Firewall`` with ``--rules``/``--filter``, and what it drops goes to a
second capture with ``--dropped``. ``--system`` puts a user's system in its place (see
``fit_system``). Timing follows the capture's own gaps unless a mode is given, as with
tcpreplay (a replay that would take over a minute says so, and how to go faster). ``-w`` and
``--dropped`` write the input's format (pcap stays pcap with its timestamp precision, pcapng
stays pcapng) with each frame's original timestamp and bytes. A capture cut short or corrupt is
replayed up to its bad record, which is named, and the exit status is 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from drivers.capture import CaptureFormatError, scan_file
from drivers.hdrhist import Histogram
from drivers.pcap import original_schedule
from harness.control import ControlError
from harness.description import MAX_BUFFER, DescriptionError, load
from harness.preflight import preflight
from harness.supervisor import Supervisor

EXIT_BAD_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="capnet replay", description=__doc__.splitlines()[0])
    p.add_argument("capture", metavar="CAPTURE", help="pcap or pcapng file to replay")
    p.add_argument("-w", dest="write", metavar="OUT", help="write what comes out here")
    p.add_argument("--dropped", metavar="OUT", help="write what the pipeline drops here")
    stage = p.add_mutually_exclusive_group()
    stage.add_argument("--system", metavar="SYSTEM.toml", help="replay through this system: "
                       "its drivers.pcap:Replay component gets CAPTURE, its drivers.pcap:Capture "
                       "component -w (one named 'dropped' gets --dropped)")
    stage.add_argument("--rules", metavar="RULES", help="filter with this rule file")
    stage.add_argument("--filter", metavar="EXPR", help="pass what this pcap-filter "
                       "expression matches, drop the rest")
    timing = p.add_mutually_exclusive_group()
    timing.add_argument("--topspeed", "-t", action="store_true", help="as fast as possible")
    timing.add_argument("--multiplier", "-x", type=float, metavar="X",
                        help="the capture's gaps divided by X")
    timing.add_argument("--pps", "-p", type=float, metavar="N", help="N frames per second")
    timing.add_argument("--mbps", "-M", type=float, metavar="N", help="N Mbit/s")
    p.add_argument("--maxsleep", type=float, metavar="MS", help="with the capture's own "
                   "timing (or -x), wait no longer than MS milliseconds between frames")
    p.add_argument("--loop", "-l", type=int, default=1, metavar="N", help="replay N times")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--preload", "-K", action="store_true", help="read the file into memory first")
    p.add_argument("--timestamps", choices=("original", "ingress", "egress"),
                   default="original", help="what -w stamps each frame with: its original "
                   "time (default), when it entered the pipeline, or when it came out")
    p.add_argument("--poll", action="store_true", help="every component busy-polls its rings "
                   "(wait = \"poll\"): no wake-ups, at the cost of a CPU per component (with "
                   "more components than CPUs it loses at high rates)")
    p.add_argument("--json", metavar="FILE", help="write the summary as JSON")
    p.add_argument("--latency-plot", metavar="FILE.png", help="draw latency histogram and CDF")
    p.add_argument("--control", metavar="PATH", help="control socket path")
    return p


def _check(args, p: argparse.ArgumentParser):
    for name in ("multiplier", "pps", "mbps", "duration"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            p.error(f"--{name} must be > 0, got {value}")
    if args.maxsleep is not None:
        if args.maxsleep < 0:
            p.error(f"--maxsleep must be >= 0, got {args.maxsleep}")
        if args.topspeed or args.pps or args.mbps:
            p.error("--maxsleep applies to the capture's own timing (with or without -x)")
    if args.loop < 1:
        p.error(f"--loop must be >= 1, got {args.loop}")
    if args.latency_plot and not args.latency_plot.endswith(".png"):
        p.error("--latency-plot must name a .png file")


def _timing_config(args) -> dict:
    if args.topspeed:
        return {"mode": "topspeed"}
    for mode in ("pps", "mbps"):
        if getattr(args, mode):
            return {"mode": mode, mode: getattr(args, mode)}
    config = {"mode": "multiplier", "multiplier": args.multiplier} if args.multiplier \
        else {"mode": "original"}
    if args.maxsleep is not None:
        config["maxsleep_ms"] = args.maxsleep
    return config


def _timing(args) -> str:
    return ", ".join(f"{k} = {json.dumps(v)}" for k, v in _timing_config(args).items())


RESIDENT_LIMIT = 1 << 30     # a preloaded capture stays resident in a region up to this size


def _file(path: Path, mode: str) -> str:
    return f'{{ kind = "file", path = {json.dumps(str(path))}, mode = "{mode}" }}'


def _stage(args, linktype: int) -> tuple[str, str, list[str]]:
    """The middle stage: program, config, devices."""
    dropped = ', dropped = "dropped"' if args.dropped else ""
    if args.rules:
        rules = Path(args.rules).resolve()
        return ("filter:Firewall", f"rules = {json.dumps(str(rules))}, linktype = {linktype}"
                f"{dropped}", [_file(rules, "r")])
    if args.filter is not None:
        return ("filter:Firewall", f"filter = {json.dumps(args.filter)}, linktype = {linktype}"
                f"{dropped}", [])
    return "harness.forward:Forward", dropped.lstrip(", "), []


def describe(capture: Path, out: Path | None, dropped: Path | None, linktype: int,
             max_caplen: int, frames: int, args) -> str:
    """The standard pipeline's system description for this replay: replay → stage → capture,
    and what the stage drops → a second capture when ``dropped`` is given."""
    buffer_size = max(2048, 1 << (max(max_caplen, 1) - 1).bit_length())
    # rings of 4096: large batches keep per-frame costs low; buffers past 64 KiB (BIG TCP,
    # jumbo captures) come fewer, so the region stays within 512 MiB
    buffers = 8192 if buffer_size <= 65536 else (512 << 20) // buffer_size
    capacity = min(4096, buffers)
    if args.preload and frames * buffer_size <= RESIDENT_LIMIT:
        buffers = max(buffers, frames + 2048)      # every frame resident, and room to spare
    extra = ", preload = true" if args.preload else ""
    if args.duration:
        extra += f", duration = {args.duration}"
    program, config, devices = _stage(args, linktype)
    source = _file(capture, "r")
    captures = [("capture", "egress", out)] + ([("dropped", "dropped", dropped)] if dropped else [])
    text = f"""
[system]
name = "replay-{os.getpid()}"
description = "replay -> {program} -> capture"

[regions.frames]
size = {buffer_size * buffers}
buffer_size = {buffer_size}

[components.replay]
program = "drivers.pcap:Replay"
priority = 200
config = {{ {_timing(args)}, loop = {args.loop}{extra} }}
maps = [{{ region = "frames", perms = "rw" }}]
devices = [{source}]

[components.stage]
program = "{program}"
priority = 150
config = {{ {config} }}
maps = [{{ region = "frames", perms = "{'rw' if program.startswith('filter') else 'r'}" }}]
devices = [{", ".join(devices)}]

[[queues]]
name = "ingress"
producer = "replay"
consumer = "stage"
data = "frames"
capacity = {capacity}
"""
    for name, queue, path in captures:
        output = f"{_file(path, 'w')}, " if path else ""
        drops = ", drops = true" if name == "dropped" else ""
        text += f"""
[components.{name}]
program = "drivers.pcap:Capture"
priority = 100
config = {{ timestamps = "{args.timestamps}"{drops} }}
maps = [{{ region = "frames", perms = "r" }}]
devices = [{output}{source}]

[[queues]]
name = "{queue}"
producer = "stage"
consumer = "{name}"
data = "frames"
capacity = {capacity}
"""
    return text


REPLAY, CAPTURE = "drivers.pcap:Replay", "drivers.pcap:Capture"


def fit_system(doc: dict, capture: Path, out: Path | None, dropped: Path | None, args) -> None:
    """Fit a user's system (its parsed description) to this replay: its one Replay component
    replays CAPTURE with the timing asked; its Capture component writes ``out`` (or only
    measures), one named ``dropped`` writes ``dropped``. Raises BadInput when it cannot."""
    comps = doc.get("components") if isinstance(doc.get("components"), dict) else {}
    replays = [n for n, c in comps.items() if isinstance(c, dict) and c.get("program") == REPLAY]
    captures = [n for n, c in comps.items() if isinstance(c, dict) and c.get("program") == CAPTURE
                and n != "dropped"]
    if len(replays) != 1:
        raise BadInput(f"--system: needs exactly one {REPLAY} component to replay the capture, "
                       f"has {len(replays)}")
    if len(captures) != 1:
        raise BadInput(f"--system: needs exactly one {CAPTURE} component (besides one named "
                       f"'dropped') to take what comes out, has {len(captures)}")
    if dropped is not None and not isinstance(comps.get("dropped"), dict):
        raise BadInput(f"--dropped: the system has no {CAPTURE} component named 'dropped'")
    source = {"kind": "file", "path": str(capture), "mode": "r"}

    def others(comp: dict) -> list:
        devices = comp.get("devices", [])
        return [d for d in devices if not (isinstance(d, dict) and d.get("kind") == "file")] \
            if isinstance(devices, list) else devices

    rep = comps[replays[0]]
    rep["devices"] = [source, *others(rep)]
    config = rep.setdefault("config", {})
    if isinstance(config, dict):
        for key in ("multiplier", "pps", "mbps", "maxsleep_ms", "preload", "duration"):
            config.pop(key, None)
        config.update(_timing_config(args), loop=args.loop)
        if args.preload:
            config["preload"] = True
        if args.duration:
            config["duration"] = args.duration
    for name, path in ((captures[0], out), ("dropped", dropped)):
        comp = comps.get(name)
        if not isinstance(comp, dict) or comp.get("program") != CAPTURE:
            continue
        written = [{"kind": "file", "path": str(path), "mode": "w"}] if path else []
        comp["devices"] = [*written, source, *others(comp)]
        if isinstance(comp.setdefault("config", {}), dict):
            comp["config"]["timestamps"] = args.timestamps
            if name == "dropped":
                comp["config"]["drops"] = True


def _roles(system) -> tuple[str, str]:
    """The names of the replay and the capture of a (fitted) system."""
    replay = next(n for n, c in system.components.items() if c.program == REPLAY)
    capture = next(n for n, c in system.components.items()
                   if c.program == CAPTURE and n != "dropped")
    return replay, capture


def summarise(run: dict, total_expected: int, roles: tuple[str, str] = ("replay", "capture")) \
        -> dict:
    comps = run["components"]
    cap = (comps[roles[1]]["stats"] or {})
    rep = (comps[roles[0]]["stats"] or {})
    extra = cap.get("extra", {})
    counters = cap.get("counters", {})
    first, last = extra.get("first_ingress_ns"), extra.get("last_ingress_ns")
    span = (last - first) / 1e9 if first is not None and last and last > first else None
    frames_out = counters.get("out", 0)
    bytes_out = counters.get("bytes", 0)
    cons = run["conservation"]
    return {
        "frames": {"in": cons["in"], "out": cons["out"], "dropped": cons["dropped"],
                   "pending": cons["pending"], "expected": total_expected},
        "bytes": {"in": rep.get("counters", {}).get("bytes", 0), "out": bytes_out},
        "throughput": {"frames_per_s": round(frames_out / span) if span else None,
                       "mbit_per_s": round(bytes_out * 8 / span / 1e6, 2) if span else None,
                       "span_s": span},
        "latency_ns": extra.get("latency_ns"),
        "histogram": extra.get("histogram"),
        "cpu_ns_per_frame": {name: round(c["stats"]["cpu_ns"] / max(1, c["stats"]["counters"]
                                                                    .get("in", 0)))
                             for name, c in comps.items() if (c["stats"] or {}).get("cpu_ns")
                             and (c["stats"] or {}).get("counters", {}).get("in")},
        "wakeups_sent": {name: sum(q.get("signals", 0) for q in c["stats"]["queues"].values())
                         for name, c in comps.items() if (c["stats"] or {}).get("queues")},
        "balanced": cons["balanced"], "stop_reason": run["stop_reason"],
        "faults": {n: c["faults"] for n, c in comps.items() if c["faults"]},
    }


def render(summary: dict, console: Console) -> None:
    f, b, t = summary["frames"], summary["bytes"], summary["throughput"]
    table = Table(title="replay summary", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    dropped = ", ".join(f"{k} {v}" for k, v in f["dropped"].items()) or "0"
    table.add_row("frames in / out / dropped", f"{f['in']:,} / {f['out']:,} / {dropped}")
    table.add_row("bytes in / out", f"{b['in']:,} / {b['out']:,}")
    if t["frames_per_s"] is not None:
        table.add_row("throughput", f"{t['frames_per_s']:,} frames/s, {t['mbit_per_s']} Mbit/s")
    lat = summary["latency_ns"]
    if lat:
        table.add_row("latency p50 / p90 / p99", " / ".join(
            f"{lat[k] / 1000:.1f} µs" for k in ("p50", "p90", "p99")))
        table.add_row("latency p99.9 / max", f"{lat['p99.9'] / 1000:.1f} µs / "
                                             f"{lat['max'] / 1000:.1f} µs")
    cpu = summary.get("cpu_ns_per_frame") or {}
    if cpu:
        table.add_row("CPU per frame", ", ".join(f"{k} {v:,} ns" for k, v in cpu.items()))
    table.add_row("conservation", "holds" if summary["balanced"] else "DOES NOT HOLD")
    if summary.get("input_error"):
        table.add_row("input", f"replayed up to a bad record: {summary['input_error']}")
    console.print(table)


def plot(summary: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    hist = Histogram.from_dict(summary["histogram"])
    values, counts = hist.buckets() if hasattr(hist, "buckets") else _buckets(hist)
    us = np.asarray(values) / 1000
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.bar(us, counts, width=np.maximum(us * 0.02, 0.05))
    left.set_xscale("log")
    left.set_xlabel("latency (µs)")
    left.set_ylabel("frames")
    left.set_title("latency histogram")
    cdf = np.cumsum(counts) / max(1, sum(counts))
    right.step(us, cdf, where="post")
    right.set_xscale("log")
    right.set_xlabel("latency (µs)")
    right.set_ylabel("fraction of frames ≤ x")
    right.set_title("latency CDF")
    lat = summary["latency_ns"]
    fig.suptitle(f"replay → pass → capture: p50 {lat['p50'] / 1000:.1f} µs, "
                 f"p99 {lat['p99'] / 1000:.1f} µs, max {lat['max'] / 1000:.1f} µs")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _buckets(hist: Histogram):
    import numpy as np
    nz = np.flatnonzero(hist.counts)
    return [hist._bucket_value(int(i)) for i in nz], hist.counts[nz].tolist()


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    _check(args, p)
    err, out = Console(stderr=True), Console()
    try:
        summary = replay(args, err)
    except BadInput as exc:
        err.print(f"capnet replay: {exc}", markup=False, highlight=False)
        return EXIT_BAD_INPUT
    render(summary, out)
    if args.json:
        Path(args.json).write_text(json.dumps({k: v for k, v in summary.items()
                                               if k != "histogram"}, indent=2))
    if args.latency_plot and summary["latency_ns"]:
        plot(summary, args.latency_plot)
    if summary["faults"]:
        return 1
    # a capture cut short or corrupt: what precedes the bad record was replayed and counted
    # (and written), but the input was bad, as tcpdump and tshark also say by their status
    return EXIT_BAD_INPUT if summary.get("input_error") else 0


class BadInput(ValueError):
    """The capture or the pipeline cannot be replayed; nothing was started."""


def options(argv: list[str]) -> argparse.Namespace:
    """``capnet replay`` arguments as a namespace, for callers such as the benchmarks."""
    p = _parser()
    args = p.parse_args(argv)
    _check(args, p)
    return args


def replay(args: argparse.Namespace, err: Console) -> dict:
    """Build the pipeline for ``args``, run it to the end, and return its summary."""
    capture = Path(args.capture).resolve()
    try:
        result, _mapping = scan_file(capture)
    except (OSError, CaptureFormatError) as exc:
        raise BadInput(f"{args.capture}: {exc}") from None
    if result.error is not None:
        err.print(f"capnet replay: {args.capture}: {result.error}; replaying the "
                  f"{len(result.records)} records before it (exit status 2)", markup=False,
                  highlight=False)
    max_caplen = int(result.records["caplen"].max()) if len(result.records) else 0
    if max_caplen > MAX_BUFFER:
        err.print(f"capnet replay: {args.capture}: frames up to {max_caplen} bytes; buffers are "
                  f"at most {MAX_BUFFER} bytes, longer frames are dropped (oversize)",
                  markup=False)
    _warn_if_long(result.records["ts_ns"], args, err)
    target = Path(args.write).resolve() if args.write else None
    dropped = Path(args.dropped).resolve() if args.dropped else None
    with tempfile.TemporaryDirectory(prefix="capnet-replay-") as tmp:
        path = Path(tmp) / "replay.toml"
        if args.system:
            path = Path(args.system)
        else:
            path.write_text(describe(capture, target, dropped, result.linktype,
                                     min(max_caplen, MAX_BUFFER), len(result.records), args))

        def patch(doc):
            if args.system:
                fit_system(doc, capture, target, dropped, args)
            comps = doc.get("components")
            if args.poll and isinstance(comps, dict):    # a malformed one is load()'s to name
                for comp in comps.values():
                    if isinstance(comp, dict):
                        comp["wait"] = "poll"
        try:
            system = load(path, patch=patch)
            problems = preflight(system)
        except DescriptionError as exc:
            raise BadInput(str(exc)) from None
        if problems:
            raise BadInput("\n".join(str(p) if args.system else p.message for p in problems))
        summary = _run(system, args, len(result.records) * args.loop, err)
    if result.error is not None:
        summary["input_error"] = f"{args.capture}: {result.error}"
    return summary


LONG_S = 60


def _warn_if_long(ts_ns, args, err: Console) -> None:
    """Say so when the capture's own timing makes the replay long (crafted captures have gaps
    of years), and how to go faster."""
    timing = _timing_config(args)
    if timing["mode"] not in ("original", "multiplier") or args.duration:
        return
    due = original_schedule(ts_ns, timing.get("multiplier", 1.0), timing.get("maxsleep_ms"))
    span_s = (int(due[-1]) if len(due) else 0) * args.loop / 1e9
    if span_s > LONG_S:
        err.print(f"capnet replay: at the capture's own timing this takes {_human(span_s)}; "
                  "-t, -x N, --maxsleep MS or --duration S go faster (Ctrl-C stops it with a "
                  "summary)", markup=False, highlight=False)


def _human(seconds: float) -> str:
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:.0f} s"


def _run(system, args, expected: int, err: Console) -> dict:
    roles = _roles(system)
    supervisor = Supervisor(system, emit=lambda line: print(line, file=sys.stderr, flush=True),
                            control_path=args.control)
    with supervisor.stopping_on_signals():
        try:
            supervisor.start()
        except ControlError as exc:
            supervisor.kill_all()
            supervisor.shutdown()
            raise BadInput(str(exc)) from None
        if err.is_terminal and expected > 200_000:
            with Progress(console=err, transient=True) as progress:
                task = progress.add_task("replaying", total=expected)

                def tick() -> None:
                    stats = supervisor.stats().get(roles[1], {}).get("stats") or {}
                    progress.update(task, completed=stats.get("counters", {}).get("in", 0))
                supervisor.run(args.duration, tick)
        else:
            supervisor.run(args.duration)
        return summarise(supervisor.shutdown(), expected, roles)
