"""The ``capnet`` command line.

    capnet check SYSTEM.toml [--policy POLICY.toml] [--path A:B ...] [--set C.K=V ...]
    capnet graph SYSTEM.toml [--policy POLICY.toml] -o FILE.svg|png
    capnet run SYSTEM.toml [--duration S] [--stats-json FILE] [--control PATH] [--set C.K=V ...]
    capnet stats SYSTEM-NAME | --control PATH [--json]
    capnet call SYSTEM-NAME COMPONENT MESSAGE-JSON [--control PATH]
    capnet stop SYSTEM-NAME [--control PATH]
    capnet replay CAPTURE [-w OUT] [--topspeed | --multiplier X | --pps N | --mbps N] ...
    capnet gen OUT.pcap [--count N] [--flows F] [--mix imix|small|large] [--seed S]
    capnet bench rings [--json FILE] [--seconds S]
    capnet filter …, capnet attest …, capnet bench pipeline|filter|stack|gateway …

Bad input (description, arguments) prints one clear message per problem and exits with status 2;
nothing is started.
"""

from __future__ import annotations

import argparse
import json
import sys

from rich.console import Console
from rich.table import Table

EXIT_BAD_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="capnet", description="isolated networking components")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check", help="validate a system description, show capabilities")
    check.add_argument("system", metavar="SYSTEM.toml")
    check.add_argument("--set", action="append", default=[], metavar="COMPONENT.KEY=VALUE")
    check.add_argument("--policy", metavar="POLICY.toml",
                       help="check every derived information flow against this policy")
    check.add_argument("--path", action="append", default=[], metavar="A:B",
                       help="show every path by which A can influence B (repeatable)")

    graph = sub.add_parser("graph", help="draw the system and its flows with Graphviz")
    graph.add_argument("system", metavar="SYSTEM.toml")
    graph.add_argument("--policy", metavar="POLICY.toml")
    graph.add_argument("-o", dest="output", required=True, metavar="FILE.svg|png|dot")
    graph.add_argument("--set", action="append", default=[], metavar="COMPONENT.KEY=VALUE")

    run = sub.add_parser("run", help="build, confine and supervise a system")
    run.add_argument("system", metavar="SYSTEM.toml")
    run.add_argument("--duration", type=_positive_float, metavar="S",
                     help="stop in order after S seconds")
    run.add_argument("--stats-json", metavar="FILE", help="write final statistics as JSON")
    run.add_argument("--control", metavar="PATH", help="control socket path")
    run.add_argument("--set", action="append", default=[], metavar="COMPONENT.KEY=VALUE")
    run.add_argument("--quiet", action="store_true", help="print only the summary")

    for name, help_text in (("stats", "live counters of a running system"),
                            ("stop", "stop a running system in order")):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("name", nargs="?", metavar="SYSTEM-NAME")
        cmd.add_argument("--control", metavar="PATH")
        if name == "stats":
            cmd.add_argument("--json", action="store_true")

    call = sub.add_parser("call", help="protected call into a running component")
    call.add_argument("name", metavar="SYSTEM-NAME")
    call.add_argument("component")
    call.add_argument("message", metavar="MESSAGE-JSON")
    call.add_argument("--control", metavar="PATH")

    # commands contributed by other packages: listed here for --help, run by main()
    benches = sorted(n.split(".", 1)[1] for n in _plugin_commands() if n.startswith("bench."))
    for word in sorted({n.split(".")[0] for n in _plugin_commands()}):
        text = (f"benchmarks against peers, in one run: {', '.join(benches)}" if word == "bench"
                else f"see capnet {word} --help")
        sub.add_parser(word, help=text, add_help=False)
    return p


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _load(path: str, overrides: list[str], err: Console, warnings: bool = True):
    from harness.description import DescriptionError, load
    from harness.preflight import preflight
    try:
        system = load(path, overrides)
        problems = preflight(system)
        if problems:
            raise DescriptionError(problems)
    except DescriptionError as exc:
        for problem in exc.problems:
            err.print(str(problem), markup=False, highlight=False)
        err.print(f"capnet: {len(exc.problems)} problem(s); nothing was started",
                  markup=False, highlight=False)
        return None
    if warnings:
        for warning in system.warnings:
            err.print(str(warning), markup=False, highlight=False)
    return system


