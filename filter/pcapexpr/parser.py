"""Parser for pcap-filter expressions: libpcap's grammar.y by recursive descent.

Boolean operators: `not` binds tightest; `and` and `or` have equal precedence and group left
to right. After `and`/`or` a bare id (`port 80 or 443`, `host a and not b`) inherits the
qualifiers of the term before it. Arithmetic precedence is grammar.y's: `|` < `&` < shifts <
`+ -` < `* /` < unary minus; `%` and `^` have no declared precedence, so (as bison resolves
the conflict by shifting) each takes everything to its right as its right operand.
"""

import ipaddress

from filter.pcapexpr.codegen import PROTO_UNDEF, Generator, Qual
from filter.pcapexpr.errors import FilterSyntaxError
from filter.pcapexpr.lexer import Token, tokenize
from filter.pcapexpr.linktypes import LinkLayout
from filter.pcapexpr.names import ETHER_PROTOCOLS, IP_PROTOCOLS, SERVICES
from filter.pcapexpr.syntax import (
    TRUE,
    Binary,
    Compare,
    Const,
    Length,
    Negate,
    Pred,
    Value,
    conj,
    const,
    disj,
    negate,
)

QERR = Qual("undef", "undef", "undef")
PNAMES = {"link", "ip", "arp", "rarp", "sctp", "tcp", "udp", "icmp", "igmp", "igrp", "pim",
          "vrrp", "carp", "atalk", "aarp", "decnet", "lat", "sca", "mopdl", "moprc", "ip6",
          "icmp6", "ah", "esp", "iso", "esis", "isis", "l1", "l2", "iih", "lsp", "snp", "psnp",
          "csnp", "clnp", "stp", "ipx", "netbeui", "radio"}
AQUALS = {"host", "net", "port", "portrange"}
HEAD_STARTS = {"src", "dst", "addr1", "addr2", "addr3", "addr4", "ra", "ta", "proto",
               "protochain", "gateway"} | AQUALS
ID_END = {"and", "or", ")", "END"}
RELOPS = {"=", "!=", ">", ">=", "<", "<="}
BINARY_POWER = {"|": 1, "&": 2, "<<": 3, ">>": 3, "+": 4, "-": 4, "*": 5, "/": 5}
SHIFTING = {"%", "^"}
UNARY_POWER = 6
UNSUPPORTED_OTHER = {"inbound", "outbound", "ifindex", "pppoed", "pppoes", "geneve", "vxlan",
                     "llc", "type", "subtype", "dir", "ifname", "rset", "rnr", "srnr",
                     "reason", "action", "lane", "metac", "bcc", "oam", "oamf4", "oamf4ec",
                     "oamf4sc", "sc", "ilmic", "vpi", "vci", "connectmsg", "metaconnect",
                     "fisu", "lssu", "msu", "hfisu", "hlssu", "hmsu", "sio", "opc", "dpc",
                     "sls", "hsio", "hopc", "hdpc", "hsls"}
NO_HOST_NAMES = "host names are not supported; use an address"


def parse(text: str, layout: LinkLayout) -> Pred:
    """The predicate of a whole expression; an empty expression matches every frame."""
    return Parser(tokenize(text), layout).parse()


def fold(op: str, a: int, b: int) -> int:
    """BPF's 32-bit unsigned arithmetic on constants."""
    if op == "+":
        r = a + b
    elif op == "-":
        r = a - b
    elif op == "*":
        r = a * b
    elif op == "/":
        r = a // b
    elif op == "%":
        r = a % b
    elif op == "&":
        r = a & b
    elif op == "|":
        r = a | b
    elif op == "^":
        r = a ^ b
    elif op == "<<":
        r = a << b if b < 32 else 0
    else:
        r = a >> b if b < 32 else 0
    return r & 0xFFFFFFFF


