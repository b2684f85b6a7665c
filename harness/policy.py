"""Information-flow policies: partitions of components and the flows allowed between them.

A policy is a TOML file::

    [partitions]
    outside = ["outside"]      # optional: the outside world is always a partition of its own
    red = ["app"]
    gateway = ["gw"]
    black = ["nic"]

    [flows]
    allow = ["outside -> black", "black -> gateway", "gateway -> black", "red -> gateway"]

Every component of the system is in exactly one partition. The pseudo-component ``outside``
(the world beyond granted devices) is in partition ``outside`` unless listed in another one.
Flows inside one partition are always allowed; between partitions only the listed pairs, and
intransitively: ``a -> b`` and ``b -> c`` do not allow ``a -> c``. ``check`` judges every
derived flow (``harness.flows``) on its own and also reports what the outside world can reach,
what can influence each component, and the flows between partitions. Errors in the file are
``Problem``s (file, line, key path) raised together as one ``DescriptionError``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from rich.table import Table
from rich.text import Text

from harness.flows import (
    OUTSIDE,
    Flow,
    hops,
    influence,
    passes_through,
    paths,
    reachable_from,
)
from harness.problems import DescriptionError, Problem

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}$")
ARROW = re.compile(r"\s*([A-Za-z][A-Za-z0-9_-]*)\s*->\s*([A-Za-z][A-Za-z0-9_-]*)\s*$")
TOP_KEYS = ("partitions", "flows")
FLOW_KEYS = ("allow",)


@dataclass(frozen=True)
class Policy:
    path: str
    partitions: dict[str, tuple[str, ...]]
    allowed: frozenset[tuple[str, str]]
    partition_of: dict[str, str] = field(hash=False, compare=False)

    def partition(self, component: str) -> str:
        return self.partition_of[component]

    def allows(self, source_partition: str, target_partition: str) -> bool:
        return source_partition == target_partition or \
            (source_partition, target_partition) in self.allowed


@dataclass
class Verdict:
    """The outcome of checking a system's flows against a policy (or none)."""

    system: str
    policy: Policy | None
    flows: list[Flow]
    violations: list[tuple[Flow, str, str]]
    reachable_from_outside: set[str]
    influence: dict[str, set[str]]
    matrix: dict[tuple[str, str], list[Flow]]

    @property
    def ok(self) -> bool:
        return not self.violations

    def messages(self) -> list[str]:
        return [violation_message(f, sp, dp) for f, sp, dp in self.violations]


def violation_message(flow: Flow, source_partition: str, target_partition: str) -> str:
    return (f"{flow.key}: {flow.detail}: flow {flow.source} ({source_partition}) -> "
            f"{flow.target} ({target_partition}) is not allowed by the policy")


