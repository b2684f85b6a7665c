"""The Interface core end to end with scapy-built frames: ICMP rules of RFC 792/1122, UDP
(RFC 768), protocol registration (as TCP uses it), fragmentation, errors and conservation."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest
from scapy.all import (
    ARP,
    ICMP,
    IP,
    TCP,
    UDP,
    Ether,
    ICMPv6DestUnreach,
    ICMPv6EchoRequest,
    ICMPv6ND_NS,
    ICMPv6NDOptSrcLLAddr,
    ICMPv6ParamProblem,
    ICMPv6TimeExceeded,
    IPerror,
    IPv6,
    IPv6ExtHdrFragment,
    Raw,
    UDPerror,
    defragment,
    fragment,
    fragment6,
    raw,
)
from scapy.layers.inet6 import defragment6

from netstack import EchoReply, IcmpError, Interface, PortInUse, ResolutionFailed, UdpDatagram

OURS, THEIRS = "02:00:00:00:00:02", "02:00:00:00:00:01"
US, PEER = "10.77.0.2", "10.77.0.1"
OUR_LL, PEER_LL = "fe80::ff:fe00:2", "fe80::1"
MAC = bytes.fromhex(OURS.replace(":", ""))
SECOND = 1_000_000_000


def make(**kw) -> Interface:
    """An interface that already knows the peer's MAC (it asked us, so we learned it)."""
    i = Interface(MAC, strict=True, **kw)
    i.receive(raw(Ether(src=THEIRS, dst="ff:ff:ff:ff:ff:ff")
                  / ARP(op=1, hwsrc=THEIRS, psrc=PEER, pdst=US)), 0)
    i.frames_to_send()
    return i


def v4(payload, dst=US, src=PEER, eth_dst=OURS):
    return raw(Ether(src=THEIRS, dst=eth_dst) / IP(src=src, dst=dst) / payload)


def sent(i: Interface) -> list:
    return [Ether(f) for f in i.frames_to_send()]


def conserved(i: Interface) -> bool:
    c = i.counters
    return c["rx.frames"] == sum(v for k, v in c.items()
                                 if k.startswith(("rx.delivered.", "drop.")))


def test_rfc792_echo_reply_returns_identifier_sequence_and_data():
    i = make()
    i.receive(v4(ICMP(type=8, id=0x1234, seq=7) / b"payload"), 1)
    (reply,) = sent(i)
    assert reply.dst == THEIRS and reply[IP].src == US and reply[IP].dst == PEER
    assert (reply[ICMP].type, reply[ICMP].id, reply[ICMP].seq) == (0, 0x1234, 7)
    assert reply[Raw].load == b"payload"
    again = IP(raw(reply[IP]))
    del again[ICMP].chksum
    assert IP(raw(again))[ICMP].chksum == reply[ICMP].chksum


def test_rfc1122_3_2_2_6_echo_to_broadcast_is_silently_discarded():
    i = make()
    i.receive(v4(ICMP(type=8), dst="10.77.0.255", eth_dst="ff:ff:ff:ff:ff:ff"), 1)
    assert sent(i) == [] and i.counters["drop.broadcast_echo"] == 1


def test_rfc1122_4_1_3_1_udp_to_unbound_port_gets_port_unreachable_quoting_the_datagram():
    i = make()
    i.receive(v4(UDP(sport=4000, dport=9) / b"hello there"), 1)
    (err,) = sent(i)
    assert (err[ICMP].type, err[ICMP].code) == (3, 3)
    assert err[IPerror].src == PEER and err[UDPerror].dport == 9
    assert len(raw(err[ICMP])) == 8 + 20 + 8            # RFC 792: header + 64 bits of data
    assert i.counters["drop.udp_no_listener"] == 1


def test_rfc1122_3_2_2_no_error_about_an_error_a_broadcast_or_a_non_initial_fragment():
    i = make()
    i.receive(v4(ICMP(type=3, code=3) / IPerror(src=US, dst=PEER) / UDPerror(sport=1, dport=2)),
              1)
    i.receive(v4(UDP(dport=9), dst="255.255.255.255", eth_dst="ff:ff:ff:ff:ff:ff"), 2)
    frags = fragment(IP(src=PEER, dst=US, id=5) / UDP(dport=9) / (b"x" * 2000), fragsize=800)
    i.receive(raw(Ether(src=THEIRS, dst=OURS) / frags[1]), 3)
    assert sent(i) == []


