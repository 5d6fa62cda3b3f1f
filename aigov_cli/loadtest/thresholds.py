"""k6-style thresholds: ``p95<500ms``, ``error_rate<1%``, ``queue_depth<500`` and friends.

Latency limits are kept in milliseconds, error_rate as a fraction, accuracy as a percent.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aigov_cli.loadtest.histogram import Histogram
from aigov_cli.loadtest.scenarios import Mode
from aigov_cli.loadtest.units import UsageError

_RE = re.compile(r"^\s*([a-z_]+|p\d+(?:\.\d+)?)\s*(<=|>=|==|<|>)\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zµ%/]*)\s*$")
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": lambda a, b: math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9),
}
_TIME_UNITS = {"": 1.0, "ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1000.0, "m": 60_000.0}
LATENCY_METRICS = ("avg", "min", "max")
RATE_METRICS = ("error_rate", "rate_limit_accuracy")
COUNT_METRICS = ("queue_depth", "rps", "breaking_point")
METRIC_NAMES = ("p50..p99.9", *LATENCY_METRICS, *RATE_METRICS, *COUNT_METRICS)


@dataclass(frozen=True)
class Threshold:
    """One pass/fail criterion; latency limits are in ms, error_rate a fraction, accuracy a percent."""

    expr: str
    metric: str
    op: str
    limit: float
    source: str = "user"

    def holds(self, observed: float) -> bool:
        """Whether ``observed`` satisfies the threshold."""
        return _OPS[self.op](observed, self.limit)

    def kind(self) -> str:
        """``latency``, ``rate`` or ``count``: how the metric's values are expressed."""
        if self.metric.startswith("p") and self.metric not in ("p",) and self.metric[1:2].isdigit():
            return "latency"
        if self.metric in LATENCY_METRICS:
            return "latency"
        if self.metric in RATE_METRICS:
            return "rate"
        return "count"


def parse_threshold(text: str, source: str = "user") -> Threshold:
    """Parse one ``--threshold`` expression, raising :class:`UsageError` with a hint when invalid."""
    m = _RE.match(text)
    hint = (
        "use METRIC OP VALUE, e.g. 'p95<500ms', 'error_rate<1%', 'rate_limit_accuracy==100%', "
        "'queue_depth<500'; metrics: " + ", ".join(METRIC_NAMES)
    )
    if not m:
        raise UsageError(f"invalid threshold {text!r}: {hint}")
    metric, op, number, unit = m.group(1), m.group(2), float(m.group(3)), m.group(4)
    if metric.startswith("p") and metric[1:2].isdigit():
        p = float(metric[1:])
        if not 0 < p <= 100:
            raise UsageError(f"invalid threshold {text!r}: percentile must be in (0, 100]")
        metric = "p" + _fmt_pct(p)
        if unit not in _TIME_UNITS:
            raise UsageError(f"invalid threshold {text!r}: latency units are us, ms, s, m")
        limit = number * _TIME_UNITS[unit]
    elif metric in LATENCY_METRICS:
        if unit not in _TIME_UNITS:
            raise UsageError(f"invalid threshold {text!r}: latency units are us, ms, s, m")
        limit = number * _TIME_UNITS[unit]
    elif metric in RATE_METRICS:
        if unit == "%":
            fraction = number / 100
        elif unit == "":
            fraction = number
        else:
            raise UsageError(f"invalid threshold {text!r}: write a percentage (1%) or a fraction (0.01)")
        if not 0 <= fraction <= 1:
            raise UsageError(f"invalid threshold {text!r}: {metric} must be between 0% and 100%")
        limit = fraction if metric == "error_rate" else fraction * 100
    elif metric in COUNT_METRICS:
        if unit not in ("", "/s") or (metric == "queue_depth" and unit):
            raise UsageError(f"invalid threshold {text!r}: {metric} takes a plain number")
        limit = number
    else:
        raise UsageError(f"invalid threshold {text!r}: unknown metric {metric!r}; {hint}")
    return Threshold(expr=text.strip().replace(" ", ""), metric=metric, op=op, limit=limit, source=source)