class _Lines:
    """Best-effort line and column of policy keys and of quoted values within them."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.keys: dict[str, int] = {}
        section = ""
        for n, line in enumerate(self.lines):
            header = re.match(r"\s*\[([^\]]+)\]", line)
            if header:
                section = header.group(1).strip()
                self.keys.setdefault(section, n)
                continue
            key = re.match(r"\s*([A-Za-z0-9_\-\"']+)\s*=", line)
            if key:
                name = key.group(1).strip("\"'")
                self.keys.setdefault(f"{section}.{name}" if section else name, n)

    def key(self, key: str) -> tuple[int | None, int | None]:
        key = re.sub(r"\[\d+\]$", "", key)
        n = self.keys.get(key, self.keys.get(key.split(".")[0]))
        return (None, None) if n is None else (n + 1, 1)

    def value(self, key: str, value: str) -> tuple[int | None, int | None]:
        start = self.keys.get(re.sub(r"\[\d+\]$", "", key))
        if start is None:
            return self.key(key)
        for n in range(start, len(self.lines)):
            for quoted in (f'"{value}"', f"'{value}'"):
                col = self.lines[n].find(quoted)
                if col >= 0:
                    return n + 1, col + 1
        return start + 1, 1


def load_policy(path, system) -> Policy:
    """Read and check a policy file against ``system``; raise ``DescriptionError`` listing
    every problem."""
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DescriptionError([Problem(path, "", f"cannot read the policy: {exc}")]) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line, col = (int(m.group(1)), int(m.group(2))) if m else (None, None)
        if line is None and "at end of document" in str(exc):
            line = max(1, len(text.splitlines()))
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise DescriptionError([Problem(path, "", f"not valid TOML: {message}", line=line,
                                        column=col)]) from None
    where = _Lines(text)
    problems: list[Problem] = []

    def error(key: str, message: str, hint: str = "", value: str | None = None) -> None:
        line, col = where.key(key) if value is None else where.value(key, value)
        problems.append(Problem(path, key, message, hint, line, col))

    for k in doc:
        if k not in TOP_KEYS:
            error(k, f"unknown key '{k}'", "valid: " + ", ".join(TOP_KEYS))
    partitions, partition_of = _partitions(doc.get("partitions", {}), system, error)
    allowed = _allowed(doc.get("flows", {}), partitions, error)
    if problems:
        raise DescriptionError(problems)
    return Policy(path, partitions, frozenset(allowed), partition_of)


def _partitions(raw, system, error) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    if not isinstance(raw, dict):
        error("partitions", "must be a table of NAME = [components]",
              'e.g. [partitions] red = ["app"]')
        raw = {}
    known = set(system.components) | {OUTSIDE}
    partitions: dict[str, tuple[str, ...]] = {}
    partition_of: dict[str, str] = {}
    if OUTSIDE in system.components:
        error("partitions", f"the system has a component named '{OUTSIDE}', which is the "
                            "built-in name of the outside world", "rename that component")
    for name, members in raw.items():
        key = f"partitions.{name}"
        if not NAME.match(name):
            error(key, f"partition name must be letters, digits, '_' and '-' starting with a "
                       f"letter, got {name!r}")
            continue
        if not (isinstance(members, list) and all(isinstance(m, str) for m in members)):
            error(key, "must be an array of component names", f'e.g. {name} = ["app"]')
            continue
        for m in members:
            if m not in known:
                error(key, f"no component named '{m}' in system '{system.name}'",
                      "components: " + ", ".join(sorted(known)), value=m)
            elif m in partition_of:
                error(key, f"component '{m}' is in two partitions: '{partition_of[m]}' and "
                           f"'{name}'", "a component belongs to exactly one partition", value=m)
            else:
                partition_of[m] = name
        partitions[name] = tuple(members)
    partitions.setdefault(OUTSIDE, ())
    if OUTSIDE not in partition_of:
        partition_of[OUTSIDE] = OUTSIDE
        partitions[OUTSIDE] = (*partitions[OUTSIDE], OUTSIDE)
    for comp in system.components:
        if comp not in partition_of and comp != OUTSIDE:
            error("partitions", f"component '{comp}' is in no partition",
                  "every component of the system must be in exactly one partition")
    return partitions, partition_of


def _allowed(raw, partitions, error) -> set[tuple[str, str]]:
    if not isinstance(raw, dict):
        error("flows", "must be a table with allow = [\"a -> b\", ...]")
        return set()
    for k in raw:
        if k not in FLOW_KEYS:
            error(f"flows.{k}", f"unknown key '{k}'", "valid: " + ", ".join(FLOW_KEYS))
    allow = raw.get("allow", [])
    if not isinstance(allow, list):
        error("flows.allow", "must be an array of \"a -> b\" strings")
        return set()
    out = set()
    for i, text in enumerate(allow):
        key = f"flows.allow[{i}]"
        m = ARROW.match(text) if isinstance(text, str) else None
        if m is None:
            error(key, f"cannot read {text!r}", 'write "SOURCE -> TARGET" with partition names',
                  value=text if isinstance(text, str) else None)
            continue
        bad = [p for p in m.groups() if p not in partitions]
        for p in bad:
            error(key, f"no partition named '{p}' in {text!r}",
                  "partitions: " + ", ".join(sorted(partitions)), value=text)
        if not bad:
            out.add((m.group(1), m.group(2)))
    return out


def check(system, policy: Policy | None, flows: list[Flow]) -> Verdict:
    """Judge every flow against ``policy`` (intransitively) and gather what the report shows.
    Without a policy nothing is a violation and there is no partition matrix."""
    violations: list[tuple[Flow, str, str]] = []
    matrix: dict[tuple[str, str], list[Flow]] = {}
    if policy is not None:
        for f in flows:
            sp, dp = policy.partition(f.source), policy.partition(f.target)
            if sp != dp:
                matrix.setdefault((sp, dp), []).append(f)
            if not policy.allows(sp, dp):
                violations.append((f, sp, dp))
    nodes = list(system.components)
    if any(OUTSIDE in (f.source, f.target) for f in flows):
        nodes.append(OUTSIDE)
    return Verdict(system.name, policy, list(flows), violations,
                   reachable_from(flows, OUTSIDE),
                   {n: influence(flows, n) for n in nodes}, matrix)


def render(verdict: Verdict, console, path_pairs=()) -> None:
    """Print the verdict with rich: violations, the partition matrix, what the outside reaches,
    influence sets, and every path for each (a, b) in ``path_pairs``."""
    policy = verdict.policy
    where = f" against {policy.path}" if policy else " (no policy)"
    console.print(Text(f"information flows of system '{verdict.system}'{where}: "
                       f"{len(verdict.flows)} flows", style="bold"))
    if policy is not None:
        if verdict.violations:
            n = len(verdict.violations)
            verb = "flows violate" if n > 1 else "flow violates"
            console.print(Text(f"{n} {verb} the policy:",
                               style="bold red"))
            for message in verdict.messages():
                console.print(Text("  " + message, style="red"))
        else:
            console.print(Text("every flow is allowed by the policy", style="green"))
        console.print(_matrix_table(verdict, policy))
    reach = sorted(verdict.reachable_from_outside)
    console.print(Text("reachable from the outside world: " +
                       (", ".join(reach) if reach else "nothing (no device grants)")))
    table = Table(title="what can influence each component (transitively)", title_justify="left")
    table.add_column("component")
    if policy is not None:
        table.add_column("partition")
    table.add_column("influenced by")
    for node, sources in verdict.influence.items():
        row = [node] + ([policy.partition(node)] if policy else [])
        table.add_row(*row, ", ".join(sorted(sources)) or "nothing")
    console.print(table)
    for a, b in path_pairs:
        _render_paths(verdict.flows, a, b, console)


def _matrix_table(verdict: Verdict, policy: Policy) -> Table:
    names = sorted(policy.partitions)
    table = Table(title="flows between partitions (rows: from, columns: to; "
                        "ok = allowed, NO = violation, - = allowed but unused)",
                  title_justify="left")
    table.add_column("from \\ to")
    for n in names:
        table.add_column(n)
    for src in names:
        cells = []
        for dst in names:
            found = verdict.matrix.get((src, dst), [])
            if src == dst:
                cells.append(Text("(inside)", style="dim"))
            elif found:
                good = policy.allows(src, dst)
                cells.append(Text(f"{'ok' if good else 'NO'} {len(found)}",
                                  style="green" if good else "bold red"))
            else:
                cells.append(Text("-" if (src, dst) in policy.allowed else ""))
        table.add_row(src, *cells)
    return table


def _mechanisms(flows: list[Flow], hop: Flow) -> str:
    return ", ".join(sorted({f.mechanism for f in hops(flows, hop.source, hop.target)}))


def _render_paths(flows: list[Flow], a: str, b: str, console, limit: int = 20) -> None:
    found = paths(flows, a, b, limit)
    if not found:
        console.print(Text(f"paths {a} -> {b}: no path", style="bold"))
        return
    more = f" (first {limit}; there may be more)" if len(found) >= limit else ""
    console.print(Text(f"paths {a} -> {b}: {len(found)}{more}", style="bold"))
    for n, path in enumerate(found, 1):
        steps = [f"{f.source} -[{_mechanisms(flows, f)}]-> " for f in path]
        console.print(Text(f"  {n}. " + "".join(steps) + b))
    through = passes_through(flows, a, b) or set()
    console.print(Text(f"  every path passes through: {', '.join(sorted(through)) or 'nothing'}"))
