"""``capnet attest``: make keys, get a signed report from a system, verify one.

    capnet attest --keygen DIR
    capnet attest --system SYSTEM.toml --nonce HEX [-o REPORT] [--control PATH]
    capnet attest --run SYSTEM.toml [--duration S] [--control PATH]
    capnet attest --measure SYSTEM.toml -o EXPECTED
    capnet attest --verify REPORT --pubkey KEY --expect SYSTEM.toml|EXPECTED --nonce HEX [--json]

``--system`` without ``--control`` measures the system, starts it (the attester gets the
measurement in its config), asks the attester for a report over the nonce, and stops it in
order. With ``--control PATH`` it asks a system already running there, which must have been
started measured: by ``capnet attest --run`` (a plain ``capnet run`` gives the attester no
measurement, and it refuses to sign). The report is written to REPORT, or as hex to standard
output. ``--verify`` measures the expected description and its code on this machine and checks
the report: signature by KEY, the nonce the verifier sent, and every measured value; it names
every component whose measurement differs. ``--measure`` saves a system's expected measurement
to a file that ``--expect`` accepts in place of the description, so that a verifier needs
neither a copy of the system nor its secrets (the WireGuard private key).

Exit status: 0 verified / done; 1 the report does not verify, the attester refused, or the
system failed; 2 bad input (nothing started).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import replace
from pathlib import Path

from gateway import attest

EXIT_OK, EXIT_MISMATCH, EXIT_BAD_INPUT = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="capnet attest",
                                description="remote attestation of a capnet system")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--keygen", metavar="DIR", help="write DIR/attest.key and DIR/attest.pub")
    mode.add_argument("--system", metavar="SYSTEM.toml", help="get a signed report")
    mode.add_argument("--run", metavar="SYSTEM.toml", help="run a system, measured")
    mode.add_argument("--measure", metavar="SYSTEM.toml", help="save the expected measurement")
    mode.add_argument("--verify", metavar="REPORT", help="verify a report")
    p.add_argument("--nonce", metavar="HEX", help="the verifier's fresh challenge, "
                   f"{attest.NONCE_MIN}..{attest.NONCE_MAX} bytes in hex")
    p.add_argument("-o", dest="output", metavar="REPORT", help="where to write the report")
    p.add_argument("--control", metavar="PATH", help="control socket of a running system")
    p.add_argument("--duration", type=float, metavar="S", help="with --run: stop after S s")
    p.add_argument("--pubkey", metavar="KEY", help="the attester's public key file")
    p.add_argument("--expect", metavar="SYSTEM.toml|EXPECTED",
                   help="the description (or saved measurement) the report must match")
    p.add_argument("--json", action="store_true", help="with --verify: print the verdict as JSON")
    return p


def _say(text: str, stream=None) -> None:
    print(text, file=stream or sys.stdout, flush=True)


def _error(text: str) -> int:
    _say(f"capnet attest: error: {text}", sys.stderr)
    return EXIT_BAD_INPUT


def _load(path: str):
    """The checked description (programs' preflight included), or None after printing why."""
    from harness.description import load
    from harness.preflight import preflight
    from harness.problems import DescriptionError
    try:
        system = load(path)
        problems = preflight(system)
        if problems:
            raise DescriptionError(problems)
    except DescriptionError as exc:
        for problem in exc.problems:
            _say(str(problem), sys.stderr)
        _say(f"capnet attest: {len(exc.problems)} problem(s); nothing was started", sys.stderr)
        return None
    return system


def _require(args, *names: str) -> str | None:
    missing = [n for n in names if getattr(args, n.lstrip("-").replace("-", "_")) is None]
    modes = ("keygen", "system", "run", "measure", "verify")
    mode = next(m for m in modes if getattr(args, m) is not None)
    if missing:
        return f"--{mode} needs {', '.join('--' + m for m in missing)}"
    return None


def _measured(system):
    """(attester name, the system with the measurement in the attester's config)."""
    name = attest.attester_of(system)
    encoded = attest.encode_measurement(attest.measure(system))
    spec = system.components[name]
    components = dict(system.components)
    components[name] = replace(spec, config={**spec.config, "measurement": encoded})
    return name, replace(system, components=components)


def cmd_keygen(args) -> int:
    try:
        key, pub = attest.keygen(args.keygen)
    except FileExistsError:
        return _error(f"{args.keygen}/attest.key exists; not overwriting a signing key")
    except OSError as exc:
        return _error(f"{args.keygen}: {exc}")
    _say(f"wrote {key} (secret, grant it to the attester only) and {pub}")
    return EXIT_OK


def _start(system, control: str | None, lines: list[str]):
    from harness.supervisor import Supervisor
    supervisor = Supervisor(system, emit=lines.append, control_path=control or "")
    try:
        supervisor.start()
    except BaseException:
        supervisor.kill_all()
        supervisor.shutdown()
        raise
    return supervisor


def _ask_started(system, name: str, nonce: bytes) -> tuple[dict, list[str]]:
    lines: list[str] = []
    supervisor = _start(system, None, lines)
    try:
        reply = supervisor.call(name, {"nonce": nonce})
        supervisor.request_stop("attestation answered")
        supervisor.shutdown()
    except BaseException:
        supervisor.kill_all()
        supervisor.shutdown()
        raise
    return reply, lines


def cmd_system(args) -> int:
    problem = _require(args, "nonce")
    if problem:
        return _error(problem)
    try:
        nonce = attest.parse_nonce(args.nonce)
    except attest.AttestError as exc:
        return _error(str(exc))
    if args.output and not Path(args.output).resolve().parent.is_dir():
        return _error(f"-o {args.output}: no such directory")
    system = _load(args.system)
    if system is None:
        return EXIT_BAD_INPUT
    lines: list[str] = []
    try:
        if args.control:
            from harness.control import ControlError, request
            name = attest.attester_of(system)
            try:
                reply = request(args.control, {"op": "call", "component": name,
                                               "msg": {"nonce": nonce}})
            except ControlError as exc:
                _say(f"capnet attest: error: {exc}", sys.stderr)
                return EXIT_MISMATCH
        else:
            name, measured = _measured(system)
            reply, lines = _ask_started(measured, name, nonce)
    except attest.AttestError as exc:
        return _error(str(exc))
    except (RuntimeError, OSError) as exc:
        for line in lines:
            _say(line, sys.stderr)
        _say(f"capnet attest: error: the system did not start: {exc}", sys.stderr)
        return EXIT_MISMATCH
    report = (reply.get("ok") or {}).get("report") if isinstance(reply.get("ok"), dict) else None
    if not isinstance(report, bytes):
        for line in lines:
            _say(line, sys.stderr)
        _say(f"capnet attest: error: the attester did not sign: "
             f"{reply.get('error', 'no report in its reply')}", sys.stderr)
        return EXIT_MISMATCH
    if args.output:
        Path(args.output).write_bytes(report)
        _say(f"wrote {args.output}: {len(report)} bytes, signed report of system "
             f"'{system.name}' over nonce {nonce.hex()}")
    else:
        _say(report.hex())
    return EXIT_OK


def cmd_run(args) -> int:
    from rich.console import Console

    from harness.cli import render_summary
    from harness.control import ControlError
    system = _load(args.run)
    if system is None:
        return EXIT_BAD_INPUT
    if args.duration is not None and args.duration <= 0:
        return _error(f"--duration must be > 0, got {args.duration}")
    try:
        name, measured = _measured(system)
    except attest.AttestError as exc:
        return _error(str(exc))
    lines: list[str] = []
    try:
        supervisor = _start(measured, args.control, lines)
    except ControlError as exc:
        return _error(str(exc))
    except (RuntimeError, OSError) as exc:
        for line in lines:
            _say(line, sys.stderr)
        _say(f"capnet attest: error: {exc}", sys.stderr)
        return EXIT_MISMATCH
    supervisor.emit = _say
    for line in lines:
        _say(line)
    previous = {sig: signal.signal(sig, lambda s, f: supervisor.request_stop(
        f"interrupted ({signal.Signals(s).name})")) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        _say(f"capnet: system '{system.name}' running, measured; attester '{name}'; control "
             f"socket {supervisor.control.path}")
        reason = supervisor.run(args.duration)
        _say(f"capnet: stopping ({reason})")
        summary = supervisor.shutdown()
    except BaseException:
        supervisor.kill_all()
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    render_summary(summary, Console(width=140))
    failed = any(c["state"] == "failed" for c in summary["components"].values())
    return EXIT_MISMATCH if failed else EXIT_OK


def cmd_measure(args) -> int:
    problem = _require(args, "output")
    if problem:
        return _error(problem.replace("--output", "-o EXPECTED"))
    if not Path(args.output).resolve().parent.is_dir():
        return _error(f"-o {args.output}: no such directory")
    system = _load(args.measure)
    if system is None:
        return EXIT_BAD_INPUT
    try:
        attest.attester_of(system)
    except attest.AttestError as exc:
        return _error(str(exc))
    measurement = attest.measure(system)
    Path(args.output).write_bytes(attest.save_measurement(measurement))
    _say(f"wrote {args.output}: expected measurement of system '{system.name}', "
         f"{len(measurement['components'])} components, {len(measurement['files'])} source files")
    return EXIT_OK


def cmd_verify(args) -> int:
    problem = _require(args, "pubkey", "expect", "nonce")
    if problem:
        return _error(problem + " (the nonce is the one you sent: it proves the report fresh)")
    try:
        nonce = attest.parse_nonce(args.nonce)
        public_key = attest.read_key(Path(args.pubkey).read_text("ascii", "replace")[:200],
                                     args.pubkey)
        data = Path(args.verify).read_bytes()
    except attest.AttestError as exc:
        return _error(str(exc))
    except OSError as exc:
        return _error(f"{exc.filename}: {exc.strerror}")
    try:
        expected = attest.load_measurement(Path(args.expect).read_bytes())
    except attest.AttestError as exc:
        return _error(f"{args.expect}: {exc}")
    except OSError as exc:
        return _error(f"{exc.filename}: {exc.strerror}")
    if expected is None:
        system = _load(args.expect)
        if system is None:
            return EXIT_BAD_INPUT
        expected = attest.measure(system)
    verdict = attest.verify(data, public_key, nonce, expected)
    if args.json:
        _say(json.dumps({"ok": verdict.ok, "problems": verdict.problems,
                         "components": verdict.components}, indent=2))
    elif verdict.ok:
        m = verdict.report["measurement"]
        _say(f"attestation verified: system '{m['system']}' (description sha256 "
             f"{m['description_sha256'].hex()[:16]}…), {len(m['components'])} components, "
             f"{len(m['files'])} source files, {len(m['wireguard'])} WireGuard key(s); "
             f"nonce {nonce.hex()}")
    else:
        _say(f"attestation FAILED against {args.expect}:")
        for text in verdict.problems:
            _say(f"  {text}")
        if verdict.components:
            _say(f"components whose measurement differs: {', '.join(verdict.components)}")
    return EXIT_OK if verdict.ok else EXIT_MISMATCH


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:           # argparse printed the message (2) or the help (0)
        return int(exc.code or 0)
    if args.keygen is not None:
        return cmd_keygen(args)
    if args.system is not None:
        return cmd_system(args)
    if args.run is not None:
        return cmd_run(args)
    if args.measure is not None:
        return cmd_measure(args)
    return cmd_verify(args)


if __name__ == "__main__":
    sys.exit(main())
