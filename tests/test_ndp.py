"""Neighbor Discovery (RFC 4861) and SLAAC (RFC 4862) through the Interface core, with frames
built by scapy as the independent peer."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Interface

from scapy.all import (
    Ether,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_RS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptMTU,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    raw,
)

from netstack import AddressConfigured, AddressDuplicate, AddressExpired, Interface
from netstack.ndp import SECOND, interface_id, link_local, solicited_node

MAC = bytes.fromhex("02aabbccddee")
OURS_LL = "fe80::aa:bbff:fecc:ddee"
ROUTER_MAC, ROUTER_LL = "02:00:00:00:00:01", "fe80::1"


def iface() -> Interface:
    i = Interface(MAC, ipv4=None, strict=True)
    i.start(0)
    return i


def ra(prefix="2001:db8:1::", valid=3600, preferred=1800, lifetime=1800, mtu=None):
    msg = ICMPv6ND_RA(routerlifetime=lifetime) / ICMPv6NDOptSrcLLAddr(lladdr=ROUTER_MAC)
    if mtu:
        msg = msg / ICMPv6NDOptMTU(mtu=mtu)
    msg = msg / ICMPv6NDOptPrefixInfo(prefix=prefix, prefixlen=64, validlifetime=valid,
                                      preferredlifetime=preferred)
    return raw(Ether(src=ROUTER_MAC, dst="33:33:00:00:00:01")
               / IPv6(src=ROUTER_LL, dst="ff02::1", hlim=255) / msg)


def test_rfc4291_appendix_a_modified_eui64_link_local():
    assert interface_id(MAC) == bytes.fromhex("00aabbfffeccddee")
    assert str(link_local(MAC)) == OURS_LL
    assert str(solicited_node(IPv6Address(OURS_LL))) == "ff02::1:ffcc:ddee"


def test_rfc4861_6_3_7_router_solicitations_on_start_then_stop_after_three():
    i = iface()
    assert AddressConfigured(IPv6Interface(f"{OURS_LL}/64"), "link-local") in i.events()
    sent = [Ether(f) for f in i.frames_to_send()]
    rs = [f for f in sent if ICMPv6ND_RS in f]
    assert len(rs) == 1 and rs[0][IPv6].dst == "ff02::2" and rs[0][IPv6].hlim == 255
    assert rs[0].dst == "33:33:00:00:00:02"
    now = 0
    for _ in range(5):
        now = i.next_deadline() or now
        i.handle_timeout(now)
    assert i.counters["tx.ndp.rs"] == 3


def test_rfc4861_7_2_4_solicitation_for_our_address_gets_a_solicited_advertisement():
    i = iface()
    i.frames_to_send()
    ns = Ether(src=ROUTER_MAC, dst="33:33:ff:cc:dd:ee") / IPv6(
        src=ROUTER_LL, dst="ff02::1:ffcc:ddee", hlim=255) / ICMPv6ND_NS(tgt=OURS_LL) / \
        ICMPv6NDOptSrcLLAddr(lladdr=ROUTER_MAC)
    i.receive(raw(ns), 1)
    (na,) = [Ether(f) for f in i.frames_to_send()]
    assert na.dst == ROUTER_MAC and na[IPv6].dst == ROUTER_LL and na[IPv6].hlim == 255
    assert na[ICMPv6ND_NA].tgt == OURS_LL and na[ICMPv6ND_NA].S == 1 and na[ICMPv6ND_NA].O == 1
    assert na[ICMPv6NDOptDstLLAddr].lladdr == "02:aa:bb:cc:dd:ee"
    # 7.2.3: the solicitation's source link-layer address was recorded
    assert i.ndp.resolver.lookup(IPv6Address(ROUTER_LL)) == bytes.fromhex("020000000001")


def test_rfc4861_7_1_1_solicitation_with_hop_limit_below_255_is_discarded():
    i = iface()
    i.frames_to_send()
    ns = Ether(src=ROUTER_MAC, dst="33:33:ff:cc:dd:ee") / IPv6(
        src=ROUTER_LL, dst="ff02::1:ffcc:ddee", hlim=64) / ICMPv6ND_NS(tgt=OURS_LL)
    i.receive(raw(ns), 1)
    assert i.frames_to_send() == [] and i.counters["drop.ndp_invalid"] == 1


def test_rfc4861_7_2_2_resolution_by_multicast_solicitation_then_queued_packet_goes():
    i = iface()
    i.frames_to_send()
    peer = IPv6Address("fe80::99")
    assert i.ping(peer, 1, 1, b"hi", 0)
    (ns,) = [Ether(f) for f in i.frames_to_send()]
    assert ns[IPv6].dst == "ff02::1:ff00:99" and ns.dst == "33:33:ff:00:00:99"
    assert ns[ICMPv6ND_NS].tgt == "fe80::99"
    na = Ether(src="02:00:00:00:00:99", dst="02:aa:bb:cc:dd:ee") / IPv6(
        src="fe80::99", dst=OURS_LL, hlim=255) / ICMPv6ND_NA(tgt="fe80::99", S=1, O=1) / \
        ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:00:99")
    i.receive(raw(na), 1)
    (echo,) = [Ether(f) for f in i.frames_to_send()]
    assert echo.dst == "02:00:00:00:00:99" and ICMPv6EchoRequest in echo


def test_rfc4862_5_5_3_slaac_address_from_router_advertisement_and_default_route():
    i = iface()
    i.events()
    i.receive(ra(mtu=1400), 10)
    expected = IPv6Interface("2001:db8:1:0:aa:bbff:fecc:ddee/64")
    assert i.events() == [AddressConfigured(expected, "slaac")]
    assert expected in i.ipv6_addresses
    assert i.mss_for(IPv6Address("2001:db8:9::1")) == 1400 - 40
    assert i.ndp.next_hop(IPv6Address("2001:db8:9::1"), 11) == IPv6Address(ROUTER_LL)
    assert i.source_for(IPv6Address("2001:db8:9::1")) == expected.ip
    # an echo request to the new address is answered from it
    i.frames_to_send()
    req = Ether(src=ROUTER_MAC, dst="02:aa:bb:cc:dd:ee") / IPv6(
        src="2001:db8:1::5", dst=str(expected.ip)) / ICMPv6EchoRequest(id=3, seq=4)
    i.receive(raw(req), 12)
    (ns,) = [Ether(f) for f in i.frames_to_send()]          # on-link: resolve the asker first
    assert ns[ICMPv6ND_NS].tgt == "2001:db8:1::5" and ns[IPv6].src == str(expected.ip)
    na = Ether(src=ROUTER_MAC, dst="02:aa:bb:cc:dd:ee") / IPv6(
        src="2001:db8:1::5", dst=str(expected.ip), hlim=255) / ICMPv6ND_NA(
        tgt="2001:db8:1::5", S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=ROUTER_MAC)
    i.receive(raw(na), 13)
    (reply,) = [Ether(f) for f in i.frames_to_send()]
    assert reply[IPv6].src == str(expected.ip) and reply[IPv6].dst == "2001:db8:1::5"


def test_rfc4862_5_5_3_valid_lifetime_expiry_removes_the_address():
    i = iface()
    i.receive(ra(valid=100, preferred=50), 0)
    i.events()
    i.handle_timeout(100 * SECOND)
    assert [type(e) for e in i.events()] == [AddressExpired]
    assert len(i.ipv6_addresses) == 1


def test_rfc4862_5_5_3_e_two_hours_rule_limits_a_lowered_lifetime():
    i = iface()
    i.receive(ra(valid=86400, preferred=3600), 0)
    address = next(iter(i.ndp.slaac.values()))
    i.receive(ra(valid=60, preferred=30), SECOND)      # an attacker tries to cut it to 60 s
    assert address.valid_until == SECOND + 7200 * SECOND


def test_rfc4862_5_5_3_c_preferred_beyond_valid_is_ignored():
    i = iface()
    i.receive(ra(valid=100, preferred=200), 0)
    assert len(i.ipv6_addresses) == 1


def test_rfc4861_6_1_2_advertisement_from_a_global_source_is_ignored():
    i = iface()
    frame = Ether(src=ROUTER_MAC, dst="33:33:00:00:00:01") / IPv6(
        src="2001:db8::1", dst="ff02::1", hlim=255) / ICMPv6ND_RA() / ICMPv6NDOptPrefixInfo(
        prefix="2001:db8:1::", prefixlen=64)
    i.receive(raw(frame), 0)
    assert len(i.ipv6_addresses) == 1 and i.counters["drop.ndp_invalid"] == 1


def test_rfc4862_5_4_dad_probes_from_unspecified_then_configures_after_retrans_timer():
    i = Interface(MAC, ipv4=None, dad=True, strict=True)
    i.start(0)
    assert i.events() == [] and i.ipv6_addresses == []        # tentative: not yet usable
    (ns,) = [Ether(f) for f in i.frames_to_send()]
    assert ns[IPv6].src == "::" and ns[IPv6].dst == "ff02::1:ffcc:ddee"
    assert ns[ICMPv6ND_NS].tgt == OURS_LL and ICMPv6NDOptSrcLLAddr not in ns
    # 5.4: a tentative address is not answered for
    echo = Ether(src=ROUTER_MAC, dst="02:aa:bb:cc:dd:ee") / IPv6(src=ROUTER_LL, dst=OURS_LL) / \
        ICMPv6EchoRequest()
    i.receive(raw(echo), 1)
    assert i.frames_to_send() == [] and i.counters["drop.not_for_us"] == 1
    i.handle_timeout(i.next_deadline())
    assert i.events() == [AddressConfigured(IPv6Interface(f"{OURS_LL}/64"), "link-local")]
    assert [ICMPv6ND_RS in Ether(f) for f in i.frames_to_send()] == [True]   # then RS


def test_rfc4862_5_4_4_advertisement_for_a_tentative_address_means_duplicate():
    i = Interface(MAC, ipv4=None, dad=True, strict=True)
    i.start(0)
    i.frames_to_send()
    na = Ether(src=ROUTER_MAC, dst="33:33:00:00:00:01") / IPv6(
        src=ROUTER_LL, dst="ff02::1", hlim=255) / ICMPv6ND_NA(tgt=OURS_LL, O=1) / \
        ICMPv6NDOptDstLLAddr(lladdr=ROUTER_MAC)
    i.receive(raw(na), 1)
    assert i.events() == [AddressDuplicate(IPv6Interface(f"{OURS_LL}/64"))]
    i.handle_timeout(10 * SECOND)
    assert i.ipv6_addresses == [] and i.counters["ndp.dad_duplicate"] == 1


def test_rfc4862_5_4_3_another_nodes_dad_for_our_tentative_slaac_address_is_a_duplicate():
    i = iface()
    i.ndp.dad = True
    i.receive(ra(), 0)
    address = "2001:db8:1:0:aa:bbff:fecc:ddee"
    assert IPv6Address(address) in i.ndp.tentative
    probe = Ether(src=ROUTER_MAC, dst="33:33:ff:cc:dd:ee") / IPv6(
        src="::", dst="ff02::1:ffcc:ddee", hlim=255) / ICMPv6ND_NS(tgt=address)
    i.receive(raw(probe), 1)
    i.handle_timeout(5 * SECOND)
    assert all(str(a.ip) != address for a in i.ipv6_addresses)
    assert AddressDuplicate(IPv6Interface(f"{address}/64")) in i.events()
