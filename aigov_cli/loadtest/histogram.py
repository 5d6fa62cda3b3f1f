"""An HdrHistogram-style log-linear histogram of integer microseconds.

Values below 2048 µs are recorded exactly; above, every power-of-two range is
split into 1024 linear sub-buckets, so any recorded value is known to within
1/1024 (about 0.1 %, three significant digits). Counts live in a sparse dict,
which makes a histogram cheap to snapshot per interval, to pickle across worker
processes and to merge.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

SUB_BUCKET_BITS = 11
SUB_BUCKET_COUNT = 1 << SUB_BUCKET_BITS  # 2048: values below are exact
HALF_COUNT = SUB_BUCKET_COUNT >> 1
MAX_VALUE_US = (1 << 40) - 1  # about 12.7 days; larger values are clamped


def bucket_index(value: int) -> int:
    """The bucket index of a non-negative integer value."""
    if value < SUB_BUCKET_COUNT:
        return value if value > 0 else 0
    shift = value.bit_length() - SUB_BUCKET_BITS
    return SUB_BUCKET_COUNT + (shift - 1) * HALF_COUNT + ((value >> shift) - HALF_COUNT)


def bucket_bounds(index: int) -> tuple[int, int]:
    """The lowest and highest value (inclusive) that map to ``index``."""
    if index < SUB_BUCKET_COUNT:
        return index, index
    shift = (index - SUB_BUCKET_COUNT) // HALF_COUNT + 1
    top = (index - SUB_BUCKET_COUNT) % HALF_COUNT + HALF_COUNT
    return top << shift, ((top + 1) << shift) - 1


class Histogram:
    """A mergeable latency histogram in microseconds with exact min, max and mean."""

    __slots__ = ("counts", "total", "sum", "min", "max")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.total = 0
        self.sum = 0
        self.min = 0
        self.max = 0

    def record(self, value_us: int) -> None:
        """Record one value (negative values count as 0, huge ones are clamped)."""
        v = value_us if value_us > 0 else 0
        if v > MAX_VALUE_US:
            v = MAX_VALUE_US
        if v < SUB_BUCKET_COUNT:
            i = v
        else:
            shift = v.bit_length() - SUB_BUCKET_BITS
            i = SUB_BUCKET_COUNT + (shift - 1) * HALF_COUNT + ((v >> shift) - HALF_COUNT)
        counts = self.counts
        counts[i] = counts.get(i, 0) + 1
        if self.total == 0 or v < self.min:
            self.min = v
        if v > self.max:
            self.max = v
        self.total += 1
        self.sum += v

    def record_many(self, values: Iterable[int]) -> None:
        """Record every value of ``values``."""
        for v in values:
            self.record(v)

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s counts into this histogram."""
        if other.total == 0:
            return
        counts = self.counts
        for i, c in other.counts.items():
            counts[i] = counts.get(i, 0) + c
        self.min = other.min if self.total == 0 else min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.total += other.total
        self.sum += other.sum

    def copy(self) -> Histogram:
        """An independent copy."""
        h = Histogram()
        h.merge(self)
        return h

    def mean(self) -> float | None:
        """The exact mean, or None when empty."""
        return self.sum / self.total if self.total else None

    def percentile(self, p: float) -> int | None:
        """The value at percentile ``p`` (0..100), HdrHistogram-style, or None when empty.

        Returns the highest value equivalent to the bucket holding the rank
        ``ceil(p/100 * total)``, capped to the recorded max and floored to the min,
        so p0 is the min, p100 is the max and exact buckets give exact answers.
        """
        if not self.total:
            return None
        if not 0 <= p <= 100:
            raise ValueError(f"percentile out of range: {p}")
        rank = _rank(p, self.total)
        seen = 0
        for i in sorted(self.counts):
            seen += self.counts[i]
            if seen >= rank:
                return max(self.min, min(self.max, bucket_bounds(i)[1]))
        return self.max  # pragma: no cover

    def percentiles(self, ps: Iterable[float]) -> dict[float, int | None]:
        """Several percentiles in one pass over the sorted buckets."""
        wanted = sorted(set(ps))
        out: dict[float, int | None] = {p: None for p in wanted}
        if not self.total:
            return out
        ranks = [(_rank(p, self.total), p) for p in wanted]
        j = 0
        seen = 0
        for i in sorted(self.counts):
            seen += self.counts[i]
            while j < len(ranks) and seen >= ranks[j][0]:
                out[ranks[j][1]] = max(self.min, min(self.max, bucket_bounds(i)[1]))
                j += 1
            if j == len(ranks):
                break
        return out

    def to_dict(self) -> dict[str, object]:
        """A JSON-able sparse form (bucket index -> count), for files and pipes."""
        return {
            "total": self.total,
            "sum": self.sum,
            "min": self.min,
            "max": self.max,
            "counts": {str(i): c for i, c in sorted(self.counts.items())},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Histogram:
        """Rebuild a histogram written by :meth:`to_dict`."""
        h = cls()
        counts = data["counts"]
        assert isinstance(counts, Mapping)
        h.counts = {int(k): int(v) for k, v in counts.items()}
        h.total = int(str(data["total"]))
        h.sum = int(str(data["sum"]))
        h.min = int(str(data["min"]))
        h.max = int(str(data["max"]))
        return h


def _rank(p: float, total: int) -> int:
    """Nearest rank of percentile ``p``; the epsilon keeps 99.9 % of 1000 at rank 999."""
    return max(1, math.ceil(p * total / 100 - 1e-9))
