"""Information flows derived from a system description: who can influence whom, and by what.

A *flow* A -> B means that something A does can change what B observes. Every grant in the
description is turned into flows, one per mechanism, each naming the key path that creates it:

- **region** (``components.A.maps[i]``): a region mapped ``rw`` by A and mapped (``r`` or
  ``rw``) by B != A is a flow A -> B. The key is the writer's map; the detail names the
  reader's. A region mapped ``r`` by everyone carries nothing between them.
- **queue, kind "pair"** (``queues[i]``): the ring region is shared ``rw`` by both ends, so
  information goes both ways. Producer -> consumer: the *active-ring* (descriptors and tail)
  and a *notification*. Consumer -> producer: the *ring-indices* (the head it advances and the
  ``consumer_signalled`` flag the producer reads), the *free-ring* (buffers returned, in the
  order and number the consumer chooses) and a *notification*. The data region's own maps are
  flows by the region rule.
- **queue, kind "diode"** (``queues[i]``): producer -> consumer only, as a *diode* flow plus a
  *notification*. Its ring region is mapped ``rw`` by the producer and ``r`` by the consumer;
  the consumer's head is private; the producer drops when full and never reads anything the
  consumer writes. The data region's maps still count by the region rule.
- **channel** (``channels[i]``): a *notification* each way (either end can signal the other).
  With ``pp = CALLER`` also a *protected-call* caller -> callee (the message) and a
  *protected-reply* callee -> caller (the answer).
- **device** (``components.A.devices[i]``): a granted device fd joins A to the outside world,
  the built-in pseudo-component ``outside``: mode ``r`` is outside -> A, ``w`` is A -> outside,
  ``rw`` both.

Influence is transitive (``influence``, ``reachable_from``, ``paths``); the policy check of
``harness.policy`` is not: it judges each flow on its own.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

OUTSIDE = "outside"
MECHANISMS = ("region", "active-ring", "ring-indices", "free-ring", "notification",
              "protected-call", "protected-reply", "device", "diode")


@dataclass(frozen=True)
class Flow:
    """Information can go from ``source`` to ``target`` by ``mechanism``, granted at ``key``."""

    source: str
    target: str
    mechanism: str
    key: str
    detail: str


def derive(system) -> list[Flow]:
    """Every flow the description grants, mechanism by mechanism (see the module docstring)."""
    return [*_region_flows(system), *_queue_flows(system), *_channel_flows(system),
            *_device_flows(system)]


def _region_flows(system) -> list[Flow]:
    out = []
    for writer in system.components.values():
        for i, wmap in enumerate(writer.maps):
            if wmap.perms != "rw":
                continue
            for reader in system.components.values():
                if reader.name == writer.name:
                    continue
                j = next((k for k, m in enumerate(reader.maps) if m.region == wmap.region), None)
                if j is None:
                    continue
                rkey = f"components.{reader.name}.maps[{j}]"
                out.append(Flow(writer.name, reader.name, "region",
                                f"components.{writer.name}.maps[{i}]",
                                f"region '{wmap.region}' (rw by {writer.name}, "
                                f"{reader.maps[j].perms} by {reader.name} at {rkey})"))
    return out


def _queue_flows(system) -> list[Flow]:
    out = []
    for i, q in enumerate(system.queues.values()):
        key, p, c = f"queues[{i}]", q.producer, q.consumer
        if q.kind == "diode":
            out += [Flow(p, c, "diode", key, f"diode queue '{q.name}': {p} enqueues, {c} reads; "
                                             f"nothing flows back"),
                    Flow(p, c, "notification", key, f"diode queue '{q.name}': {p} notifies {c}")]
            continue
        out += [Flow(p, c, "active-ring", key, f"queue '{q.name}' active ring: {p} enqueues "
                                               f"filled buffers, {c} reads them"),
                Flow(p, c, "notification", key, f"queue '{q.name}': {p} notifies {c}"),
                Flow(c, p, "ring-indices", key, f"queue '{q.name}': {c} writes the head and "
                                                f"its wake-up flag, {p} reads them"),
                Flow(c, p, "free-ring", key, f"queue '{q.name}' free ring: {c} returns "
                                             f"buffers to {p}"),
                Flow(c, p, "notification", key, f"queue '{q.name}': {c} notifies {p}")]
    return out


def _channel_flows(system) -> list[Flow]:
    out = []
    for i, ch in enumerate(system.channels.values()):
        key, (a, b) = f"channels[{i}]", ch.ends
        out += [Flow(a, b, "notification", key, f"channel '{ch.name}': {a} notifies {b}"),
                Flow(b, a, "notification", key, f"channel '{ch.name}': {b} notifies {a}")]
        if ch.pp:
            caller, callee = ch.pp, (b if ch.pp == a else a)
            out += [Flow(caller, callee, "protected-call", key,
                         f"channel '{ch.name}': {caller} calls {callee} with a message"),
                    Flow(callee, caller, "protected-reply", key,
                         f"channel '{ch.name}': {callee} replies to {caller}")]
    return out


def _device_flows(system) -> list[Flow]:
    out = []
    for comp in system.components.values():
        for i, dev in enumerate(getattr(comp, "devices", ())):
            key = f"components.{comp.name}.devices[{i}]"
            what = f"{dev.kind} {getattr(dev, 'path', '')}".strip()
            if "r" in dev.mode:
                out.append(Flow(OUTSIDE, comp.name, "device", key,
                                f"device {what} ({dev.mode}): {comp.name} reads what the "
                                f"outside world gives it"))
            if "w" in dev.mode:
                out.append(Flow(comp.name, OUTSIDE, "device", key,
                                f"device {what} ({dev.mode}): {comp.name} writes to the "
                                f"outside world"))
    return out


def graph(flows: Iterable[Flow]) -> dict[str, set[str]]:
    """Adjacency: each component (and ``outside``) that appears in a flow -> its direct targets."""
    adj: dict[str, set[str]] = {}
    for f in flows:
        adj.setdefault(f.source, set()).add(f.target)
        adj.setdefault(f.target, set())
    return adj


def _closure(adj: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = deque(adj.get(start, ()))
    while todo:
        node = todo.popleft()
        if node not in seen:
            seen.add(node)
            todo.extend(adj.get(node, ()))
    return seen - {start}


def _reverse(adj: dict[str, set[str]]) -> dict[str, set[str]]:
    rev: dict[str, set[str]] = {n: set() for n in adj}
    for src, targets in adj.items():
        for dst in targets:
            rev[dst].add(src)
    return rev


def reachable_from(flows: Iterable[Flow], x: str) -> set[str]:
    """Everything ``x`` can influence, directly or through others (``x`` itself excluded)."""
    return _closure(graph(flows), x)


def influence(flows: Iterable[Flow], x: str) -> set[str]:
    """Everything that can influence ``x``, directly or through others (``x`` itself excluded)."""
    return _closure(_reverse(graph(flows)), x)


def paths(flows: Iterable[Flow], a: str, b: str, limit: int = 20) -> list[list[Flow]]:
    """Up to ``limit`` simple paths from ``a`` to ``b``, shortest first; each hop is one flow
    (the first derived between those two components — ``hops`` lists all of them)."""
    flows = list(flows)
    adj = graph(flows)
    first: dict[tuple[str, str], Flow] = {}
    for f in flows:
        first.setdefault((f.source, f.target), f)
    useful = influence(flows, b) | {b}
    found: list[list[str]] = []
    # breadth first over partial paths: shortest paths come out first
    todo: deque[list[str]] = deque([[a]] if a in useful and a != b else [])
    budget = 200_000                 # partial paths explored at most, for dense graphs
    while todo and len(found) < limit and budget > 0:
        path = todo.popleft()
        budget -= 1
        for nxt in sorted(adj.get(path[-1], ())):
            if nxt == b:
                found.append(path + [b])
                if len(found) >= limit:
                    break
            elif nxt in useful and nxt not in path:
                todo.append(path + [nxt])
    return [[first[(s, t)] for s, t in zip(p, p[1:], strict=False)] for p in found]


def hops(flows: Iterable[Flow], source: str, target: str) -> list[Flow]:
    """Every flow directly from ``source`` to ``target``."""
    return [f for f in flows if f.source == source and f.target == target]


def passes_through(flows: Iterable[Flow], a: str, b: str) -> set[str] | None:
    """The components every path from ``a`` to ``b`` goes through (None when there is no
    path): e.g. whether every path from red to black crosses the gateway."""
    flows = list(flows)
    adj = graph(flows)
    if b not in _closure(adj, a):
        return None
    cuts = set()
    for node in adj:
        if node in (a, b):
            continue
        without = {n: t - {node} for n, t in adj.items() if n != node}
        if b not in _closure(without, a):
            cuts.add(node)
    return cuts
