"""The Internet checksum's incremental update (RFC 1624), for mangling frames in place.

RFC 1624 section 3, equation 3: ``HC' = ~(~HC + ~m + m')`` where ``m`` is an old 16-bit
field value and ``m'`` the new one. Changing several aligned words is the same sum over each
pair; :func:`update` takes the old and new bytes of an even-length, even-aligned span.

One's complement has two zeros; a checksum of 0x0000 and one of 0xFFFF both verify.
:func:`same_checksum` compares under that equivalence.
"""

from __future__ import annotations

# the checksum itself and the pseudo-headers are the stack's (netstack.wire), shared
from netstack.wire.checksum import internet_checksum, ones_sum, pseudo_header, transport_checksum

__all__ = [
    "ones_sum", "internet_checksum", "update", "update_word", "pseudo_header",
    "transport_checksum", "same_checksum",
]


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


def same_checksum(a: int, b: int) -> bool:
    """True when ``a`` and ``b`` are the same one's complement value (0x0000 == 0xFFFF)."""
    return a == b or {a, b} == {0, 0xFFFF}
