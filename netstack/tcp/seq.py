"""Sequence-number arithmetic modulo 2**32 (RFC 9293 section 3.4).

"It is essential to remember that the actual sequence number space is finite ... all arithmetic
dealing with sequence numbers must be performed modulo 2**32." Every comparison of sequence
numbers (and of RFC 7323 timestamps) in netstack.tcp goes through these helpers.
"""

from __future__ import annotations

__all__ = ["MASK", "seq_add", "seq_sub", "seq_lt", "seq_le", "seq_gt", "seq_ge", "seq_in",
           "seq_max", "seq_min"]

MASK = 0xFFFFFFFF


def seq_add(a: int, n: int) -> int:
    """a + n modulo 2**32 (n may be negative)."""
    return (a + n) & MASK


def seq_sub(a: int, b: int) -> int:
    """The signed distance a - b, in -2**31 .. 2**31 - 1."""
    d = (a - b) & MASK
    return d - 0x100000000 if d & 0x80000000 else d


# The comparisons below are seq_sub's sign, written out: they run several times per segment.
HALF = 0x80000000


def seq_lt(a: int, b: int) -> bool:
    """a precedes b."""
    return (a - b) & MASK >= HALF


def seq_le(a: int, b: int) -> bool:
    d = (a - b) & MASK
    return d == 0 or d >= HALF


def seq_gt(a: int, b: int) -> bool:
    return 0 < (a - b) & MASK < HALF


def seq_ge(a: int, b: int) -> bool:
    return (a - b) & MASK < HALF


def seq_in(x: int, lo: int, hi: int) -> bool:
    """lo <= x < hi in sequence space."""
    return (x - lo) & MASK < HALF and 0 < (hi - x) & MASK < HALF


def seq_max(a: int, b: int) -> int:
    return b if (a - b) & MASK >= HALF else a


def seq_min(a: int, b: int) -> int:
    return a if (a - b) & MASK >= HALF else b
