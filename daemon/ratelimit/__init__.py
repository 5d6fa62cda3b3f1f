"""Rate limiting behind narrow interfaces (:mod:`.interface`), with the embedded in-memory
implementation (:mod:`.memory`) beside the shared ones."""

from __future__ import annotations

from typing import TYPE_CHECKING

from daemon.errors import ConfigError
from daemon.ratelimit.interface import (
    FailureThrottle,
    RateDecision,
    RateLimiter,
    RateLimiterUnavailable,
)
from daemon.ratelimit.memory import MemoryFailureThrottle, MemoryRateLimiter, TokenBucket

if TYPE_CHECKING:
    from daemon.config import Config

__all__ = [
    "FailureThrottle", "MemoryFailureThrottle", "MemoryRateLimiter", "RateDecision", "RateLimiter",
    "RateLimiterUnavailable", "TokenBucket", "from_config",
]


def from_config(config: Config) -> tuple[RateLimiter, FailureThrottle]:
    """The limiter and wrong-secret throttle that ``rate_limit_url`` names (``memory://``: this process only)."""
    url = config.rate_limit_url
    if url.startswith("memory:"):
        return MemoryRateLimiter(), MemoryFailureThrottle()
    try:
        from daemon.ratelimit.redis import redis_backend
    except ImportError as e:
        raise ConfigError(str(e)) from None
    try:
        return redis_backend(url, prefix=config.redis_prefix, timeout=config.rate_limit_timeout,
                             on_error=config.rate_limit_on_error)
    except ValueError as e:
        raise ConfigError(str(e)) from None
