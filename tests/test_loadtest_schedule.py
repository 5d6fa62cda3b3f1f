"""Arrival schedules per mode and the pacer, driven by a fake clock."""

from __future__ import annotations

import pytest

from aigov_cli.loadtest.scenarios import (
    LATE_THRESHOLD_S,
    Pacer,
    PhaseSpec,
    iter_global,
    iter_schedule,
    stress_stages,
)


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


def test_constant_rate_is_evenly_spaced() -> None:
    entries = list(iter_global(PhaseSpec(rate=200, duration_s=30)))
    assert len(entries) == 6000
    offsets = [t for t, _ in entries]
    assert offsets[0] == 0.0
    assert offsets[1] == pytest.approx(0.005)
    assert offsets[-1] == pytest.approx(30 - 0.005)
    assert all(b - a == pytest.approx(0.005) for a, b in zip(offsets, offsets[1:], strict=False))
    assert {tag for _, tag in entries} == {0}


def test_fractional_rate_counts_are_rounded_up() -> None:
    assert PhaseSpec(rate=3, duration_s=0.5).scheduled_count() == 2
    assert len(list(iter_global(PhaseSpec(rate=3, duration_s=0.5)))) == 2


def test_max_requests_bounds_the_schedule() -> None:
    spec = PhaseSpec(rate=1000, duration_s=60, max_requests=17)
    assert len(list(iter_global(spec))) == 17
    assert spec.scheduled_count() == 17


def test_bursts_are_simultaneous_and_carry_probe_tags() -> None:
    spec = PhaseSpec(rate=10, duration_s=3, burst_size=20, burst_every_s=1, probe_sizes=(6, 8))
    assert spec.burst_offsets() == [1.0, 2.0]
    entries = list(iter_global(spec))
    at_one = [tag for t, tag in entries if t == 1.0]
    at_two = [tag for t, tag in entries if t == 2.0]
    # one baseline request lands exactly on each burst instant as well
    assert at_one.count(1) == 6 and at_one.count(0) == 21
    assert at_two.count(2) == 8 and at_two.count(0) == 21
    assert len(entries) == spec.scheduled_count() == 30 + 40 + 14
    offsets = [t for t, _ in entries]
    assert offsets == sorted(offsets)
    assert spec.max_simultaneous() == 20 + 8 + 1


def test_one_burst_in_the_middle_when_none_fits() -> None:
    assert PhaseSpec(rate=1, duration_s=2, burst_size=5, burst_every_s=10).burst_offsets() == [1.0]


@pytest.mark.parametrize("workers", [1, 2, 3, 4])
def test_workers_partition_the_schedule(workers: int) -> None:
    spec = PhaseSpec(rate=97, duration_s=2, burst_size=13, burst_every_s=0.5, probe_sizes=(4,))
    everything = list(iter_global(spec))
    shares = [list(iter_schedule(spec, w, workers)) for w in range(workers)]
    assert sum(len(s) for s in shares) == len(everything)
    assert sorted(e for s in shares for e in s) == sorted(everything)
    sizes = [len(s) for s in shares]
    assert max(sizes) - min(sizes) <= 1
    # every worker gets some of the probe burst when there are enough probe requests
    if workers <= 2:
        assert all(any(tag == 1 for _, tag in s) for s in shares)


def test_worker_index_is_validated() -> None:
    with pytest.raises(ValueError):
        list(iter_schedule(PhaseSpec(rate=1, duration_s=1), 2, 2))


def test_stress_stages_ramp_within_the_duration() -> None:
    stages = stress_stages(100, 2, 5, 22)
    assert [s.rate for s in stages] == [100, 200, 400, 800]
    assert all(s.duration_s == 5 for s in stages)
    assert stress_stages(100, 1.5, 1, 3, max_rate=200) == [
        PhaseSpec(rate=100, duration_s=1),
        PhaseSpec(rate=150, duration_s=1),
    ]
    with pytest.raises(ValueError):
        stress_stages(100, 1.0, 1, 10)
    with pytest.raises(ValueError):
        stress_stages(0, 2, 1, 10)


def test_pacer_hands_out_due_starts_and_waits() -> None:
    clock = FakeClock(10.0)
    pacer = Pacer(iter_global(PhaseSpec(rate=100, duration_s=0.05)), t0=10.0, clock=clock)
    assert pacer.due() == [(10.0, 0)]
    assert pacer.wait_s() == pytest.approx(0.01)
    clock.advance(0.005)
    assert pacer.due() == []
    clock.advance(0.005)
    assert [t for t, _ in pacer.due()] == [pytest.approx(10.01)]
    assert pacer.late == 0 and pacer.max_lag_s == pytest.approx(0.0)
    clock.advance(0.1)  # stall: the three remaining starts are all overdue
    due = pacer.due()
    assert [round(t - 10.0, 3) for t, _ in due] == [0.02, 0.03, 0.04]
    assert pacer.late == 3
    assert pacer.max_lag_s == pytest.approx(0.09)
    assert pacer.done and pacer.wait_s() is None
    assert pacer.started == 5


def test_pacer_batches_are_bounded_and_lag_below_threshold_is_not_late() -> None:
    clock = FakeClock(0.0)
    pacer = Pacer(iter_global(PhaseSpec(rate=1000, duration_s=1)), t0=0.0, clock=clock)
    clock.advance(LATE_THRESHOLD_S / 2)
    assert len(pacer.due(limit=3)) == 3
    assert len(pacer.due()) == 3  # offsets 3 and 4 ms; 5 ms is exactly due too
    assert pacer.late == 0
    assert pacer.wait_s() == pytest.approx(0.001)


def test_pacer_before_start_waits_for_t0() -> None:
    clock = FakeClock(0.0)
    pacer = Pacer(iter_global(PhaseSpec(rate=1, duration_s=1)), t0=2.5, clock=clock)
    assert pacer.due() == []
    assert pacer.wait_s() == pytest.approx(2.5)
