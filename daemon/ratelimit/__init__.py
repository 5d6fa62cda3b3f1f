"""Rate limiting behind narrow interfaces (:mod:`.interface`), with the embedded in-memory
implementation (:mod:`.memory`) beside the shared ones."""

from __future__ import annotations

from daemon.ratelimit.interface import (
    FailureThrottle,
    RateDecision,
    RateLimiter,
    RateLimiterUnavailable,
)
from daemon.ratelimit.memory import MemoryFailureThrottle, MemoryRateLimiter, TokenBucket

__all__ = [
    "FailureThrottle", "MemoryFailureThrottle", "MemoryRateLimiter", "RateDecision", "RateLimiter",
    "RateLimiterUnavailable", "TokenBucket",
]
