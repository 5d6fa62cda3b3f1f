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
        import importlib

        redis_backend = importlib.import_module("daemon.ratelimit.redis").redis_backend
    except ImportError:
        from daemon.config import mask_url

        raise ConfigError(
            f"rate_limit_url {mask_url(url)} needs the Redis client: pip install 'aigov[redis]'"
        ) from None
    backend: tuple[RateLimiter, FailureThrottle] = redis_backend(
        url, prefix=config.redis_prefix, timeout=config.rate_limit_timeout
    )
    return backend
