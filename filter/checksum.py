"""The Internet checksum (RFC 1071), its incremental update (RFC 1624) and pseudo-headers.

RFC 1624 section 3, equation 3: ``HC' = ~(~HC + ~m + m')`` where ``m`` is an old 16-bit
field value and ``m'`` the new one. Changing several aligned words is the same sum over each
pair; :func:`update` takes the old and new bytes of an even-length, even-aligned span.

One's complement has two zeros; a checksum of 0x0000 and one of 0xFFFF both verify.
:func:`same_checksum` compares under that equivalence.
"""

from __future__ import annotations

__all__ = [
    "ones_sum", "internet_checksum", "update", "update_word", "pseudo_header",
    "transport_checksum", "same_checksum",
]


def ones_sum(data, initial: int = 0) -> int:
    """The 16-bit one's complement sum of ``data`` (a zero byte pads an odd length)."""
    value = int.from_bytes(data, "big")
    if len(data) & 1:
        value <<= 8
    value += initial
    if value == 0:
        return 0
    return value % 0xFFFF or 0xFFFF


def internet_checksum(data, initial: int = 0) -> int:
    """RFC 1071 checksum of ``data`` with ``initial`` added (0 over data that verifies)."""
    return ~ones_sum(data, initial) & 0xFFFF


def update(checksum: int, old, new) -> int:
    """RFC 1624 eqn. 3 over spans ``old`` -> ``new`` (equal even lengths, word-aligned)."""
    total = (~checksum & 0xFFFF) + ones_sum(new) + (~ones_sum(old) & 0xFFFF)
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def update_word(checksum: int, old: int, new: int) -> int:
    """RFC 1624 eqn. 3 for one 16-bit word ``old`` -> ``new``."""
    total = (~checksum & 0xFFFF) + (~old & 0xFFFF) + (new & 0xFFFF)
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pseudo_header(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    """RFC 768 / RFC 9293 section 3.1 (4-byte addresses) or RFC 8200 section 8.1 (16-byte)."""
    if len(src) == 4:
        return src + dst + bytes((0, proto)) + length.to_bytes(2, "big")
    return src + dst + length.to_bytes(4, "big") + bytes((0, 0, 0, proto))


def transport_checksum(src: bytes, dst: bytes, proto: int, segment) -> int:
    """The checksum of ``segment`` (checksum field zeroed) under its pseudo-header."""
    return internet_checksum(segment, ones_sum(pseudo_header(src, dst, proto, len(segment))))


def same_checksum(a: int, b: int) -> bool:
    """True when ``a`` and ``b`` are the same one's complement value (0x0000 == 0xFFFF)."""
    return a == b or {a, b} == {0, 0xFFFF}
