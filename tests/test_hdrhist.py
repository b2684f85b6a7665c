"""The HDR latency histogram: percentiles within the stated precision, merging, clamping and
serialisation."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.hdrhist import Histogram

PCTS = [0, 0.1, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100]


def precision(hist: Histogram) -> float:
    return 0.5 * 10.0 ** -hist.digits


@pytest.mark.parametrize("digits", [2, 3, 4])
@pytest.mark.parametrize("sigma", [0.5, 2.0])
def test_percentiles_match_numpy_within_stated_precision(digits, sigma):
    rng = np.random.default_rng(digits * 10 + int(sigma))
    values = rng.lognormal(11, sigma, 100_003).astype(np.int64) + 1
    hist = Histogram(significant_digits=digits)
    hist.record_many(values)
    for p in PCTS:
        true = np.percentile(values, p, method="inverted_cdf")
        got = hist.percentile(p)
        assert abs(got - true) <= precision(hist) * true, (p, got, true)
    assert (hist.min, hist.max, hist.count) == (values.min(), values.max(), values.size)
    assert hist.mean == pytest.approx(values.mean(), rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 10**12), min_size=1, max_size=300),
       st.floats(0, 100, allow_nan=False))
def test_any_data_any_percentile_is_within_precision(values, p):
    hist = Histogram()
    hist.record_many(np.array(values, np.int64))
    rank = max(1, math.ceil(Fraction(str(p)) * len(values) / 100))    # p as written
    true = sorted(values)[rank - 1]
    assert abs(hist.percentile(p) - true) <= precision(hist) * true


def test_record_one_by_one_equals_record_many():
    values = np.random.default_rng(1).integers(1, 10**9, 500)
    one, many = Histogram(), Histogram()
    for v in values.tolist():
        one.record(v)
    many.record_many(values)
    assert one == many
    assert one.summary() == many.summary()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(-10**6, 2**53 - 1), min_size=1, max_size=40),
       st.integers(1, 4096), st.sampled_from([2, 3, 4]))
def test_recording_a_few_one_at_a_time_equals_record_many(values, lowest, digits):
    few = Histogram(lowest=lowest, highest=10**12, significant_digits=digits)
    many = Histogram(lowest=lowest, highest=10**12, significant_digits=digits)
    few.record_few(values)
    many.record_many(np.array(values, np.int64))
    assert few == many and few.clamped == many.clamped
    assert few.summary() == many.summary()


def test_merge_equals_recording_everything():
    rng = np.random.default_rng(2)
    a_vals, b_vals = rng.lognormal(8, 1, 5000).astype(int), rng.lognormal(12, 1, 7000).astype(int)
    a, b, both = Histogram(), Histogram(), Histogram()
    a.record_many(a_vals)
    b.record_many(b_vals)
    both.record_many(np.concatenate([a_vals, b_vals]))
    assert a.merge(b) == both
    assert a.summary() == both.summary()
    assert Histogram().merge(Histogram()) == Histogram()
    with pytest.raises(ValueError):
        Histogram(significant_digits=2).merge(Histogram())


def test_serialisation_round_trips_through_msgpack_and_json():
    hist = Histogram()
    hist.record_many(np.random.default_rng(3).lognormal(10, 2, 50_000).astype(np.int64))
    hist.record(10**15)
    packed = msgpack.packb(hist.to_dict())
    assert len(packed) < 40_000                       # sparse: far below the bucket array
    for restored in (Histogram.from_dict(msgpack.unpackb(packed)),
                     Histogram.from_dict(json.loads(json.dumps(hist.to_dict())))):
        assert restored == hist
        assert restored.summary() == hist.summary()
        assert restored.clamped == 1
    empty = Histogram.from_dict(Histogram().to_dict())
    assert empty.count == 0 and empty.percentile(50) == 0


def test_inconsistent_serialised_data_is_refused():
    data = Histogram().to_dict()
    data["gaps"], data["counts"] = [5], [3]
    with pytest.raises(ValueError):
        Histogram.from_dict(data)                        # counts do not add up to count
    data["count"] = 3
    data["gaps"] = [10**9]
    with pytest.raises(ValueError):
        Histogram.from_dict(data)                        # bucket beyond the layout


def test_values_beyond_range_are_clamped_and_counted():
    hist = Histogram(lowest=1, highest=1_000_000)
    hist.record_many(np.array([10, 20, 5_000_000, 7_000_000, -3]))
    assert hist.clamped == 3
    assert hist.count == 5
    assert hist.percentile(100) <= 1_000_000
    assert hist.percentile(100) >= 1_000_000 * (1 - precision(hist))
    assert hist.min == 0 and hist.max == 1_000_000


def test_lowest_sets_the_unit_and_summary_has_every_field():
    hist = Histogram(lowest=1000, highest=10**12)
    values = np.arange(1_000, 1_000_000, 7)
    hist.record_many(values)
    s = hist.summary()
    assert list(s) == ["count", "min", "p50", "p90", "p99", "p99.9", "max", "mean"]
    for key, p in (("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9)):
        true = np.percentile(values, p, method="inverted_cdf")
        assert abs(s[key] - true) <= precision(hist) * true
    with pytest.raises(ValueError):
        hist.percentile(101)
    with pytest.raises(ValueError):
        Histogram(lowest=10, highest=5)
