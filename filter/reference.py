"""The reference evaluator: rules run straightforwardly, one parsed packet at a time.

It exists to be obviously right, not fast: the compiled classifier (``filter.classify``) must
agree with it on every packet. It parses each frame with ``struct`` into a dict of the fields
in ``filter.rules.fields`` (an absent field is missing from the dict), then walks the chains:
first match, ``jump``/``goto``/``return``, the base chain's policy at the end.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from filter.classify.state import Limits
from filter.rules import ast
from filter.rules.fields import FIELDS, PORT_PROTOCOLS
from filter.rules.pcap import compile_expression
from filter.rules.values import complement, contains

RAW_LINKTYPES = (12, 14, 101, 228, 229)
LOOPBACK_LINKTYPES = (0, 108)
SLL_LINKTYPES = {113: (14, 16), 276: (0, 20)}    # Linux cooked v1/v2: (type at, IP header at)
VLAN_TAGS = (0x8100, 0x88A8)
IP6_EXTENSIONS = (0, 43, 44, 60)


def packet_fields(frame: bytes, linktype: int = 1, iif: str = "") -> dict:
    """The rule fields of ``frame`` (see ``filter.rules.fields``); absent ones are missing."""
    f: dict = {"meta.length": len(frame), "iif": iif, "meta.mark": 0}
    n = len(frame)
    l3 = _link_fields(frame, linktype, f)
    if l3 is None:
        return f
    etype = f.get("meta.protocol")
    l4 = proto = None
    if etype == 0x0800 and n >= l3 + 20 and frame[l3] >> 4 == 4:
        ihl = (frame[l3] & 15) * 4
        if ihl >= 20 and n >= l3 + ihl:
            f["meta.nfproto"] = 2
            f["ip.ttl"], proto = frame[l3 + 8], frame[l3 + 9]
            f["ip.protocol"] = f["meta.l4proto"] = proto
            f["ip.saddr"], f["ip.daddr"] = struct.unpack_from("!II", frame, l3 + 12)
            if struct.unpack_from("!H", frame, l3 + 6)[0] & 0x1FFF == 0:
                l4 = l3 + ihl
    elif etype == 0x86DD and n >= l3 + 40 and frame[l3] >> 4 == 6:
        nxt = frame[l3 + 6]
        f["meta.nfproto"] = 10
        f["ip6.nexthdr"], f["ip6.hoplimit"] = nxt, frame[l3 + 7]
        f["ip6.saddr"] = int.from_bytes(frame[l3 + 8:l3 + 24], "big")
        f["ip6.daddr"] = int.from_bytes(frame[l3 + 24:l3 + 40], "big")
        off, first = l3 + 40, True
        for _ in range(4):
            if nxt not in IP6_EXTENSIONS:
                break
            if n < off + 8:
                nxt = None
                break
            if nxt == 44:
                first = first and struct.unpack_from("!H", frame, off + 2)[0] & 0xFFF8 == 0
                step = 8
            else:
                step = (frame[off + 1] + 1) * 8
            nxt, off = frame[off], off + step
        if nxt is not None and nxt not in IP6_EXTENSIONS:
            proto = f["meta.l4proto"] = nxt
            l4 = off if first else None
    if l4 is not None:
        if proto in PORT_PROTOCOLS and n >= l4 + 4:
            f["th.sport"], f["th.dport"] = struct.unpack_from("!HH", frame, l4)
            if proto == 6 and n >= l4 + 14:
                f["tcp.flags"] = frame[l4 + 13]
        elif proto in (1, 58) and n >= l4 + 2 and (proto == 1) == (etype == 0x0800):
            name = "icmp" if proto == 1 else "icmpv6"
            f[name + ".type"], f[name + ".code"] = frame[l4], frame[l4 + 1]
    return f


def _link_fields(frame: bytes, linktype: int, f: dict) -> int | None:
    """Fill the link-layer fields of ``f``; where the IP header starts (None: no IP layer)."""
    n = len(frame)
    if linktype in RAW_LINKTYPES or linktype in LOOPBACK_LINKTYPES:
        l3 = 0 if linktype in RAW_LINKTYPES else 4
        etype = None
        if linktype in LOOPBACK_LINKTYPES:
            if n >= 4:
                family = int.from_bytes(frame[:4], "little" if linktype == 0 else "big")
                etype = {2: 0x0800, 24: 0x86DD, 28: 0x86DD, 30: 0x86DD}.get(family)
        elif linktype in (228, 229):
            etype = (0x0800 if linktype == 228 else 0x86DD) if n >= 1 else None
        elif n >= 1 and frame[0] >> 4 in (4, 6):
            etype = 0x0800 if frame[0] >> 4 == 4 else 0x86DD
        if etype is not None:
            f["ether.type"] = f["meta.protocol"] = etype
        return l3
    if linktype in SLL_LINKTYPES:
        where, l3 = SLL_LINKTYPES[linktype]
        if n >= l3:
            f["ether.type"] = f["meta.protocol"] = struct.unpack_from("!H", frame, where)[0]
        return l3
    if linktype != 1:
        return None
    if n < 14:
        return 14
    etype = f["ether.type"] = struct.unpack_from("!H", frame, 12)[0]
    l3 = 14
    for depth in range(2):                 # IEEE 802.1Q tags: TPID, TCI, next type
        if etype not in VLAN_TAGS:
            break
        if n < l3 + 4:
            return l3
        tci, etype = struct.unpack_from("!HH", frame, l3)
        if depth == 0:
            f["vlan.id"], f["vlan.pcp"], f["vlan.type"] = tci & 0x0FFF, tci >> 13, etype
        l3 += 4
    f["meta.protocol"] = etype
    return l3


def limit_id(rule: ast.Rule, limit: ast.Limit) -> tuple[int, int]:
    """The bucket table of a ``limit``: its rule's line and its place among the rule's matches."""
    return (rule.line, rule.stateful.index(limit))


@dataclass
class Decision:
    """What the rules decided for one packet."""

    verdict: str                      # accept, drop, reject
    line: int                         # the rule that decided (0: the policy)
    reject_with: str = ""
    mark: int = 0
    counters: list[int] = field(default_factory=list)   # lines of counter statements run
    logs: list[tuple[int, str]] = field(default_factory=list)
    nat: list = field(default_factory=list)             # Nat statements run, in order


def element_holds(element: ast.Element, fields: tuple[str, ...], pkt: dict) -> bool:
    return all(name in pkt and contains(ivs, pkt[name]) for name, ivs in zip(fields, element,
                                                                              strict=True))


class Reference:
    """Evaluate ``ruleset`` one packet at a time. ``ct_state(frame, now)`` answers ``ct
    state`` matches (None: rules with ``ct state`` never match)."""

    def __init__(self, ruleset: ast.Ruleset, linktype: int = 1, limits=None, ct_state=None):
        self.rules, self.linktype = ruleset, linktype
        self.limits = limits if limits is not None else Limits()
        self.ct_state = ct_state
        self.pcap = {}
        for chain in ruleset.chains.values():
            for rule in chain.rules:
                for m in rule.matches:
                    if isinstance(m, ast.PcapMatch) and m.expression not in self.pcap:
                        self.pcap[m.expression] = compile_expression(m.expression, linktype)

    def decide(self, frame: bytes, iif: str = "", now: int = 0) -> Decision:
        pkt = packet_fields(frame, self.linktype, iif)
        d = Decision("", 0)
        result = self._chain(self.rules.base, pkt, frame, now, d, depth=0)
        if result is None or result.kind == "return":
            d.verdict, d.line = self.rules.policy, 0
        return d

    def _chain(self, name, pkt, frame, now, d, depth):
        """Run a chain; the terminal verdict, a ``return``, or None (fell off the end)."""
        for rule in self.rules.chains[name].rules:
            if not all(self._holds(m, rule, pkt, frame, now) for m in rule.matches):
                continue
            verdict = rule.verdict
            if rule.vmap is not None:
                verdict = self._vmap(rule.vmap, pkt)
                if verdict is None:         # a key not in the map: the rule does not match
                    continue
            if not all(self._holds(m, rule, pkt, frame, now) for m in rule.stateful):
                continue                    # stateful matches last, in the order written
            for st in rule.statements:
                if isinstance(st, ast.Counter):
                    d.counters.append(rule.line)
                elif isinstance(st, ast.Log):
                    d.logs.append((rule.line, st.prefix))
                elif isinstance(st, ast.MarkSet):
                    pkt["meta.mark"] = d.mark = st.value
                elif isinstance(st, ast.Nat):
                    d.nat.append((rule.line, st.resolve(tuple(pkt.get(k) for k in st.key))))
            if verdict is None or verdict.kind == "continue":
                continue
            if verdict.kind in ("accept", "drop", "reject"):
                d.verdict, d.line, d.reject_with = verdict.kind, rule.line, verdict.reject_with
                return verdict
            if verdict.kind == "return":
                return verdict
            inner = self._chain(verdict.target, pkt, frame, now, d, depth + 1)
            if inner is not None and inner.kind != "return":
                return inner
            if verdict.kind == "goto":
                return ast.Verdict("return")
        return None

    def _vmap(self, vmap: ast.VMap, pkt: dict):
        entries = vmap.entries
        if vmap.mapref is not None:
            named = self.rules.sets[vmap.mapref]
            entries = tuple(zip(named.elements, named.verdicts, strict=True))
        for element, verdict in entries:
            if element_holds(element, vmap.fields, pkt):
                return verdict
        return None

    def _holds(self, m, rule, pkt, frame, now) -> bool:
        if isinstance(m, ast.Match):
            if not all(name in pkt for name in m.fields):
                return False
            elements = m.elements
            if m.setref is not None:
                elements = tuple(self.rules.sets[m.setref].elements)
            if m.negate and len(m.fields) == 1:
                union = tuple(iv for e in elements for iv in e[0])
                return contains(complement(union, FIELDS[m.fields[0]].top), pkt[m.fields[0]])
            hit = any(element_holds(e, m.fields, pkt) for e in elements)
            return hit != m.negate
        if isinstance(m, ast.IifMatch):
            return (pkt["iif"] in m.names) != m.negate
        if isinstance(m, ast.PcapMatch):
            return bool(self.pcap[m.expression].matches(frame))
        if isinstance(m, ast.CtMatch):
            if self.ct_state is None:
                return False
            return (self.ct_state(frame, now) in m.states) != m.negate
        if isinstance(m, ast.Limit):
            key = tuple(pkt.get(name) for name in m.key)
            return self.limits.check(limit_id(rule, m), m, key, len(frame), now)
        raise TypeError(f"unknown match {m!r}")
