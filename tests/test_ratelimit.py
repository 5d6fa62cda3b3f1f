"""Rate limiting: the token bucket, then the behaviour every limiter and throttle must share.

The behaviour tests run against each implementation through one parametrised fixture: the
in-memory one with a fake clock, the Redis one (when AIGOV_TEST_REDIS_URL names a server) with
its state moved back in time instead (tests/redis_helpers.py, ADVANCE_SCRIPT). Redis-only tests
(several processes, faults, URLs) are in test_ratelimit_redis.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from daemon.ratelimit import FailureThrottle, MemoryFailureThrottle, MemoryRateLimiter, RateLimiter, TokenBucket
from tests.redis_helpers import REDIS_URL, advance, delete_prefix, needs_redis, unique_prefix


class FakeClock:
    """A clock that only moves when told."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# -- the bucket itself ---------------------------------------------------------------------------


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


# -- every limiter and throttle --------------------------------------------------------------------


@dataclass
class Backend:
    """A limiter and a throttle of one implementation, and a way to let time pass for them."""

    name: str
    limiter: RateLimiter
    throttle: FailureThrottle
    clock: FakeClock | None = None
    prefix: str = ""

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass: the fake clock for memory, the stored times for Redis."""
        if self.clock is not None:
            self.clock.t += seconds
        else:
            await advance(REDIS_URL, self.prefix, seconds)


@pytest.fixture(params=["memory", pytest.param("redis", marks=needs_redis)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """Each limiter implementation in turn, with its throttle."""
    if request.param == "memory":
        clock = FakeClock()
        yield Backend("memory", MemoryRateLimiter(clock), MemoryFailureThrottle(clock), clock=clock)
        return
    from daemon.ratelimit.redis import redis_backend

    prefix = unique_prefix()
    # A generous timeout: these tests are about answers, not about a loaded machine's latency.
    limiter, throttle = redis_backend(REDIS_URL, prefix=prefix, timeout=5.0)
    try:
        yield Backend("redis", limiter, throttle, prefix=prefix)
        assert limiter.backend_errors == 0
    finally:
        await limiter.close()
        await delete_prefix(REDIS_URL, prefix)


async def allowed(lim: RateLimiter, key: str, limit: int, window: float, n: int) -> list[bool]:
    """``n`` simultaneous checks; which were allowed, in the order they were made."""
    return [d.allowed for d in await asyncio.gather(*(lim.check(key, limit, window) for _ in range(n)))]


async def test_limiter_per_key_and_exact(backend: Backend) -> None:
    a = await allowed(backend.limiter, "a", 20, 3600, 60)
    b = await allowed(backend.limiter, "b", 5, 3600, 6)
    assert a == [True] * 20 + [False] * 40
    assert b.count(True) == 5


async def test_simultaneous_burst_allows_exactly_the_limit(backend: Backend) -> None:
    assert (await allowed(backend.limiter, "k", 50, 86400, 400)).count(True) == 50


async def test_headers_remaining_reset_and_retry_after(backend: Backend) -> None:
    lim = backend.limiter
    ds = [await lim.check("k", 5, 60) for _ in range(6)]
    assert [d.remaining for d in ds] == [4, 3, 2, 1, 0, 0]
    assert [d.limit for d in ds] == [5] * 6
    assert ds[5].retry_after == 12 and ds[4].retry_after == 0  # one token every 60/5 = 12 s
    assert ds[5].reset == 60
    for _ in range(49):
        d = await lim.check("half", 100, 100)
    assert d.reset == 49


async def test_limiter_refills_continuously(backend: Backend) -> None:
    lim = backend.limiter
    assert (await allowed(lim, "k", 10, 10, 10)).count(True) == 10  # one token per second
    await backend.advance(0.5)
    assert not (await lim.check("k", 10, 10)).allowed
    await backend.advance(0.5)
    r = await lim.check("k", 10, 10)
    assert r.allowed and r.remaining == 0
    await backend.advance(2.5)
    assert await allowed(lim, "k", 10, 10, 3) == [True, True, False]  # 2.5 tokens since the last one


async def test_limiter_never_exceeds_capacity_after_idle(backend: Backend) -> None:
    await backend.limiter.check("k", 3, 3)
    await backend.advance(1e6)
    assert (await allowed(backend.limiter, "k", 3, 3, 10)).count(True) == 3


async def test_limit_change_keeps_usage(backend: Backend) -> None:
    lim = backend.limiter
    await allowed(lim, "k", 10, 3600, 8)
    # Raising the limit to 12 leaves 12 - 8 = 4, it does not reset the bucket.
    assert (await allowed(lim, "k", 12, 3600, 10)).count(True) == 4
    # Lowering it below what was used leaves nothing; changing the window keeps the usage too.
    assert (await allowed(lim, "k", 5, 3600, 3)).count(True) == 0
    assert (await allowed(lim, "k", 5, 7200, 3)).count(True) == 0


async def test_processes_that_disagree_on_a_limit_for_a_moment_never_allow_more(backend: Backend) -> None:
    # While a limit change spreads (up to a second), processes ask with the old and the new limit
    # in turn. Shrinking must remember what was used beyond the smaller limit, or every switch back
    # would hand the difference out again.
    lim = backend.limiter
    await allowed(lim, "k", 50, 3600, 50)  # all used
    got = 0
    for i in range(400):
        got += (await lim.check("k", 80 if i % 2 else 50, 3600)).allowed
    assert got == 30  # 80 - 50, however the two limits alternate
    # And with the used count above the smaller limit, a later switch to it refuses.
    assert not (await lim.check("k", 50, 3600)).allowed


async def test_limit_change_after_a_refill_counts_only_what_is_still_used(backend: Backend) -> None:
    lim = backend.limiter
    await allowed(lim, "k", 10, 60, 8)
    await backend.advance(60)  # a whole window: the bucket is full again, nothing is used any more
    assert (await allowed(lim, "k", 12, 60, 20)).count(True) == 12
    await allowed(lim, "j", 10, 60, 10)
    await backend.advance(30)  # half a window: 5 tokens back, 5 still used
    assert (await allowed(lim, "j", 20, 60, 30)).count(True) == 15


async def test_forget_drops_state(backend: Backend) -> None:
    lim = backend.limiter
    await allowed(lim, "k", 3, 60, 3)
    assert not (await lim.check("k", 3, 60)).allowed
    await lim.forget("k")
    assert (await lim.check("k", 3, 60)).allowed
    await lim.forget("never-seen")  # forgetting an unknown key is not an error


async def test_failure_throttle_locks_after_five_in_a_minute(backend: Backend) -> None:
    th = backend.throttle
    for _ in range(4):
        await th.failed("k")
    assert await th.locked_for("k") == 0
    await th.failed("k")
    assert await th.locked_for("k") == pytest.approx(1.0, abs=0.1)  # the fifth: 2**0 s
    await th.failed("k")
    assert await th.locked_for("k") == pytest.approx(2.0, abs=0.1)  # each further failure doubles it
    await backend.advance(61)  # the window has passed: the old failures no longer count
    assert await th.locked_for("k") == 0
    await th.failed("k")
    assert await th.locked_for("k") == 0
    assert await th.locked_for("other") == 0


async def test_failure_throttle_lockout_is_capped(backend: Backend) -> None:
    th = backend.throttle
    for _ in range(20):
        await th.failed("k")
    assert await th.locked_for("k") == pytest.approx(300.0, abs=0.1)
    await backend.advance(150)
    assert await th.locked_for("k") == pytest.approx(150.0, abs=0.1)


async def test_failure_throttle_counts_simultaneous_failures_exactly(backend: Backend) -> None:
    await asyncio.gather(*(backend.throttle.failed("k") for _ in range(7)))
    assert await backend.throttle.locked_for("k") == pytest.approx(4.0, abs=0.1)  # the 7th: 2**2 s
