"""Predicates for the primitives, following libpcap 1.10's gencode.c function by function.

The generator keeps libpcap's offset state: where the link-layer type field and payload
are (moved by `vlan`, 4 bytes per tag) and the network-layer offset (moved by `mpls`).
Offsets "relative to" follow gencode's OR_* names: LINKTYPE, LINKPL, NET, PREVMPLSHDR,
TRAN_IPV4 (NET + 4 * IHL) and TRAN_IPV6 (NET + 40).
"""

from dataclasses import dataclass

from filter.pcapexpr.errors import FilterSyntaxError
from filter.pcapexpr.linktypes import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LinkLayout,
)
from filter.pcapexpr.syntax import (
    FALSE,
    TRUE,
    Binary,
    Compare,
    Load,
    Pred,
    Value,
    add,
    conj,
    const,
    disj,
    negate,
)

ETHERTYPE_IP = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_REVARP = 0x8035
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_MPLS = 0x8847
ETHERTYPE_VLANS = (0x8100, 0x88A8, 0x9100)
ETHERMTU = 1500
LINUX_SLL_P_802_2 = 4
IPPROTO = {"icmp": 1, "igmp": 2, "tcp": 6, "igrp": 9, "udp": 17, "esp": 50, "ah": 51,
           "icmp6": 58, "pim": 103, "vrrp": 112, "carp": 112, "sctp": 132}
IPPROTO_FRAGMENT = 44
LLC_SAPS = {"stp": 0x42, "netbeui": 0xF0, "iso": 0xFE}
PROTO_UNDEF = -1
SIZES = {1: 1, 2: 2, 4: 4}


@dataclass(frozen=True)
class Qual:
    """The qualifiers in force for an id: protocol, direction and address kind (None = default)."""

    proto: str | None = None
    dir: str | None = None
    addr: str | None = None


def fail(message: str, col: int) -> FilterSyntaxError:
    return FilterSyntaxError(message, col)


