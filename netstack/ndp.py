"""IPv6 Neighbor Discovery (RFC 4861) and stateless address autoconfiguration (RFC 4862).

- Link-local address from the modified EUI-64 interface identifier (RFC 4291 appendix A,
  RFC 4862 section 5.3).
- Duplicate Address Detection (RFC 4862 section 5.4) when ``dad=True``: a new address stays
  *tentative* (not used, not answered for) while one Neighbor Solicitation from the
  unspecified address goes to its solicited-node group; an NA for it (5.4.4), or an NS for
  it from the unspecified address (5.4.3: another node's DAD), marks it duplicate
  (:class:`AddressDuplicate`); otherwise it is configured ``retrans_ns`` later. With
  ``dad=False`` (DupAddrDetectTransmits = 0, which section 5.4 allows) addresses are usable
  at once. Router solicitations wait for the link-local address.
- :class:`NdpResolver`: the neighbour cache of :mod:`netstack.arp` with multicast Neighbor
  Solicitations to the solicited-node address (RFC 4861 section 7.2.2) and unicast ones in
  PROBE; answers NS for our addresses with solicited NAs (section 7.2.4); NA and NS update
  the cache per sections 7.2.3 and 7.2.5.
- Router Solicitations on start (section 6.3.7: up to 3, 4 s apart); Router Advertisements
  (validated per section 6.1.2) give the default router, on-link prefixes, the link MTU, the
  hop limit, and SLAAC addresses for autonomous /64 prefixes (RFC 4862 section 5.5.3),
  including the "two hours" rule for lowering a valid lifetime (5.5.3 (e)).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Interface, IPv6Network

from netstack.arp import NeighbourCache
from netstack.wire import WireError
from netstack.wire.ethernet import ETH_IPV6
from netstack.wire.icmpv6 import (
    NEIGHBOR_ADVERTISEMENT,
    NEIGHBOR_SOLICITATION,
    ROUTER_ADVERTISEMENT,
    Icmpv6,
    NdpOptions,
    NeighborAdvertisement,
    NeighborSolicitation,
    RouterAdvertisement,
    RouterSolicitation,
)
from netstack.wire.ipv6 import PROTO_ICMPV6, Ipv6

SECOND = 1_000_000_000
ALL_NODES = IPv6Address("ff02::1")
ALL_ROUTERS = IPv6Address("ff02::2")
MAX_RTR_SOLICITATIONS, RTR_SOLICITATION_INTERVAL = 3, 4 * SECOND
TWO_HOURS = 7200
INFINITE = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class AddressConfigured:
    """An IPv6 address became usable (``how``: "link-local" or "slaac")."""

    address: IPv6Interface
    how: str


@dataclass(frozen=True, slots=True)
class AddressDuplicate:
    """Duplicate Address Detection found ``address`` in use by another node; not configured."""

    address: IPv6Interface


@dataclass(frozen=True, slots=True)
class AddressExpired:
    """A SLAAC address's valid lifetime ended."""

    address: IPv6Interface


def interface_id(mac: bytes) -> bytes:
    """Modified EUI-64 (RFC 4291 appendix A): ff:fe in the middle, universal/local bit flipped."""
    return bytes((mac[0] ^ 0x02,)) + mac[1:3] + b"\xff\xfe" + mac[3:6]


def link_local(mac: bytes) -> IPv6Address:
    return IPv6Address(b"\xfe\x80" + b"\0" * 6 + interface_id(mac))


def solicited_node(address: IPv6Address) -> IPv6Address:
    """RFC 4291 section 2.7.1: ff02::1:ffXX:XXXX from the low 24 bits."""
    return IPv6Address(bytes.fromhex("ff0200000000000000000001ff") + address.packed[13:])


def multicast_mac(address: IPv6Address) -> bytes:
    """RFC 2464 section 7: 33:33 and the low 32 bits of the group address."""
    return b"\x33\x33" + address.packed[12:]


