"""The Internet checksum (RFC 1071) and pseudo-headers against a plain word-by-word reference
and against scapy's checksums."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

from hypothesis import given
from hypothesis import strategies as st
from scapy.all import IP, UDP, IPv6, raw
from scapy.utils import checksum as scapy_checksum

from netstack.wire.checksum import internet_checksum, pseudo_header, transport_checksum


def reference_checksum(data: bytes) -> int:
    """RFC 1071 section 4.1's loop, written plainly."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@given(st.binary(max_size=3000))
def test_rfc1071_checksum_matches_the_reference_loop_and_scapy(data):
    assert internet_checksum(data) == reference_checksum(data) == scapy_checksum(data)


@given(st.binary(min_size=2, max_size=400).filter(lambda b: len(b) % 2 == 0))
def test_rfc1071_data_with_its_checksum_appended_sums_to_zero(data):
    whole = data + internet_checksum(data).to_bytes(2, "big")
    assert internet_checksum(whole) == 0


def test_rfc1071_section_3_example_words():
    # RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 -> sum ddf2, checksum 220d
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_rfc768_pseudo_header_layout_v4():
    ph = pseudo_header(IPv4Address("1.2.3.4"), IPv4Address("5.6.7.8"), 17, 0x1234)
    assert ph == bytes.fromhex("01020304" "05060708" "00" "11" "1234")


def test_rfc8200_8_1_pseudo_header_layout_v6():
    ph = pseudo_header(IPv6Address("::1"), IPv6Address("::2"), 58, 0x10)
    assert len(ph) == 40 and ph[32:] == bytes.fromhex("00000010" "0000003a")


@given(st.binary(max_size=600), st.integers(0, 65535), st.integers(0, 65535))
def test_udp_checksum_agrees_with_scapy_v4_and_v6(payload, sport, dport):
    for ip, src, dst in ((IP, IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")),
                         (IPv6, IPv6Address("fe80::1"), IPv6Address("2001:db8::2"))):
        packet = raw(ip(src=str(src), dst=str(dst)) / UDP(sport=sport, dport=dport) / payload)
        header = 20 if ip is IP else 40
        segment = bytearray(packet[header:])
        expected = int.from_bytes(segment[6:8], "big")
        segment[6:8] = b"\0\0"
        ours = transport_checksum(src, dst, 17, bytes(segment)) or 0xFFFF
        assert ours == expected
