"""Run-time changes to named sets, verdict maps and NAT data maps: add and delete elements
(written as in the file)."""

from __future__ import annotations

from filter.rules.ast import Ruleset
from filter.rules.errors import RuleError
from filter.rules.parser import parse_elements


def _named(ruleset: Ruleset, name: str):
    named = ruleset.sets.get(name)
    if named is None:
        known = ", ".join(ruleset.sets) or "none"
        raise RuleError(f"no set or map named '{name}' (defined: {known})")
    return named


def add_elements(ruleset: Ruleset, name: str, text: str) -> int:
    """Add the elements written in ``text`` to set/map ``name``; returns how many changed:
    new elements, and map elements already present that get a new value (verdict or NAT
    target). Nothing changes when any element is bad."""
    named = _named(ruleset, name)
    elements, verdicts = parse_elements(named, text)
    added = 0
    for n, element in enumerate(elements):
        if element in named.elements:
            i = named.elements.index(element)
            if named.is_map and named.verdicts[i] != verdicts[n]:
                named.verdicts[i] = verdicts[n]
                added += 1
            continue
        named.elements.append(element)
        if named.is_map:
            named.verdicts.append(verdicts[n])
        added += 1
    return added


def delete_elements(ruleset: Ruleset, name: str, text: str) -> int:
    """Delete the elements written in ``text`` (map keys without verdicts are accepted);
    returns how many were present."""
    named = _named(ruleset, name)
    probe = type(named)(named.name, named.kinds, named.line, is_map=False)
    elements, _ = parse_elements(probe, text)
    removed = 0
    for element in elements:
        if element in named.elements:
            i = named.elements.index(element)
            del named.elements[i]
            if named.is_map:
                del named.verdicts[i]
            removed += 1
    return removed