def test_rfc1122_3_2_2_1_unknown_protocol_gets_protocol_unreachable():
    i = make()
    frame = raw(Ether(src=THEIRS, dst=OURS) / IP(src=PEER, dst=US, proto=99) / (b"?" * 8))
    i.receive(frame, 1)
    (err,) = sent(i)
    assert (err[ICMP].type, err[ICMP].code) == (3, 2)


def test_rfc4443_2_4_f_errors_are_rate_limited():
    i = make(error_rate=1.0, error_burst=3)
    for n in range(10):
        i.receive(v4(UDP(sport=5, dport=9)), n)
    assert len(sent(i)) == 3 and i.counters["tx.icmp.rate_limited"] == 7
    i.receive(v4(UDP(sport=5, dport=9)), 2 * SECOND)    # tokens come back with time
    assert len(sent(i)) == 1


def test_rfc768_udp_to_a_bound_port_is_delivered_and_bad_checksums_dropped():
    i = make()
    assert i.udp_bind(7) == 7
    with pytest.raises(PortInUse):
        i.udp_bind(7)
    i.receive(v4(UDP(sport=1234, dport=7) / b"data"), 1)
    good = bytearray(v4(UDP(sport=1234, dport=7) / b"data"))
    good[-1] ^= 0xFF
    i.receive(bytes(good), 2)
    unchecked = v4(UDP(sport=1234, dport=7, chksum=0) / b"zero")
    i.receive(unchecked, 3)
    assert i.events() == [
        UdpDatagram(IPv4Address(PEER), 1234, IPv4Address(US), 7, b"data"),
        UdpDatagram(IPv4Address(PEER), 1234, IPv4Address(US), 7, b"zero")]
    assert i.counters["drop.bad_checksum"] == 1 and conserved(i)


def test_rfc8200_8_1_udp_over_ipv6_with_zero_checksum_is_dropped():
    i = make()
    i.udp_bind(7)
    frame = Ether(src=THEIRS, dst=OURS) / IPv6(src=PEER_LL, dst=OUR_LL) / UDP(dport=7, chksum=0)
    i.receive(raw(frame), 1)
    assert i.events() == [] and i.counters["drop.bad_checksum"] == 1


def test_udp_send_is_fragmented_to_the_mtu_and_scapy_reassembles_it():
    i = make(mtu=600)
    port = i.udp_bind(0)
    assert port >= 49152
    assert i.udp_send(port, IPv4Address(PEER), 53, b"Q" * 2000, 0)
    frames = sent(i)
    assert len(frames) == 4 and all(len(raw(f)) <= 614 for f in frames)
    whole = defragment([f[IP] for f in frames])[0]
    assert whole[UDP].dport == 53 and raw(whole[UDP].payload) == b"Q" * 2000


def test_rfc791_received_fragments_are_reassembled_and_delivered():
    i = make()
    i.udp_bind(7)
    for frag in reversed(fragment(IP(src=PEER, dst=US) / UDP(sport=3, dport=7) / (b"R" * 5000),
                                  fragsize=1000)):
        i.receive(raw(Ether(src=THEIRS, dst=OURS) / frag), 1)
    (event,) = i.events()
    assert event.data == b"R" * 5000 and conserved(i)


def test_rfc792_reassembly_timeout_sends_time_exceeded_code_1():
    i = make()
    first = fragment(IP(src=PEER, dst=US, id=42) / UDP(sport=3, dport=7) / (b"T" * 3000),
                     fragsize=1000)[0]
    i.receive(raw(Ether(src=THEIRS, dst=OURS) / first), 0)
    assert i.next_deadline() == 30 * SECOND
    i.handle_timeout(30 * SECOND)
    (err,) = sent(i)
    assert (err[ICMP].type, err[ICMP].code) == (11, 1) and err[IPerror].id == 42
    assert i.counters["ipv4.reassembly.timeout"] == 1


def test_registered_protocol_gets_the_segment_and_its_icmp_errors():
    i = make()
    segments, errors = [], []
    i.register_protocol(6, lambda src, dst, seg, now: segments.append((src, dst, bytes(seg))),
                        lambda error, now: errors.append(error))
    frame = v4(TCP(sport=80, dport=5555, flags="S"))
    i.receive(frame, 1)
    assert segments == [(IPv4Address(PEER), IPv4Address(US), frame[14 + 20:])]
    quoted = IPerror(src=US, dst=PEER, proto=6) / TCP(sport=5555, dport=80)
    i.receive(v4(ICMP(type=3, code=4, nexthopmtu=1400) / quoted), 2)
    (error,) = errors
    assert (error.type, error.code, error.mtu, error.src_port, error.dst_port) == (3, 4, 1400,
                                                                                5555, 80)


