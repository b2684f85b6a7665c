"""Programs' own checks of their configuration, run before anything is started.

The description checker knows the shape of a system, not what a program makes of its
``config``: a firewall's rule file, a gateway's WireGuard configuration. A component class may
say what is wrong with its configuration before any process exists::

    class Firewall(Component):
        @classmethod
        def preflight(cls, config: dict, files: dict[str, Path]) -> list[str]:
            ...   # complete messages, e.g. "rules/fw.rules:3:14: error: ..." with a caret line

``files`` maps each of the component's file devices (by path as written in the description) to
its absolute path, so a program can read what it will be granted. ``capnet check`` and
``capnet run`` print every message and exit with status 2; nothing is started. The program's
module is imported here, in the harness's own process, exactly as its PD will import it.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from harness.description import System, program_paths
from harness.problems import Problem


def preflight(system: System) -> list[Problem]:
    """Every problem the system's programs find in their own configurations."""
    problems: list[Problem] = []
    base = Path(system.path).resolve().parent
    added = [p for p in program_paths(system.path) if p not in sys.path]
    sys.path[:0] = added
    try:
        for name, comp in system.components.items():
            module, _, cls_name = comp.program.partition(":")
            key = f"components.{name}.config"
            try:
                cls = getattr(importlib.import_module(module), cls_name)
            except Exception as exc:   # the PD would fail the same way: say so now
                problems.append(Problem(system.path, f"components.{name}.program",
                                        f"cannot import {comp.program}: {exc}"))
                continue
            check = getattr(cls, "preflight", None)
            if check is None:
                continue
            files = {d.path: base / d.path for d in comp.devices if d.kind == "file"}
            problems.extend(Problem(system.path, key, message)
                            for message in check(dict(comp.config), files))
    finally:
        for p in added:
            sys.path.remove(p)
    return problems
