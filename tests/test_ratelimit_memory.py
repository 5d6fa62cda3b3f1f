"""The in-memory token bucket, limiter and failure throttle at their edges (fake clock, exact numbers).

Written against the mutants that mutation testing (``make mutate``) found surviving in
daemon/ratelimit/memory.py: each test pins one behaviour that a one-token change would break.
"""

from __future__ import annotations

import pytest

from daemon.ratelimit import MemoryFailureThrottle, MemoryRateLimiter, TokenBucket
from daemon.ratelimit.interface import FAILURE_WINDOW, MAX_FAILURES


class FakeClock:
    """A clock that only moves when told."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_allowed_decisions_carry_reset_in_seconds_and_no_retry_after() -> None:
    b = TokenBucket(10, 60.0, now=0.0)  # one token every 6 s
    r = b.take(0.0)
    assert r.allowed and r.remaining == 9
    assert r.reset == 6  # one token used: full again in 6 s (not 1/6 s)
    assert r.retry_after == 0  # the interface: 0 when allowed
    for _ in range(4):
        r = b.take(0.0)
    assert r.reset == 30 and r.retry_after == 0


def test_retry_after_is_at_least_one_second_and_no_more_than_needed() -> None:
    b = TokenBucket(10, 1.0, now=0.0)  # ten tokens a second: the next one is 0.1 s away
    for _ in range(10):
        assert b.take(0.0).allowed
    r = b.take(0.0)
    assert not r.allowed and r.retry_after == 1 and r.remaining == 0 and r.reset == 1
    slow = TokenBucket(2, 10.0, now=0.0)  # one token every 5 s
    slow.take(0.0)
    slow.take(0.0)
    assert slow.take(2.0).retry_after == 3  # 2 s of the 5 have passed


def test_limiter_refills_a_key_over_time() -> None:
    clock = FakeClock()
    lim = MemoryRateLimiter(clock)
    assert [lim.take("k", 3, 30.0).allowed for _ in range(4)] == [True, True, True, False]
    clock.t += 10.0  # one token back
    assert [lim.take("k", 3, 30.0).allowed for _ in range(2)] == [True, False]
    clock.t += 30.0  # a whole window: full again, never more
    assert [lim.take("k", 3, 30.0).allowed for _ in range(4)] == [True, True, True, False]


async def test_check_keeps_each_key_to_its_own_bucket() -> None:
    lim = MemoryRateLimiter(FakeClock())
    assert [(await lim.check("a", 2, 60.0)).allowed for _ in range(3)] == [True, True, False]
    assert (await lim.check("b", 2, 60.0)).allowed  # a's bucket is not b's
    assert (await lim.check("b", 2, 60.0)).remaining == 0


def test_lowering_a_limit_below_what_was_used_leaves_nothing() -> None:
    lim = MemoryRateLimiter(FakeClock())
    for _ in range(8):
        assert lim.take("k", 10, 60.0).allowed
    # 8 used; the new limit is 5: nothing left, not one token for free.
    assert not lim.take("k", 5, 60.0).allowed


def test_changing_only_the_window_keeps_usage() -> None:
    lim = MemoryRateLimiter(FakeClock())
    for _ in range(3):
        lim.take("k", 3, 60.0)
    r = lim.take("k", 3, 3600.0)
    assert not r.allowed and r.limit == 3
    assert r.retry_after == 1200  # the new window's pace: one token per 1200 s


async def test_a_key_never_seen_is_not_locked_whatever_the_clock_reads() -> None:
    th = MemoryFailureThrottle(FakeClock(0.0))  # a monotonic clock may start near zero
    assert await th.locked_for("never-seen") == 0


async def test_a_failure_exactly_one_window_old_no_longer_counts() -> None:
    clock = FakeClock()
    th = MemoryFailureThrottle(clock)
    for _ in range(MAX_FAILURES - 1):
        await th.failed("k")
    clock.t += FAILURE_WINDOW  # the earlier failures are now exactly one window old
    await th.failed("k")
    assert await th.locked_for("k") == 0
    for _ in range(MAX_FAILURES - 1):
        await th.failed("k")
    assert await th.locked_for("k") == pytest.approx(1.0)  # five within the window: locked