def cmd_check(args, out: Console, err: Console) -> int:
    from harness.captable import render_check
    system = _load(args.system, args.set, err, warnings=False)   # render_check shows them
    if system is None:
        return EXIT_BAD_INPUT
    render_check(system, out)
    if not (args.policy or args.path):
        return 0
    verdict = _verdict(system, args.policy, err)
    if verdict is None:
        return EXIT_BAD_INPUT
    pairs = []
    for text in args.path:
        a, sep, b = text.partition(":")
        names = set(system.components) | {"outside"}
        if not sep or a not in names or b not in names:
            err.print(f"capnet: error: --path {text!r}: expected A:B with A and B among "
                      f"{', '.join(sorted(names))}", markup=False, highlight=False)
            return EXIT_BAD_INPUT
        pairs.append((a, b))
    from harness.policy import render
    render(verdict, out, pairs)
    return 0 if verdict.ok else EXIT_BAD_INPUT


def _verdict(system, policy_path: str | None, err: Console):
    from harness import flows
    from harness.policy import check, load_policy
    from harness.problems import DescriptionError
    policy = None
    if policy_path:
        try:
            policy = load_policy(policy_path, system)
        except DescriptionError as exc:
            for problem in exc.problems:
                err.print(str(problem), markup=False, highlight=False)
            return None
    return check(system, policy, flows.derive(system))


def cmd_graph(args, out: Console, err: Console) -> int:
    from harness.graph import GraphError, write_graph
    system = _load(args.system, args.set, err)
    if system is None:
        return EXIT_BAD_INPUT
    verdict = _verdict(system, args.policy, err)
    if verdict is None:
        return EXIT_BAD_INPUT
    try:
        write_graph(system, verdict.flows, verdict.policy, args.output,
                    [flow for flow, _src, _dst in verdict.violations])
    except GraphError as exc:
        err.print(f"capnet: error: {exc}", markup=False, highlight=False)
        return EXIT_BAD_INPUT
    out.print(f"wrote {args.output}: {len(system.components)} components, "
              f"{len(verdict.flows)} flows, {len(verdict.violations)} violations",
              markup=False, highlight=False)
    return 0


def cmd_run(args, out: Console, err: Console) -> int:
    from harness.control import ControlError
    from harness.supervisor import Supervisor
    system = _load(args.system, args.set, err)
    if system is None:
        return EXIT_BAD_INPUT

    def emit(line: str) -> None:
        if not args.quiet or line.startswith("capnet:"):
            print(line, flush=True)

    supervisor = Supervisor(system, emit=emit, control_path=args.control)
    with supervisor.stopping_on_signals():
        try:
            supervisor.start()
        except ControlError as exc:
            err.print(f"capnet: error: {exc}", markup=False, highlight=False)
            supervisor.kill_all()
            supervisor.shutdown()
            return EXIT_BAD_INPUT
        except (RuntimeError, OSError) as exc:     # a component or a device failed to start
            err.print(f"capnet: error: {exc}", markup=False, highlight=False)
            supervisor.kill_all()
            supervisor.shutdown()
            return 1
        emit(f"capnet: system '{system.name}' running: {len(system.components)} components "
             f"started in {supervisor.launch_ns / 1e6:.0f} ms; control socket "
             f"{supervisor.control.path if supervisor.control else '(none)'}")
        reason = supervisor.run(args.duration)
        emit(f"capnet: stopping ({reason})")
        summary = supervisor.shutdown()
    render_summary(summary, out)
    if args.stats_json:
        with open(args.stats_json, "w") as fh:
            json.dump(summary, fh, indent=2, default=str)
    failed = any(c["state"] == "failed" for c in summary["components"].values())
    return 1 if failed else 0


