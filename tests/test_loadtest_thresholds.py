"""Threshold parsing and evaluation."""

from __future__ import annotations

import pytest

from aigov_cli.loadtest.histogram import Histogram
from aigov_cli.loadtest.scenarios import Mode
from aigov_cli.loadtest.thresholds import (
    Stats,
    default_thresholds,
    evaluate,
    merge_thresholds,
    parse_threshold,
)
from aigov_cli.loadtest.units import UsageError, parse_duration


@pytest.mark.parametrize(
    ("text", "metric", "op", "limit"),
    [
        ("p95<500ms", "p95", "<", 500.0),
        ("p99<5ms", "p99", "<", 5.0),
        ("p99.9 <= 1s", "p99.9", "<=", 1000.0),
        ("p50<250us", "p50", "<", 0.25),
        ("p90<2", "p90", "<", 2.0),
        ("avg<100ms", "avg", "<", 100.0),
        ("max<2s", "max", "<", 2000.0),
        ("error_rate<1%", "error_rate", "<", 0.01),
        ("error_rate<0.1", "error_rate", "<", 0.1),
        ("rate_limit_accuracy==100%", "rate_limit_accuracy", "==", 100.0),
        ("rate_limit_accuracy>=0.99", "rate_limit_accuracy", ">=", 99.0),
        ("queue_depth<500", "queue_depth", "<", 500.0),
        ("rps>=180", "rps", ">=", 180.0),
        ("breaking_point>1000", "breaking_point", ">", 1000.0),
    ],
)
def test_parse(text: str, metric: str, op: str, limit: float) -> None:
    t = parse_threshold(text)
    assert (t.metric, t.op) == (metric, op)
    assert t.limit == pytest.approx(limit)
    assert t.source == "user"


@pytest.mark.parametrize(
    "text",
    [
        "p95",
        "p95<",
        "<500ms",
        "p95<500parsecs",
        "p0<1ms",
        "p101<1ms",
        "latency<5ms",
        "error_rate<5ms",
        "error_rate<150%",
        "error_rate<2",
        "queue_depth<5ms",
        "p95=500ms",
        "p95<-1ms",
        "",
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(UsageError) as exc:
        parse_threshold(text)
    assert "threshold" in str(exc.value)


def stats(values_us: list[int], not_measured: dict[str, str] | None = None, **kw: float | None) -> Stats:
    h = Histogram()
    h.record_many(values_us)
    return Stats(
        latency=h,
        error_rate=kw.get("error_rate", 0.0),
        rate_limit_accuracy=kw.get("rate_limit_accuracy"),
        queue_depth=kw.get("queue_depth"),
        breaking_point=kw.get("breaking_point"),
        not_measured=not_measured or {},
    )


def test_evaluate_pass_and_fail_with_observed_values() -> None:
    s = stats(list(range(1000, 101_000, 1000)), error_rate=0.02, queue_depth=12)  # 1..100 ms
    results = evaluate(
        [
            parse_threshold(x)
            for x in ("p95<96ms", "p95<95ms", "error_rate<1%", "queue_depth<500", "avg<51ms", "max<=100ms")
        ],
        s,
    )
    assert [r.status for r in results] == ["pass", "fail", "fail", "pass", "pass", "pass"]
    assert results[0].observed == pytest.approx(95.0, rel=1 / 1024)
    assert results[2].describe_observed() == "2.00%"
    assert not results[1].ok


def test_unmeasured_defaults_are_skipped_but_user_thresholds_fail() -> None:
    s = stats([1000])
    user = parse_threshold("rate_limit_accuracy==100%")
    default = parse_threshold("queue_depth<500", source="default")
    r_user, r_default = evaluate([user, default], s)
    assert r_user.status == "fail" and r_user.describe_observed() == "not measured"
    assert r_default.status == "skipped" and r_default.ok


def test_a_metric_the_run_cannot_have_is_skipped_with_its_reason() -> None:
    # A stress run where every stage met the SLA has no breaking point: neither pass nor fail.
    t = parse_threshold("breaking_point>100")
    (r,) = evaluate([t], stats([1000], not_measured={"breaking_point": "not reached"}))
    assert (r.status, r.observed, r.describe_observed()) == ("skipped", None, "not reached")
    (r,) = evaluate([t], stats([1000]))
    assert r.status == "fail"  # unmeasured for no stated reason: a user threshold still fails
    (r,) = evaluate([t], stats([1000], breaking_point=150.0))
    assert r.status == "pass"


def test_equality_for_accuracy() -> None:
    t = parse_threshold("rate_limit_accuracy==100%")
    assert evaluate([t], stats([1], rate_limit_accuracy=100.0))[0].status == "pass"
    assert evaluate([t], stats([1], rate_limit_accuracy=96.0))[0].status == "fail"


def test_defaults_follow_the_sla_per_mode() -> None:
    normal = {t.expr for t in default_thresholds(Mode.normal, False)}
    assert normal == {"p95<500ms", "error_rate<1%", "queue_depth<500"}
    stress = {t.expr for t in default_thresholds(Mode.stress, False)}
    assert "error_rate<10%" in stress
    burst = {t.expr for t in default_thresholds(Mode.burst, True)}
    assert "rate_limit_accuracy==100%" in burst
    assert all(t.source == "default" for t in default_thresholds(Mode.soak, False))


def test_user_thresholds_replace_defaults_on_the_same_metric() -> None:
    merged = merge_thresholds(
        default_thresholds(Mode.normal, False), [parse_threshold("p95<5ms"), parse_threshold("p99<50ms")]
    )
    exprs = [t.expr for t in merged]
    assert "p95<500ms" not in exprs and "p95<5ms" in exprs and "p99<50ms" in exprs
    assert "error_rate<1%" in exprs


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("30s", 30), ("10m", 600), ("1h", 3600), ("2", 2), ("1.5s", 1.5)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "ten", "5d", "-1s", "1 parsec"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)
