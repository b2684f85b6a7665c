"""``capnet filter``: check rule files, load them into a running firewall, edit its sets.

    capnet filter check RULES [--linktype N]
    capnet filter load RULES (--system NAME | --control PATH) [--component fw]
    capnet filter set add|delete SET ELEMENTS (--system NAME | --control PATH) [--component fw]
    capnet filter show (--system NAME | --control PATH) [--component fw] [--json]

A rule file with errors is reported (``FILE:LINE:COL: error: ...``, the line, a caret) and the
exit status is 2; nothing is sent. ``load`` sends the text in chunks (protected-call messages
are bounded) and the firewall swaps rule sets between batches; a failure leaves the old rules.
Exit status 1 when the system cannot be reached or refuses.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys

from filter.classify import compile_rules
from filter.rules import RuleError

EXIT_BAD_INPUT = 2
CHUNK = 32 * 1024


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.print_usage(sys.stderr)
        print(f"capnet filter: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def _target(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--system", metavar="NAME", help="the running system's name")
    where.add_argument("--control", metavar="PATH", help="its control socket")
    p.add_argument("--component", default="fw", help="the firewall component (default fw)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="capnet filter", description="rule files and running firewalls")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    check = sub.add_parser("check", help="parse and compile a rule file")
    check.add_argument("rules")
    check.add_argument("--linktype", type=int, default=1)
    load = sub.add_parser("load", help="replace a running firewall's rules")
    load.add_argument("rules")
    load.add_argument("--linktype", type=int, default=1)
    _target(load)
    sets = sub.add_parser("set", help="add or delete elements of a named set or map")
    sets.add_argument("action", choices=("add", "delete"))
    sets.add_argument("set")
    sets.add_argument("elements", help="as written in the file, e.g. '10.0.0.0/8, 192.0.2.1', "
                      "'22 : accept' or '80 : 10.0.0.80 . 8080'")
    _target(sets)
    show = sub.add_parser("show", help="the rules in force and their counters")
    show.add_argument("--json", action="store_true")
    _target(show)
    return p


def _check(path: str, linktype: int):
    """(text, classifier) or None after printing the problem."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        print(f"capnet filter: error: {path}: {exc.strerror}", file=sys.stderr)
        return None
    except UnicodeDecodeError as exc:
        print(f"capnet filter: error: {path}: not UTF-8 text ({exc.reason})", file=sys.stderr)
        return None
    try:
        return text, compile_rules(text, path, linktype)
    except RuleError as exc:
        print(exc, file=sys.stderr)
        return None


class _Refused(dict):
    """The component's answer when it refused the request (bad input: exit status 2)."""


def _call(args, msg: dict) -> dict | None:
    """The component's answer; None when it cannot be reached, ``_Refused`` (falsy when
    empty, so test with ``isinstance``) when it refused."""
    from harness.control import ControlError, default_path, request
    path = args.control or default_path(args.system)
    try:
        reply = request(path, {"op": "call", "component": args.component, "msg": msg})
    except ControlError as exc:
        print(f"capnet filter: error: {exc}", file=sys.stderr)
        return None
    if "error" in reply:
        print(f"capnet filter: error: {reply['error']}", file=sys.stderr)
        return None
    result = reply.get("ok")
    if not isinstance(result, dict) or not result.get("ok"):
        error = result.get("error") if isinstance(result, dict) else result
        print(f"capnet filter: error: {error}", file=sys.stderr)
        return _Refused(error=error)
    return result


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.command == "check":
        checked = _check(args.rules, args.linktype)
        if checked is None:
            return EXIT_BAD_INPUT
        _, cl = checked
        rs = cl.ruleset
        print(f"{args.rules}: ok: {len(rs.rule_lines())} rules in {len(rs.chains)} chains "
              f"(base chain '{rs.base}', policy {rs.policy}), {len(rs.sets)} sets/maps, "
              f"{len(cl.entries)} classifier entries over {len(cl.dims)} fields")
        return 0
    if args.command == "load":
        checked = _check(args.rules, args.linktype)
        if checked is None:
            return EXIT_BAD_INPUT
        text = checked[0]
        parts = [text[i:i + CHUNK] for i in range(0, len(text), CHUNK)] or [""]
        token = secrets.token_hex(8)
        result = None
        for k, part in enumerate(parts):
            result = _call(args, {"op": "load", "path": args.rules, "token": token,
                                  "part": k, "parts": len(parts), "text": part})
            if result is None or isinstance(result, _Refused):
                return 1
        print(f"{args.rules}: loaded into {args.component}: {result['rules']} rules, "
              f"{result['entries']} classifier entries")
        return 0
    if args.command == "set":
        result = _call(args, {"op": "set", "action": args.action, "set": args.set,
                              "elements": args.elements})
        if result is None:
            return 1
        if isinstance(result, _Refused):         # a bad element or an unknown set/map
            return EXIT_BAD_INPUT
        print(f"{args.set}: {args.action}: {result['changed']} changed, {result['size']} "
              "elements now")
        return 0
    result = _call(args, {"op": "rules"})
    if result is None or isinstance(result, _Refused):
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['path']}: policy {result['policy']} ({result['policy_hits']} packets)")
    for r in result["rules"]:
        counter = f"  counter {r['counter'][0]} packets {r['counter'][1]} bytes" \
            if r["counter"] else ""
        print(f"  {r['line']:>5}  {r['hits']:>10}  {r['rule']}{counter}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