def test_dont_fragment_too_big_reports_fragmentation_needed_locally():
    i = make(mtu=1000)
    errors = []
    i.register_protocol(6, lambda *a: None, lambda error, now: errors.append(error))
    assert not i.send_ip(IPv4Address(PEER), 6, b"\0" * 2000, 0, dont_fragment=True)
    assert errors[0].mtu == 1000 and errors[0].type == 3 and errors[0].code == 4
    assert sent(i) == []


def test_we_ping_an_unknown_neighbour_resolve_it_and_get_the_reply_event():
    i = Interface(MAC, strict=True)
    assert i.ping(IPv4Address(PEER), 9, 1, b"abc", 0)
    (request,) = sent(i)
    assert request[ARP].pdst == PEER and request.dst == "ff:ff:ff:ff:ff:ff"
    i.receive(raw(Ether(src=THEIRS, dst=OURS) / ARP(op=2, hwsrc=THEIRS, psrc=PEER, hwdst=OURS,
                                                     pdst=US)), 1)
    (echo,) = sent(i)
    assert echo[ICMP].type == 8 and echo.dst == THEIRS
    i.receive(v4(ICMP(type=0, id=9, seq=1) / b"abc"), 2)
    assert i.events() == [EchoReply(IPv4Address(PEER), 9, 1, b"abc")]


def test_unresolvable_neighbour_raises_resolution_failed():
    i = Interface(MAC, strict=True)
    i.ping(IPv4Address("10.77.0.9"), 1, 1, b"", 0)
    now = 0
    while (deadline := i.next_deadline()) is not None:
        now = deadline
        i.handle_timeout(now)
    assert ResolutionFailed(IPv4Address("10.77.0.9"), 1) in i.events()


def test_off_link_without_gateway_is_no_route_and_with_gateway_goes_via_it():
    i = make()
    assert not i.ping(IPv4Address("8.8.8.8"), 1, 1, b"", 0)
    assert i.counters["tx.drop.no_route"] == 1
    g = make(gateway=PEER)
    assert g.ping(IPv4Address("8.8.8.8"), 1, 1, b"", 0)
    (out,) = sent(g)
    assert out.dst == THEIRS and out[IP].dst == "8.8.8.8"


def test_frames_not_for_us_and_bad_header_checksums_are_counted():
    i = make()
    i.receive(raw(Ether(src=THEIRS, dst="02:00:00:00:00:77") / IP(src=PEER, dst=US) / ICMP()), 1)
    i.receive(v4(ICMP(), dst="10.77.0.3"), 2)
    bad = bytearray(v4(ICMP()))
    bad[14 + 8] ^= 1
    i.receive(bytes(bad), 3)
    i.receive(b"\x01\x02", 4)
    c = i.counters
    assert c["drop.not_for_us"] == 2 and c["drop.bad_checksum"] == 1 and c["drop.truncated"] == 1
    assert conserved(i)


def test_ipv6_echo_is_answered_and_unknown_next_header_gets_parameter_problem():
    i = make()
    base = Ether(src=THEIRS, dst=OURS) / IPv6(src=PEER_LL, dst=OUR_LL)
    nd = Ether(src=THEIRS, dst="33:33:ff:00:00:02") / IPv6(
        src=PEER_LL, dst="ff02::1:ff00:2", hlim=255)
    i.receive(raw(nd / ICMPv6ND_NS(tgt=OUR_LL) / ICMPv6NDOptSrcLLAddr(lladdr=THEIRS)), 0)
    i.frames_to_send()
    i.receive(raw(base / ICMPv6EchoRequest(id=1, seq=2, data=b"six")), 1)
    (reply,) = sent(i)
    assert reply[IPv6].src == OUR_LL and reply[IPv6].dst == PEER_LL
    i.receive(raw(Ether(src=THEIRS, dst=OURS) / IPv6(src=PEER_LL, dst=OUR_LL, nh=253)
                  / (b"\0" * 8)), 2)
    (err,) = sent(i)
    assert err[ICMPv6ParamProblem].code == 1 and err[ICMPv6ParamProblem].ptr == 6
    i.udp_bind(7)
    i.receive(raw(base / UDP(dport=8)), 3)
    (unreach,) = sent(i)
    assert unreach[ICMPv6DestUnreach].code == 4


