"""IPv4 fragmentation and reassembly (RFC 791, RFC 1122 section 3.3.2, RFC 5722 style overlap
handling), checked against scapy's fragmenter and defragmenter."""

from __future__ import annotations

import random
from ipaddress import IPv4Address

from hypothesis import given
from hypothesis import strategies as st
from scapy.all import IP, UDP, defragment, raw
from scapy.all import fragment as scapy_fragment

from netstack.ipv4 import SECOND, Reassembler, fragment
from netstack.wire import Ipv4, Ipv4View

SRC, DST = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")


def feed(reassembler: Reassembler, packets, now: int = 0):
    whole = None
    for packet in packets:
        v = Ipv4View(packet)
        got = reassembler.add((v.src, v.dst, v.proto, v.ident), v.frag_offset,
                              v.more_fragments, v.payload, now)
        whole = got if got is not None else whole
    return whole


@given(st.binary(min_size=1, max_size=9000), st.integers(68, 1500))
def test_rfc791_fragments_fit_the_mtu_carry_8_byte_multiples_and_scapy_reassembles(payload, mtu):
    packets = fragment(Ipv4(SRC, DST, 17, ident=77), payload, mtu)
    assert all(len(p) <= mtu for p in packets)
    views = [Ipv4View(p) for p in packets]
    assert all(v.checksum_valid() for v in views)
    assert all(len(v.payload) % 8 == 0 for v in views[:-1])
    assert [v.more_fragments for v in views] == [True] * (len(views) - 1) + [False]
    assert {v.ident for v in views} == {77}
    scapy_whole = defragment([IP(p) for p in packets])
    assert len(scapy_whole) == 1 and raw(scapy_whole[0])[20:] == payload


@given(st.binary(min_size=1, max_size=6000), st.integers(100, 1500), st.randoms())
def test_rfc791_reassembly_in_any_order_of_scapy_fragments(payload, size, rnd):
    packets = [raw(p) for p in scapy_fragment(IP(src=str(SRC), dst=str(DST), proto=17, id=5)
                                              / payload, fragsize=size // 8 * 8)]
    rnd.shuffle(packets)
    r = Reassembler()
    assert feed(r, packets) == payload
    assert r.datagrams == {} and r.held == 0


def test_rfc5722_overlapping_fragments_discard_the_whole_datagram():
    r = Reassembler()
    data = bytes(range(256)) * 8
    first = fragment(Ipv4(SRC, DST, 17, ident=1), data, 20 + 1024)
    evil = Ipv4(SRC, DST, 17, b"X" * 16, ident=1, more_fragments=True, frag_offset=1016).emit()
    assert feed(r, [first[0], evil, *first[1:]]) is None
    assert r.counters["ipv4.reassembly.overlap"] == 1
    assert r.counters["ipv4.reassembly.discarded"] == len(first) - 1
    assert r.held == 0


def test_exact_duplicate_fragments_are_harmless():
    r = Reassembler()
    packets = fragment(Ipv4(SRC, DST, 17, ident=3), b"a" * 3000, 1000)
    assert feed(r, [packets[0], packets[0], *packets[1:]]) == b"a" * 3000
    assert r.counters["ipv4.reassembly.duplicate"] == 1


def test_rfc1122_3_3_2_reassembly_timeout_drops_and_reports_fragment_zero():
    r = Reassembler(timeout_ns=30 * SECOND)
    packets = fragment(Ipv4(SRC, DST, 17, ident=9), b"b" * 3000, 1000)
    v = Ipv4View(packets[0])
    r.add((SRC, DST, 17, 9), 0, True, v.payload, 0, first_packet=b"quoted")
    assert r.next_deadline() == 30 * SECOND
    assert r.expire(30 * SECOND - 1) == []
    expired = r.expire(30 * SECOND)
    assert len(expired) == 1 and expired[0].first_packet == b"quoted"
    assert r.counters["ipv4.reassembly.timeout"] == 1 and r.held == 0


def test_rfc1122_3_3_2_no_time_exceeded_without_fragment_zero():
    r = Reassembler()
    packets = fragment(Ipv4(SRC, DST, 17, ident=9), b"b" * 3000, 1000)
    feed(r, packets[1:])
    assert [e.first_packet for e in r.expire(10**12)] == [None]


def test_reassembly_limits_on_datagrams_in_progress_and_bytes_held():
    r = Reassembler(max_datagrams=2, max_bytes=4000)
    for ident in (1, 2, 3):
        feed(r, fragment(Ipv4(SRC, DST, 17, ident=ident), b"c" * 3000, 1000)[:1])
    # the oldest datagram in progress made room for the newest
    assert len(r.datagrams) == 2 and r.counters["ipv4.reassembly.evicted"] == 1
    assert [key[3] for key in r.datagrams] == [2, 3]
    whole = fragment(Ipv4(SRC, DST, 17, ident=3), b"c" * 3000, 1000)
    assert feed(r, whole[1:]) == b"c" * 3000      # and it still completes
    r2 = Reassembler(max_bytes=2000)
    assert feed(r2, fragment(Ipv4(SRC, DST, 17, ident=1), b"d" * 5000, 1000)) is None
    assert r2.held <= 2000 and r2.counters["ipv4.reassembly.limit"] >= 1


def test_datagram_beyond_65535_bytes_is_refused():
    r = Reassembler()
    tail = Ipv4(SRC, DST, 17, b"e" * 100, ident=4, frag_offset=65528).emit()
    assert feed(r, [tail]) is None and r.counters["ipv4.reassembly.invalid"] == 1


def test_fragments_of_different_datagrams_do_not_mix():
    r = Reassembler()
    a = fragment(Ipv4(SRC, DST, 17, ident=1), b"A" * 2500, 1000)
    b = fragment(Ipv4(SRC, DST, 17, ident=2), b"B" * 2500, 1000)
    mixed = [p for pair in zip(a, b, strict=True) for p in pair]
    random.Random(1).shuffle(mixed)
    results = []
    for packet in mixed:
        v = Ipv4View(packet)
        got = r.add((v.src, v.dst, v.proto, v.ident), v.frag_offset, v.more_fragments,
                    v.payload, 0)
        if got is not None:
            results.append(got)
    assert sorted(results) == [b"A" * 2500, b"B" * 2500]


def test_scapy_udp_checksum_survives_our_fragmentation():
    segment = raw(UDP(sport=1, dport=2) / (b"q" * 4000))
    packets = fragment(Ipv4(SRC, DST, 17, ident=8), segment, 1500)
    whole = defragment([IP(p) for p in packets])[0]
    assert raw(whole[UDP]) == segment


def test_too_many_fragments_for_one_datagram_are_refused():
    r = Reassembler(max_fragments=8)
    packets = fragment(Ipv4(SRC, DST, 17, ident=6), b"t" * 400, 28)     # 50 fragments of 8
    assert feed(r, packets) is None
    assert r.counters["ipv4.reassembly.limit"] == 1 and r.held == 0
