"""HDR-style latency histogram over integer nanoseconds, vectorised with numpy.

Layout (log-linear, as HdrHistogram): values are first divided by the unit 2**floor(log2(
lowest)). Below ``S = 2**ceil(log2(2 * 10**digits))`` units every value has its own bucket;
above, each power-of-two range [2**e * S/2, 2**e * S) is split into S/2 equal buckets of
width 2**e units. Bucket index for a unit value v: e = max(0, bit_length(v) - log2 S),
index = e * S/2 + (v >> e).

Precision: a bucket's width is at most 1/(S/2) of its lower bound, and ``percentile``
returns the bucket's midpoint, so for values >= ``lowest`` the value returned is within
1/S <= 0.5 * 10**-digits (relative) of the true percentile's value (digits=3: 1/2048,
about 0.049 %). Percentile p is the smallest recorded value v with at least p % of the
values <= v (numpy's ``method="inverted_cdf"``), with p taken as written in decimal.
``min``, ``max`` and ``mean`` are exact over the values as recorded (after clamping).

Values above ``highest`` are counted at ``highest`` (and in ``clamped``); negative values at
0 (and in ``clamped``). ``highest`` must be below 2**53 (float64-exact bucket arithmetic).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

FORMAT_VERSION = 1
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99.9": 99.9}


class Histogram:
    """Counts of int ns values in log-linear buckets; see the module docstring for precision."""

    def __init__(self, lowest: int = 1, highest: int = 3_600_000_000_000,
                 significant_digits: int = 3) -> None:
        if not 1 <= lowest < highest < 1 << 53 or not 1 <= significant_digits <= 5:
            raise ValueError("need 1 <= lowest < highest < 2**53 and 1 <= digits <= 5")
        self.lowest, self.highest, self.digits = int(lowest), int(highest), significant_digits
        self.unit_shift = int(lowest).bit_length() - 1
        self.sub_bits = math.ceil(math.log2(2 * 10 ** significant_digits))
        self.half = 1 << (self.sub_bits - 1)
        self.counts = np.zeros(self._index(np.array([highest], np.int64))[0] + 1, np.int64)
        self.count = 0
        self.clamped = 0
        self.total = 0          # exact sum of recorded (clamped) values
        self._min = None
        self._max = None

    # -- recording -------------------------------------------------------------------------
    def _index(self, values: np.ndarray) -> np.ndarray:
        units = values >> self.unit_shift
        _, exp = np.frexp(units.astype(np.float64))          # exp == bit_length for ints < 2**53
        shift = np.maximum(exp.astype(np.int64) - self.sub_bits, 0)
        return shift * self.half + (units >> shift)

    def record_many(self, values) -> None:
        """Record every value of an integer array (vectorised)."""
        v = np.asarray(values, dtype=np.int64).reshape(-1)
        if v.size == 0:
            return
        out = (v < 0) | (v > self.highest)
        if out.any():
            self.clamped += int(out.sum())
            v = np.clip(v, 0, self.highest)
        index = self._index(v)
        first = int(index.min())            # count only over the buckets the batch touches
        counted = np.bincount(index - first)
        self.counts[first:first + counted.size] += counted
        self.count += int(v.size)
        self.total += int(v.sum(dtype=np.int64))
        lo, hi = int(v.min()), int(v.max())
        self._min = lo if self._min is None else min(self._min, lo)
        self._max = hi if self._max is None else max(self._max, hi)

    def record_few(self, values) -> None:
        """``record_many`` for a few Python ints, one at a time: numpy's per-call cost is most of
        the time for a handful of values."""
        counts, shift_in, sub_bits, half = self.counts, self.unit_shift, self.sub_bits, self.half
        highest, lo, hi, total, n = self.highest, self._min, self._max, 0, 0
        for v in values:
            if v < 0 or v > highest:
                self.clamped += 1
                v = 0 if v < 0 else highest
            units = v >> shift_in
            shift = max(units.bit_length() - sub_bits, 0)
            counts[shift * half + (units >> shift)] += 1
            total += v
            n += 1
            lo = v if lo is None or v < lo else lo
            hi = v if hi is None or v > hi else hi
        self.count += n
        self.total += total
        self._min, self._max = lo, hi

    def record(self, value: int) -> None:
        """Record one value."""
        self.record_few((int(value),))

    # -- queries ---------------------------------------------------------------------------
    def _bucket_value(self, index: int) -> int:
        """Midpoint of bucket ``index`` in ns."""
        shift = max(0, index // self.half - 1)
        lower = (index - shift * self.half) << shift
        width = 1 << shift
        return ((lower << self.unit_shift) + ((width << self.unit_shift) >> 1))

    def percentile(self, p: float) -> int:
        """Value at percentile ``p`` (0..100), within the stated precision; 0 when empty."""
        if not 0 <= p <= 100:
            raise ValueError("percentile must be within 0..100")
        if self.count == 0:
            return 0
        target = max(1, math.ceil(Fraction(str(p)) * self.count / 100))   # exact, as written
        index = int(np.searchsorted(np.cumsum(self.counts), target))
        return min(max(self._bucket_value(index), self._min), self._max)

    @property
    def min(self) -> int:
        return 0 if self._min is None else self._min

    @property
    def max(self) -> int:
        return 0 if self._max is None else self._max

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def summary(self) -> dict:
        """count, min, p50, p90, p99, p99.9, max (int ns) and mean (float ns)."""
        out = {"count": self.count, "min": self.min}
        out.update({name: self.percentile(p) for name, p in PERCENTILES.items()})
        out.update({"max": self.max, "mean": self.mean})
        return out

    # -- combining and serialising ---------------------------------------------------------
    def _same_layout(self, other: Histogram) -> bool:
        return (self.lowest, self.highest, self.digits) == (other.lowest, other.highest,
                                                            other.digits)

    def merge(self, other: Histogram) -> Histogram:
        """Add ``other``'s counts into this histogram (same layout required); returns self."""
        if not self._same_layout(other):
            raise ValueError("histograms differ in lowest, highest or significant digits")
        self.counts += other.counts
        self.count += other.count
        self.clamped += other.clamped
        self.total += other.total
        for name, pick in (("_min", min), ("_max", max)):
            mine, theirs = getattr(self, name), getattr(other, name)
            setattr(self, name, theirs if mine is None else mine if theirs is None
                    else pick(mine, theirs))
        return self

    def to_dict(self) -> dict:
        """A compact msgpack/JSON-able form: non-empty buckets as delta-coded index runs."""
        nonzero = np.flatnonzero(self.counts)
        gaps = np.diff(nonzero, prepend=0)
        return {"v": FORMAT_VERSION, "lowest": self.lowest, "highest": self.highest,
                "digits": self.digits, "count": self.count, "clamped": self.clamped,
                "total": self.total, "min": self._min, "max": self._max,
                "gaps": gaps.tolist(), "counts": self.counts[nonzero].tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> Histogram:
        """Rebuild a histogram from ``to_dict`` output (ValueError if inconsistent)."""
        if data.get("v") != FORMAT_VERSION:
            raise ValueError(f"unknown histogram format {data.get('v')!r}")
        hist = cls(data["lowest"], data["highest"], data["digits"])
        index = np.cumsum(np.asarray(data["gaps"], np.int64))
        counts = np.asarray(data["counts"], np.int64)
        if (index.shape != counts.shape or (index.size and (index[-1] >= hist.counts.size
                                                            or index.min() < 0))
                or (counts < 0).any() or int(counts.sum()) != data["count"]):
            raise ValueError("histogram data is inconsistent")
        hist.counts[index] = counts
        hist.count, hist.clamped, hist.total = data["count"], data["clamped"], data["total"]
        hist._min, hist._max = data["min"], data["max"]
        return hist

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Histogram) and self._same_layout(other)
                and self.to_dict() == other.to_dict())

    __hash__ = None
