"""Metrics: plain numbers on the hot path, exported by a collector at scrape time.

Locking prometheus_client's own counters and histograms on every request
costs more than the rest of the request path; these counters are plain
integers touched only on the event loop, and :class:`StatsCollector` turns
them into metric families when Prometheus scrapes. The registry is the app's
own, never the global one. Under ``aigov serve --workers N`` each worker
shares a snapshot of its numbers (:mod:`daemon.workers`) and whichever worker
answers the scrape exports the sum of all of them.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from daemon.auth import FAILURE_REASONS

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Stats:
    """The daemon's counters, mutated on the event loop only."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        self.allowed = 0
        self.blocked: dict[str, int] = {}
        self.rate_limit_hits = 0
        self.latency_buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.decisions_written = 0
        self.decision_log_errors = 0
        self.auth_failures: dict[str, int] = {}
        self.queue_size: Callable[[], int] = lambda: 0
        self.active_keys: Callable[[], int] = lambda: 0
        self.limiter_errors: Callable[[], int] = lambda: 0

    def written(self, n: int) -> None:
        """Count ``n`` decisions written."""
        self.decisions_written += n

    def write_failed(self) -> None:
        """Count one failed decision-log write (it is retried)."""
        self.decision_log_errors += 1

    def request(self, endpoint: str, status: int, seconds: float | None = None) -> None:
        """Count one answered request (and its latency, for /v1/check)."""
        k = (endpoint, status)
        self.requests[k] = self.requests.get(k, 0) + 1
        if seconds is not None:
            self.latency_buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
            self.latency_sum += seconds

    def auth_failure(self, reason: str) -> None:
        """Count one failed authentication by reason."""
        self.auth_failures[reason] = self.auth_failures.get(reason, 0) + 1

    def block(self, rules: tuple[str, ...]) -> None:
        """Count one blocked decision under each rule that blocked it."""
        for r in rules:
            self.blocked[r] = self.blocked.get(r, 0) + 1


    def snapshot(self) -> Snapshot:
        """Every number as plain data: what a worker shares with the others (``serve --workers N``)."""
        return {
            "requests": [[e, st, n] for (e, st), n in self.requests.items()],
            "allowed": self.allowed,
            "blocked": dict(self.blocked),
            "rate_limit_hits": self.rate_limit_hits,
            "latency_buckets": list(self.latency_buckets),
            "latency_sum": self.latency_sum,
            "decisions_written": self.decisions_written,
            "decision_log_errors": self.decision_log_errors,
            "auth_failures": dict(self.auth_failures),
            "rate_limit_backend_errors": self.limiter_errors(),
            "queue_size": self.queue_size(),
            "active_keys": self.active_keys(),
        }


Snapshot = dict[str, Any]
_COUNTS = ("allowed", "rate_limit_hits", "latency_sum", "decisions_written", "decision_log_errors",
           "rate_limit_backend_errors", "queue_size")
_BY_LABEL = ("blocked", "auth_failures")


def merge(snapshots: Iterable[Snapshot]) -> Snapshot:
    """The snapshots of several workers as one: counters and queue depths add up; the key count is
    the same table in every worker, so the largest is taken."""
    out: Snapshot = {k: 0 for k in _COUNTS}
    out.update(requests=[], blocked={}, auth_failures={}, latency_buckets=[0] * (len(LATENCY_BUCKETS) + 1),
               active_keys=0)
    requests: dict[tuple[str, int], int] = {}
    for snap in snapshots:
        for k in _COUNTS:
            out[k] += snap.get(k, 0)
        for k in _BY_LABEL:
            for label, n in snap.get(k, {}).items():
                out[k][label] = out[k].get(label, 0) + n
        for e, st, n in snap.get("requests", []):
            requests[(e, st)] = requests.get((e, st), 0) + n
        for i, n in enumerate(snap.get("latency_buckets", [])[:len(out["latency_buckets"])]):
            out["latency_buckets"][i] += n
        out["active_keys"] = max(out["active_keys"], snap.get("active_keys", 0))
    out["requests"] = [[e, st, n] for (e, st), n in requests.items()]
    return out


class StatsCollector(Collector):
    """Exports a :class:`Stats` snapshot (this process's, or every worker's merged) under the contract's names."""

    def __init__(self, source: Callable[[], Snapshot]) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        """Build the metric families from the current numbers."""
        s = self.source()
        c = CounterMetricFamily("aigov_requests", "HTTP requests answered", labels=["endpoint", "status"])
        for endpoint, status, n in sorted(s["requests"]):
            c.add_metric([endpoint, str(status)], n)
        yield c
        yield CounterMetricFamily("aigov_governance_allowed", "Checks answered allow", value=s["allowed"])
        b = CounterMetricFamily("aigov_governance_blocked", "Checks answered block, by blocking rule", labels=["rule"])
        for rule, n in sorted(s["blocked"].items()):
            b.add_metric([rule], n)
        yield b
        yield CounterMetricFamily("aigov_rate_limit_hits", "Requests refused with 429", value=s["rate_limit_hits"])
        cum, buckets = 0, []
        for bound, n in zip((*LATENCY_BUCKETS, float("inf")), s["latency_buckets"], strict=True):
            cum += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cum))
        yield HistogramMetricFamily(
            "aigov_request_latency_seconds", "Latency of /v1/check in the daemon",
            buckets=buckets, sum_value=s["latency_sum"],
        )
        yield GaugeMetricFamily(
            "aigov_async_logger_queue_size", "Decisions waiting to be written", value=s["queue_size"]
        )
        yield GaugeMetricFamily("aigov_active_api_keys", "Keys neither revoked nor expired", value=s["active_keys"])
        yield CounterMetricFamily(
            "aigov_decisions_written", "Decisions written to the log", value=s["decisions_written"]
        )
        yield CounterMetricFamily(
            "aigov_decision_log_errors", "Failed decision-log writes (retried)", value=s["decision_log_errors"]
        )
        yield CounterMetricFamily(
            "aigov_rate_limit_backend_errors", "Rate-limiter calls that failed or timed out",
            value=s["rate_limit_backend_errors"],
        )
        a = CounterMetricFamily("aigov_auth_failures", "Failed authentications by reason", labels=["reason"])
        for reason in FAILURE_REASONS:
            a.add_metric([reason], s["auth_failures"].get(reason, 0))
        yield a


def build_registry(source: Callable[[], Snapshot]) -> CollectorRegistry:
    """A fresh registry with the aigov collector (numbers from ``source``) and the process collector."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(StatsCollector(source))
    ProcessCollector(registry=reg)
    return reg


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of a registry."""
    return generate_latest(registry)