class Parser:
    def __init__(self, tokens: list[Token], layout: LinkLayout) -> None:
        self.tokens = tokens
        self.pos = 0
        self.gen = Generator(layout)

    # -- token helpers -------------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def peek(self, k: int = 1) -> Token:
        return self.tokens[min(self.pos + k, len(self.tokens) - 1)]

    def advance(self) -> Token:
        t = self.tokens[self.pos]
        self.gen.col = t.col
        if t.kind != "END":
            self.pos += 1
        return t

    def syntax(self, expected: str = "") -> FilterSyntaxError:
        t = self.tok
        found = "end of expression" if t.kind == "END" else repr(t.text)
        msg = f"syntax error: unexpected {found}"
        return FilterSyntaxError(f"{msg}; expected {expected}" if expected else msg, t.col)

    def expect(self, kind: str, expected: str) -> Token:
        if self.tok.kind != kind:
            raise self.syntax(expected)
        return self.advance()

    def state(self):
        g = self.gen
        return (self.pos, g.off_linktype, g.off_linkpl, g.off_nl, g.label_depth)

    def restore(self, s) -> None:
        g = self.gen
        self.pos, g.off_linktype, g.off_linkpl, g.off_nl, g.label_depth = s

    # -- boolean structure ---------------------------------------------------------------
    def parse(self) -> Pred:
        if self.tok.kind == "END":
            return TRUE
        pred, _ = self.expr(QERR)
        if self.tok.kind != "END":
            raise self.syntax("'and', 'or' or the end of the expression")
        return pred

    def expr(self, q: Qual) -> tuple[Pred, Qual]:
        pred, q = self.term(q)
        while self.tok.kind in ("and", "or"):
            op = self.advance().kind
            end = self.scan_id(self.pos)
            if end is not None and self.tokens[end].kind in ID_END:
                right, q = self.ident(q)
            else:
                right, q = self.term(q)
            pred = conj(pred, right) if op == "and" else disj(pred, right)
        return pred, q

    def term(self, q: Qual) -> tuple[Pred, Qual]:
        if self.tok.kind == "not":
            self.advance()
            pred, q = self.term(q)
            return negate(pred), q
        return self.rterm(q)

    def rterm(self, q: Qual) -> tuple[Pred, Qual]:
        t = self.tok
        kind = t.kind
        if kind == "(":
            return self.paren_term(q)
        if kind in PNAMES:
            nxt = self.peek().kind
            if nxt == "[":
                return self.relation(), QERR
            if nxt in HEAD_STARTS:
                return self.head_id()
            if nxt in ("broadcast", "multicast"):
                self.advance()
                return self.other(kind), QERR
            self.advance()
            return self.gen.proto_abbrev(kind), QERR
        if kind in HEAD_STARTS:
            return self.head_id()
        if kind in ("broadcast", "multicast", "less", "greater", "byte", "vlan", "mpls"):
            return self.other(None), QERR
        if kind in ("NUM", "-", "len"):
            return self.relation(), QERR
        if kind in UNSUPPORTED_OTHER:
            raise FilterSyntaxError(f"'{t.text}' is not supported by this implementation", t.col)
        raise self.syntax("a primitive (host, net, port, a protocol, ...), 'not' or '('")

    def paren_term(self, q: Qual) -> tuple[Pred, Qual]:
        start = self.state()
        try:
            return self.relation(), QERR
        except FilterSyntaxError as err:
            first = err
            self.restore(start)
        try:
            self.advance()
            pred, _ = self.expr(q)
            self.expect(")", "')'")
            return pred, q
        except FilterSyntaxError as err:
            raise err if err.column >= first.column else first from None

    # -- ids and their qualifiers --------------------------------------------------------
    def scan_id(self, i: int) -> int | None:
        """Where an id starting at token i would end (None if none starts there)."""
        toks = self.tokens
        kind = toks[i].kind
        if kind == "not":
            return self.scan_id(i + 1)
        if kind in ("NUM", "ID", "EID", "AID"):
            return i + 1
        if kind in ("HID", "HID6"):
            nxt = toks[i + 1].kind if i + 1 < len(toks) else "END"
            if nxt == "/" and toks[i + 2].kind == "NUM":
                return i + 3
            if kind == "HID" and nxt == "mask" and toks[i + 2].kind == "HID":
                return i + 3
            return i + 1
        if kind == "(":
            j = self.scan_id(i + 1)
            while j is not None and toks[j].kind in ("and", "or"):
                j = self.scan_id(j + 1)
            if j is not None and toks[j].kind == ")":
                return j + 1
        return None

    def head_id(self) -> tuple[Pred, Qual]:
        proto = None
        if self.tok.kind in PNAMES:
            proto = self.advance().kind
        direction = None
        addr = None
        kind = self.tok.kind
        if kind in ("src", "dst"):
            direction = self.advance().kind
            if self.tok.kind in ("and", "or") and self.peek().kind in ("src", "dst"):
                joiner = self.advance().kind
                other = self.advance().kind
                if other == direction:
                    raise self.syntax("a different direction")
                direction = f"src {joiner} dst"
        elif kind in ("addr1", "addr2", "addr3", "addr4", "ra", "ta"):
            direction = self.advance().kind
        if direction is None or self.tok.kind in AQUALS:
            if self.tok.kind in AQUALS:
                addr = self.advance().kind
            elif direction is None and self.tok.kind in ("proto", "protochain", "gateway"):
                addr = self.advance().kind
            elif direction is None:
                raise self.syntax("'host', 'net', 'port', 'portrange', 'proto' or 'gateway'")
        return self.ident(Qual(proto, direction, addr))

    def ident(self, q: Qual) -> tuple[Pred, Qual]:
        t = self.tok
        if t.kind == "not":
            self.advance()
            pred, q = self.ident(q)
            return negate(pred), q
        if t.kind == "(":
            if self.scan_pnum(self.pos) is not None:
                return self.ncode(None, self.pnum(), q, t.col), q
            self.advance()
            pred, q = self.ident(q)
            while self.tok.kind in ("and", "or"):
                op = self.advance().kind
                right, q = self.ident(q)
                pred = conj(pred, right) if op == "and" else disj(pred, right)
            self.expect(")", "')'")
            return pred, q
        if q == QERR:
            raise self.syntax("a primitive before this address or number")
        self.advance()
        if t.kind == "NUM":
            return self.ncode(None, t.value, q, t.col), q
        if t.kind == "ID":
            return self.scode(t, q), q
        if t.kind == "EID":
            return self.ecode(t, q), q
        if t.kind == "AID":
            raise FilterSyntaxError("aid supported only on ARCnet", t.col)
        if t.kind == "HID":
            return self.hid(t, q), q
        if t.kind == "HID6":
            masklen = 128
            if self.tok.kind == "/":
                self.advance()
                masklen = self.expect("NUM", "a prefix length").value
            return self.mcode6(t, masklen, q), q
        self.pos -= 1
        raise self.syntax("an address, a number or a name")

    def scan_pnum(self, i: int) -> int | None:
        if self.tokens[i].kind == "NUM":
            return i + 1
        if self.tokens[i].kind == "(":
            j = self.scan_pnum(i + 1)
            if j is not None and self.tokens[j].kind == ")":
                return j + 1
        return None

    def pnum(self) -> int:
        if self.tok.kind == "(":
            self.advance()
            value = self.pnum()
            self.expect(")", "')'")
            return value
        return self.expect("NUM", "a number").value

    def addr_check(self, q: Qual, what: str, col: int) -> None:
        if q.addr in ("port", "portrange", "proto", "protochain"):
            raise FilterSyntaxError(f"'{q.addr}' qualifier applied to {what}", col)

    def hid(self, t: Token, q: Qual) -> Pred:
        if self.tok.kind == "/" and self.peek().kind == "NUM":
            self.advance()
            masklen = self.advance().value
            self.addr_check(q, "IPv4 address and prefix length", t.col)
            if masklen > 32:
                raise FilterSyntaxError("mask length must be <= 32", t.col)
            mask = (0xFFFFFFFF << (32 - masklen)) & 0xFFFFFFFF
            return self.mcode(t, mask, f"{t.text}/{masklen}", q)
        if self.tok.kind == "mask" and self.peek().kind == "HID":
            self.advance()
            m = self.advance()
            self.addr_check(q, "IPv4 address and netmask", t.col)
            mask, _ = self.atoin(m)
            return self.mcode(t, mask, f"{t.text} mask {m.text}", q)
        self.addr_check(q, "IPv4 address", t.col)
        return self.ncode(t, 0, q, t.col)

    def atoin(self, t: Token) -> tuple[int, int]:
        """__pcap_atoin: the dotted value left-aligned, and its length in bits."""
        parts = t.text.split(".")
        value = 0
        for part in parts:
            n = int(part, 16) if part[:2].lower() == "0x" else int(part, 8 if part[0] == "0"
                                                                   and len(part) > 1 else 10)
            if n > 255:
                raise FilterSyntaxError(f"invalid IPv4 address '{t.text}'", t.col)
            value = (value << 8) | n
        bits = 8 * len(parts)
        return (value << (32 - bits)) & 0xFFFFFFFF, bits

    def mcode(self, t: Token, mask: int, shown: str, q: Qual) -> Pred:
        addr, _ = self.atoin(t)
        if q.addr not in (None, "host", "net"):
            raise FilterSyntaxError("Mask syntax for networks only", t.col)
        if addr & ~mask & 0xFFFFFFFF:
            raise FilterSyntaxError(f'non-network bits set in "{shown}"', t.col)
        if q.addr in (None, "host") and mask != 0xFFFFFFFF:
            raise FilterSyntaxError("Mask syntax for networks only", t.col)
        return self.gen.host(addr, mask, q, q.addr or "host")

    def mcode6(self, t: Token, masklen: int, q: Qual) -> Pred:
        self.addr_check(q, "IPv6 address" + (" and prefix length" if masklen != 128 else ""),
                        t.col)
        if masklen > 128:
            raise FilterSyntaxError("mask length must be <= 128", t.col)
        addr = int(ipaddress.IPv6Address(t.text))
        mask = ((1 << 128) - 1) ^ ((1 << (128 - masklen)) - 1)
        if addr & ~mask:
            raise FilterSyntaxError(f'non-network bits set in "{t.text}/{masklen}"', t.col)
        if q.addr in (None, "host") and masklen != 128:
            raise FilterSyntaxError("Mask syntax for networks only", t.col)
        if q.addr not in (None, "host", "net"):
            raise FilterSyntaxError("invalid qualifier against IPv6 address", t.col)
        words = [(addr >> (96 - 32 * i)) & 0xFFFFFFFF for i in range(4)]
        masks = [(mask >> (96 - 32 * i)) & 0xFFFFFFFF for i in range(4)]
        return self.gen.host6(words, masks, q, q.addr or "host")

    def ecode(self, t: Token, q: Qual) -> Pred:
        if q.addr in (None, "host") and q.proto == "link":
            digits = "".join(c for c in t.text if c not in ":-.")
            if len(digits) == 12:
                mac = bytes.fromhex(digits)
            else:
                sep = next(c for c in t.text if c in ":-.")
                mac = bytes(int(p, 16) for p in t.text.split(sep))
            return self.gen.ehost(mac, q)
        if q.addr == "gateway":
            raise FilterSyntaxError(NO_HOST_NAMES, t.col)
        raise FilterSyntaxError("ethernet address used in non-ether expression", t.col)

    def ncode(self, t: Token | None, v: int, q: Qual, col: int) -> Pred:
        """gen_ncode: a number, or a dotted IPv4 id, under qualifiers q."""
        self.gen.col = col
        if q.addr in (None, "host", "net"):
            if q.proto == "link":
                raise FilterSyntaxError("illegal link layer address", col)
            mask = 0xFFFFFFFF
            if t is None and q.addr == "net":
                while v and (v & 0xFF000000) == 0:
                    v = (v << 8) & 0xFFFFFFFF
                    mask = (mask << 8) & 0xFFFFFFFF
            elif t is not None:
                v, bits = self.atoin(t)
                mask = (mask << (32 - bits)) & 0xFFFFFFFF
            return self.gen.host(v, mask, q, q.addr or "host")
        if q.addr in ("port", "portrange"):
            ipproto = self.port_proto(q, col)
            if v > 65535:
                raise FilterSyntaxError(f"illegal port number {v} > 65535", col)
            return self.gen.port(v, v, ipproto, q.dir)
        if q.addr == "gateway":
            raise FilterSyntaxError("'gateway' requires a name", col)
        if q.addr == "proto":
            return self.gen.proto(v, q.proto, q.dir)
        if q.addr == "protochain":
            raise FilterSyntaxError("'protochain' is not supported by this implementation", col)
        raise FilterSyntaxError("syntax error", col)

    def port_proto(self, q: Qual, col: int) -> int:
        if q.proto in ("tcp", "udp", "sctp"):
            return {"tcp": 6, "udp": 17, "sctp": 132}[q.proto]
        if q.proto is None:
            return PROTO_UNDEF
        raise FilterSyntaxError(f"illegal qualifier of '{q.addr}'", col)

    def service(self, name: str, q: Qual, col: int) -> tuple[int, int]:
        """pcap_nametoport, then the protocol checks of gen_scode: (port, ip protocol)."""
        if name.isdigit():
            return int(name), PROTO_UNDEF
        if name not in SERVICES:
            raise FilterSyntaxError(f"unknown port '{name}' (not in the built-in table)", col)
        tcp, udp = SERVICES[name]
        port = tcp if tcp is not None else udp
        real = PROTO_UNDEF if tcp is not None and udp == tcp else (6 if tcp is not None else 17)
        if q.proto == "udp" and real == 6:
            raise FilterSyntaxError(f"port '{name}' is tcp", col)
        if q.proto == "tcp" and real == 17:
            raise FilterSyntaxError(f"port '{name}' is udp", col)
        if q.proto == "sctp" and real != PROTO_UNDEF:
            raise FilterSyntaxError(f"port '{name}' is {'tcp' if real == 6 else 'udp'}", col)
        return port, real

    def scode(self, t: Token, q: Qual) -> Pred:
        """gen_scode: a name under qualifiers q."""
        name, col = t.text, t.col
        self.gen.col = col
        if q.addr in (None, "host", "net", "gateway"):
            raise FilterSyntaxError(f"{NO_HOST_NAMES} (got '{name}')", col)
        if q.addr == "port":
            self.port_proto(q, col)
            port, real = self.service(name, q, col)
            if q.proto is not None:
                real = {"tcp": 6, "udp": 17, "sctp": 132}[q.proto]
            return self.gen.port(port, port, real, q.dir)
        if q.addr == "portrange":
            self.port_proto(q, col)
            if "-" not in name:
                low, real = self.service(name, q, col)
                high = low
            else:
                a, _, b = name.partition("-")
                low, real = self.service(a, q, col)
                high, real2 = self.service(b, q, col)
                real = real if real == real2 else PROTO_UNDEF
            for p in (low, high):
                if p > 65535:
                    raise FilterSyntaxError(f"illegal port number {p} > 65535", col)
            if q.proto is not None:
                real = {"tcp": 6, "udp": 17, "sctp": 132}[q.proto]
            return self.gen.port(min(low, high), max(low, high), real, q.dir)
        if q.addr == "proto":
            if q.proto == "link":
                if name not in ETHER_PROTOCOLS:
                    raise FilterSyntaxError(f"unknown ether proto '{name}'", col)
                return self.gen.proto(ETHER_PROTOCOLS[name], q.proto, q.dir)
            if q.proto in (None, "ip", "ip6"):
                if name not in IP_PROTOCOLS:
                    raise FilterSyntaxError(f"unknown ip proto '{name}'", col)
                return self.gen.proto(IP_PROTOCOLS[name], q.proto, q.dir)
            raise FilterSyntaxError(f"'{q.proto}' modifier applied to 'proto'", col)
        if q.addr == "protochain":
            raise FilterSyntaxError("'protochain' is not supported by this implementation", col)
        raise FilterSyntaxError("syntax error", col)

    # -- other primitives ----------------------------------------------------------------
    def other(self, proto: str | None) -> Pred:
        t = self.advance()
        gen = self.gen
        if t.kind == "broadcast":
            return gen.broadcast(proto)
        if t.kind == "multicast":
            return gen.multicast(proto)
        if t.kind in ("less", "greater"):
            n = self.expect("NUM", "a length").value
            op = "<=" if t.kind == "less" else ">="
            return Compare(op, Length(), const(n))
        if t.kind == "byte":
            index = self.expect("NUM", "a byte offset").value
            op = self.tok.kind
            if op not in ("&", "|", "<", ">", "="):
                raise self.syntax("one of & | < > =")
            self.advance()
            value = self.expect("NUM", "a number").value
            if op in ("&", "|"):
                # libpcap 1.10's gen_byteop emits the ALU op without the load: A is 0.
                return Compare("!=", const(fold(op, 0, value)), const(0))
            return gen.cmp(0, index, 1, value, op)
        if t.kind == "vlan":
            vid = self.pnum() if self.scan_pnum(self.pos) is not None else None
            return gen.vlan(vid)
        if t.kind == "mpls":
            label = self.pnum() if self.scan_pnum(self.pos) is not None else None
            return gen.mpls(label)
        raise FilterSyntaxError(f"'{t.text}' is not supported by this implementation", t.col)

    # -- arithmetic ----------------------------------------------------------------------
    def relation(self) -> Pred:
        left, lguard = self.arith(0)
        t = self.tok
        if t.kind not in RELOPS:
            raise self.syntax("a relation (=, !=, <, <=, >, >=)")
        self.advance()
        right, rguard = self.arith(0)
        return conj(lguard, rguard, Compare(t.kind, left, right))

    def arith(self, min_power: int) -> tuple[Value, Pred]:
        left, guard = self.arith_primary()
        while True:
            op = self.tok.kind
            if op in SHIFTING:
                power, right_power = 100, 0
            elif op in BINARY_POWER:
                power = right_power = BINARY_POWER[op]
            else:
                return left, guard
            if power <= min_power:
                return left, guard
            t = self.advance()
            right, _ = self.arith(right_power)
            # gen_arth keeps only the left operand's protocol checks (libpcap 1.10 does so:
            # `1 + ip[0] = 5` loads ip[0] on every frame); the oracle decides.
            left = self.binary(t, left, right)

    def binary(self, t: Token, left: Value, right: Value) -> Value:
        op = t.kind
        if isinstance(right, Const):
            if op == "/" and right.k == 0:
                raise FilterSyntaxError("division by zero", t.col)
            if op == "%" and right.k == 0:
                raise FilterSyntaxError("modulus by zero", t.col)
            if op in ("<<", ">>") and right.k > 31:
                raise FilterSyntaxError("shift by more than 31 bits", t.col)
        if isinstance(left, Const) and isinstance(right, Const):
            return Const(fold(op, left.k, right.k))
        return Binary(op, left, right)

    def arith_primary(self) -> tuple[Value, Pred]:
        t = self.tok
        if t.kind == "NUM":
            self.advance()
            return const(t.value), TRUE
        if t.kind == "len":
            self.advance()
            return Length(), TRUE
        if t.kind == "-":
            self.advance()
            operand, guard = self.arith(UNARY_POWER)
            if isinstance(operand, Const):
                return Const(-operand.k & 0xFFFFFFFF), guard
            return Negate(operand), guard
        if t.kind == "(":
            self.advance()
            value, guard = self.arith(0)
            self.expect(")", "')'")
            return value, guard
        if t.kind in PNAMES and self.peek().kind == "[":
            self.advance()
            self.advance()
            index, guard = self.arith(0)
            size = 1
            if self.tok.kind == ":":
                self.advance()
                s = self.expect("NUM", "a size (1, 2 or 4)")
                if s.value not in (1, 2, 4):
                    raise FilterSyntaxError("data size must be 1, 2, or 4", s.col)
                size = s.value
            self.expect("]", "']'")
            self.gen.col = t.col
            return self.gen.load_expr(t.kind, index, size, guard)
        raise self.syntax("a number, 'len', a protocol[offset] or '('")
