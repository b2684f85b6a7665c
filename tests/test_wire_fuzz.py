"""Random and mutated bytes: every parser raises nothing but WireError, and the Interface core
counts and drops without raising (strict mode re-raises any internal error, so a bug fails
the test instead of being counted)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.all import (
    ARP,
    ICMP,
    IP,
    UDP,
    Dot1Q,
    Ether,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrFragment,
    fragment,
    raw,
)

from netstack import Interface
from netstack.wire import (
    Arp,
    Ethernet,
    EthernetView,
    Icmpv4,
    Icmpv6,
    Ipv4,
    Ipv6,
    NdpOptions,
    NeighborAdvertisement,
    NeighborSolicitation,
    RouterAdvertisement,
    Udp,
    WireError,
    walk_extension_headers,
)

OURS, THEIRS = "02:00:00:00:00:02", "02:00:00:00:00:01"
LL_THEIRS = "fe80::1"
LL_OURS = "fe80::ff:fe00:2"
S4, D4 = IPv4Address("10.77.0.1"), IPv4Address("10.77.0.2")
S6, D6 = IPv6Address(LL_THEIRS), IPv6Address(LL_OURS)


def _seeds() -> list[bytes]:
    e = Ether(src=THEIRS, dst=OURS)
    ip = IP(src=str(S4), dst=str(D4))
    ip6 = IPv6(src=LL_THEIRS, dst=LL_OURS, hlim=255)
    seeds = [
        raw(Ether(src=THEIRS, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=str(S4), pdst=str(D4),
                                                              hwsrc=THEIRS)),
        raw(e / ip / ICMP() / b"ping"),
        raw(e / ip / UDP(sport=5, dport=7) / b"udp"),
        raw(e / ip / ICMP(type=3, code=3) / IP(src=str(D4), dst=str(S4)) / UDP(sport=7)),
        raw(e / Dot1Q(vlan=3) / ip / UDP()),
        raw(e / ip6 / ICMPv6EchoRequest(data=b"x")),
        raw(e / ip6 / ICMPv6ND_NS(tgt=LL_OURS) / ICMPv6NDOptSrcLLAddr(lladdr=THEIRS)),
        raw(e / ip6 / ICMPv6ND_NA(tgt=LL_THEIRS, S=1)),
        raw(e / IPv6(src=LL_THEIRS, dst="ff02::1", hlim=255) / ICMPv6ND_RA()
            / ICMPv6NDOptPrefixInfo(prefix="2001:db8::", prefixlen=64)),
        raw(e / ip6 / IPv6ExtHdrFragment(m=1, id=9) / UDP(dport=7) / (b"f" * 64)),
    ]
    seeds += [raw(e / f) for f in fragment(ip / UDP(dport=7) / (b"z" * 1200), fragsize=400)]
    return seeds


SEEDS = _seeds()


def _parse_everything(data: bytes) -> None:
    """Every parser on the same bytes: only WireError may come out."""
    attempts = [
        lambda: Ethernet.parse(data), lambda: Arp.parse(data), lambda: Ipv4.parse(data),
        lambda: Ipv6.parse(data), lambda: Icmpv4.parse(data), lambda: Icmpv6.parse(data, S6, D6),
        lambda: Udp.parse(data, S4, D4), lambda: Udp.parse(data, S6, D6),
        lambda: NdpOptions.parse(data), lambda: walk_extension_headers(data[0] if data else 0,
                                                                      data[1:]),
        lambda: NeighborSolicitation.from_icmp(Icmpv6.parse(data)),
        lambda: NeighborAdvertisement.from_icmp(Icmpv6.parse(data)),
        lambda: RouterAdvertisement.from_icmp(Icmpv6.parse(data)),
    ]
    for attempt in attempts:
        try:
            attempt()
        except WireError:
            pass
    try:
        payload = EthernetView(data).payload
    except WireError:
        return
    for parse in (Arp.parse, Ipv4.parse, Ipv6.parse):
        try:
            parse(payload)
        except WireError:
            pass


def _interface() -> Interface:
    iface = Interface(bytes.fromhex(OURS.replace(":", "")), ipv4="10.77.0.2/24", strict=True)
    iface.udp_bind(7)
    return iface


def _conserved(iface: Interface) -> bool:
    c = iface.counters
    settled = sum(v for k, v in c.items() if k.startswith(("rx.delivered.", "drop.")))
    return c["rx.frames"] == settled and c["drop.internal_error"] == 0


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_random_bytes_never_raise_anything_but_wire_error(data):
    _parse_everything(data)
    iface = _interface()
    iface.receive(data, 0)
    iface.handle_timeout(10**12)
    assert _conserved(iface)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)),
                                        max_size=6), st.integers(0, 2000))
def test_mutated_frames_are_counted_and_dropped_never_raised(seed, flips, cut):
    frame = bytearray(seed)
    for position, value in flips:
        if frame:
            frame[position % len(frame)] = value
    frame = bytes(frame[:cut]) if cut < len(frame) else bytes(frame)
    _parse_everything(frame)
    iface = _interface()
    iface.start(0)
    for f in (SEEDS[0], frame, frame):
        iface.receive(f, 1)
    iface.frames_to_send()
    iface.events()
    iface.handle_timeout(10**12)
    assert _conserved(iface)


def test_every_seed_is_a_valid_frame_the_interface_accepts():
    iface = _interface()
    for seed in SEEDS:
        iface.receive(seed, 0)
    assert _conserved(iface)
    delivered = sum(v for k, v in iface.counters.items() if k.startswith("rx.delivered."))
    assert delivered >= len(SEEDS) - 2      # the VLAN-tagged one and one RA-only drop at most
