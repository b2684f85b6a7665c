"""The parsed rule set: chains of rules, named sets, verdict maps and NAT data maps.

Values are already resolved to inclusive integer intervals (see ``values``), so the reference
evaluator and the compiler read the same meaning from one parse.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from filter.rules.values import Intervals

Element = tuple[Intervals, ...]      # one element of a set: intervals per key component


@dataclass(frozen=True)
class Match:
    """``fields`` (one, or several joined by ``.``) in ``elements`` (or the named set ``setref``),
    negated when ``negate``. A single-field match has one-component elements."""

    fields: tuple[str, ...]
    elements: tuple[Element, ...] = ()
    setref: str | None = None
    negate: bool = False
    line: int = 0


@dataclass(frozen=True)
class IifMatch:
    names: frozenset[str]
    negate: bool = False


@dataclass(frozen=True)
class CtMatch:
    states: frozenset[str]         # new, established, related, invalid, untracked
    negate: bool = False


@dataclass(frozen=True)
class PcapMatch:
    expression: str


@dataclass(frozen=True)
class Limit:
    """Token bucket: ``rate`` per ``per_ns`` of packets (or bytes), ``burst`` deep; matches
    while under the rate (``over``: while above it); one bucket per key of ``key`` fields."""

    rate: int
    per_ns: int
    bytes: bool
    burst: int
    over: bool = False
    key: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    kind: str                      # accept drop reject jump goto return continue
    target: str = ""               # chain, for jump/goto
    reject_with: str = ""          # "tcp reset", "icmp port-unreachable", ... ("" = by protocol)


@dataclass(frozen=True)
class Counter:
    pass


@dataclass(frozen=True)
class Log:
    prefix: str = ""


@dataclass(frozen=True)
class MarkSet:
    value: int


@dataclass(frozen=True)
class Nat:
    kind: str                      # snat dnat masquerade
    address: int | None = None     # first address as an int (None: masquerade's own)
    ports: tuple[int, int] | None = None
    family: int = 4                # 4 or 6: the packets it applies to (an implied match)
    last: int | None = None        # last address of a range (None: just ``address``)
    key: tuple[str, ...] = ()      # a data map: fields whose values pick the target ...
    targets: tuple = ()            # ... ((Element, (address, last, ports)), ...), first hit
    mapref: str | None = None      # ... or the named data map ``@mapref`` ...
    named: NamedSet | None = field(default=None, compare=False, repr=False)  # ... read live

    def resolve(self, values: tuple) -> Nat | None:
        """The plain statement a packet with key ``values`` gets from the data map (itself
        when there is no map; None when no element holds). A named map is read as it is now,
        so elements added or deleted at run time hold for the next new connection."""
        if not self.key:
            return self
        targets = self.targets
        if self.named is not None:
            targets = zip(self.named.elements, self.named.verdicts, strict=True)
        for element, (address, last, ports) in targets:
            if all(v is not None and any(lo <= v <= hi for lo, hi in ivs)
                   for v, ivs in zip(values, element, strict=True)):
                return Nat(self.kind, address, ports, self.family, last)
        return None


@dataclass(frozen=True)
class VMap:
    """``KEY vmap { element : verdict, ... }`` or ``KEY vmap @name``."""

    fields: tuple[str, ...]
    entries: tuple[tuple[Element, Verdict], ...] = ()
    mapref: str | None = None


@dataclass
class Rule:
    line: int
    matches: list = field(default_factory=list)       # Match, IifMatch, PcapMatch (stateless)
    stateful: list = field(default_factory=list)      # CtMatch, Limit, Match on meta.mark
    statements: list = field(default_factory=list)    # Counter, Log, MarkSet, Nat
    verdict: Verdict | None = None
    vmap: VMap | None = None
    text: str = ""


@dataclass
class Chain:
    name: str
    line: int
    policy: str | None = None      # a base chain has one
    rules: list[Rule] = field(default_factory=list)


@dataclass
class NamedSet:
    """A named set (``is_map`` False), verdict map or NAT data map (``target`` names its
    value type); elements can change at run time."""

    name: str
    kinds: tuple[str, ...]         # field kinds of the key components
    line: int
    is_map: bool = False
    elements: list[Element] = field(default_factory=list)
    verdicts: list = field(default_factory=list)   # maps: one value per element, a Verdict
    #                                  (verdict map) or a NAT target (address, None, ports)
    target: str = ""               # data maps: "ipv4_addr", "ipv6_addr . inet_service", ...

    @property
    def family(self) -> int:
        """A data map's address family (4 or 6; 0 for sets and verdict maps)."""
        return {"ipv4_addr": 4, "ipv6_addr": 6}.get(self.target.split(" ")[0], 0)


@dataclass
class Ruleset:
    chains: dict[str, Chain]
    sets: dict[str, NamedSet]
    base: str                      # the base chain packets enter
    path: str = "<rules>"
    text: str = ""

    @property
    def policy(self) -> str:
        return self.chains[self.base].policy or "accept"

    def rule_lines(self) -> list[int]:
        return [r.line for c in self.chains.values() for r in c.rules]
