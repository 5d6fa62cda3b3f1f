"""The embedded rate limiting: in-process token buckets and wrong-secret counts, one per daemon process.

Each key has a bucket of ``limit`` tokens refilled continuously at ``limit / window``
per second. Taking a token is synchronous (no ``await`` between reading and updating),
which is what makes the limit exact under concurrency on one event loop: a burst of
N > L simultaneous requests gets exactly L through.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from daemon.ratelimit.interface import (
    FAILURE_WINDOW,
    FailureThrottle,
    RateDecision,
    RateLimiter,
    lockout_seconds,
)

Clock = Callable[[], float]

_new = tuple.__new__


class TokenBucket:
    """A token bucket: ``capacity`` tokens, refilled at ``capacity / window`` per second."""

    __slots__ = ("capacity", "window", "rate", "tokens", "updated")

    def __init__(self, capacity: int, window: float, now: float) -> None:
        self.capacity = capacity
        self.window = window
        self.rate = capacity / window
        self.tokens = float(capacity)
        self.updated = now

    def take(self, now: float) -> RateDecision:
        """Take one token if there is one."""
        tokens = self.tokens
        if now > self.updated:
            tokens += (now - self.updated) * self.rate
            if tokens > self.capacity:
                tokens = self.capacity
            self.updated = now
        if tokens >= 1.0:
            tokens -= 1.0
            self.tokens = tokens
            # tuple.__new__ is what RateDecision._make uses: half the cost of the keyword-ready __new__
            # (with the handler's istr headers and its own tuple.__new__: 4 % of a check).
            return _new(RateDecision, (True, self.capacity, int(tokens),
                                       math.ceil((self.capacity - tokens) / self.rate), 0))
        self.tokens = tokens
        return RateDecision(
            False,
            self.capacity,
            0,
            math.ceil((self.capacity - tokens) / self.rate),
            max(1, math.ceil((1.0 - tokens) / self.rate)),
        )


class MemoryRateLimiter(RateLimiter):
    """In-process buckets, one per key; the embedded default."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.buckets: dict[str, TokenBucket] = {}

    async def check(self, key_id: str, limit: int, window: float) -> RateDecision:
        """Consume one request of ``key_id``'s allowance if it has one."""
        return self.take(key_id, limit, window)

    def take(self, key_id: str, limit: int, window: float) -> RateDecision:
        """:meth:`check` without the coroutine: synchronous, so exact on one event loop."""
        now = self.clock()
        b = self.buckets.get(key_id)
        if b is None or b.capacity != limit or b.window != window:
            # A new key, or its limit changed: start from a full bucket of the new size,
            # keeping what is still used up so a change cannot be used to reset the limit: the old
            # bucket refilled up to now (a key idle for a window has used nothing). Below zero when
            # more is used than the new limit allows: that debt is refilled before anything is
            # allowed again, so processes that see the old and the new limit in turn while a change
            # spreads cannot hand out the difference at each switch.
            used = 0.0
            if b is not None:
                tokens = b.tokens
                if now > b.updated:
                    tokens = min(float(b.capacity), tokens + (now - b.updated) * b.rate)
                used = b.capacity - tokens
            b = TokenBucket(limit, window, now)
            b.tokens = limit - used
            self.buckets[key_id] = b
        return b.take(now)

    async def forget(self, key_id: str) -> None:
        """Drop the state of a key."""
        self.buckets.pop(key_id, None)


class MemoryFailureThrottle(FailureThrottle):
    """Wrong-secret counts in this process."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._failures: dict[str, list[float]] = {}
        self._locked_until: dict[str, float] = {}

    async def locked_for(self, key_id: str) -> float:
        """Seconds until ``key_id`` may try again (0 when it is not locked out)."""
        return max(0.0, self._locked_until.get(key_id, 0.0) - self.clock())

    async def failed(self, key_id: str) -> None:
        """Count one wrong secret for ``key_id``."""
        now = self.clock()
        recent = [t for t in self._failures.get(key_id, ()) if now - t < FAILURE_WINDOW]
        recent.append(now)
        self._failures[key_id] = recent
        lock = lockout_seconds(len(recent))
        if lock:
            self._locked_until[key_id] = now + lock
