"""Chains flattened into one list of *entries* the bit-vector classifier can search.

An entry is a conjunction of stateless per-field conditions (``conds``: field -> intervals)
plus what happens to a packet that lands on it (first match from a start index):

- ``rule`` set: the rule's stateful matches (``residual``: ct state, limit, meta mark) are
  checked once; if they fail the packet goes on at ``fail_to``; else the statements run and the
  verdict applies: accept/drop/reject end it, jump/goto go on at the next entry (the inlined
  chain), none/continue go on at ``fail_to`` (the end of the rule's group of entries);
- ``rule`` None: a skip entry (``return``, the end of a ``goto``'d chain, a negated
  concatenated match): the packet goes on at ``skip_to``.

``jump`` and ``goto`` inline the target chain with the jumping rule's conditions added to each
of its entries, so only packets that took the jump ever land there. A concatenated set or a
verdict map expands to one entry per element (a *group*); a negated concatenation becomes
skip entries for its elements (of all such matches of the rule) followed by the rule without
them. Sets are read when flattening:
a set change recompiles. A NAT data map (``dnat to KEY map @NAME``) is flattened as the
implied match "KEY in NAME"; its targets are read by the statement itself (``Nat.resolve``)
when a packet lands on the rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product

from filter.rules import ast
from filter.rules.fields import FIELDS
from filter.rules.values import complement, normalise

MAX_ENTRIES = 2_000_000
FINAL = ("accept", "drop", "reject")


class FlattenError(ValueError):
    """The rule set expands beyond what the classifier holds."""


@dataclass
class Entry:
    conds: dict
    rule: ast.Rule | None = None
    verdict: ast.Verdict | None = None
    fail_to: int = -1
    skip_to: int = -1
    group: int = 0            # rule instance: its residual is checked once per packet


@dataclass
class Flat:
    entries: list[Entry] = field(default_factory=list)
    iif_names: list[str] = field(default_factory=list)
    pcap: list[str] = field(default_factory=list)


def intersect(a, b):
    """Intervals in both ``a`` and ``b``."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def conjoin(conds: dict, more: dict) -> dict | None:
    """``conds`` and ``more`` together; None when they cannot both hold."""
    out = dict(conds)
    for name, ivs in more.items():
        out[name] = intersect(out[name], ivs) if name in out else ivs
        if not out[name]:
            return None
    return out


class _Flattener:
    def __init__(self, ruleset: ast.Ruleset) -> None:
        self.rs = ruleset
        self.flat = Flat()
        self.groups = 0

    def iif_index(self, name: str) -> int:
        if name not in self.flat.iif_names:
            self.flat.iif_names.append(name)
        return self.flat.iif_names.index(name)

    def pcap_field(self, expression: str) -> str:
        if expression not in self.flat.pcap:
            self.flat.pcap.append(expression)
        return f"pcap:{self.flat.pcap.index(expression)}"

    def add(self, entry: Entry) -> int:
        if len(self.flat.entries) >= MAX_ENTRIES:
            raise FlattenError(f"the rule set expands to more than {MAX_ENTRIES} classifier "
                               "entries (jumps inline chains; concatenated sets expand)")
        self.flat.entries.append(entry)
        return len(self.flat.entries) - 1

    # -- matches into alternatives of conditions ------------------------------------------------
    def alternatives(self, rule: ast.Rule):
        """(list of condition dicts any of which matches, skip condition dicts or None)."""
        base: dict = {}
        choices: list[list[dict]] = []
        negated: list[dict] | None = None
        for m in rule.matches:
            if isinstance(m, ast.IifMatch):
                ivs = normalise((i, i) for i in map(self.iif_index, sorted(m.names)))
                if m.negate:
                    ivs = complement(ivs, FIELDS["iif"].top)
                choices.append([{"iif": ivs}])
            elif isinstance(m, ast.PcapMatch):
                choices.append([{self.pcap_field(m.expression): ((1, 1),)}])
            else:
                elements = m.elements if m.setref is None else \
                    tuple(self.rs.sets[m.setref].elements)
                if len(m.fields) == 1:
                    ivs = normalise(iv for e in elements for iv in e[0])
                    if m.negate:
                        ivs = complement(ivs, FIELDS[m.fields[0]].top)
                    choices.append([{m.fields[0]: ivs}])
                elif m.negate:            # not (A or B ...): skip entries for every element
                    negated = (negated or []) + [dict(zip(m.fields, e, strict=True))
                                                 for e in elements]
                    choices.append([{f: ((0, FIELDS[f].top),) for f in m.fields}])
                else:
                    choices.append([dict(zip(m.fields, e, strict=True)) for e in elements])
        alts = []
        for combo in product(*choices):
            conds = base
            for c in combo:
                conds = conjoin(conds, c)
                if conds is None:
                    break
            if conds is not None:
                alts.append(conds)
        return alts, negated

    # -- chains ---------------------------------------------------------------------------------
    def chain(self, name: str, path: dict) -> None:
        returns: list[int] = []
        for rule in self.rs.chains[name].rules:
            self.rule(rule, path, returns)
        end = len(self.flat.entries)
        for i in returns:
            self.flat.entries[i].skip_to = end

    def rule(self, rule: ast.Rule, path: dict, returns: list[int]) -> None:
        alts, negated = self.alternatives(rule)
        with_path = [c for c in (conjoin(path, a) for a in alts) if c is not None]
        if not with_path:
            return
        skips = []
        for neg in negated or []:
            for conds in with_path:
                both = conjoin(conds, neg)
                if both is not None:
                    skips.append(self.add(Entry(both)))
        outcomes = self.outcomes(rule)
        self.groups += 1
        group, members = self.groups, list(skips)
        for conds in with_path:
            for extra, verdict in outcomes:
                full = conjoin(conds, extra)
                if full is None:
                    continue
                members.append(self.add(Entry(full, rule, verdict, group=group)))
                if verdict is not None and verdict.kind == "return":
                    returns.append(members[-1])
                elif verdict is not None and verdict.kind in ("jump", "goto"):
                    self.chain(verdict.target, full)
                    # back from the chain (or a goto falling off its end): leave this group
                    back = self.add(Entry(full))
                    if verdict.kind == "goto":
                        returns.append(back)
                    else:
                        members.append(back)
        end = len(self.flat.entries)
        for i in members:
            e = self.flat.entries[i]
            e.fail_to = end
            if e.rule is None and e.skip_to < 0:
                e.skip_to = end

    def outcomes(self, rule: ast.Rule) -> list[tuple[dict, ast.Verdict | None]]:
        vmap = rule.vmap
        if vmap is None:
            return [({}, rule.verdict)]
        entries = vmap.entries
        if vmap.mapref is not None:
            named = self.rs.sets[vmap.mapref]
            entries = tuple(zip(named.elements, named.verdicts, strict=True))
        return [(dict(zip(vmap.fields, element, strict=True)), verdict)
                for element, verdict in entries]


def flatten(ruleset: ast.Ruleset) -> Flat:
    """The entries of ``ruleset`` (see the module docstring)."""
    f = _Flattener(ruleset)
    f.chain(ruleset.base, {})
    return f.flat


def uses_connections(ruleset: ast.Ruleset) -> bool:
    """Whether ``ruleset`` needs connection tracking (``ct state`` or NAT)."""
    for chain in ruleset.chains.values():
        for rule in chain.rules:
            if any(isinstance(m, ast.CtMatch) for m in rule.stateful) or \
                    any(isinstance(s, ast.Nat) for s in rule.statements):
                return True
    return False
