"""The rate-limiting interfaces: a per-key token bucket and the wrong-secret throttle.

Both are async so that a shared backend (Redis) can stand behind them; the embedded
in-memory implementations never suspend. A backend that cannot answer in time raises
:class:`RateLimiterUnavailable`; what the daemon then does (let the request through or
answer 503) is the caller's choice (``rate_limit_on_error``), not the backend's.
"""

from __future__ import annotations

import abc
from typing import NamedTuple


class RateDecision(NamedTuple):
    """The outcome of one rate-limit check, with what the response headers need."""

    allowed: bool
    limit: int
    remaining: int
    reset: int  # seconds until the bucket is full again
    retry_after: int  # seconds until one token is available (0 when allowed)


class RateLimiterUnavailable(Exception):
    """The limiter's backend could not answer (timeout, connection refused, circuit open)."""


class RateLimiter(abc.ABC):
    """Decides whether a key may make one more request now.

    Exact under concurrency: with limit L, any number of simultaneous checks of one key
    (in this process or, for a shared backend, in any process) allow exactly L.
    """

    @abc.abstractmethod
    async def check(self, key_id: str, limit: int, window: float) -> RateDecision:
        """Consume one request of ``key_id``'s allowance if it has one; RateLimiterUnavailable if it cannot tell."""

    @abc.abstractmethod
    async def forget(self, key_id: str) -> None:
        """Drop the state of a key (revoked or deleted)."""

    backend_errors: int = 0
    """Calls that failed or timed out since start (``aigov_rate_limit_backend_errors_total``)."""

    def problem(self) -> str | None:
        """Why the backend cannot be relied on right now (for ``/readyz``), or None when it can."""
        return None

    async def start(self) -> None:  # noqa: B027  (optional hook: most limiters have nothing to try)
        """Try the backend once, within the limiter's timeout, before the daemon serves; never raises.

        A backend that cannot be used is logged and reported by :meth:`problem` until it works.
        """

    async def close(self) -> None:  # noqa: B027  (optional hook: most limiters hold nothing to close)
        """Release connections; the limiter is not used afterwards."""


# Wrong secrets allowed per key id within FAILURE_WINDOW before the key id is locked out;
# each further failure doubles the lockout, up to MAX_LOCKOUT.
MAX_FAILURES = 5
FAILURE_WINDOW = 60.0
MAX_LOCKOUT = 300.0


def lockout_seconds(failures_in_window: int) -> float:
    """How long a key id is locked after its ``failures_in_window``-th recent wrong secret (0: not locked)."""
    if failures_in_window < MAX_FAILURES:
        return 0.0
    return min(MAX_LOCKOUT, 2.0 ** (failures_in_window - MAX_FAILURES))


class FailureThrottle(abc.ABC):
    """Counts wrong secrets per key id and locks a key id out after :data:`MAX_FAILURES` in
    :data:`FAILURE_WINDOW` seconds, so that guessing cannot pin the CPU with bcrypt. Shared
    through the same backend as the limiter, so N processes do not allow N times the guesses."""

    @abc.abstractmethod
    async def locked_for(self, key_id: str) -> float:
        """Seconds until ``key_id`` may try again (0 when it is not locked out)."""

    @abc.abstractmethod
    async def failed(self, key_id: str) -> None:
        """Count one wrong secret for ``key_id`` (and lock it out when that makes too many)."""

    async def close(self) -> None:  # noqa: B027
        """Release connections."""
