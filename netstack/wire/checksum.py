"""The Internet checksum (RFC 1071) and the IPv4/IPv6 pseudo-headers of UDP, TCP and ICMPv6.

RFC 1071 section 1: "the 16-bit 1's complement of the 1's complement sum of all 16-bit
words". Because 2**16 == 1 (mod 0xFFFF), the one's complement sum of the words of a buffer is
the buffer read as one big-endian integer, modulo 0xFFFF (with 0xFFFF standing for a non-zero
multiple). Python's big integers do that in C, which is much faster than a word loop.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import numpy as np

__all__ = [
    "ones_sum", "internet_checksum", "pseudo_header", "transport_checksum", "transport_valid",
]


NUMPY_FROM = 3072


def _wide_sum(data, head: int) -> int:
    """The one's complement sum (mod 0xFFFF) of ``data[:head]`` as big-endian 16-bit words."""
    total = int(np.frombuffer(data, dtype="<u4", count=head // 4).sum(dtype=np.uint64))
    total = (total & 0xFFFFFFFF) + (total >> 32)
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return (total & 0xFF) << 8 | total >> 8           # little-endian sum -> big-endian


def ones_sum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The 16-bit one's complement sum of ``data`` (padded with a zero byte if odd) + initial."""
    n = len(data)
    if n >= NUMPY_FROM:
        head = n & ~7
        tail = data[head:]
        value = _wide_sum(data, head) + (int.from_bytes(tail, "big") << (8 if n & 1 else 0))
    else:
        value = int.from_bytes(data, "big")
        if n & 1:
            value <<= 8
    value += initial
    if value == 0:
        return 0
    folded = value % 0xFFFF
    return folded or 0xFFFF


def internet_checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """RFC 1071 checksum of ``data``; over data holding a correct checksum it returns 0."""
    return ~ones_sum(data, initial) & 0xFFFF


def pseudo_header(src: IPv4Address | IPv6Address | bytes, dst: IPv4Address | IPv6Address | bytes,
                  proto: int, length: int) -> bytes:
    """The pseudo-header: RFC 768 / RFC 9293 section 3.1 (IPv4), RFC 8200 section 8.1 (IPv6).
    Addresses as ``ipaddress`` objects or packed (4 or 16 bytes)."""
    if not isinstance(src, bytes | bytearray | memoryview):
        src, dst = src.packed, dst.packed
    if len(src) == 4:
        return bytes(src) + bytes(dst) + bytes((0, proto)) + length.to_bytes(2, "big")
    return bytes(src) + bytes(dst) + length.to_bytes(4, "big") + bytes((0, 0, 0, proto))


def transport_checksum(src, dst, proto: int, segment: bytes | bytearray | memoryview) -> int:
    """Checksum of ``segment`` (its checksum field zeroed) under the pseudo-header."""
    return internet_checksum(segment, ones_sum(pseudo_header(src, dst, proto, len(segment))))


def transport_valid(src, dst, proto: int, segment: bytes | bytearray | memoryview) -> bool:
    """True when ``segment`` (checksum field as received) sums to zero under the pseudo-header."""
    return transport_checksum(src, dst, proto, segment) == 0