def render_summary(summary: dict, out: Console) -> None:
    cons = summary["conservation"]
    table = Table(title=f"system '{summary['system']}' — {summary['stop_reason']}, "
                        f"ran {summary['run_s']} s, launched in {summary['launch_ms']} ms")
    for col in ("component", "state", "in", "out", "dropped", "pending", "rejected", "balanced",
                "restarts", "faults"):
        table.add_column(col, justify="left" if col in ("component", "state", "dropped") else "right")
    for name, info in summary["components"].items():
        n = cons["components"][name]
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(n["dropped"].items())) or "0"
        table.add_row(name, info["state"], str(n["in"]), str(n["out"]), dropped,
                      str(n["pending"]), str(n["rejected"]), "yes" if n["balanced"] else "NO",
                      str(info["restarts"]), str(len(info["faults"])))
    out.print(table)
    dropped = sum(cons["dropped"].values())
    verdict = "holds" if cons["balanced"] else "DOES NOT HOLD"
    created = f" + created {cons['created']}" if cons.get("created") else ""
    out.print(f"conservation {verdict}: in {cons['in']}{created} = out {cons['out']} + dropped {dropped} "
              f"{dict(sorted(cons['dropped'].items()))} + pending {cons['pending']}",
              markup=False, highlight=False)
    failed = [n for n, c in summary["components"].items() if c["faults"]]
    if not cons["balanced"] and failed:
        missing = cons["in"] - cons["out"] - dropped - cons["pending"]
        out.print(f"  {missing} frames unaccounted for: lost with the failed incarnations of "
                  f"{', '.join(failed)} (what a component held when it died is gone)",
                  markup=False, highlight=False)


def _control_path(args, err: Console) -> str | None:
    from harness.control import default_path
    if args.control:
        return args.control
    if not args.name:
        err.print("capnet: error: give SYSTEM-NAME or --control PATH", markup=False)
        return None
    return default_path(args.name)


def cmd_remote(args, out: Console, err: Console) -> int:
    from harness.control import ControlError, request
    path = _control_path(args, err)
    if path is None:
        return EXIT_BAD_INPUT
    if args.command == "stats":
        obj = {"op": "stats"}
    elif args.command == "stop":
        obj = {"op": "stop"}
    else:
        try:
            msg = json.loads(args.message)
        except json.JSONDecodeError as exc:
            err.print(f"capnet: error: MESSAGE-JSON: {exc}", markup=False)
            return EXIT_BAD_INPUT
        obj = {"op": "call", "component": args.component, "msg": msg}
    try:
        reply = request(path, obj)
    except ControlError as exc:
        err.print(f"capnet: error: {exc}", markup=False, highlight=False)
        return 1
    if "error" in reply:
        err.print(f"capnet: error: {reply['error']}", markup=False, highlight=False)
        return 1
    result = reply.get("ok")
    if args.command == "stats" and not args.json:
        _render_live(result, out)
    else:
        print(json.dumps(result, indent=2, default=str))
    return 0


def _render_live(result: dict, out: Console) -> None:
    table = Table(title=f"system '{result['system']}' (live)")
    for col in ("component", "state", "in", "out", "dropped", "restarts"):
        table.add_column(col)
    for name, info in result["components"].items():
        counters = (info.get("stats") or {}).get("counters", {})
        dropped = sum(v for k, v in counters.items() if k.startswith("dropped."))
        table.add_row(name, info["state"], str(counters.get("in", 0)),
                      str(counters.get("out", 0)), str(dropped), str(info["restarts"]))
    out.print(table)


def _plugin_commands() -> dict[str, object]:
    """Commands other packages contribute (``[project.entry-points."capnet.commands"]``).

    An entry's name is the command words joined by dots (``bench.rings``); its value is a
    ``main(argv) -> int``. The harness names them but never imports them until one is run, so
    the import direction stays shmring ← harness ← the component packages.
    """
    from importlib.metadata import entry_points
    return {ep.name: ep for ep in entry_points(group="capnet.commands")}


def _plugin_command(argv: list[str]):
    commands = _plugin_commands()
    for words in (2, 1):
        name = ".".join(argv[:words])
        if len(argv) >= words and name in commands:
            return name, commands[name]
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # commands of other packages (gen, replay, filter, attest, bench …) get their arguments
    # untouched, including --help; they are found through the "capnet.commands" entry points
    plugin = _plugin_command(argv)
    if plugin is not None:
        name, entry = plugin
        return entry.load()(argv[len(name.split(".")):])
    args = _parser().parse_args(argv)
    wide = None if sys.stdout.isatty() else 140
    out, err = Console(width=wide), Console(stderr=True, width=wide)
    if args.command == "check":
        return cmd_check(args, out, err)
    if args.command == "run":
        return cmd_run(args, out, err)
    if args.command == "graph":
        return cmd_graph(args, out, err)
    if args.command in ("stats", "call", "stop"):
        return cmd_remote(args, out, err)
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
