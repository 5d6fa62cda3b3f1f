"""Modes turned into arrival schedules: pure functions of their parameters.

A schedule is a non-decreasing sequence of ``(offset_seconds, tag)`` pairs, where
the offset is the *intended* start time of a request relative to the start of
its phase and the tag says which key sends it (0: the main key; ``j > 0``: the
rate-limit probe key ``j``). Schedules are generated lazily, so a long soak
never materialises millions of entries, and they are split between worker
processes by global index (``i % workers == worker``), so every worker sees an
evenly spread share. :class:`Pacer` walks a schedule against an injectable
clock and counts starts that fall behind.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

MAX_DURATION_S = 24 * 3600.0
MAX_RATE = 200_000.0
MAX_REQUESTS = 100_000_000
LATE_THRESHOLD_S = 0.010
"""A start more than this behind its intended time is counted as late."""


class Mode(enum.StrEnum):
    """The load-test modes of ``aigov loadtest --mode``."""

    normal = "normal"
    burst = "burst"
    stress = "stress"
    soak = "soak"


@dataclass(frozen=True)
class ModeDefaults:
    """Default rate, duration and history interval of a mode."""

    rate: float
    duration_s: float
    interval_s: float


MODE_DEFAULTS: dict[Mode, ModeDefaults] = {
    Mode.normal: ModeDefaults(rate=200.0, duration_s=30.0, interval_s=1.0),
    Mode.burst: ModeDefaults(rate=20.0, duration_s=20.0, interval_s=1.0),
    Mode.stress: ModeDefaults(rate=100.0, duration_s=60.0, interval_s=1.0),
    Mode.soak: ModeDefaults(rate=100.0, duration_s=600.0, interval_s=10.0),
}


@dataclass(frozen=True)
class PhaseSpec:
    """One phase of a run: a constant arrival rate, optionally with simultaneous bursts.

    ``probe_sizes[j]`` requests tagged ``j + 1`` join burst ``j`` (rate-limit probes).
    """

    rate: float
    duration_s: float
    burst_size: int = 0
    burst_every_s: float = 0.0
    probe_sizes: tuple[int, ...] = ()
    max_requests: int = MAX_REQUESTS

    def burst_offsets(self) -> list[float]:
        """Offsets of the bursts: every ``burst_every_s``, or one in the middle if none fits."""
        if self.burst_size <= 0 and not self.probe_sizes:
            return []
        every = self.burst_every_s if self.burst_every_s > 0 else self.duration_s
        offsets: list[float] = []
        k = 1
        while k * every < self.duration_s - 1e-9 and len(offsets) < 10_000:
            offsets.append(k * every)
            k += 1
        return offsets or [self.duration_s / 2]

    def scheduled_count(self, main_only: bool = False) -> int:
        """How many requests the whole phase schedules (all workers together; without probes if ``main_only``)."""
        n = _baseline_count(self.rate, self.duration_s)
        bursts = self.burst_offsets()
        n += self.burst_size * len(bursts)
        probes = sum(self.probe_sizes[: len(bursts)])
        return min(n, self.max_requests) if main_only else min(n + probes, self.max_requests)

    def max_simultaneous(self) -> int:
        """The largest number of requests sharing one intended start time."""
        if not self.burst_offsets():
            return 1
        return self.burst_size + max(self.probe_sizes, default=0) + 1


def _baseline_count(rate: float, duration_s: float) -> int:
    if rate <= 0 or duration_s <= 0:
        return 0
    return max(0, math.ceil(rate * duration_s - 1e-9))


def iter_global(spec: PhaseSpec) -> Iterator[tuple[float, int]]:
    """All ``(offset, tag)`` entries of a phase, in order of offset."""
    n_base = _baseline_count(spec.rate, spec.duration_s)
    step = 1.0 / spec.rate if spec.rate > 0 else 0.0
    bursts = spec.burst_offsets()
    emitted = 0
    i = 0
    b = 0
    while emitted < spec.max_requests:
        base_t = i * step if i < n_base else math.inf
        burst_t = bursts[b] if b < len(bursts) else math.inf
        if base_t == math.inf and burst_t == math.inf:
            return
        if base_t <= burst_t:
            yield base_t, 0
            i += 1
            emitted += 1
            continue
        group: list[int] = [0] * spec.burst_size
        if b < len(spec.probe_sizes):
            group.extend([b + 1] * spec.probe_sizes[b])
        # Interleave probe requests among the burst so every worker gets some of each.
        for tag in _interleave(group):
            if emitted >= spec.max_requests:
                return
            yield burst_t, tag
            emitted += 1
        b += 1


def _interleave(group: list[int]) -> list[int]:
    probes = [t for t in group if t != 0]
    mains = [t for t in group if t == 0]
    if not probes or not mains:
        return group
    out: list[int] = []
    ratio = len(mains) / len(probes)
    acc = 0.0
    mi = 0
    for p in probes:
        out.append(p)
        acc += ratio
        while mi < len(mains) and mi < acc:
            out.append(mains[mi])
            mi += 1
    out.extend(mains[mi:])
    return out


def iter_schedule(spec: PhaseSpec, worker: int = 0, workers: int = 1) -> Iterator[tuple[float, int]]:
    """The share of a phase's schedule that belongs to ``worker`` of ``workers``."""
    if not 0 <= worker < workers:
        raise ValueError(f"worker {worker} out of range for {workers} workers")
    for i, entry in enumerate(iter_global(spec)):
        if i % workers == worker:
            yield entry


