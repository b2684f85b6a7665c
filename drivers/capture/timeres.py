"""Timestamp units <-> integer nanoseconds for a pcapng if_tsresol byte (exact integer maths).

Decimal resolutions down to 1 ns and binary ones down to 2**-29 s round-trip exactly:
``ns_to_units(units_to_ns(u, r), r) == u``. Finer ones are truncated to whole ns on reading.
"""

from __future__ import annotations

import numpy as np

NS_PER_S = 1_000_000_000


def units_to_ns(units: int, tsresol: int) -> int:
    """Integer ns (floor) for a timestamp of ``units`` at resolution ``tsresol``."""
    if tsresol & 0x80:
        return (units * NS_PER_S) >> (tsresol & 0x7F)
    if tsresol <= 9:
        return units * 10 ** (9 - tsresol)
    return units // 10 ** (tsresol - 9)


def ns_to_units(ns: int, tsresol: int) -> int:
    """Timestamp units at ``tsresol`` for ``ns``: the inverse of units_to_ns where exact."""
    if tsresol & 0x80:
        return -((-ns << (tsresol & 0x7F)) // NS_PER_S)
    if tsresol <= 9:
        return ns // 10 ** (9 - tsresol)
    return ns * 10 ** (tsresol - 9)


def ns_to_units_array(ns: np.ndarray, tsresol: int) -> np.ndarray:
    """Vectorised ns_to_units for a uint64 array (exact; Python ints past the fast path)."""
    ns = np.asarray(ns, dtype=np.uint64)
    if not tsresol & 0x80 and tsresol <= 9:
        return ns // np.uint64(10 ** (9 - tsresol))
    out = [ns_to_units(int(v), tsresol) for v in ns.tolist()]
    if out and max(out) >= 1 << 64:
        raise ValueError("timestamp does not fit 64 bits at this resolution")
    return np.array(out, dtype=np.uint64)
