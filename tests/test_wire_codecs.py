"""Each codec: parse(emit(x)) == x (hypothesis), views agree with scapy/dpkt on random valid
packets, and RFC-specific rules of the views."""

from __future__ import annotations

import pickle
from ipaddress import IPv4Address, IPv6Address

import construct as cs
import dpkt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.all import (
    ARP,
    ICMP,
    IP,
    UDP,
    Dot1Q,
    Ether,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6NDOptMTU,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    raw,
)
from scapy.utils import checksum as scapy_checksum

from netstack.wire import (
    Arp,
    ArpView,
    Ethernet,
    EthernetView,
    Icmpv4,
    Icmpv4View,
    Icmpv6,
    Icmpv6View,
    Ipv4,
    Ipv4View,
    Ipv6,
    Ipv6View,
    NdpOptions,
    NeighborAdvertisement,
    NeighborSolicitation,
    PrefixInfo,
    RouterAdvertisement,
    Udp,
    UdpView,
    WireError,
    format_mac,
    parse_mac,
    walk_extension_headers,
)
from netstack.wire.ipv4 import address4

macs = st.binary(min_size=6, max_size=6)
v4 = st.builds(IPv4Address, st.integers(0, 2**32 - 1))
v6 = st.builds(IPv6Address, st.integers(0, 2**128 - 1))
u16 = st.integers(0, 0xFFFF)
u8 = st.integers(0, 255)


@given(st.builds(Ethernet, macs, macs, st.integers(0x0600, 0xFFFF).filter(
    lambda t: t not in (0x8100, 0x88A8)), st.binary(max_size=100),
    st.one_of(st.none(), st.integers(0, 4095)), st.integers(0, 7)))
def test_ethernet_roundtrip(frame):
    if frame.vlan_id is None and frame.priority:
        frame = Ethernet(frame.dst, frame.src, frame.ethertype, frame.payload)
    assert Ethernet.parse(frame.emit()) == frame


@given(st.builds(Arp, st.integers(1, 2), macs, v4, macs, v4))
def test_arp_roundtrip_and_scapy(arp):
    wire = arp.emit()
    assert Arp.parse(wire) == arp
    theirs = ARP(wire)
    assert (theirs.op, theirs.psrc, theirs.pdst) == (arp.op, str(arp.sender_ip),
                                                     str(arp.target_ip))
    assert theirs.hwsrc == format_mac(arp.sender_mac)


@given(st.builds(Ipv4, v4, v4, u8, st.binary(max_size=200), u8, u16, st.booleans(),
                 st.booleans(), st.integers(0, 0x1FFF).map(lambda o: o * 8), u8,
                 st.sampled_from([b"", b"\x01" * 4, b"\x94\x04\x00\x00"])))