class NdpResolver(NeighbourCache):
    """Neighbour cache for IPv6; ``send`` is the interface's raw IPv6 sender."""

    def __init__(self, mac: bytes, counters: Counter | None = None, **limits) -> None:
        super().__init__(mac, counters, **limits)
        self.proto_name = "ndp"
        self.source_for = lambda dst: link_local(mac)

    def _solicit(self, address, unicast_mac: bytes | None, now: int) -> None:
        src = self.source_for(address)
        dst = address if unicast_mac else solicited_node(address)
        ns = NeighborSolicitation(address, NdpOptions(source_lladdr=self.mac))
        packet = icmpv6_packet(src, dst, ns.to_icmp())
        self._emit(unicast_mac or multicast_mac(dst), ETH_IPV6, packet)
        self.counters["tx.ndp.ns"] += 1


def icmpv6_packet(src: IPv6Address, dst: IPv6Address, msg: Icmpv6, hop_limit: int = 255) -> bytes:
    """An IPv6 packet carrying ``msg`` (ND messages use hop limit 255, RFC 4861 section 6.1)."""
    body = msg.emit(src, dst)
    return Ipv6(src, dst, PROTO_ICMPV6, b"", hop_limit).header(len(body)) + body


@dataclass(slots=True)
class _Slaac:
    address: IPv6Interface
    valid_until: int | None             # None: infinite