def stress_stages(
    start_rate: float, step: float, stage_s: float, total_s: float, max_rate: float = MAX_RATE
) -> list[PhaseSpec]:
    """The stages of a stress run: the rate multiplied by ``step`` per stage, within ``total_s``."""
    if start_rate <= 0:
        raise ValueError("stress start rate must be positive")
    if step <= 1.0:
        raise ValueError("stress step must be greater than 1")
    if stage_s <= 0:
        raise ValueError("stage duration must be positive")
    stages: list[PhaseSpec] = []
    rate = start_rate
    elapsed = 0.0
    while elapsed + stage_s <= total_s + 1e-9 and rate <= max_rate and len(stages) < 1000:
        stages.append(PhaseSpec(rate=round(rate, 3), duration_s=stage_s))
        elapsed += stage_s
        rate *= step
    return stages


class Pacer:
    """Walks a schedule against a clock: which starts are due, how long to wait, how far behind.

    ``clock`` returns seconds on the same base as ``t0`` (``time.monotonic`` in the
    engine, a fake in tests).
    """

    def __init__(
        self,
        schedule: Iterator[tuple[float, int]],
        t0: float,
        clock: Callable[[], float],
        late_threshold_s: float = LATE_THRESHOLD_S,
    ) -> None:
        self._it = schedule
        self._t0 = t0
        self._clock = clock
        self._late_threshold = late_threshold_s
        self._next: tuple[float, int] | None = next(schedule, None)
        self.started = 0
        self.late = 0
        self.max_lag_s = 0.0

    @property
    def done(self) -> bool:
        """True once every entry has been handed out."""
        return self._next is None

    def due(self, limit: int = 1 << 30) -> list[tuple[float, int]]:
        """Entries whose intended time has come, as ``(intended_abs_time, tag)``, at most ``limit``."""
        now = self._clock()
        out: list[tuple[float, int]] = []
        nxt = self._next
        while nxt is not None and len(out) < limit:
            t = self._t0 + nxt[0]
            if t > now:
                break
            lag = now - t
            if lag > self._late_threshold:
                self.late += 1
            if lag > self.max_lag_s:
                self.max_lag_s = lag
            out.append((t, nxt[1]))
            nxt = next(self._it, None)
        self._next = nxt
        self.started += len(out)
        return out

    def wait_s(self) -> float | None:
        """Seconds until the next entry is due (0 if overdue), or None when done."""
        if self._next is None:
            return None
        return max(0.0, self._t0 + self._next[0] - self._clock())
