"""filter.checksum: the Internet checksum against scapy, RFC 1624 incremental updates against
full recomputation, and pseudo-headers against scapy's TCP/UDP checksums."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import IP, TCP, UDP, IPv6, raw
from scapy.utils import checksum as scapy_checksum

from filter.checksum import (
    internet_checksum,
    ones_sum,
    pseudo_header,
    same_checksum,
    transport_checksum,
    update,
    update_word,
)


def test_rfc1071_example():
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (checksum 220d)
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert ones_sum(data) == 0xDDF2
    assert internet_checksum(data) == 0x220D


@given(st.binary(max_size=300))
def test_matches_scapy(data):
    assert same_checksum(internet_checksum(data), scapy_checksum(data))


def test_verifies_to_zero_over_a_real_header():
    header = raw(IP(src="10.1.2.3", dst="10.9.8.7", ttl=9) / b"x")[:20]
    assert internet_checksum(header) == 0


@settings(max_examples=300)
@given(st.binary(min_size=2, max_size=200).filter(lambda b: len(b) % 2 == 0),
       st.data())
def test_incremental_equals_full(data, draw):
    """RFC 1624 eqn. 3 over any even-aligned span equals recomputing the whole sum."""
    words = len(data) // 2
    start = draw.draw(st.integers(0, words - 1)) * 2
    stop = draw.draw(st.integers(start // 2 + 1, words)) * 2
    new_span = draw.draw(st.binary(min_size=stop - start, max_size=stop - start))
    before = internet_checksum(data)
    after = data[:start] + new_span + data[stop:]
    incremental = update(before, data[start:stop], new_span)
    assert same_checksum(incremental, internet_checksum(after))
    if any(after):      # (all-zero data, impossible in a real header, sums to -0 / +0)
        # the updated checksum verifies: the data plus its checksum sums to zero
        assert internet_checksum(after + struct.pack("!H", incremental)) == 0


@given(st.binary(min_size=2, max_size=64).filter(lambda b: len(b) % 2 == 0),
       st.integers(0, 31), st.integers(0, 0xFFFF))
def test_update_word_equals_full(data, index, new):
    index = index % (len(data) // 2)
    old = struct.unpack_from("!H", data, index * 2)[0]
    after = data[:index * 2] + struct.pack("!H", new) + data[index * 2 + 2:]
    assert same_checksum(update_word(internet_checksum(data), old, new),
                         internet_checksum(after))


def test_same_checksum_treats_both_zeros_alike():
    assert same_checksum(0, 0xFFFF) and same_checksum(0xFFFF, 0)
    assert not same_checksum(1, 0xFFFE)


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=100), st.integers(1, 65535), st.integers(1, 65535))
def test_pseudo_header_checksums_match_scapy(payload, sport, dport):
    for net in (IP(src="192.0.2.1", dst="198.51.100.7"), IPv6(src="2001:db8::1", dst="fe80::2")):
        for l4 in (TCP(sport=sport, dport=dport, flags="PA", seq=7), UDP(sport=sport, dport=dport)):
            pkt = (net / l4 / payload).__class__(raw(net / l4 / payload))
            layer = pkt[l4.__class__]
            segment = bytearray(raw(layer))
            field = 16 if isinstance(l4, TCP) else 6
            expected = struct.unpack_from("!H", segment, field)[0]
            segment[field:field + 2] = b"\0\0"
            src, dst = (bytes(raw(pkt)[12:16]), bytes(raw(pkt)[16:20])) if pkt.version == 4 \
                else (bytes(raw(pkt)[8:24]), bytes(raw(pkt)[24:40]))
            assert same_checksum(transport_checksum(src, dst, l4.__class__ is TCP and 6 or 17,
                                                    segment), expected)


def test_pseudo_header_layouts():
    v4 = pseudo_header(b"\x01\x02\x03\x04", b"\x05\x06\x07\x08", 17, 20)
    assert v4 == bytes.fromhex("0102030405060708 0011 0014".replace(" ", ""))
    v6 = pseudo_header(bytes(16), bytes(15) + b"\x01", 6, 0x10203)
    assert v6[32:] == bytes.fromhex("00010203 00000006".replace(" ", ""))