class Ndp:
    """ND for one interface: our addresses, routers, prefixes, and the neighbour cache."""

    def __init__(self, mac: bytes, counters: Counter, *, dad: bool = False,
                 retrans_ns: int = SECOND) -> None:
        self.mac, self.counters = mac, counters
        self.dad, self.retrans_ns = dad, retrans_ns
        # tentative address -> (address, how, valid_until, deadline)
        self.tentative: dict[IPv6Address, tuple[IPv6Interface, str, int | None, int]] = {}
        self.link_local_ready = not dad     # without DAD usable at once, before start()
        self.resolver = NdpResolver(mac, counters)
        self.resolver.source_for = self.source_for
        self.link_local = IPv6Interface(f"{link_local(mac)}/64")
        self.slaac: dict[IPv6Address, _Slaac] = {}
        self.on_link: dict[IPv6Network, int | None] = {}
        self.router: IPv6Address | None = None
        self.router_until = 0
        self.mtu: int | None = None
        self.hop_limit = 64
        self.events: list[object] = []
        self.rs_sent, self.rs_deadline = 0, None

    # -- addresses ----------------------------------------------------------------------------
    def addresses(self) -> list[IPv6Interface]:
        """Usable (not tentative) addresses, link-local first."""
        ready = [self.link_local] if self.link_local_ready else []
        return [*ready, *(s.address for s in self.slaac.values())]

    def is_ours(self, address: IPv6Address) -> bool:
        return (address == self.link_local.ip and self.link_local_ready) or \
            address in self.slaac

    def listens(self, group: IPv6Address) -> bool:
        """All-nodes, and the solicited-node groups of our addresses, tentative ones too."""
        return group == ALL_NODES or any(
            group == solicited_node(a) for a in (*(x.ip for x in self.addresses()),
                                                 *self.tentative))

    def source_for(self, dst: IPv6Address) -> IPv6Address:
        """RFC 6724 in short: link-local for link-local/multicast scope 2, else a SLAAC address."""
        if dst.is_link_local or (dst.is_multicast and dst.packed[1] & 0x0F <= 2):
            return self.link_local.ip
        for address in self.slaac:
            return address
        return self.link_local.ip

    def next_hop(self, dst: IPv6Address, now: int) -> IPv6Address | None:
        """RFC 4861 section 5.2: on-link destinations directly, others through the router."""
        if dst.is_link_local or any(dst in net for net in self.on_link):
            return dst
        if self.router is not None and now < self.router_until:
            return self.router
        return None

    # -- start and timers ---------------------------------------------------------------------
    def start(self, now: int) -> None:
        self._new_address(self.link_local, "link-local", None, now)

    def _new_address(self, address: IPv6Interface, how: str, valid_until: int | None,
                     now: int) -> None:
        if self.dad:
            self.tentative[address.ip] = (address, how, valid_until, now + self.retrans_ns)
            ns = NeighborSolicitation(address.ip)
            group = solicited_node(address.ip)
            packet = icmpv6_packet(IPv6Address("::"), group, ns.to_icmp())
            self.resolver._emit(multicast_mac(group), ETH_IPV6, packet)
            self.counters["tx.ndp.dad"] += 1
            return
        self._configured(address, how, valid_until, now)

    def _configured(self, address: IPv6Interface, how: str, valid_until: int | None,
                    now: int) -> None:
        self.events.append(AddressConfigured(address, how))
        if how == "link-local":
            self.link_local_ready = True
            self._solicit_router(now)
        else:
            self.slaac[address.ip] = _Slaac(address, valid_until)

    def _duplicate(self, address: IPv6Address) -> str:
        iface = self.tentative.pop(address)[0]
        self.events.append(AddressDuplicate(iface))
        self.counters["ndp.dad_duplicate"] += 1
        return "delivered.ndp"

    def _solicit_router(self, now: int) -> None:
        rs = RouterSolicitation(NdpOptions(source_lladdr=self.mac))
        packet = icmpv6_packet(self.link_local.ip, ALL_ROUTERS, rs.to_icmp())
        self.resolver._emit(multicast_mac(ALL_ROUTERS), ETH_IPV6, packet)
        self.counters["tx.ndp.rs"] += 1
        self.rs_sent += 1
        self.rs_deadline = now + RTR_SOLICITATION_INTERVAL \
            if self.rs_sent < MAX_RTR_SOLICITATIONS else None

    def next_deadline(self) -> int | None:
        deadlines = [self.rs_deadline, self.resolver.next_deadline(),
                     *(s.valid_until for s in self.slaac.values()),
                     *(t[3] for t in self.tentative.values())]
        deadlines = [d for d in deadlines if d is not None]
        return min(deadlines) if deadlines else None

    def handle_timeout(self, now: int) -> None:
        for address, (iface, how, valid_until, deadline) in list(self.tentative.items()):
            if deadline <= now:                     # RFC 4862 section 5.4: no duplicate seen
                del self.tentative[address]
                self._configured(iface, how, valid_until, now)
        if self.rs_deadline is not None and self.rs_deadline <= now:
            self._solicit_router(now)
        for address, slaac in list(self.slaac.items()):
            if slaac.valid_until is not None and slaac.valid_until <= now:
                del self.slaac[address]
                self.events.append(AddressExpired(slaac.address))
        for net, until in list(self.on_link.items()):
            if until is not None and until <= now:
                del self.on_link[net]
        self.resolver.handle_timeout(now)

    # -- receive ------------------------------------------------------------------------------
    def receive(self, src: IPv6Address, dst: IPv6Address, hop_limit: int, msg: Icmpv6,
                now: int) -> str:
        """One ND message (checksum already verified); returns its fate (a counter suffix)."""
        # RFC 4861 sections 6.1.2, 7.1.1, 7.1.2: hop limit 255 and code 0, else discard
        if hop_limit != 255 or msg.code != 0:
            return "drop.ndp_invalid"
        try:
            if msg.type == NEIGHBOR_SOLICITATION:
                return self._on_ns(src, dst, NeighborSolicitation.from_icmp(msg), now)
            if msg.type == NEIGHBOR_ADVERTISEMENT:
                return self._on_na(dst, NeighborAdvertisement.from_icmp(msg), now)
            if msg.type == ROUTER_ADVERTISEMENT:
                return self._on_ra(src, RouterAdvertisement.from_icmp(msg), now)
        except WireError:
            return "drop.ndp_invalid"
        return "drop.ndp_ignored"                  # router solicitations: we are no router

    def _on_ns(self, src, dst, ns: NeighborSolicitation, now: int) -> str:
        if ns.target.is_multicast:
            return "drop.ndp_invalid"
        if src.is_unspecified and (not dst.is_multicast or ns.options.source_lladdr):
            return "drop.ndp_invalid"
        if ns.target in self.tentative:
            # RFC 4862 section 5.4.3: another node's DAD for our tentative address means a
            # duplicate; an ordinary solicitation for a tentative address is ignored
            return self._duplicate(ns.target) if src.is_unspecified else "drop.ndp_tentative"
        if not self.is_ours(ns.target):
            return "drop.not_for_us"
        if ns.options.source_lladdr and not src.is_unspecified:
            # 7.2.3: create or update the entry for the source, STALE if new or changed
            self.resolver.learned(src, ns.options.source_lladdr, now, confirmed=False)
        solicited = not src.is_unspecified
        na = NeighborAdvertisement(ns.target, solicited=solicited, override=True,
                                   options=NdpOptions(target_lladdr=self.mac))
        reply_to = src if solicited else ALL_NODES
        packet = icmpv6_packet(ns.target, reply_to, na.to_icmp())
        mac = ns.options.source_lladdr or self.resolver.lookup(src) if solicited \
            else multicast_mac(ALL_NODES)
        if mac is None:
            self.resolver.output(src, ETH_IPV6, packet, now)
        else:
            self.resolver._emit(mac, ETH_IPV6, packet)
        self.counters["tx.ndp.na"] += 1
        return "delivered.ndp"

    def _on_na(self, dst, na: NeighborAdvertisement, now: int) -> str:
        if na.target.is_multicast or (dst.is_multicast and na.solicited):
            return "drop.ndp_invalid"
        if na.target in self.tentative:             # RFC 4862 section 5.4.4
            return self._duplicate(na.target)
        mac = na.options.target_lladdr
        entry = self.resolver.entries.get(na.target)
        if entry is None:
            return "drop.ndp_unsolicited"           # 7.2.5: no entry, silently discard
        if mac is None:
            mac = entry.mac
            if mac is None:
                return "drop.ndp_invalid"
        self.resolver.learned(na.target, mac, now, confirmed=na.solicited, create=False,
                              override=na.override)
        return "delivered.ndp"

    def _on_ra(self, src, ra: RouterAdvertisement, now: int) -> str:
        if not src.is_link_local:                   # 6.1.2: "IP Source Address is link-local"
            return "drop.ndp_invalid"
        if ra.options.source_lladdr:
            self.resolver.learned(src, ra.options.source_lladdr, now, confirmed=False)
        if ra.hop_limit:
            self.hop_limit = ra.hop_limit
        if ra.options.mtu and 1280 <= ra.options.mtu:
            self.mtu = ra.options.mtu
        if ra.router_lifetime:
            self.router, self.router_until = src, now + ra.router_lifetime * SECOND
        elif self.router == src:
            self.router = None
        self.rs_deadline = None
        for info in ra.options.prefixes:
            self._on_prefix(info, now)
        return "delivered.ndp"

    def _on_prefix(self, info, now: int) -> None:
        if info.prefix.is_link_local or info.preferred_lifetime > info.valid_lifetime:
            return                                   # RFC 4862 section 5.5.3 (b), (c)
        try:
            net = IPv6Network((info.prefix, info.prefix_len), strict=False)
        except ValueError:
            return
        until = None if info.valid_lifetime == INFINITE else now + info.valid_lifetime * SECOND
        if info.on_link:
            if info.valid_lifetime == 0:
                self.on_link.pop(net, None)
            else:
                self.on_link[net] = until
        if not info.autonomous or info.prefix_len != 64:
            return                                   # (d): prefix + 64-bit id must be 128 bits
        address = IPv6Address(net.network_address.packed[:8] + interface_id(self.mac))
        current = self.slaac.get(address)
        if current is None:
            if info.valid_lifetime == 0 or address in self.tentative:
                return
            self._new_address(IPv6Interface((address, 64)), "slaac", until, now)
            return
        # (e): the "two hours" rule
        remaining = None if current.valid_until is None else \
            max(0, (current.valid_until - now) // SECOND)
        if info.valid_lifetime > TWO_HOURS or remaining is None or \
                info.valid_lifetime > remaining:
            current.valid_until = until
        elif remaining > TWO_HOURS:
            current.valid_until = now + TWO_HOURS * SECOND
