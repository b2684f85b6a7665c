"""Parsing one rule: its matches, statements and verdict (part of the rule-file parser).

``RuleBodyParser`` is mixed into the file parser (``parser._Parser``), which supplies the
token helpers (``tok``, ``next``, ``at``, ``expect``, ``word``, ``value``, ``element``,
``element_block``, ``end_item``) and records set references and jumps for the cross-checks.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress

from filter.rules import ast
from filter.rules.errors import RuleError
from filter.rules.fields import DYNAMIC, FIELDS, SELECTOR_HEADS, SELECTORS, SET_TYPES
from filter.rules.lexer import Token
from filter.rules.pcap import check_expression
from filter.rules.values import normalise, parse_value

VERDICTS = ("accept", "drop", "reject", "jump", "goto", "return", "continue")
CT_STATES = ("new", "established", "related", "invalid", "untracked")
RATE_UNITS = {"second": 10**9, "minute": 60 * 10**9, "hour": 3600 * 10**9, "day": 86400 * 10**9}
BYTE_UNITS = {"bytes": 1, "kbytes": 1024, "mbytes": 1024 * 1024}
REJECT_WITH = {("tcp", "reset"): "tcp reset", ("icmp", "port-unreachable"): "icmp port-unreachable",
               ("icmp", "host-unreachable"): "icmp host-unreachable",
               ("icmp", "admin-prohibited"): "icmp admin-prohibited",
               ("icmpv6", "port-unreachable"): "icmpv6 port-unreachable",
               ("icmpv6", "admin-prohibited"): "icmpv6 admin-prohibited",
               ("icmpx", "port-unreachable"): "", ("icmpx", "admin-prohibited"): "admin"}
ENDS = ("newline", "eof")


class RuleBodyParser:
    # -- rules ----------------------------------------------------------------------------------
    def rule(self, chain: str) -> ast.Rule:
        first = self.tok
        rule = ast.Rule(first.line)
        while not (self.tok.kind in ENDS or self.at(";", "}")):
            t = self.tok
            if rule.verdict is not None or rule.vmap is not None:
                done = rule.verdict.kind if rule.verdict else "vmap"
                raise t.error(f"nothing may follow the verdict '{done}'")
            if t.kind != "atom":
                raise t.error(f"expected a match, statement or verdict, found {t}")
            word = t.text
            if word in ("mark", "meta") and self._is_mark_set():
                self.next()
                if word == "meta":
                    self.next()
                self.next()
                rule.statements.append(ast.MarkSet(self.int_value("a mark")))
            elif word in SELECTOR_HEADS:
                self.selector_match(rule)
            elif word == "ct":
                self.next()
                s = self.word("'state'")
                if s.text != "state":
                    raise s.error(f"only 'ct state' is supported, not 'ct {s.text}'")
                rule.stateful.append(self.ct_states())
            elif word == "pcap":
                self.next()
                if self.tok.kind != "string":
                    raise self.tok.error('expected a quoted pcap-filter expression: pcap "EXPR"')
                rule.matches.append(self.pcap(self.next()))
            elif word == "limit":
                self.next()
                rule.stateful.append(self.limit())
            elif word == "counter":
                self.next()
                rule.statements.append(ast.Counter())
            elif word == "log":
                self.next()
                prefix = ""
                if self.at("prefix"):
                    self.next()
                    if self.tok.kind != "string":
                        raise self.tok.error('expected a quoted prefix: log prefix "TEXT"')
                    prefix = self.next().text
                rule.statements.append(ast.Log(prefix))
            elif word in ("snat", "dnat", "masquerade"):
                self.next()
                nat = self.nat(t)
                rule.statements.append(nat)
                if nat.mapref is not None:   # a named map: checked and linked after the file
                    rule.matches.extend(_proto_matches(self.nat_protos, t.line))
                    self.nat_refs.append((self.nat_ref_tok, rule, nat, self.nat_addr_port))
                    continue
                nfproto = 2 if nat.family == 4 else 10       # only packets of its family
                rule.matches.append(ast.Match(("meta.nfproto",), ((((nfproto, nfproto),),),),
                                              line=t.line))
                if nat.key:                  # a key not in the map: the rule does not match
                    rule.matches.extend(_map_key_matches(nat, self.nat_protos, t.line))
            elif word in VERDICTS:
                rule.verdict = self.verdict_word(chain)
            else:
                raise t.error(_unknown_word(word))
        rule.text = self.lines[first.line - 1].strip() if first.line <= len(self.lines) else ""
        self.end_item()
        return rule

    def _is_mark_set(self) -> bool:
        if self.tok.text == "mark":
            return self.peek().text == "set"
        return self.peek().text == "mark" and self.peek(2).text == "set"

    def int_value(self, what: str) -> int:
        t = self.word(what)
        try:
            value = int(t.text, 0)
        except ValueError:
            raise t.error(f"expected {what} (a number), found '{t.text}'") from None
        if not 0 <= value < 2**32:
            raise t.error(f"{what} must be 0-{2**32 - 1}")
        return value

    def selector(self) -> tuple[Token, str, int | None]:
        t = self.next()
        two = (t.text, self.tok.text)
        if self.tok.kind == "atom" and two in SELECTORS:
            self.next()
            return t, *SELECTORS[two]
        if (t.text,) in SELECTORS:
            return t, *SELECTORS[(t.text,)]
        fields = sorted(" ".join(k) for k in SELECTORS if k[0] == t.text)
        raise RuleError(f"unknown field '{t.text} {self.tok.text}' (valid: {', '.join(fields)})",
                        t.line, t.col, self.tok.col + len(self.tok.text) - t.col)

    def selector_match(self, rule: ast.Rule) -> None:
        start, name, proto = self.selector()
        names, protos = [name], [proto]
        while self.at(".") and self.peek().text in SELECTOR_HEADS:
            self.next()
            _, name, proto = self.selector()
            names.append(name)
            protos.append(proto)
        for p in sorted({p for p in protos if p is not None}):
            rule.matches.append(ast.Match(("meta.l4proto",), ((((p, p),),),), line=start.line))
        fields = tuple(names)
        if self.at("vmap"):
            self.next()
            rule.vmap = self.vmap(fields, start)
            return
        if fields == ("iif",):
            rule.matches.append(self.iif())
            return
        if "iif" in fields:
            raise start.error("'iif' cannot be part of a concatenated key")
        match = self.comparison(fields, start)
        if fields[0] in DYNAMIC:
            if len(fields) > 1:
                raise start.error("'meta mark' cannot be part of a concatenated key")
            rule.stateful.append(match)
        else:
            rule.matches.append(match)

    def comparison(self, fields: tuple[str, ...], start: Token) -> ast.Match:
        fs = [FIELDS[f] for f in fields]
        op_tok = self.tok
        op = self.next().text if self.at("==", "!=", "<", ">", "<=", ">=", "&") else "=="
        if op == "&":
            return self.masked(fs, start)
        if op in ("<", ">", "<=", ">="):
            if len(fs) > 1 or fs[0].kind in ("addr6",):
                raise op_tok.error(f"'{op}' compares one numeric field")
            (lo, hi), = self.value(fs[0])
            value = lo if op in (">", ">=") else hi
            top = fs[0].top
            span = {"<": (0, value - 1), "<=": (0, value), ">": (value + 1, top),
                    ">=": (value, top)}[op]
            ivs = (span,) if span[0] <= span[1] else ()
            return ast.Match(fields, ((ivs,),), line=start.line)
        negate = op == "!="
        if self.at("@"):
            self.next()
            ref = self.word("a set name")
            self.refs.append((ref, ref.text, tuple(f.kind for f in fs), False))
            return ast.Match(fields, setref=ref.text, negate=negate, line=start.line)
        if self.at("{"):
            elements, _ = self.element_block(tuple(f.kind for f in fs), False)
            if not elements:
                raise start.error("an empty set matches nothing")
        else:
            elements = [self.element(fs)]
        if len(fs) == 1 and fs[0].kind == "flags" and op_tok.text not in ("==", "!=") \
                and len(elements) == 1 and not self._braced_before():
            mask = elements[0][0][0][0]
            elements = [(tuple((v, v) for v in range(256) if v & mask),)]
        if len(fs) == 1:
            elements = [(normalise(iv for e in elements for iv in e[0]),)]
        return ast.Match(fields, tuple(elements), negate=negate, line=start.line)

    def _braced_before(self) -> bool:
        return self.toks[self.i - 1].text == "}"

    def masked(self, fs, start: Token) -> ast.Match:
        if len(fs) > 1 or fs[0].bits > 16:
            raise self.toks[self.i - 1].error("'&' masks one field of at most 16 bits")
        f = fs[0]
        (mask, _), = self.value(f)
        op = self.tok
        if not self.at("==", "!="):
            raise op.error(f"expected '==' or '!=' after the mask, found {op}")
        self.next()
        (want, _), = self.value(f)
        values = [v for v in range(f.top + 1) if (v & mask == want) == (op.text == "==")]
        ivs = normalise((v, v) for v in values)
        return ast.Match((f.name,), ((ivs,),), line=start.line)

    def iif(self) -> ast.IifMatch:
        negate = False
        if self.at("==", "!="):
            negate = self.next().text == "!="
        names = []
        if self.at("{"):
            self.next()
            while not self.at("}"):
                t = self.next()
                if t.kind not in ("atom", "string"):
                    raise t.error(f"expected an interface (queue) name, found {t}")
                names.append(t.text)
                if self.at(","):
                    self.next()
            self.next()
        else:
            t = self.next()
            if t.kind not in ("atom", "string"):
                raise t.error(f"expected an interface (queue) name, found {t}")
            names.append(t.text)
        return ast.IifMatch(frozenset(names), negate)

    def ct_states(self) -> ast.CtMatch:
        negate = False
        if self.at("==", "!="):
            negate = self.next().text == "!="
        braced = self.at("{")
        if braced:
            self.next()
        states = []
        while True:
            t = self.word("a connection state")
            if t.text not in CT_STATES:
                raise t.error(f"unknown connection state '{t.text}' "
                              f"(valid: {', '.join(CT_STATES)})")
            states.append(t.text)
            if not self.at(","):
                break
            self.next()
        if braced:
            self.expect("}")
        return ast.CtMatch(frozenset(states), negate)

    def pcap(self, t: Token) -> ast.PcapMatch:
        problem = check_expression(t.text)
        if problem is not None:
            message, column = problem
            raise RuleError(f"pcap expression: {message}", t.line, t.col + 1 + column, 1)
        return ast.PcapMatch(t.text)

    def limit(self) -> ast.Limit:
        self.expect("rate")
        over = False
        if self.at("over"):
            self.next()
            over = True
        t = self.word("a rate such as 10/second or 1 mbytes/second")
        count_text, _, unit = t.text.partition("/")
        scale, is_bytes = 1, False
        if not unit:
            u = self.word("a unit such as bytes/second")
            word, _, unit = u.text.partition("/")
            if word not in BYTE_UNITS:
                raise u.error(f"expected bytes/, kbytes/ or mbytes/UNIT, found '{u.text}'")
            scale, is_bytes = BYTE_UNITS[word], True
        if unit not in RATE_UNITS:
            raise t.error(f"rate unit must be one of {', '.join(RATE_UNITS)}, not '{unit}'")
        try:
            rate = int(count_text) * scale
        except ValueError:
            raise t.error(f"'{count_text}' is not a whole number") from None
        if rate <= 0:
            raise t.error("a rate must be positive")
        burst = rate if is_bytes else max(1, min(rate, 5))
        if self.at("burst"):
            self.next()
            burst = self.int_value("a burst size")
            unit_tok = self.word("'packets' or 'bytes'")
            if unit_tok.text not in ("packets", "bytes"):
                raise unit_tok.error("a burst is counted in 'packets' or 'bytes'")
        key: list[str] = []
        if self.at("per"):
            self.next()
            while True:
                if self.tok.text not in SELECTOR_HEADS:
                    raise self.tok.error(f"expected a field to key the limit on, found {self.tok}")
                _, name, _ = self.selector()
                key.append(name)
                if not self.at("."):
                    break
                self.next()
        return ast.Limit(rate, RATE_UNITS[unit], is_bytes, burst, over, tuple(key))

    def nat(self, t: Token) -> ast.Nat:
        """``snat|dnat [ip|ip6] to TARGET``, ``snat|dnat [ip|ip6] to KEY map { ELEMENT :
        TARGET, ... }``, ``snat|dnat [ip|ip6] to KEY map @NAME`` or ``masquerade [ip|ip6]
        [to :PORTS]``."""
        family = 0
        if self.at("ip", "ip6"):
            family = 4 if self.next().text == "ip" else 6
        addr_port = None                 # nftables' "dnat ip addr . port to KEY map ..."
        if family and self.at("addr") and t.text != "masquerade":
            addr_port = self.next()
            self.expect(".", " and 'port' (dnat ip addr . port to KEY map ...)")
            if self.word("'port'").text != "port":
                raise self.toks[self.i - 1].error("expected 'port' after 'addr .'")
        if not self.at("to"):
            if t.text == "masquerade":
                return ast.Nat("masquerade", family=family or 4)
            raise self.tok.error(f"expected 'to ADDRESS[:PORT[-PORT]]' after '{t.text}'")
        self.next()
        if t.text != "masquerade" and self.tok.kind == "atom" and \
                self.tok.text in SELECTOR_HEADS:
            self.nat_addr_port = addr_port
            nat = self.nat_map(t, family)
            if addr_port is not None and any(ports is None for _, (_, _, ports) in nat.targets):
                raise addr_port.error("'addr . port': every target of the map needs a port")
            return nat
        if addr_port is not None:
            raise addr_port.error("'addr . port' goes with a map of address . port targets: "
                                  f"{t.text} ip addr . port to KEY map ...")
        first, last, ports, family = self.nat_target(t, family)
        return ast.Nat(t.text, first, ports, family, last)

    def nat_target(self, t: Token, family: int):
        """One NAT target: (first, last or None, ports or None, family)."""
        where = self.tok
        if self.at("["):
            self.next()
            addr_tok = self.word("an IPv6 address in brackets: [ADDRESS]:PORT")
            addr_text = addr_tok.text
            self.expect("]")
            port_text = ""
            if self.tok.kind == "atom" and self.tok.text.startswith(":"):
                port_text = self.next().text[1:]
                if not port_text:
                    raise self.toks[self.i - 1].error("expected a port after ':'")
            if ":" not in addr_text:
                raise addr_tok.error("brackets hold an IPv6 address; write IPv4 as ADDR:PORT")
        else:
            target = self.word("ADDRESS[:PORT[-PORT]] or :PORT[-PORT]")
            addr_text, port_text = _split_target(target.text)
            if addr_text is None:
                raise target.error(f"{t.text}: '{target.text}' is neither ADDRESS[:PORT] nor an "
                                   "IPv6 address (IPv6 with a port is written [ADDRESS]:PORT)")
            addr_tok = target
        first = last = None
        if addr_text:
            first, last, version = _nat_addresses(addr_tok, t.text, addr_text)
            if family and family != version:
                raise addr_tok.error(f"{t.text} {'ip' if family == 4 else 'ip6'}: "
                                     f"'{addr_text}' is not an IPv{family} address")
            family = version
        elif t.text != "masquerade":
            raise where.error(f"{t.text} needs an address (IPv4, or IPv6 as [ADDRESS]:PORT)")
        ports = None
        if port_text:
            try:
                (ports,) = parse_value(FIELDS["th.dport"], port_text)
            except ValueError as exc:
                raise self.toks[self.i - 1].error(f"{t.text}: {exc}") from None
            if ports[0] == 0:
                raise self.toks[self.i - 1].error(f"{t.text}: port 0 cannot be a NAT port")
        return first, None if last == first else last, ports, family or 4

    def nat_map(self, t: Token, family: int) -> ast.Nat:
        """``KEY map { ELEMENT : TARGET, ... }``: the target picked by the packet's key."""
        names, protos = [], set()
        while True:
            tok, name, proto = self.selector()
            if proto is not None:
                protos.add(proto)
            if name in ("iif", "meta.mark"):
                raise tok.error(f"'{tok.text}' cannot key a NAT map")
            names.append(name)
            if not (self.at(".") and self.peek().text in SELECTOR_HEADS):
                break
            self.next()
        fields = [FIELDS[n] for n in names]
        m = self.tok
        if not self.at("map"):
            raise m.error(f"expected 'map {{ KEY : TARGET, ... }}' or 'map @NAME' after the "
                          f"key, found {m}")
        self.next()
        self.nat_protos = sorted(protos)
        if self.at("@"):
            self.next()
            self.nat_ref_tok = self.word("a map name")
            return ast.Nat(t.text, None, None, family, key=tuple(names),
                           mapref=self.nat_ref_tok.text)
        if not self.at("{"):
            raise self.tok.error(f"expected '{{ KEY : TARGET, ... }}' or '@NAME' after 'map', "
                                 f"found {self.tok}")
        self.next()
        targets = []
        while True:
            while self.tok.kind == "newline":
                self.next()
            if self.at("}") and targets:
                self.next()
                break
            element = self.element(fields)
            self.expect(":", " and a NAT target after a map key (spaces around ':')")
            first, last, ports, fam = self.nat_target(t, family)
            family = family or fam
            targets.append((element, (first, last, ports)))
            while self.tok.kind == "newline":
                self.next()
            if not self.at(",", "}"):
                raise self.tok.error(f"expected ',' or '}}' after a map entry, found {self.tok}")
            if self.at(","):
                self.next()
        return ast.Nat(t.text, targets[0][1][0], None, family or 4, key=tuple(names),
                       targets=tuple(targets))

    def link_nat_map(self, tok: Token, rule: ast.Rule, nat: ast.Nat,
                     addr_port: Token | None) -> None:
        """Check ``snat|dnat to KEY map @NAME`` against the map, link the statement to it and
        add the matches it implies (its family; the key in the map). ``addr_port``: the
        ``addr`` word of nftables' ``dnat ip addr . port to ...``, if written."""
        name, named = nat.mapref, self.sets.get(nat.mapref)
        if named is not None and named.is_map and not named.target:
            raise tok.error(f"map '{name}' is a verdict map; {nat.kind} needs a data map "
                            "('type KEY : ipv4_addr' or another NAT target type)")
        if named is None or not named.is_map:
            known = [s for s, v in self.sets.items() if v.target]
            raise tok.error(f"no data map named '{name}'"
                            + (f" (defined: {', '.join(known)})" if known else ""))
        kinds = tuple(FIELDS[f].kind for f in nat.key)
        if named.kinds != kinds:
            raise tok.error(f"map '{name}' has {_type_names(named.kinds)} keys, this key is "
                            f"{_type_names(kinds)}")
        if nat.family and nat.family != named.family:
            raise tok.error(f"{nat.kind} {'ip' if nat.family == 4 else 'ip6'}: map '{name}' "
                            f"holds {named.target} targets")
        if addr_port is not None and not named.target.endswith("inet_service"):
            raise addr_port.error(f"'addr . port' needs a map of address . port targets; "
                                  f"map '{name}' holds {named.target}")
        linked = dataclasses.replace(nat, family=named.family, named=named)
        rule.statements[next(i for i, s in enumerate(rule.statements) if s is nat)] = linked
        nfproto = 2 if named.family == 4 else 10
        rule.matches.append(ast.Match(("meta.nfproto",), ((((nfproto, nfproto),),),),
                                      line=rule.line))
        rule.matches.append(ast.Match(nat.key, setref=name, line=rule.line))

    def verdict_word(self, chain: str | None) -> ast.Verdict:
        t = self.word("a verdict")
        if t.text not in VERDICTS:
            raise t.error(f"expected a verdict ({', '.join(VERDICTS)}), found '{t.text}'")
        if t.text in ("jump", "goto"):
            target = self.word(f"a chain name after '{t.text}'")
            self.jumps.append((target, chain or "", target.text))
            return ast.Verdict(t.text, target.text)
        if t.text == "reject" and self.at("with"):
            self.next()
            a = self.word("'tcp reset' or 'icmp port-unreachable'")
            b = self.word("'reset' or an ICMP type")
            if (a.text, b.text) not in REJECT_WITH:
                raise a.error(f"unknown reject type '{a.text} {b.text}' (valid: "
                              f"{', '.join(' '.join(k) for k in REJECT_WITH)})")
            return ast.Verdict("reject", reject_with=REJECT_WITH[(a.text, b.text)])
        return ast.Verdict(t.text)

    def vmap(self, fields: tuple[str, ...], start: Token) -> ast.VMap:
        kinds = tuple(FIELDS[f].kind for f in fields)
        if self.at("@"):
            self.next()
            ref = self.word("a map name")
            self.refs.append((ref, ref.text, kinds, True))
            return ast.VMap(fields, mapref=ref.text)
        elements, verdicts = self.element_block(kinds, True)
        return ast.VMap(fields, tuple(zip(elements, verdicts, strict=True)))


