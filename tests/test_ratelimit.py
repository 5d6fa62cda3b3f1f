"""Token bucket and limiter, with a fake clock."""

from __future__ import annotations

import asyncio

from daemon.ratelimit import MemoryFailureThrottle, MemoryRateLimiter, TokenBucket


class FakeClock:
    """A clock that only moves when told."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_bucket_allows_capacity_then_refuses() -> None:
    b = TokenBucket(5, 60.0, now=0.0)
    results = [b.take(0.0) for _ in range(7)]
    assert [r.allowed for r in results] == [True] * 5 + [False] * 2
    assert [r.remaining for r in results[:5]] == [4, 3, 2, 1, 0]
    assert results[5].retry_after == 12  # one token every 60/5 = 12 s


def test_bucket_refills_continuously() -> None:
    b = TokenBucket(10, 10.0, now=0.0)  # one token per second
    for _ in range(10):
        assert b.take(0.0).allowed
    assert not b.take(0.5).allowed
    r = b.take(1.0)
    assert r.allowed and r.remaining == 0
    assert b.take(3.5).allowed and b.take(3.5).allowed  # 2.5 tokens accumulated since t=1
    assert not b.take(3.5).allowed


def test_bucket_never_exceeds_capacity_after_idle() -> None:
    b = TokenBucket(3, 3.0, now=0.0)
    b.take(0.0)
    allowed = sum(b.take(1e6).allowed for _ in range(10))
    assert allowed == 3


def test_reset_header_counts_seconds_until_full() -> None:
    b = TokenBucket(100, 100.0, now=0.0)
    for _ in range(50):
        r = b.take(0.0)
    assert r.reset == 50


def test_limiter_per_key_and_exact() -> None:
    clock = FakeClock()
    lim = MemoryRateLimiter(clock)
    a = [lim.take("a", 20, 3600).allowed for _ in range(60)]
    b = [lim.take("b", 5, 3600).allowed for _ in range(6)]
    assert a.count(True) == 20 and a[:20] == [True] * 20
    assert b.count(True) == 5


def test_limit_change_keeps_usage() -> None:
    clock = FakeClock()
    lim = MemoryRateLimiter(clock)
    for _ in range(8):
        lim.take("k", 10, 60)
    # Raising the limit to 12 leaves 12 - 8 = 4, it does not reset the bucket.
    assert sum(lim.take("k", 12, 60).allowed for _ in range(10)) == 4


def test_forget_drops_state() -> None:
    lim = MemoryRateLimiter(FakeClock())
    for _ in range(3):
        lim.take("k", 3, 60)
    assert not lim.take("k", 3, 60).allowed
    asyncio.run(lim.forget("k"))
    assert lim.take("k", 3, 60).allowed


async def test_failure_throttle_locks_after_five_in_a_minute() -> None:
    clock = FakeClock()
    th = MemoryFailureThrottle(clock)
    for _ in range(4):
        await th.failed("k")
    assert await th.locked_for("k") == 0
    await th.failed("k")
    assert await th.locked_for("k") == 1.0  # the fifth: 2**0 s
    await th.failed("k")
    assert await th.locked_for("k") == 2.0  # each further failure doubles it
    clock.t += 61  # the window has passed: the old failures no longer count
    assert await th.locked_for("k") == 0
    await th.failed("k")
    assert await th.locked_for("k") == 0
    assert await th.locked_for("other") == 0