def _fmt_pct(p: float) -> str:
    return str(int(p)) if p == int(p) else f"{p:g}"


SLA_P95 = "p95<500ms"
SLA_QUEUE = "queue_depth<500"
SLA_ACCURACY = "rate_limit_accuracy==100%"


def default_thresholds(mode: Mode, rate_limit_probed: bool) -> list[Threshold]:
    """The SLA of the issue for a mode: p95 < 500 ms, errors < 1 % (10 % in stress), queue < 500."""
    exprs = [SLA_P95, "error_rate<10%" if mode is Mode.stress else "error_rate<1%", SLA_QUEUE]
    if mode is Mode.burst and rate_limit_probed:
        exprs.append(SLA_ACCURACY)
    return [parse_threshold(e, source="default") for e in exprs]


def merge_thresholds(defaults: Sequence[Threshold], user: Sequence[Threshold]) -> list[Threshold]:
    """User thresholds replace the defaults on the same metric; the rest of the defaults stay."""
    overridden = {t.metric for t in user}
    return [t for t in defaults if t.metric not in overridden] + list(user)


@dataclass(frozen=True)
class Stats:
    """What thresholds are evaluated against."""

    latency: Histogram
    error_rate: float | None
    rate_limit_accuracy: float | None = None
    queue_depth: float | None = None
    rps: float | None = None
    breaking_point: float | None = None
    not_measured: dict[str, str] = field(default_factory=dict)
    """Metrics that have no value in this run by its nature, with why (the breaking point of a stress
    run where every stage met the SLA is "not reached"): their thresholds are skipped, not failed."""

    def observe(self, metric: str) -> float | None:
        """The observed value of ``metric`` in the threshold's unit, or None if not measured."""
        if metric.startswith("p") and metric[1:2].isdigit():
            v = self.latency.percentile(float(metric[1:]))
            return None if v is None else v / 1000
        if metric == "avg":
            mean = self.latency.mean()
            return None if mean is None else mean / 1000
        if metric == "min":
            return self.latency.min / 1000 if self.latency.total else None
        if metric == "max":
            return self.latency.max / 1000 if self.latency.total else None
        value: float | None = getattr(self, metric)
        return value


@dataclass(frozen=True)
class ThresholdResult:
    """A threshold with its observed value and outcome (``pass``, ``fail`` or ``skipped``)."""

    threshold: Threshold
    observed: float | None
    status: str
    note: str | None = None

    @property
    def ok(self) -> bool:
        """True unless the threshold failed."""
        return self.status != "fail"

    def describe_observed(self) -> str:
        """The observed value in the threshold's own unit."""
        v = self.observed
        if v is None:
            return self.note or "not measured"
        kind = self.threshold.kind()
        if kind == "latency":
            return f"{v:.3f}ms" if v < 10 else f"{v:.1f}ms"
        if self.threshold.metric == "error_rate":
            return f"{v * 100:.2f}%"
        if self.threshold.metric == "rate_limit_accuracy":
            return f"{v:.2f}%"
        return f"{v:g}"


def evaluate(thresholds: Sequence[Threshold], stats: Stats) -> list[ThresholdResult]:
    """Evaluate every threshold; an unmeasured default is skipped, an unmeasured user one fails
    (unless the metric cannot have a value in this run, like a breaking point not reached)."""
    out: list[ThresholdResult] = []
    for t in thresholds:
        observed = stats.observe(t.metric)
        note = stats.not_measured.get(t.metric) if observed is None else None
        if observed is None:
            status = "skipped" if t.source == "default" or note is not None else "fail"
        else:
            status = "pass" if t.holds(observed) else "fail"
        out.append(ThresholdResult(threshold=t, observed=observed, status=status, note=note))
    return out