def test_rfc8200_4_5_ipv6_fragments_reassembled_and_timeout_reported():
    i = make()
    i.udp_bind(7)
    i.ndp.resolver.learned(IPv6Address(PEER_LL), bytes.fromhex("020000000001"), 0,
                           confirmed=True)
    base = IPv6(src=PEER_LL, dst=OUR_LL) / IPv6ExtHdrFragment(id=77)
    frags = fragment6(base / UDP(sport=1, dport=7) / (b"6" * 3000), 1280)
    for frag in frags:
        i.receive(raw(Ether(src=THEIRS, dst=OURS) / frag), 0)
    (event,) = i.events()
    assert event.data == b"6" * 3000 and event.src == IPv6Address(PEER_LL)
    i.receive(raw(Ether(src=THEIRS, dst=OURS) / fragment6(
        IPv6(src=PEER_LL, dst=OUR_LL) / IPv6ExtHdrFragment(id=78) / UDP(dport=7)
        / (b"7" * 3000), 1280)[0]), 0)
    i.frames_to_send()
    i.handle_timeout(60 * SECOND)
    errors = [f for f in sent(i) if ICMPv6TimeExceeded in f]
    assert len(errors) == 1 and errors[0][ICMPv6TimeExceeded].code == 1


def test_ipv6_send_uses_source_fragmentation_that_scapy_reassembles():
    i = make()
    i.ndp.resolver.learned(IPv6Address(PEER_LL), bytes.fromhex("020000000001"), 0,
                           confirmed=True)
    port = i.udp_bind(0)
    i.udp_send(port, IPv6Address(PEER_LL), 9, b"F" * 4000, 0)
    frames = sent(i)
    assert len(frames) == 3 and all(IPv6ExtHdrFragment in f for f in frames)
    assert all(len(raw(f)) <= 1514 for f in frames)
    whole = IPv6(raw(defragment6([f[IPv6] for f in frames])))
    assert raw(whole[UDP].payload) == b"F" * 4000


def test_icmp_error_without_handler_becomes_an_event():
    i = make()
    quoted = IPerror(src=US, dst=PEER) / UDPerror(sport=5000, dport=53)
    i.receive(v4(ICMP(type=3, code=3) / quoted), 1)
    (event,) = i.events()
    assert isinstance(event, IcmpError) and (event.proto, event.src_port, event.dst_port) == (
        17, 5000, 53)


def test_frames_given_as_numpy_views_of_a_data_region_are_parsed_in_place():
    import numpy as np
    i = make()
    i.udp_bind(7)
    frame = v4(UDP(sport=1, dport=7) / b"zero-copy")
    region = np.zeros(4096, dtype=np.uint8)
    region[100:100 + len(frame)] = np.frombuffer(frame, dtype=np.uint8)
    i.receive(memoryview(region)[100:100 + len(frame)], 1)
    assert [e.data for e in i.events()] == [b"zero-copy"]


def test_oversized_udp_send_is_refused_and_counted():
    i = make()
    assert not i.udp_send(5, IPv4Address(PEER), 7, b"\0" * 65508, 0)
    assert i.counters["tx.drop.too_big"] == 1 and sent(i) == []


def test_rfc791_ip_options_are_skipped_and_the_datagram_delivered():
    from scapy.all import IPOption_Router_Alert
    i = make()
    i.udp_bind(7)
    frame = raw(Ether(src=THEIRS, dst=OURS) / IP(src=PEER, dst=US,
                                                 options=[IPOption_Router_Alert()])
                / UDP(sport=2, dport=7) / b"opts")
    i.receive(frame, 1)
    assert [e.data for e in i.events()] == [b"opts"]


def test_rfc1122_3_2_1_3_multicast_or_broadcast_source_is_discarded():
    i = make()
    i.receive(v4(ICMP(type=8), src="224.0.0.5"), 1)
    i.receive(v4(ICMP(type=8), src="10.77.0.255"), 2)
    assert sent(i) == [] and i.counters["drop.bad_source"] == 2


def test_rfc1122_3_2_1_7_low_ttl_is_accepted_and_we_never_send_ttl_zero():
    i = make()
    i.udp_bind(7)
    for ttl in (0, 1):
        i.receive(raw(Ether(src=THEIRS, dst=OURS) / IP(src=PEER, dst=US, ttl=ttl)
                      / UDP(dport=7) / b"t"), 1)
    assert len(i.events()) == 2
    i.udp_send(7, IPv4Address(PEER), 9, b"x", 2)
    (out,) = sent(i)
    assert out[IP].ttl == 64
