"""Recursive-descent parser for rule files: declarations, sets and chains (grammar: the package
docstring and docs/rules.md; one rule's body is parsed by ``rulebody``).

Every fault is a ``RuleError`` naming the line and column of the offending token; ``parse``
returns it located in the file (``FILE:LINE:COL: error: ...`` plus the line and a caret).
"""

from __future__ import annotations

import ipaddress

from filter.rules import ast
from filter.rules.errors import RuleError
from filter.rules.fields import FIELDS, KIND_FIELD, SET_TYPES
from filter.rules.lexer import Token, tokenize
from filter.rules.rulebody import RuleBodyParser
from filter.rules.values import label, parse_value

MAX_JUMP_DEPTH = 16
ENDS = ("newline", "eof")


def parse(text: str, path: str = "<rules>") -> ast.Ruleset:
    """The rule set in ``text``; raises ``RuleError`` located in ``path``."""
    try:
        return _Parser(tokenize(text), path, text).file()
    except RuleError as exc:
        raise exc.located(path, text) from None


def parse_elements(named: ast.NamedSet, text: str) -> tuple[list[ast.Element], list]:
    """Elements written as in a set's ``elements = { ... }`` (without braces), for run-time
    ``set add/delete``; returns (elements, verdicts) — verdicts only for maps."""
    try:
        p = _Parser(tokenize("{" + text + "}"), "<elements>", text)
        return p.element_block(named.kinds, named.is_map, named.target)
    except RuleError as exc:
        exc.col = max(1, exc.col - 1)
        raise exc.located("<elements>", text) from None


