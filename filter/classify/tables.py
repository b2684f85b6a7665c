"""Per-field decision tables: the bit-vector scheme (Lakshman and Stiliadis, SIGCOMM 1998).

For each field some entry constrains, the interval bounds of every entry's conditions cut the
field's domain into elementary intervals; each elementary interval has a row of bits, bit i set
when entry i accepts every value in it (an entry that does not constrain the field accepts all).
A packet's candidate entries are the AND of its rows over all fields (a binary search per field
finds the row); the first set bit at or after a start index is its first match.
"""

from __future__ import annotations

import numpy as np

from filter.classify.fields import addr6_key
from filter.rules.fields import FIELDS

WORD = 64


def words_for(n_entries: int) -> int:
    return max(1, (n_entries + WORD - 1) // WORD)


class Dimension:
    """The table of one field: ``bounds`` (sorted) and one row of entry bits per interval."""

    def __init__(self, name: str, entries: list, n_words: int) -> None:
        self.name = name
        wide = name in FIELDS and FIELDS[name].kind == "addr6"
        key = addr6_key if wide else int
        constraining = [(i, e.conds[name]) for i, e in enumerate(entries) if name in e.conds]
        points = sorted({p for _, ivs in constraining for lo, hi in ivs for p in (lo, hi + 1)})
        self.bounds = np.array([key(p) for p in points], dtype="S17" if wide else np.int64)
        self.rows = np.zeros((len(points) + 1, n_words), dtype=np.uint64)
        wildcard = np.zeros(n_words * WORD, dtype=bool)
        wildcard[:len(entries)] = True
        for i, _ in constraining:
            wildcard[i] = False
        self.rows[:] = np.packbits(wildcard, bitorder="little").view("<u8")
        index = {p: k for k, p in enumerate(points)}
        for i, ivs in constraining:
            w, bit = divmod(i, WORD)
            mask = np.uint64(1 << bit)
            for lo, hi in ivs:
                self.rows[index[lo] + 1:index[hi + 1] + 1, w] |= mask

    def row_index(self, values: np.ndarray) -> np.ndarray:
        """The row of each value (an absent -1 or empty key falls below every bound)."""
        return np.searchsorted(self.bounds, values, side="right")

    def lookup(self, values: np.ndarray) -> np.ndarray:
        """Rows of ``values``."""
        return self.rows[self.row_index(values)]


def first_set(bits: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Per row of ``bits`` (N, W uint64), the index of the first set bit >= ``start`` (-1 if
    none)."""
    n, width = bits.shape
    if width == 1 or not start.any():
        masked = bits
        if start.any():
            low = np.uint64(1) << (start % WORD).astype(np.uint64)
            masked = np.where(start[:, None] >= WORD, np.uint64(0),
                              bits & ~(low - np.uint64(1))[:, None])
    else:
        word = start // WORD
        cols = np.arange(width)
        masked = np.where(cols[None, :] < word[:, None], np.uint64(0), bits)
        shift = (start % WORD).astype(np.uint64)
        low = (np.uint64(1) << shift) - np.uint64(1)
        at = cols[None, :] == word[:, None]
        masked = np.where(at, masked & ~low[:, None], masked)
    if width == 1:
        value = masked[:, 0]
        found, w = value != 0, np.zeros(n, dtype=np.int64)
    else:
        nonzero = masked != 0
        w = nonzero.argmax(axis=1)
        value = masked[np.arange(n), w]
        found = value != 0
    lowest = value & (~value + np.uint64(1))
    bit = np.bitwise_count(lowest - np.uint64(1)).astype(np.int64)
    return np.where(found, w * WORD + bit, -1)