class Generator:
    """Builds predicates for one expression; methods raise FilterSyntaxError like gencode."""

    def __init__(self, layout: LinkLayout) -> None:
        self.layout = layout
        self.off_linktype = layout.off_linktype
        self.off_linkpl = layout.off_linkpl
        self.off_nl = 0
        self.label_depth = 0
        self.col = 0

    # -- loads at gencode's offset bases -------------------------------------------------
    def load(self, base: int | Value, offset: int, size: int) -> Value:
        addr = add(base, offset) if not isinstance(base, int) else const(base + offset)
        return Load(addr, size)

    def net(self) -> int:
        return self.off_linkpl + self.off_nl

    def tran_ipv4(self) -> Value:
        ihl = Binary("&", Load(const(self.net()), 1), const(0x0F))
        return add(Binary("*", ihl, const(4)), self.net())

    def tran_ipv6(self) -> int:
        return self.net() + 40

    def cmp(self, base, offset: int, size: int, value: int, op: str = "=") -> Pred:
        return Compare(op, self.load(base, offset, size), const(value))

    def mcmp(self, base, offset: int, size: int, value: int, mask: int) -> Pred:
        if mask == 0:  # libpcap's optimizer drops the load: (A & 0) == value is constant
            return TRUE if value == 0 else FALSE
        loaded = self.load(base, offset, size)
        full = (1 << (8 * size)) - 1
        if mask & full != full:
            loaded = Binary("&", loaded, const(mask))
        return Compare("=", loaded, const(value & mask))

    # -- link layer ----------------------------------------------------------------------
    def loopback_linktype(self, proto: int) -> Pred:
        """gen_loopback_linktype: the 4-byte address family of DLT_NULL / DLT_LOOP. IPv4 is
        AF_INET (2) everywhere; IPv6's number differs between the BSDs (24, 28, 30), so any of
        them matches; nothing else can. DLT_NULL's word is in the writer's byte order: as
        libpcap on a little-endian host with a little-endian file, it is compared byte-swapped
        (a capture written big-endian would need the other order, which libpcap takes from the
        file's header; a rule compiles without the file, so little-endian is assumed)."""
        families = {ETHERTYPE_IP: (2,), ETHERTYPE_IPV6: (24, 28, 30)}.get(proto)
        if families is None:
            return FALSE
        if self.layout.linktype == LINKTYPE_NULL:
            families = tuple(int.from_bytes(f.to_bytes(4, "little"), "big") for f in families)
        return disj(*(self.cmp(self.off_linktype, 0, 4, f) for f in families))

    def linktype(self, proto: int) -> Pred:
        """gen_linktype: the frame carries network protocol `proto` (an ethertype or LLC SAP)."""
        if self.label_depth > 0:
            if proto == ETHERTYPE_IP:
                return self.mpls_linktype(0x40)
            if proto == ETHERTYPE_IPV6:
                return self.mpls_linktype(0x60)
            raise fail("unsupported protocol over mpls", self.col)
        lt = self.layout.linktype
        if lt == LINKTYPE_ETHERNET:
            if proto <= ETHERMTU:
                is_llc = negate(self.cmp(self.off_linktype, 0, 2, ETHERMTU, ">"))
                if proto in (0xFE, 0x06, 0xF0):
                    return conj(is_llc, self.cmp(self.off_linkpl, 0, 2, (proto << 8) | proto))
                if proto == 0xE0:
                    raise fail("IPX (LLC SAP 0xe0) matching is not supported", self.col)
                return conj(is_llc, self.cmp(self.off_linktype, 2, 1, proto))
            if proto in (0x809B, 0x80F3):
                raise fail("AppleTalk (SNAP) matching is not supported", self.col)
            return self.cmp(self.off_linktype, 0, 2, proto)
        if lt in (LINKTYPE_NULL, LINKTYPE_LOOP):
            return self.loopback_linktype(proto)
        if lt == LINKTYPE_LINUX_SLL2:     # libpcap compares the protocol field as it is, even
            return self.cmp(self.off_linktype, 0, 2, proto)     # for LLC SAPs (unlike v1)
        if lt == LINKTYPE_LINUX_SLL:
            if proto <= ETHERMTU:
                if proto in (0xFE, 0x06, 0xF0):
                    return conj(self.cmp(self.off_linktype, 0, 2, LINUX_SLL_P_802_2),
                                self.cmp(self.off_linkpl, 0, 2, (proto << 8) | proto))
                if proto == 0xE0:
                    raise fail("IPX (LLC SAP 0xe0) matching is not supported", self.col)
                return conj(self.cmp(self.off_linktype, 0, 2, LINUX_SLL_P_802_2),
                            self.cmp(self.off_linkpl, 0, 1, proto))
            return self.cmp(self.off_linktype, 0, 2, proto)
        if lt == LINKTYPE_IPV4:
            return TRUE if proto == ETHERTYPE_IP else FALSE
        if lt == LINKTYPE_IPV6:
            return TRUE if proto == ETHERTYPE_IPV6 else FALSE
        if proto == ETHERTYPE_IP:
            return self.mcmp(0, 0, 1, 0x40, 0xF0)
        if proto == ETHERTYPE_IPV6:
            return self.mcmp(0, 0, 1, 0x60, 0xF0)
        return FALSE

    def mpls_linktype(self, version: int) -> Pred:
        bottom = self.mcmp(self.net() - 4, 2, 1, 0x01, 0x01)
        return conj(bottom, self.mcmp(self.net(), 0, 1, version, 0xF0))

    def require_ethernet(self, message: str) -> None:
        if self.layout.linktype != LINKTYPE_ETHERNET:
            raise fail(message, self.col)

    def vlan(self, vid: int | None) -> Pred:
        """gen_vlan (no BPF extensions, as for a savefile): match a tag, then shift by 4."""
        if self.label_depth > 0:
            raise fail("no VLAN match after MPLS", self.col)
        if self.layout.linktype != LINKTYPE_ETHERNET:
            raise fail(f"no VLAN support for {self.layout.name}", self.col)
        if vid is not None and vid > 0x0FFF:
            raise fail(f"VLAN tag {vid} greater than maximum 4095", self.col)
        tagged = disj(*(self.cmp(self.off_linktype, 0, 2, t) for t in ETHERTYPE_VLANS))
        if vid is not None:
            tagged = conj(tagged, self.mcmp(self.off_linkpl, 0, 2, vid, 0x0FFF))
        self.off_linkpl += 4
        self.off_linktype += 4
        return tagged

    def mpls(self, label: int | None) -> Pred:
        """gen_mpls: an MPLS label stack entry (optionally with `label`), then shift by 4."""
        if self.label_depth > 0:
            head = self.mcmp(self.net() - 4, 2, 1, 0, 0x01)
        elif self.layout.linktype == LINKTYPE_ETHERNET:
            head = self.linktype(ETHERTYPE_MPLS)
        else:
            raise fail(f"no MPLS support for {self.layout.name}", self.col)
        if label is not None:
            if label > 0xFFFFF:
                raise fail(f"MPLS label {label} greater than maximum 1048575", self.col)
            head = conj(head, self.mcmp(self.net(), 0, 4, label << 12, 0xFFFFF000))
        self.off_nl += 4
        self.label_depth += 1
        return head

    # -- protocols -----------------------------------------------------------------------
    def proto_abbrev(self, proto: str) -> Pred:
        """gen_proto_abbrev: a bare protocol name (`tcp`, `ip6`, `arp`, ...)."""
        if proto in ("tcp", "udp", "sctp", "pim", "ah", "esp"):
            return self.proto(IPPROTO[proto], None)
        if proto in ("icmp", "igmp", "igrp", "vrrp", "carp"):
            return self.proto(IPPROTO[proto], "ip")
        if proto == "icmp6":
            return self.proto(58, "ip6")
        if proto == "ip":
            return self.linktype(ETHERTYPE_IP)
        if proto == "ip6":
            return self.linktype(ETHERTYPE_IPV6)
        if proto == "arp":
            return self.linktype(ETHERTYPE_ARP)
        if proto == "rarp":
            return self.linktype(ETHERTYPE_REVARP)
        if proto in LLC_SAPS:
            return self.linktype(LLC_SAPS[proto])
        if proto == "link":
            raise fail("link layer applied in wrong context", self.col)
        raise fail(f"'{proto}' is not supported by this implementation", self.col)

    def proto(self, value: int, proto: str | None, direction: str | None = None) -> Pred:
        """gen_proto: `[ip|ip6|ether] proto N`."""
        if direction is not None:
            raise fail("direction applied to 'proto'", self.col)
        if proto is None:
            return disj(self.proto(value, "ip"), self.proto(value, "ip6"))
        if proto == "link":
            return self.linktype(value)
        if proto == "ip":
            return conj(self.linktype(ETHERTYPE_IP), self.cmp(self.net(), 9, 1, value))
        if proto == "ip6":
            direct = self.cmp(self.net(), 6, 1, value)
            fragment = conj(self.cmp(self.net(), 6, 1, IPPROTO_FRAGMENT),
                            self.cmp(self.net(), 40, 1, value))
            return conj(self.linktype(ETHERTYPE_IPV6), disj(direct, fragment))
        raise fail(f"'{proto}' modifier applied to 'proto'", self.col)

    # -- hosts and nets ------------------------------------------------------------------
    def directions(self, direction: str | None, src: Pred, dst: Pred) -> Pred:
        if direction == "src":
            return src
        if direction == "dst":
            return dst
        if direction == "src and dst":
            return conj(src, dst)
        if direction in (None, "src or dst"):
            return disj(src, dst)
        raise fail(f"'{direction}' is only supported on 802.11", self.col)

    def hostop(self, addr: int, mask: int, direction, ethertype: int, src: int, dst: int):
        return conj(self.linktype(ethertype), self.directions(
            direction,
            self.mcmp(self.net(), src, 4, addr, mask),
            self.mcmp(self.net(), dst, 4, addr, mask)))

    def host(self, addr: int, mask: int, q: Qual, kind: str) -> Pred:
        """gen_host for an IPv4 address/mask."""
        proto = q.proto
        if proto is None:
            b = self.host(addr, mask, Qual("ip", q.dir), kind)
            if self.label_depth == 0:
                b = disj(b, self.host(addr, mask, Qual("arp", q.dir), kind),
                         self.host(addr, mask, Qual("rarp", q.dir), kind))
            return b
        if proto == "ip":
            return self.hostop(addr, mask, q.dir, ETHERTYPE_IP, 12, 16)
        if proto == "arp":
            return self.hostop(addr, mask, q.dir, ETHERTYPE_ARP, 14, 24)
        if proto == "rarp":
            return self.hostop(addr, mask, q.dir, ETHERTYPE_REVARP, 14, 24)
        if proto == "ip6":
            raise fail(f"'ip6' modifier applied to ip {kind}", self.col)
        raise fail(f"'{proto}' modifier applied to {kind}", self.col)

    def host6(self, words: list[int], masks: list[int], q: Qual, kind: str) -> Pred:
        """gen_host6 for an IPv6 address/prefix: four 32-bit word compares."""
        if q.proto not in (None, "ip6"):
            if q.proto in ("ip", "arp", "rarp"):
                raise fail(f"'{q.proto}' modifier applied to ip6 {kind}", self.col)
            raise fail(f"'{q.proto}' modifier applied to ip6 {kind}", self.col)

        def side(offset: int) -> Pred:
            checks = [self.mcmp(self.net(), offset + 4 * i, 4, words[i], masks[i])
                      for i in (0, 1, 2, 3) if masks[i]]
            return conj(*checks)
        return conj(self.linktype(ETHERTYPE_IPV6), self.directions(q.dir, side(8), side(24)))

    def ehost(self, mac: bytes, q: Qual) -> Pred:
        """gen_ehostop: Ethernet source/destination addresses."""
        self.require_ethernet("ethernet addresses supported only on ethernet/FDDI/token "
                              "ring/802.11/ATM LANE/Fibre Channel")
        if q.proto not in (None, "link"):
            raise fail("ethernet address used in non-ether expression", self.col)

        def at(offset: int) -> Pred:
            return conj(self.cmp(0, offset + 2, 4, int.from_bytes(mac[2:], "big")),
                        self.cmp(0, offset, 2, int.from_bytes(mac[:2], "big")))
        return self.directions(q.dir, at(6), at(0))

    # -- ports ---------------------------------------------------------------------------
    def _portop(self, ipproto: int, v6: bool, direction, low: int, high: int) -> Pred:
        if v6:
            head = self.cmp(self.net(), 6, 1, ipproto)
            base: int | Value = self.tran_ipv6()
        else:
            head = conj(self.cmp(self.net(), 9, 1, ipproto), self.ipfrag())
            base = self.tran_ipv4()

        def atom(offset: int) -> Pred:
            if low == high:
                return self.cmp(base, offset, 2, low)
            return conj(self.cmp(base, offset, 2, low, ">="), self.cmp(base, offset, 2, high, "<="))
        return conj(head, self.directions(direction, atom(0), atom(2)))

    def ipfrag(self) -> Pred:
        return self.mcmp(self.net(), 6, 2, 0, 0x1FFF)

    def port(self, low: int, high: int, ipproto: int, direction) -> Pred:
        """gen_port/gen_portrange or'ed with gen_port6/gen_portrange6."""
        protos = [6, 17, 132] if ipproto == PROTO_UNDEF else [ipproto]
        self.directions(direction, TRUE, TRUE)
        v4 = conj(self.linktype(ETHERTYPE_IP),
                  disj(*(self._portop(p, False, direction, low, high) for p in protos)))
        v6 = conj(self.linktype(ETHERTYPE_IPV6),
                  disj(*(self._portop(p, True, direction, low, high) for p in protos)))
        return disj(v4, v6)

    # -- broadcast, multicast, length ----------------------------------------------------
    def broadcast(self, proto: str | None) -> Pred:
        if proto in (None, "link"):
            if self.layout.linktype != LINKTYPE_ETHERNET:
                raise fail("not a broadcast link", self.col)
            return conj(self.cmp(0, 2, 4, 0xFFFFFFFF), self.cmp(0, 0, 2, 0xFFFF))
        if proto == "ip":
            dst = self.load(self.net(), 16, 4)
            return conj(self.linktype(ETHERTYPE_IP),
                        disj(Compare("=", dst, const(0)), Compare("=", dst, const(0xFFFFFFFF))))
        raise fail("only link-layer/IP broadcast filters supported", self.col)

    def multicast(self, proto: str | None) -> Pred:
        if proto in (None, "link"):
            if self.layout.linktype != LINKTYPE_ETHERNET:
                raise fail("link-layer multicast filters supported only on ethernet/FDDI/"
                           "token ring/ARCNET/802.11/ATM LANE/Fibre Channel", self.col)
            return Compare("!=", Binary("&", self.load(0, 0, 1), const(1)), const(0))
        if proto == "ip":
            return conj(self.linktype(ETHERTYPE_IP), self.cmp(self.net(), 16, 1, 224, ">="))
        if proto == "ip6":
            return conj(self.linktype(ETHERTYPE_IPV6), self.cmp(self.net(), 24, 1, 255))
        raise fail("link-layer multicast filters supported only on ethernet/FDDI/token "
                   "ring/ARCNET/802.11/ATM LANE/Fibre Channel", self.col)

    # -- proto[expr:size] ----------------------------------------------------------------
    def load_expr(self, proto: str, index: Value, size: int, guard: Pred) -> tuple[Value, Pred]:
        """gen_load: the value at `index` bytes into `proto`'s header, and its guard."""
        if proto == "link":
            return Load(index, size, True), guard
        if proto in ("ip", "arp", "rarp", "ip6"):
            return Load(add(index, self.net()), size, True), conj(guard,
                                                                 self.proto_abbrev(proto))
        if proto in ("tcp", "udp", "sctp", "icmp", "igmp", "igrp", "pim", "vrrp", "carp"):
            ip_guard = conj(self.linktype(ETHERTYPE_IP),
                            self.cmp(self.net(), 9, 1, IPPROTO[proto]), self.ipfrag())
            addr = Binary("+", self.tran_ipv4(), index)
            return Load(addr, size, True), conj(guard, ip_guard)
        if proto == "icmp6":
            ip6_guard = conj(self.linktype(ETHERTYPE_IPV6), self.cmp(self.off_linkpl, 6, 1, 58))
            return Load(add(index, self.off_linkpl + 40), size, True), conj(guard, ip6_guard)
        raise fail(f"'{proto}[...]' is not supported by this implementation", self.col)
