"""Capability tables: what each component of a system is granted, as `capnet check` prints it."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from harness.description import NETWORK_DEVICE_KINDS, System


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


def capabilities(system: System, component: str) -> list[tuple[str, str, str]]:
    """Rows (kind, name, detail) of everything ``component`` is granted."""
    spec = system.components[component]
    rows = []
    for m in spec.maps:
        region = system.regions[m.region]
        rows.append(("region", m.region, f"{m.perms} {_size(region.size)}, buffers of "
                                         f"{region.buffer_size} B"))
    for q in system.queues_of(component):
        if q.producer == component:
            detail = f"producer -> {q.consumer} over {q.data}, capacity {q.capacity}"
        else:
            detail = f"consumer <- {q.producer} over {q.data}, capacity {q.capacity}"
        rows.append(("queue", q.name, detail + (" (diode)" if q.kind == "diode" else "")))
    for ch in system.channels_of(component):
        peer = ch.ends[1] if ch.ends[0] == component else ch.ends[0]
        detail = f"notify <-> {peer}"
        if ch.pp == component:
            detail += f"; may call {peer}"
        elif ch.pp == peer:
            detail += f"; called by {peer}"
        rows.append(("channel", ch.name, detail))
    for i, dev in enumerate(spec.devices):
        if dev.kind in NETWORK_DEVICE_KINDS:
            where = f" in netns {dev.netns}" if dev.netns else ""
            kernel = f", kernel side {dev.address}" if dev.address else ""
            rows.append(("device", f"tap[{i}]", f"{dev.name}{where}{kernel}, frames both ways"))
            continue
        how = "read" if dev.mode == "r" else "write (created/truncated)"
        rows.append(("device", f"{dev.kind}[{i}]", f"{dev.path}, {how}"))
    for region in sorted({q.data for q in system.queues_of(component)}):
        first_count = system.initial_buffers(region).get(component)
        if first_count:
            first, count = first_count
            rows.append(("buffers", region, f"origin of {count} buffers "
                                            f"({first}..{first + count - 1})"))
    return rows


def render_check(system: System, console: Console) -> None:
    """Print the system summary, its warnings and one capability table per component."""
    console.print(f"system '{system.name}' ({system.path}, sha256 {system.sha256[:16]}…): "
                  f"{len(system.components)} components, {len(system.regions)} regions, "
                  f"{len(system.queues)} queues, {len(system.channels)} channels — valid",
                  markup=False, highlight=False)
    for warning in system.warnings:
        console.print(str(warning), markup=False, highlight=False)
    for name, spec in sorted(system.components.items(), key=lambda kv: -kv[1].priority):
        polls = ", busy-polls" if spec.wait == "poll" else ""
        table = Table(title=f"{name}: {spec.program}, priority {spec.priority}, "
                            f"restart {spec.restart}{polls}", title_justify="left")
        table.add_column("capability")
        table.add_column("name")
        table.add_column("detail")
        for row in capabilities(system, name) or [("(none)", "", "")]:
            table.add_row(*row)
        console.print(table)