def test_ipv4_roundtrip_and_dpkt(ip):
    wire = ip.emit()
    assert Ipv4.parse(wire) == ip
    theirs = dpkt.ip.IP(wire)
    assert theirs.sum == Ipv4View(wire).checksum          # dpkt keeps the received checksum
    assert (theirs.ttl, theirs.p, theirs.id, theirs.off & 0x1FFF) == (
        ip.ttl, ip.proto, ip.ident, ip.frag_offset // 8)
    header = bytearray(wire[:20 + len(ip.options)])
    header[10:12] = b"\0\0"
    assert scapy_checksum(bytes(header)) == Ipv4View(wire).checksum


@given(st.builds(Ipv6, v6, v6, u8, st.binary(max_size=200), u8, u8, st.integers(0, 0xFFFFF)))
def test_ipv6_roundtrip_and_scapy(ip):
    wire = ip.emit()
    assert Ipv6.parse(wire) == ip
    theirs = IPv6(wire)
    assert (theirs.tc, theirs.fl, theirs.hlim, theirs.nh, theirs.plen) == (
        ip.traffic_class, ip.flow_label, ip.hop_limit, ip.next_header, len(ip.payload))
    assert (IPv6Address(theirs.src), IPv6Address(theirs.dst)) == (ip.src, ip.dst)


@given(st.integers(0, 65535), st.integers(0, 65535), st.binary(max_size=300), v4, v4)
def test_udp_roundtrip_checksum_and_scapy_v4(sport, dport, data, src, dst):
    udp = Udp(sport, dport, data)
    wire = udp.emit(src, dst)
    assert Udp.parse(wire, src, dst) == udp
    packet = IP(src=str(src), dst=str(dst), proto=17) / UDP(wire)
    fresh = IP(raw(IP(src=str(src), dst=str(dst)) / UDP(sport=sport, dport=dport) / data))
    assert packet[UDP].chksum == fresh[UDP].chksum


@given(st.integers(0, 65535), st.integers(0, 65535), st.binary(max_size=300), v6, v6)
def test_udp_roundtrip_v6(sport, dport, data, src, dst):
    udp = Udp(sport, dport, data)
    assert Udp.parse(udp.emit(src, dst), src, dst) == udp


def test_rfc768_zero_checksum_is_sent_as_all_ones_and_means_none_only_over_ipv4():
    src, dst = IPv4Address("0.0.0.0"), IPv4Address("0.0.0.0")
    # pseudo-header 17 + 10, length 10, payload word 0xFFDA: the sum is 0xFFFF, checksum 0
    wire = Udp(0, 0, b"\xff\xda").emit(src, dst)
    assert UdpView(wire).checksum == 0xFFFF
    assert UdpView(wire).checksum_valid(src, dst)
    unchecked = wire[:6] + b"\0\0" + wire[8:]
    assert UdpView(unchecked).checksum_valid(src, dst)
    s6, d6 = IPv6Address("::1"), IPv6Address("::2")
    assert not UdpView(unchecked).checksum_valid(s6, d6)      # RFC 8200 section 8.1


@given(st.sampled_from([0, 3, 8, 11]), u8, st.binary(min_size=4, max_size=4),
       st.binary(max_size=200))
def test_icmpv4_roundtrip_and_scapy(kind, code, rest, body):
    msg = Icmpv4(kind, code, rest, body)
    wire = msg.emit()
    assert Icmpv4.parse(wire) == msg
    theirs = ICMP(wire)
    del theirs.chksum
    assert ICMP(raw(theirs)).chksum == Icmpv4View(wire).checksum


@given(u8, u8, st.binary(min_size=4, max_size=4), st.binary(max_size=200), v6, v6)
def test_icmpv6_roundtrip_and_scapy_checksum(kind, code, rest, body, src, dst):
    msg = Icmpv6(kind, code, rest, body)
    wire = msg.emit(src, dst)
    assert Icmpv6.parse(wire, src, dst) == msg
    packet = IPv6(raw(IPv6(src=str(src), dst=str(dst), nh=58) / wire))
    assert Icmpv6View(raw(packet)[40:]).checksum_valid(src, dst)


def test_ndp_messages_agree_with_scapy():
    src, dst = IPv6Address("fe80::1"), IPv6Address("ff02::1:ff00:2")
    mac = parse_mac("02:00:00:00:00:01")
    ns = raw(ICMPv6ND_NS(tgt="fe80::2") / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:01"))
    assert NeighborSolicitation.from_icmp(Icmpv6.parse(ns)) == NeighborSolicitation(
        IPv6Address("fe80::2"), NdpOptions(source_lladdr=mac))
    ours = NeighborAdvertisement(IPv6Address("fe80::2"), solicited=True, override=True,
                                 options=NdpOptions(target_lladdr=mac)).to_icmp().emit(src, dst)
    theirs = IPv6(raw(IPv6(src=str(src), dst=str(dst), nh=58) / ours))[ICMPv6ND_NA]
    assert (theirs.R, theirs.S, theirs.O, theirs.tgt) == (0, 1, 1, "fe80::2")
    ra = raw(ICMPv6ND_RA(chlim=64, routerlifetime=600) / ICMPv6NDOptMTU(mtu=1400)
             / ICMPv6NDOptPrefixInfo(prefix="2001:db8:1::", prefixlen=64, validlifetime=900,
                                     preferredlifetime=300))
    parsed = RouterAdvertisement.from_icmp(Icmpv6.parse(ra))
    assert parsed.router_lifetime == 600 and parsed.options.mtu == 1400
    assert parsed.options.prefixes == (PrefixInfo(IPv6Address("2001:db8:1::"), 64, True, True,
                                                  900, 300),)
    assert RouterAdvertisement.from_icmp(Icmpv6.parse(parsed.to_icmp().emit(src, dst))) == parsed


def test_rfc4861_4_6_option_with_length_zero_is_rejected():
    with pytest.raises(WireError, match="length zero"):
        NdpOptions.parse(b"\x01\x00" + b"\0" * 6)


def test_rfc8200_4_extension_headers_are_walked_to_the_upper_layer():
    packet = raw(IPv6(src="::1", dst="::2") / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
                 / IPv6ExtHdrFragment(id=7, offset=0, m=1) / UDP(sport=1, dport=2) / (b"x" * 8))
    view = Ipv6View(packet)
    upper = walk_extension_headers(view.next_header, view.payload)
    assert upper.proto == 17 and upper.headers == (0, 60, 44)
    assert upper.fragment.ident == 7 and upper.fragment.more
    assert bytes(view.payload[upper.offset:upper.offset + 4]) == b"\x00\x01\x00\x02"


def test_rfc8200_4_1_hop_by_hop_not_first_is_rejected():
    packet = raw(IPv6(src="::1", dst="::2") / IPv6ExtHdrDestOpt() / IPv6ExtHdrHopByHop()
                 / UDP())
    view = Ipv6View(packet)
    with pytest.raises(WireError):
        walk_extension_headers(view.next_header, view.payload)


def test_8021q_tag_is_read_and_written():
    frame = raw(Ether(dst="02:00:00:00:00:02", src="02:00:00:00:00:01") / Dot1Q(vlan=42, prio=5)
                / IP(src="1.1.1.1", dst="2.2.2.2") / ICMP())
    view = EthernetView(frame)
    assert (view.vlan_id, view.ethertype, view.header_len) == (42, 0x0800, 18)
    parsed = Ethernet.parse(frame)
    assert parsed.priority == 5 and parsed.emit() == frame
    assert Ipv4View(view.payload).src == IPv4Address("1.1.1.1")


def test_rfc1122_3_2_1_1_version_other_than_4_is_rejected():
    wire = bytearray(Ipv4(IPv4Address("1.1.1.1"), IPv4Address("2.2.2.2"), 17).emit())
    wire[0] = 0x55
    with pytest.raises(WireError, match="version"):
        Ipv4View(wire)


def test_rfc791_bad_header_checksum_is_detected():
    wire = bytearray(Ipv4(IPv4Address("1.1.1.1"), IPv4Address("2.2.2.2"), 17, b"abc").emit())
    assert Ipv4View(wire).checksum_valid()
    wire[8] ^= 1                                # TTL changed, checksum not updated
    assert not Ipv4View(wire).checksum_valid()
    with pytest.raises(WireError, match="checksum"):
        Ipv4.parse(wire)


def test_ipv4_link_padding_is_excluded_from_the_payload():
    wire = Ipv4(IPv4Address("1.1.1.1"), IPv4Address("2.2.2.2"), 17, b"abcd").emit()
    assert bytes(Ipv4View(wire + b"\0" * 20).payload) == b"abcd"


@given(st.binary(min_size=4, max_size=4))
def test_interned_ipv4_addresses_behave_as_ipaddress_ones(raw_address):
    """The stack's addresses (address4: one object per value, its hash computed once) are
    equal to, hash as, sort with, print as and pickle to the plain IPv4Address."""
    plain, ours = IPv4Address(raw_address), address4(raw_address)
    assert ours is address4(bytes(raw_address))
    assert ours == plain and hash(ours) == hash(plain) and {plain: 1}[ours] == 1
    assert str(ours) == str(plain) and repr(ours) == repr(plain)
    assert not ours < plain and not plain < ours
    assert type(pickle.loads(pickle.dumps(ours))) is IPv4Address
    assert Ipv4View(Ipv4(plain, plain, 17, b"").emit()).src is ours


def test_views_read_in_place_without_copying():
    buf = bytearray(raw(Ether() / IP(src="1.1.1.1", dst="2.2.2.2") / UDP() / b"data"))
    payload = UdpView(Ipv4View(EthernetView(buf).payload).payload).payload
    buf[-1] = ord("X")
    assert bytes(payload) == b"datX"


def test_mac_text_forms():
    assert parse_mac("02-aa-00-00-00-01") == bytes.fromhex("02aa00000001")
    assert format_mac(bytes.fromhex("02aa00000001")) == "02:aa:00:00:00:01"
    for bad in ("02:aa", "zz:00:00:00:00:00", "0200:00:00:00:00:01"):
        with pytest.raises(WireError):
            parse_mac(bad)


ARP_CONSTRUCT = cs.Struct(
    "hardware" / cs.Const(1, cs.Int16ub), "protocol" / cs.Const(0x0800, cs.Int16ub),
    "hlen" / cs.Const(6, cs.Int8ub), "plen" / cs.Const(4, cs.Int8ub), "op" / cs.Int16ub,
    "sha" / cs.Bytes(6), "spa" / cs.Bytes(4), "tha" / cs.Bytes(6), "tpa" / cs.Bytes(4))


@given(st.builds(Arp, st.integers(1, 2), macs, v4, macs, v4))
def test_arp_view_agrees_with_a_declarative_construct_definition(arp):
    wire = arp.emit()
    declared = ARP_CONSTRUCT.parse(wire)
    view = ArpView(wire)
    assert (declared.op, declared.sha, declared.spa, declared.tha, declared.tpa) == (
        view.op, view.sender_mac, view.sender_ip.packed, view.target_mac, view.target_ip.packed)
    assert ARP_CONSTRUCT.build(dict(op=arp.op, sha=arp.sender_mac, spa=arp.sender_ip.packed,
                                    tha=arp.target_mac, tpa=arp.target_ip.packed)) == wire