KEYWORDS = sorted({w[0] for w in SELECTORS} | set(VERDICTS) | {
    "ct", "pcap", "limit", "counter", "log", "snat", "dnat", "masquerade"})


def _type_names(kinds: tuple[str, ...]) -> str:
    """Field kinds as nftables names them (``ipv4_addr . inet_service``)."""
    names = {kind: name for name, kind in SET_TYPES.items()}
    return " . ".join(names.get(k, k) for k in kinds)


def _proto_matches(protos: list[int], line: int) -> list[ast.Match]:
    """``meta l4proto`` matches for the protocols a key's selectors imply."""
    return [ast.Match(("meta.l4proto",), ((((p, p),),),), line=line) for p in protos]


def _map_key_matches(nat: ast.Nat, protos: list[int], line: int) -> list[ast.Match]:
    """The matches a NAT data map implies: its key's protocols, and the key in the map."""
    out = _proto_matches(protos, line)
    elements = tuple(e for e, _ in nat.targets)
    if len(nat.key) == 1:
        elements = ((normalise(iv for e in elements for iv in e[0]),),)
    out.append(ast.Match(nat.key, elements, line=line))
    return out


def _split_target(text: str) -> tuple[str | None, str]:
    """``ADDR[:PORTS]`` into address and port text; an unbracketed IPv6 address has no port
    (the address is None when the text is neither)."""
    if text.count(":") <= 1:
        addr, _, ports = text.partition(":")
        return addr, ports
    for part in text.split("-"):
        try:
            ipaddress.IPv6Address(part)
        except ValueError:
            return None, ""
    return text, ""


def _nat_addresses(tok: Token, kind: str, text: str) -> tuple[int, int, int]:
    """``ADDR`` or ``FIRST-LAST`` as (first, last, IP version)."""
    parts = text.split("-") if text.count("-") == 1 else [text]
    try:
        addrs = [ipaddress.ip_address(p) for p in parts]
    except ValueError:
        raise tok.error(f"{kind}: '{text}' is not an IPv4 or IPv6 address "
                        "(or FIRST-LAST range)") from None
    first, last = addrs[0], addrs[-1]
    if first.version != last.version:
        raise tok.error(f"{kind}: the range '{text}' mixes IPv4 and IPv6")
    if int(first) > int(last):
        raise tok.error(f"{kind}: range '{text}' is empty (start above end)")
    return int(first), int(last), first.version


def _unknown_word(word: str) -> str:
    close = difflib.get_close_matches(word, KEYWORDS, n=1)
    hint = f"did you mean '{close[0]}'?" if close else \
        "expected a match, a statement or a verdict (see docs/rules.md)"
    return f"unknown word '{word}': {hint}"
