"""The daemon's parts wired together: what the handlers tell one request's story over.

:class:`Service` holds the configuration, the counters, the authenticator (key table, throttle), the
rate limiter, the policies and the decision log, each behind its interface; the backends come from
the configuration (:func:`daemon.storage.key_store`, :func:`daemon.ratelimit.from_config`, ...) or,
in tests, from the caller. It knows nothing of HTTP: :mod:`daemon.handlers` imports it, never the
other way round.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from daemon import __version__
from daemon.auth import Authenticator
from daemon.config import Config
from daemon.decisionlog import DecisionLog
from daemon.metrics import Snapshot, Stats, merge
from daemon.policy.engine import unknown_policy_decision
from daemon.policy.loader import PolicySet, load_policy_file
from daemon.policy.model import Decision
from daemon.ratelimit import FailureThrottle, RateLimiter
from daemon.storage.interface import DecisionStore, KeyStore
from daemon.workers import SHARE_INTERVAL, WorkerBoard

log = logging.getLogger("aigov")


class Service:
    """Everything the handlers need; started and stopped by the app's cleanup contexts."""

    def __init__(
        self,
        config: Config,
        *,
        keys: KeyStore,
        limiter: RateLimiter,
        throttle: FailureThrottle,
        decisions: DecisionStore,
        worker: int = 0,
        board: WorkerBoard | None = None,
    ) -> None:
        self.config = config
        self.worker = worker
        self.board = board
        self.stats = Stats()
        # A worker restarted in its slot continues the counters its predecessor shared.
        self._base: Snapshot | None = board.previous() if board is not None else None
        self.keys = keys
        self.limiter = limiter
        self.throttle = throttle
        self.fail_closed = config.rate_limit_on_error == "closed"
        self.auth = Authenticator(
            keys, throttle, refresh_interval=config.key_refresh_interval, on_revoked=limiter.forget
        )
        self.policies: PolicySet = load_policy_file(config.policy_path)
        self._reload_lock = asyncio.Lock()
        self.dlog = DecisionLog(
            decisions,
            batch_size=config.log_batch_size,
            flush_interval=config.log_flush_interval,
            max_queue=config.log_queue_size,
            enqueue_timeout=config.log_enqueue_timeout,
            on_written=self.stats.written,
            on_error=self.stats.write_failed,
        )
        self.closing = False
        self.started = time.time()
        self.stats.queue_size = self.dlog.qsize
        self.stats.active_keys = self.auth.active_count
        self.stats.limiter_errors = lambda: limiter.backend_errors

    def evaluate(self, policy_name: str, model: str, operation: str, text: str, direction: str = "input") -> Decision:
        """The decision of the key's policy on one text sent to a model (``input``) or answered by it
        (``output``); a key bound to an unknown policy is refused."""
        policies = self.policies
        policy = policies.get(policy_name)
        if policy is None:
            return unknown_policy_decision(policy_name, policies.version)
        return policy.evaluate(model, operation, text, direction)

    async def reload_policy(self) -> PolicySet:
        """Load the policy file off the loop and swap it in atomically; PolicyError leaves the old one."""
        # One reload at a time: two SIGHUPs close together must not finish out of order
        # and leave the older file in force.
        async with self._reload_lock:
            new = await asyncio.to_thread(load_policy_file, self.config.policy_path)
            self.policies = new
            if self.board is not None:  # `aigov policy reload` waits for every worker's new version
                await asyncio.to_thread(self.board.share, self.shared_state())
            return new

    def status(self) -> dict[str, Any]:
        """What ``aigov status`` and ``/readyz`` show."""
        return {
            "pid": os.getpid(),
            "worker": self.worker,
            "version": __version__,
            "uptime_seconds": round(time.time() - self.started, 3),
            "active_keys": self.auth.active_count(),
            "queue_depth": self.dlog.qsize(),
            "decision_log_healthy": self.dlog.healthy,
            "policy_version": self.policies.version,
            "policies": self.policies.names,
            "database": self.config.backend,
            "rate_limiter": self.config.rate_limit_url.partition(":")[0],
        }

    def shared_state(self) -> dict[str, Any]:
        """What this worker shares with the others (:class:`~daemon.workers.WorkerBoard`)."""
        return {"slot": self.worker, "pid": os.getpid(), "policy_version": self.policies.version,
                "ready": self.dlog.healthy and not self.closing, "updated": time.time(),
                "metrics": self.snapshot()}

    def snapshot(self) -> Snapshot:
        """This process's counters (continuing its slot's, after a restart)."""
        own = self.stats.snapshot()
        return merge([self._base, own]) if self._base is not None else own

    async def metrics(self) -> Snapshot:
        """The counters ``/metrics`` exports: this process's, or under ``--workers N`` every worker's summed."""
        if self.board is None:
            return self.snapshot()
        return await asyncio.to_thread(self.board.merged_metrics, self.shared_state())

    async def share_state(self) -> None:
        """Rewrite this worker's file on the board, every :data:`SHARE_INTERVAL` seconds, until cancelled."""
        assert self.board is not None
        while True:
            try:
                await asyncio.to_thread(self.board.share, self.shared_state())
            except OSError as e:  # a full or read-only state directory: the daemon serves on
                log.warning("could not share this worker's state: %s", e)
            await asyncio.sleep(SHARE_INTERVAL)

    async def problems(self) -> list[str]:
        """Why this daemon should not get traffic now (empty when it is ready)."""
        problems = []
        try:
            await self.dlog.store.ping()
        except Exception as e:
            problems.append(f"database: {e}")
        if self.dlog.failure is not None:
            problems.append(f"decision log: writes are failing and being retried ({self.dlog.failure})")
        if self.fail_closed and (why := self.limiter.problem()) is not None:
            problems.append(f"rate limiter: {why}")
        if self.closing:
            problems.append("shutting down")
        return problems

    def degraded(self) -> list[str]:
        """What is wrong but does not keep this daemon from answering checks.

        With rate_limit_on_error = "open" a limiter outage is one: checks are answered, only without
        a limit. Were it a reason not to be ready, a load balancer or Kubernetes would take every
        daemon sharing that Redis out of service at once, turning the outage "open" is meant to
        ride out into an outage of aigov."""
        if not self.fail_closed and (why := self.limiter.problem()) is not None:
            return [f"rate limiter: {why}"]
        return []