class _Parser(RuleBodyParser):
    def __init__(self, tokens: list[Token], path: str, text: str) -> None:
        self.toks, self.i, self.path, self.text = tokens, 0, path, text
        self.lines = text.splitlines()
        self.chains: dict[str, ast.Chain] = {}
        self.sets: dict[str, ast.NamedSet] = {}
        self.refs: list[tuple[Token, str, tuple[str, ...], bool]] = []  # set uses to check
        self.nat_refs: list[tuple] = []        # NAT uses of data maps: (token, rule, nat, addr)
        self.jumps: list[tuple[Token, str, str]] = []                  # (token, from, to)

    # -- token helpers --------------------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def next(self) -> Token:
        t = self.toks[self.i]
        self.i = min(self.i + 1, len(self.toks) - 1)
        return t

    def at(self, *texts: str) -> bool:
        return self.tok.kind in ("atom", "punct") and self.tok.text in texts

    def expect(self, text: str, what: str = "") -> Token:
        if not self.at(text):
            raise self.tok.error(f"expected '{text}'{what}, found {self.tok}")
        return self.next()

    def word(self, what: str) -> Token:
        if self.tok.kind != "atom":
            raise self.tok.error(f"expected {what}, found {self.tok}")
        return self.next()

    def skip_separators(self) -> None:
        while self.tok.kind == "newline" or self.at(";"):
            self.next()

    def end_item(self) -> None:
        if self.tok.kind in ENDS or self.at(";", "}"):
            if self.at(";") or self.tok.kind == "newline":
                self.next()
            return
        raise self.tok.error(f"unexpected {self.tok} here")

    # -- top level ------------------------------------------------------------------------------
    def file(self) -> ast.Ruleset:
        self.declarations(top=True)
        base = [c for c in self.chains.values() if c.policy]
        if not base:
            first = next(iter(self.chains.values()), None)
            raise RuleError("no base chain: give one chain a policy ('policy accept' or "
                            "'policy drop')", first.line if first else self.tok.line, 1, 5)
        self.check_references()
        return ast.Ruleset(self.chains, self.sets, base[0].name, self.path, self.text)

    def declarations(self, top: bool) -> None:
        while True:
            self.skip_separators()
            if self.tok.kind == "eof" or (not top and self.at("}")):
                return
            head = self.word("'chain', 'set', 'map' or 'table'")
            if head.text == "table" and top:
                while self.tok.kind == "atom":
                    self.next()
                self.expect("{")
                self.declarations(top=False)
                self.expect("}", " to close the table")
            elif head.text == "chain":
                self.chain()
            elif head.text in ("set", "map"):
                self.named_set(head.text == "map")
            else:
                raise head.error(f"expected 'chain', 'set', 'map' or 'table', found {head}")

    def _new_name(self, kind: str, table: dict) -> Token:
        name = self.word(f"a {kind} name")
        if name.text in table:
            raise name.error(f"{kind} '{name.text}' is already defined on line "
                             f"{table[name.text].line}")
        return name

    def chain(self) -> None:
        name = self._new_name("chain", self.chains)
        chain = ast.Chain(name.text, name.line)
        self.chains[name.text] = chain
        self.expect("{")
        while True:
            self.skip_separators()
            if self.at("}"):
                self.next()
                return
            if self.tok.kind == "eof":
                raise self.tok.error(f"chain '{chain.name}' is not closed with '}}'")
            if self.at("type") and self.peek().text == "filter":
                while not (self.tok.kind in ENDS or self.at(";", "}")):
                    self.next()         # nftables' "type filter hook input priority 0": a note
                continue
            if self.at("policy"):
                pol = self.next()
                value = self.word("'accept' or 'drop'")
                if value.text not in ("accept", "drop"):
                    raise value.error(f"a policy is 'accept' or 'drop', not '{value.text}'")
                others = [c for c in self.chains.values() if c.policy and c is not chain]
                if others:
                    raise pol.error(f"only one base chain per rule set ('{others[0].name}' on "
                                    f"line {others[0].line} already has a policy)")
                chain.policy = value.text
                self.end_item()
                continue
            chain.rules.append(self.rule(chain.name))

    def named_set(self, is_map: bool) -> None:
        kind = "map" if is_map else "set"
        name = self._new_name(kind, self.sets)
        named = ast.NamedSet(name.text, (), name.line, is_map)
        self.expect("{")
        while True:
            self.skip_separators()
            if self.at("}"):
                self.next()
                break
            item = self.word("'type', 'flags' or 'elements'")
            if item.text == "type":
                named.kinds, named.target = self.set_type(is_map)
            elif item.text == "flags":
                while self.tok.kind == "atom" or self.at(","):
                    self.next()
            elif item.text == "elements":
                if not named.kinds:
                    raise item.error(f"{kind} '{named.name}': give its 'type' before elements")
                self.expect("=")
                named.elements, named.verdicts = self.element_block(named.kinds, is_map,
                                                                    named.target)
            else:
                raise item.error(f"expected 'type', 'flags' or 'elements', found {item}")
            self.end_item()
        if not named.kinds:
            raise name.error(f"{kind} '{named.name}' needs a type (e.g. 'type ipv4_addr')")
        self.sets[named.name] = named

    def set_type(self, is_map: bool) -> tuple[tuple[str, ...], str]:
        """A key type (``TYPE {. TYPE}``) and, for maps, ``: verdict`` or ``: TARGET``
        (the data map's value type, "" for sets and verdict maps)."""
        kinds = []
        while True:
            t = self.word("a set type")
            if t.text not in SET_TYPES:
                raise t.error(f"unknown set type '{t.text}' (valid: {', '.join(SET_TYPES)})")
            kinds.append(SET_TYPES[t.text])
            if not self.at("."):
                break
            self.next()
        target = ""
        if is_map:
            self.expect(":", " then 'verdict' or a NAT target type (maps map keys to values)")
            v = self.word("'verdict' or a NAT target type")
            words = [v.text]
            while self.at(".") and self.peek().kind == "atom":
                self.next()
                words.append(self.word("a type").text)
            target = " . ".join(words)
            end = self.toks[self.i - 1]
            if target == "verdict":
                target = ""
            elif target not in DATA_TYPES:
                raise RuleError(f"a map holds 'verdict' or a NAT target ({', '.join(DATA_TYPES)})"
                                f", not '{target}'", v.line, v.col, end.col + len(end.text) - v.col)
        return tuple(kinds), target

    # -- elements -------------------------------------------------------------------------------
    def element_block(self, kinds: tuple[str, ...], is_map: bool, target: str = ""):
        """``{ element, ... }`` (maps: ``element : value``, the value a verdict or, when
        ``target`` names a data map's value type, a NAT target); (elements, values)."""
        fields = tuple(_field_of_kind(k) for k in kinds)
        self.expect("{")
        elements, verdicts = [], []
        while True:
            while self.tok.kind == "newline":
                self.next()
            if self.at("}"):
                self.next()
                return elements, verdicts
            elements.append(self.element(fields))
            if is_map:
                while self.tok.kind == "newline":
                    self.next()
                if target:
                    self.expect(":", f" and a {target} after a map key")
                    verdicts.append(self.data_value(target))
                else:
                    self.expect(":", " and a verdict after a map key")
                    verdicts.append(self.verdict_word(None))
            while self.tok.kind == "newline":
                self.next()
            if not self.at(",", "}"):
                raise self.tok.error(f"expected ',' or '}}' after an element, found {self.tok}")
            if self.at(","):
                self.next()

    def element(self, fields) -> ast.Element:
        parts = []
        for n, f in enumerate(fields):
            if n:
                if not self.at("."):
                    raise self.tok.error(f"expected '.' and a {label(f)}: this key has "
                                         f"{len(fields)} parts")
                self.next()
            parts.append(self.value(f))
        if self.at(".") and self.peek().kind == "atom":
            raise self.tok.error(f"too many parts: this key has {len(fields)}")
        return tuple(parts)

    def value(self, f) -> tuple:
        if self.at("("):
            self.next()
            inner = self.value(f)
            self.expect(")")
            return inner
        t = self.word(f"a {label(f)}")
        text = t.text
        if f.kind == "flags":
            while self.at("|"):
                self.next()
                text += "|" + self.word("a TCP flag").text
        try:
            return parse_value(f, text)
        except ValueError as exc:
            raise RuleError(str(exc), t.line, t.col, len(text)) from None

    def data_value(self, target: str) -> tuple[int, None, tuple[int, int] | None]:
        """A data map's value: ``ADDRESS`` or ``ADDRESS . PORT`` (one of each, as nftables:
        a map value is a singleton) as a NAT target (address, None, ports or None)."""
        version = 4 if target.startswith("ipv4") else 6
        t = self.word(f"an IPv{version} address")
        try:
            address = ipaddress.ip_address(t.text)
        except ValueError:
            address = None
        if address is None or address.version != version:
            raise t.error(f"'{t.text}' is not an IPv{version} address (a value of a {target} map"
                          " is one address)")
        ports = None
        if target.endswith("inet_service"):
            if not self.at("."):
                raise self.tok.error(f"expected '.' and a port: the value is {target}")
            self.next()
            p = self.word("a port")
            try:
                (ports,) = parse_value(FIELDS["th.dport"], p.text)
            except ValueError as exc:
                raise p.error(str(exc)) from None
            if ports[0] != ports[1] or ports[0] == 0:
                raise p.error(f"'{p.text}': a map value's port is one port, 1-65535")
        return int(address), None, ports

    # -- cross-references -----------------------------------------------------------------------
    def check_references(self) -> None:
        for tok, name, kinds, want_map in self.refs:
            named = self.sets.get(name)
            what = "map" if want_map else "set"
            if named is not None and want_map and named.target:
                raise tok.error(f"map '{name}' is a data map (of {named.target}); 'vmap' needs "
                                f"a verdict map ('type ... : verdict'); use it with snat/dnat")
            if named is None or named.is_map != want_map:
                known = [s for s, v in self.sets.items() if v.is_map == want_map]
                raise tok.error(f"no {what} named '{name}'"
                                + (f" (defined: {', '.join(known)})" if known else ""))
            if named.kinds != kinds:
                raise tok.error(f"{what} '{name}' holds {' . '.join(named.kinds)} keys, "
                                f"this match needs {' . '.join(kinds)}")
        for tok, rule, nat, addr_port in self.nat_refs:
            self.link_nat_map(tok, rule, nat, addr_port)
        for named in self.sets.values():
            if named.target:
                continue
            for v in named.verdicts:
                if v.kind in ("jump", "goto"):
                    self.jumps.append((Token("atom", v.target, named.line, 1), "", v.target))
        for tok, _, target in self.jumps:
            if target not in self.chains:
                raise tok.error(f"no chain named '{target}' (chains: {', '.join(self.chains)})")
            if self.chains[target].policy:
                raise tok.error(f"cannot jump to the base chain '{target}'")
        self._check_loops()

    def _check_loops(self) -> None:
        edges: dict[str, list[tuple[Token, str]]] = {}
        for tok, src, dst in self.jumps:
            edges.setdefault(src, []).append((tok, dst))

        def visit(name: str, path: list[str], tok: Token | None) -> None:
            if name in path:
                raise tok.error(f"jump loop: {' -> '.join(path[path.index(name):] + [name])}")
            if len(path) > MAX_JUMP_DEPTH:
                raise tok.error(f"jumps nested deeper than {MAX_JUMP_DEPTH} chains")
            for t, dst in edges.get(name, []):
                visit(dst, path + [name], t)
        for name in self.chains:
            visit(name, [], None)


DATA_TYPES = ("ipv4_addr", "ipv6_addr", "ipv4_addr . inet_service", "ipv6_addr . inet_service")


def _field_of_kind(kind: str):
    return FIELDS[KIND_FIELD[kind]]


__all__ = ["parse", "parse_elements"]
