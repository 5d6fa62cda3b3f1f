"""The log-linear histogram against exact percentiles."""

from __future__ import annotations

import math
import pickle
import random

import pytest

from aigov_cli.loadtest.histogram import SUB_BUCKET_COUNT, Histogram, bucket_bounds, bucket_index


def exact_percentile(values: list[int], p: float) -> int:
    """Nearest-rank percentile."""
    s = sorted(values)
    return s[max(1, math.ceil(p * len(s) / 100 - 1e-9)) - 1]


def test_small_values_are_exact() -> None:
    h = Histogram()
    h.record_many(range(1, 1001))  # 1..1000 µs
    assert h.percentile(50) == 500
    assert h.percentile(90) == 900
    assert h.percentile(99) == 990
    assert h.percentile(99.9) == 999
    assert h.percentile(100) == 1000
    assert h.percentile(0) == 1
    assert h.min == 1 and h.max == 1000
    assert h.mean() == pytest.approx(500.5)


def test_empty_histogram() -> None:
    h = Histogram()
    assert h.percentile(50) is None and h.mean() is None
    assert h.percentiles([50, 99]) == {50: None, 99: None}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_large_values_within_relative_precision(seed: int) -> None:
    rng = random.Random(seed)
    values = [int(rng.lognormvariate(9, 2)) for _ in range(20_000)]  # µs, up to many seconds
    h = Histogram()
    h.record_many(values)
    for p in (50, 90, 95, 99, 99.9):
        exact = exact_percentile(values, p)
        got = h.percentile(p)
        assert got is not None
        assert exact <= got <= exact + max(1, exact / 1024), (p, exact, got)
    assert h.max == max(values) and h.min == min(values)
    assert h.mean() == pytest.approx(sum(values) / len(values))


def test_bucket_bounds_cover_every_value_once() -> None:
    for v in [0, 1, SUB_BUCKET_COUNT - 1, SUB_BUCKET_COUNT, 4095, 4096, 10**6, 2**35 + 12345]:
        lo, hi = bucket_bounds(bucket_index(v))
        assert lo <= v <= hi
        assert bucket_index(lo) == bucket_index(hi) == bucket_index(v)
        if v >= SUB_BUCKET_COUNT:
            assert (hi - lo + 1) / lo <= 1 / 1024 + 1e-12
    # consecutive buckets are adjacent
    for i in range(SUB_BUCKET_COUNT - 2, SUB_BUCKET_COUNT + 3000):
        assert bucket_bounds(i)[1] + 1 == bucket_bounds(i + 1)[0]


def test_merge_equals_recording_everything_once() -> None:
    rng = random.Random(7)
    a_vals = [rng.randrange(1, 5_000_000) for _ in range(3000)]
    b_vals = [rng.randrange(1, 50_000) for _ in range(1000)]
    a, b, both = Histogram(), Histogram(), Histogram()
    a.record_many(a_vals)
    b.record_many(b_vals)
    both.record_many(a_vals + b_vals)
    a.merge(b)
    assert a.counts == both.counts
    assert (a.total, a.sum, a.min, a.max) == (both.total, both.sum, both.min, both.max)
    assert a.percentiles([50, 99]) == both.percentiles([50, 99])


def test_round_trips_through_dict_and_pickle() -> None:
    h = Histogram()
    h.record_many([5, 7, 1_000_000, 3_000])
    again = Histogram.from_dict(h.to_dict())
    assert again.counts == h.counts and again.percentile(75) == h.percentile(75)
    unpickled = pickle.loads(pickle.dumps(h))
    assert unpickled.counts == h.counts and unpickled.max == 1_000_000


def test_negative_values_count_as_zero_and_percentiles_match_single_calls() -> None:
    h = Histogram()
    h.record_many([-5, 0, 10, 20, 30])
    assert h.min == 0
    many = h.percentiles([20, 40, 60, 80, 100])
    assert many == {p: h.percentile(p) for p in (20, 40, 60, 80, 100)}
    assert many[40] == 0 and many[60] == 10 and many[100] == 30
    with pytest.raises(ValueError):
        h.percentile(101)
