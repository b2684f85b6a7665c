"""System graphs: a description drawn with Graphviz, coloured by policy partition.

Components are boxes, grouped in one cluster per partition and filled with its colour; regions
are ellipses joined to their mappers by edges labelled with the perms, pointing the way data
can go (``r``: region -> component; ``rw``: both ways). Queues are edges producer -> consumer
labelled ``name (cap N)``: a pair is two-headed (its free ring and head go back), a diode is
bold blue and one-way. Channels are dashed (protected calls marked ``pp: A calls B``). The
outside world is a double octagon, drawn when a component has devices. Flows that violate the
policy are drawn red: the grants that create them, and one extra red edge per violating pair.

``write_graph`` writes DOT text itself and renders ``.svg``/``.png`` with ``dot``; ``.dot`` or
``.gv`` is written as text and needs no Graphviz.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from harness.flows import OUTSIDE, Flow

PALETTE = ("#cfe8ff", "#ffd6d6", "#d9f2d0", "#fff1b8", "#e8d9ff", "#ffe0c2", "#d0f0f0",
           "#f5d0e8", "#e0e0e0")
OUTSIDE_COLOUR = "#bdbdbd"
VIOLATION = "#d00000"
FORMATS = {".svg": "svg", ".png": "png"}


class GraphError(Exception):
    """The graph could not be rendered (no Graphviz, unknown format, dot failed)."""


def _q(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _attrs(**attrs) -> str:
    return "[" + ", ".join(f"{k}={_q(v)}" for k, v in attrs.items() if v is not None) + "]"


def dot_text(system, flows: list[Flow], policy=None, violations=()) -> str:
    """The system as Graphviz DOT text. ``violations`` are flows drawn red; with a policy
    and no ``violations`` given, they are computed from it."""
    if policy is not None and not violations:
        violations = [f for f in flows if not policy.allows(policy.partition(f.source),
                                                             policy.partition(f.target))]
    bad_keys = _violating_keys(system, violations)
    has_outside = any(getattr(c, "devices", ()) for c in system.components.values()) or \
        any(OUTSIDE in (f.source, f.target) for f in flows)
    lines = [f"digraph {_q(system.name)} {{",
             '  graph [rankdir="LR", fontname="Helvetica", fontsize="11", '
             f'label={_q("system " + system.name)}, labelloc="t"];',
             '  node [fontname="Helvetica", fontsize="11"];',
             '  edge [fontname="Helvetica", fontsize="9"];']
    lines += _component_nodes(system, policy, has_outside)
    for region in system.regions:
        lines.append(f"  {_q('r:' + region)} {_attrs(label=region, shape='ellipse')};")
    lines += _map_edges(system, bad_keys)
    lines += _queue_edges(system, bad_keys)
    lines += _channel_edges(system, bad_keys)
    lines += _device_edges(system, bad_keys)
    pairs: dict[tuple[str, str], set[str]] = {}
    for f in violations:
        pairs.setdefault((f.source, f.target), set()).add(f.mechanism)
    for (src, dst), mechs in sorted(pairs.items()):
        lines.append(f"  {_q(_node(src))} -> {_q(_node(dst))} "
                     + _attrs(label="not allowed: " + ", ".join(sorted(mechs)), color=VIOLATION,
                              fontcolor=VIOLATION, penwidth="2.5", style="bold",
                              constraint="false") + ";")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _node(name: str) -> str:
    return OUTSIDE if name == OUTSIDE else "c:" + name


def _violating_keys(system, violations) -> set[str]:
    """Key paths of every grant that creates a violating flow (both maps of a region flow)."""
    keys = set()
    for f in violations:
        keys.add(f.key)
        if f.mechanism == "region":
            index = int(f.key.rsplit("[", 1)[1].rstrip("]"))
            region = system.components[f.source].maps[index].region
            reader = system.components[f.target]
            j = next(k for k, m in enumerate(reader.maps) if m.region == region)
            keys.add(f"components.{f.target}.maps[{j}]")
    return keys


def _component_nodes(system, policy, has_outside: bool) -> list[str]:
    def box(name: str, colour: str) -> str:
        spec = system.components[name]
        label = f"{name}\n{spec.program}\npriority {spec.priority}"
        return f"    {_q('c:' + name)} " + _attrs(label=label, shape="box", style="filled,rounded",
                                                 fillcolor=colour) + ";"

    outside = f"    {_q(OUTSIDE)} " + _attrs(label="outside world", shape="doubleoctagon",
                                             style="filled", fillcolor=OUTSIDE_COLOUR) + ";"
    if policy is None:
        lines = [box(name, PALETTE[0]) for name in system.components]
        return lines + ([outside] if has_outside else [])
    lines = []
    colours = {}
    for i, part in enumerate(sorted(p for p in policy.partitions if p != OUTSIDE)):
        colours[part] = PALETTE[i % len(PALETTE)]
    colours[OUTSIDE] = OUTSIDE_COLOUR
    for i, (part, members) in enumerate(sorted(policy.partitions.items())):
        shown = [m for m in members if m in system.components or (m == OUTSIDE and has_outside)]
        if not shown:
            continue
        lines.append(f"  subgraph {_q(f'cluster_{i}')} {{")
        lines.append(f"    label={_q('partition ' + part)}; style=\"dashed\"; "
                     f"color={_q('#555555')};")
        lines += [outside if m == OUTSIDE else box(m, colours[part]) for m in shown]
        lines.append("  }")
    return lines


def _edge(src: str, dst: str, bad: bool, **attrs) -> str:
    if bad:
        attrs.update(color=VIOLATION, fontcolor=VIOLATION, penwidth="2")
    return f"  {_q(src)} -> {_q(dst)} {_attrs(**attrs)};"


def _map_edges(system, bad_keys: set[str]) -> list[str]:
    lines = []
    for comp in system.components.values():
        for i, m in enumerate(comp.maps):
            bad = f"components.{comp.name}.maps[{i}]" in bad_keys
            if m.perms == "rw":
                lines.append(_edge("c:" + comp.name, "r:" + m.region, bad, label="rw",
                                   dir="both"))
            else:
                lines.append(_edge("r:" + m.region, "c:" + comp.name, bad, label="r"))
    return lines


def _queue_edges(system, bad_keys: set[str]) -> list[str]:
    lines = []
    for i, q in enumerate(system.queues.values()):
        bad = f"queues[{i}]" in bad_keys
        if q.kind == "diode":
            lines.append(_edge("c:" + q.producer, "c:" + q.consumer, bad,
                               label=f"{q.name} (cap {q.capacity}, diode)", style="bold",
                               color="#1f5fbf", arrowhead="normaltee", penwidth="2"))
        else:
            lines.append(_edge("c:" + q.producer, "c:" + q.consumer, bad,
                               label=f"{q.name} (cap {q.capacity})", dir="both",
                               arrowtail="odot", penwidth="1.5"))
    return lines


def _channel_edges(system, bad_keys: set[str]) -> list[str]:
    lines = []
    for i, ch in enumerate(system.channels.values()):
        bad = f"channels[{i}]" in bad_keys
        a, b = ch.ends
        if ch.pp:
            callee = b if ch.pp == a else a
            lines.append(_edge("c:" + ch.pp, "c:" + callee, bad, style="dashed", dir="both",
                               arrowtail="inv", label=f"{ch.name} (pp: {ch.pp} calls {callee})"))
        else:
            lines.append(_edge("c:" + a, "c:" + b, bad, style="dashed", dir="both",
                               label=ch.name))
    return lines


def _device_edges(system, bad_keys: set[str]) -> list[str]:
    lines = []
    for comp in system.components.values():
        for i, dev in enumerate(getattr(comp, "devices", ())):
            bad = f"components.{comp.name}.devices[{i}]" in bad_keys
            label = f"{dev.kind} {getattr(dev, 'path', '')} ({dev.mode})"
            if dev.mode == "w":
                lines.append(_edge("c:" + comp.name, OUTSIDE, bad, label=label))
            else:
                lines.append(_edge(OUTSIDE, "c:" + comp.name, bad, label=label,
                                   dir="both" if dev.mode == "rw" else "forward"))
    return lines


def write_graph(system, flows: list[Flow], policy, out_path, violations=()) -> None:
    """Draw ``system`` to ``out_path``: ``.svg`` or ``.png`` through Graphviz ``dot``, or the
    DOT text itself for ``.dot``/``.gv``. Raise ``GraphError`` with what to do otherwise."""
    out = Path(out_path)
    text = dot_text(system, flows, policy, violations)
    suffix = out.suffix.lower()
    if suffix in (".dot", ".gv"):
        out.write_text(text, encoding="utf-8")
        return
    if suffix not in FORMATS:
        raise GraphError(f"{out}: cannot tell the format from '{suffix or 'no suffix'}'; "
                         "use .svg, .png or .dot")
    dot = shutil.which("dot")
    if dot is None:
        raise GraphError("Graphviz 'dot' was not found on PATH: install Graphviz "
                         "(Debian: apt-get install graphviz) or write a .dot file instead")
    done = subprocess.run([dot, f"-T{FORMATS[suffix]}", "-o", str(out)], input=text.encode(),
                          capture_output=True, check=False)
    if done.returncode != 0:
        raise GraphError(f"dot failed (exit {done.returncode}): "
                         f"{done.stderr.decode(errors='replace').strip()}")
