"""The result document (schema ``aigov.loadtest/v1``), the CSV history and the human summary."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aigov_cli.loadtest.engine import PhaseResult, Tally
from aigov_cli.loadtest.histogram import Histogram
from aigov_cli.loadtest.runner import HistoryRow, RunData
from aigov_cli.loadtest.scenarios import LATE_THRESHOLD_S, Mode
from aigov_cli.loadtest.units import format_bytes, format_ms

SCHEMA = "aigov.loadtest/v1"
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p90", 90.0),
    ("p95", 95.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
)
CSV_FIELDS = (
    "t_s",
    "phase",
    "target_rate",
    "sent",
    "completed",
    "rps",
    "errors",
    "rate_limited",
    "late",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "queue_depth",
    "rss_bytes",
)
LATENCY_DRIFT_RATIO = 1.5
LATENCY_DRIFT_MIN_MS = 5.0
MEMORY_DRIFT_RATIO = 1.10
MEMORY_DRIFT_MIN_BYTES = 10 * 1024 * 1024


def _ms(us: float | None) -> float | None:
    return None if us is None else round(us / 1000, 3)


def latency_summary(h: Histogram) -> dict[str, float | None]:
    """min/mean/p50/p90/p95/p99/p99.9/max in milliseconds (None when nothing was recorded)."""
    ps = h.percentiles(p for _, p in PERCENTILES)
    out: dict[str, float | None] = {"min": _ms(h.min) if h.total else None, "mean": _ms(h.mean())}
    for name, p in PERCENTILES:
        out[name] = _ms(ps[p])
    out["max"] = _ms(h.max) if h.total else None
    return out


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 2) if seconds > 0 else 0.0


def tally_counts(t: Tally) -> dict[str, int]:
    """The outcome counts of a tally: sent = completed + abandoned, completed = ok + rate_limited + errors."""
    return {"sent": t.sent, "completed": t.completed, "ok": t.ok, "rate_limited": t.rate_limited,
            "errors": t.errors, "abandoned": t.abandoned}


def _requests(r: PhaseResult, scheduled: int, planned_rate: float | None) -> dict[str, Any]:
    span = r.schedule_s if r.interrupted or not r.spec.duration_s else r.spec.duration_s
    er = r.error_rate
    return {
        "scheduled": scheduled,
        **tally_counts(r.main),
        "error_rate": None if er is None else round(er, 6),
        "target_rate": planned_rate,
        "achieved_rate": _rate(r.main.sent, span),
        "throughput": _rate(r.main.completed, r.wall_s),
    }


def _probe_requests(t: Tally) -> dict[str, Any] | None:
    """The rate-limit probes' own traffic (burst mode), kept out of every other count."""
    if not t.sent:
        return None
    return {**tally_counts(t), "status_codes": {str(k): v for k, v in sorted(t.statuses.items())},
            "errors_by_kind": dict(sorted(t.error_kinds.items()))}


def drift(history: Sequence[HistoryRow]) -> dict[str, Any] | None:
    """Compare the first and last third of a run's history: p95 latency and daemon RSS."""
    rows = [r for r in history if r.main.completed]
    if len(rows) < 6:
        return None
    third = len(rows) // 3
    first, last = rows[:third], rows[-third:]

    def p95(rs: Sequence[HistoryRow]) -> float:
        values = sorted((r.hist.percentile(95) or 0) / 1000 for r in rs)
        return values[len(values) // 2]

    lat_first, lat_last = p95(first), p95(last)
    latency_drift = lat_last > lat_first * LATENCY_DRIFT_RATIO and lat_last - lat_first > LATENCY_DRIFT_MIN_MS
    rss_first_v = [r.rss_bytes for r in first if r.rss_bytes is not None]
    rss_last_v = [r.rss_bytes for r in last if r.rss_bytes is not None]
    rss_first = sum(rss_first_v) / len(rss_first_v) if rss_first_v else None
    rss_last = sum(rss_last_v) / len(rss_last_v) if rss_last_v else None
    memory_drift = (
        rss_first is not None
        and rss_last is not None
        and rss_last > rss_first * MEMORY_DRIFT_RATIO
        and rss_last - rss_first > MEMORY_DRIFT_MIN_BYTES
    )
    return {
        "p95_first_ms": round(lat_first, 3),
        "p95_last_ms": round(lat_last, 3),
        "rss_first_bytes": rss_first,
        "rss_last_bytes": rss_last,
        "latency_drift": latency_drift,
        "memory_drift": memory_drift,
    }


def history_rows(history: Sequence[HistoryRow]) -> list[dict[str, Any]]:
    """The per-interval rows of the document and the CSV."""
    out = []
    for r in history:
        ps = r.hist.percentiles((50.0, 95.0, 99.0))
        out.append(
            {
                "t_s": round(r.t_s, 3),
                "phase": r.phase,
                "target_rate": r.target_rate,
                "sent": r.main.sent,
                "completed": r.main.completed,
                "rps": _rate(r.main.completed, r.length_s),
                "errors": r.main.errors,
                "rate_limited": r.main.rate_limited,
                "late": r.late,
                "p50_ms": _ms(ps[50.0]),
                "p95_ms": _ms(ps[95.0]),
                "p99_ms": _ms(ps[99.0]),
                "max_ms": _ms(r.hist.max) if r.hist.total else None,
                "queue_depth": r.queue_depth,
                "rss_bytes": r.rss_bytes,
            }
        )
    return out


def build_document(run: RunData, version: str = "") -> dict[str, Any]:
    """The full result as one JSON-able document (schema ``aigov.loadtest/v1``)."""
    o = run.options
    t = run.total
    warnings = list(run.warnings)
    rows = history_rows(run.history)
    probes = []
    for tag in sorted(t.probes):
        sent, passed, limited, other = t.probes[tag]
        probes.append(
            {
                "limit": run.probe_limits.get(tag),
                "expected": run.probe_expected.get(tag),
                "sent": sent,
                "passed": passed,
                "limited": limited,
                "other": other,
            }
        )
    accuracy = run.rate_limit_accuracy()
    samples_q = [s.queue_depth for s in run.samples if s.queue_depth is not None]
    samples_m = [s.rss_bytes for s in run.samples if s.rss_bytes is not None]
    drift_info = drift(run.history) if o.mode is Mode.soak else None
    if drift_info and drift_info["latency_drift"]:
        warnings.append(
            f"latency drifts upward: p95 {drift_info['p95_first_ms']}ms in the first third, "
            f"{drift_info['p95_last_ms']}ms in the last"
        )
    if drift_info and drift_info["memory_drift"]:
        warnings.append(
            f"daemon memory drifts upward: RSS {format_bytes(drift_info['rss_first_bytes'])} -> "
            f"{format_bytes(drift_info['rss_last_bytes'])}"
        )
    if any(st.generator_bound for st in run.stages):
        warnings.append(
            "the generator was the bottleneck for part of the run: the results understate the "
            "daemon; use --workers N"
        )
    if t.pool_exhausted and not any(st.generator_bound for st in run.stages):
        warnings.append(
            f"{t.pool_exhausted} starts waited for a free connection (all connections busy); "
            "their wait is in the latency"
        )
    if t.main.rate_limited:
        warnings.append(f"{t.main.rate_limited} requests were rate limited (429) on the main key")
    if not samples_q and not samples_m:
        warnings.append("/metrics was not readable: queue depth and RSS were not measured")
    planned_rate = o.rate if o.mode is not Mode.stress else None
    scheduled = sum(st.spec.scheduled_count(main_only=True) for st in run.stages)
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "aigov_version": version,
        "mode": o.mode.value,
        "target": {"url": o.target.url, "key": run.key_kind},
        "config": {
            "rate": o.rate,
            "duration_s": o.duration_s,
            "interval_s": o.interval_s,
            "workers": o.workers,
            "connections": o.connections,
            "timeout_s": o.timeout_s,
            "max_requests": o.max_requests,
            "corpus": o.corpus.source,
            "corpus_size": len(o.corpus.bodies),
            **(
                {"burst_size": o.burst_size, "burst_every_s": o.burst_every_s, "probe_limit": o.probe_limit}
                if o.mode is Mode.burst
                else {}
            ),
            **({"stage_s": o.stage_s, "step": o.step} if o.mode is Mode.stress else {}),
        },
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration_s": round(run.duration_s, 3),
        "interrupted": run.interrupted,
        "requests": _requests(t, scheduled, planned_rate),
        "probe_requests": _probe_requests(t.probe),
        "latency_ms": latency_summary(t.latency),
        "service_time_ms": latency_summary(t.service),
        "schedule": {
            "late_threshold_ms": LATE_THRESHOLD_S * 1000,
            "late_starts": t.late,
            "late_start_ratio": round(t.late / (t.main.sent + t.probe.sent), 6) if t.main.sent + t.probe.sent else 0.0,
            "max_start_lag_ms": round(t.max_lag_s * 1000, 3),
            "dispatch_max_lag_ms": round(t.dispatch_max_lag_s * 1000, 3),
            "waited_for_connection": t.pool_exhausted,
            "generator_bound": any(st.generator_bound for st in run.stages),
            "generator_cpu_max": round(t.max_cpu_ratio, 3),
        },
        "status_codes": {str(k): v for k, v in sorted(t.main.statuses.items())},
        "errors": dict(sorted(t.main.error_kinds.items())),
        "bytes": {"sent": t.bytes_sent, "received": t.bytes_received},
        "rate_limit": None
        if not probes
        else {"accuracy_pct": None if accuracy is None else round(accuracy, 3), "probes": probes},
        "daemon": {
            "queue_depth_max": max(samples_q) if samples_q else None,
            "rss_bytes_first": samples_m[0] if samples_m else None,
            "rss_bytes_last": samples_m[-1] if samples_m else None,
            "rss_bytes_max": max(samples_m) if samples_m else None,
            "samples": len(run.samples),
        },
        "stages": [
            {
                "index": st.index,
                "target_rate": st.spec.rate,
                "duration_s": st.spec.duration_s,
                **tally_counts(st.result.main),
                "achieved_rate": _rate(
                    st.result.main.sent, st.spec.duration_s if not st.result.interrupted else st.result.schedule_s
                ),
                "error_rate": None if st.result.error_rate is None else round(st.result.error_rate, 6),
                **{k: v for k, v in latency_summary(st.result.latency).items() if k in ("p50", "p95", "p99")},
                "queue_depth_max": st.queue_depth_max,
                "met_sla": st.met_sla,
                "generator_bound": st.generator_bound,
            }
            for st in run.stages
        ]
        if o.mode is Mode.stress
        else [],
        "breaking_point_rps": run.breaking_point,
        "max_rate_met": run.max_rate_met,
        "drift": drift_info,
        "history": rows,
        "thresholds": [
            {
                "expr": v.threshold.expr,
                "metric": v.threshold.metric,
                "op": v.threshold.op,
                "limit": v.threshold.limit,
                "observed": None if v.observed is None else round(v.observed, 6),
                "observed_text": v.describe_observed(),
                "status": v.status,
                "source": v.threshold.source,
            }
            for v in run.thresholds
        ],
        "keys": {"created": run.keys_created, "deleted": run.keys_deleted},
        "warnings": warnings,
        "passed": all(v.ok for v in run.thresholds) and not run.interrupted,
    }
    return doc


def to_json(doc: dict[str, Any]) -> str:
    """Serialise the document."""
    return json.dumps(doc, indent=2, ensure_ascii=False)


def write_csv(doc: dict[str, Any], path: Path) -> None:
    """Write the per-interval history as CSV."""
    path.write_text(history_csv(doc), encoding="utf-8")


def history_csv(doc: dict[str, Any]) -> str:
    """The per-interval history as CSV text."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for row in doc["history"]:
        w.writerow({k: "" if row.get(k) is None else row.get(k) for k in CSV_FIELDS})
    return buf.getvalue()


def outcome_line(counts: dict[str, Any]) -> str:
    """``350 sent: 300 ok, 26 rate limited (429), 0 errors, 24 abandoned``."""
    line = (f"{counts['sent']} sent: {counts['ok']} ok, {counts['rate_limited']} rate limited (429), "
            f"{counts['errors']} errors")
    return line + (f", {counts['abandoned']} abandoned" if counts["abandoned"] else "")


def breaking_point_text(doc: dict[str, Any]) -> str:
    """What a stress run found: where the SLA broke, or that it never did."""
    stages = doc["stages"]
    if not stages:
        return "no stage ran"
    bp, met = doc["breaking_point_rps"], doc["max_rate_met"]
    failed = next((s for s in stages if not s["met_sla"]), None)
    if failed is None:
        tried = max(s["target_rate"] for s in stages)
        return f"not reached (highest rate tried: {tried:g} req/s, all stages met the SLA)"
    if bp is None or met is None:
        return f"below {failed['target_rate']:g} req/s (the first stage missed the SLA)"
    return f"{bp:g} req/s (highest rate that met the SLA; {failed['target_rate']:g} req/s did not)"


def render_summary(doc: dict[str, Any], console: Any) -> None:
    """Print the human summary (rich) of a result document."""
    from rich.table import Table
    from rich.text import Text

    req = doc["requests"]
    lat = doc["latency_ms"]
    head = Text()
    head.append(f"aigov loadtest  {doc['mode']}", style="bold")
    head.append(f"  {doc['target']['url']}  {doc['duration_s']:.1f}s  workers={doc['config']['workers']}")
    if doc["interrupted"]:
        head.append("  (interrupted: partial results)", style="bold yellow")
    console.print(head)

    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="dim")
    t.add_column()
    target = f" (target {req['target_rate']:g}/s)" if req["target_rate"] else ""
    t.add_row("requests", outcome_line(req))
    t.add_row("rate", f"{req['achieved_rate']:.1f}/s achieved{target}, throughput {req['throughput']:.1f}/s")
    er = req["error_rate"]
    t.add_row(
        "errors",
        f"{req['errors']} ({'-' if er is None else f'{er * 100:.2f}%'} of completed)"
        + (f"  {', '.join(f'{k}={v}' for k, v in doc['errors'].items())}" if doc["errors"] else ""),
    )
    t.add_row("status", "  ".join(f"{k}={v}" for k, v in doc["status_codes"].items()) or "-")
    probe = doc["probe_requests"]
    if probe is not None:
        t.add_row("probe requests", outcome_line(probe) + "  (rate-limit probe keys; not counted above)")
    sch = doc["schedule"]
    t.add_row(
        "behind schedule",
        f"{sch['late_starts']} starts > {sch['late_threshold_ms']:g}ms late, "
        f"max lag {format_ms(sch['max_start_lag_ms'])}",
    )
    t.add_row(
        "bytes",
        f"{format_bytes(doc['bytes']['sent'])} sent, {format_bytes(doc['bytes']['received'])} received",
    )
    d = doc["daemon"]
    qd = d["queue_depth_max"]
    t.add_row(
        "daemon",
        f"queue depth max {'-' if qd is None else f'{qd:g}'}, "
        f"RSS {format_bytes(d['rss_bytes_first'])} -> {format_bytes(d['rss_bytes_last'])}",
    )
    rl = doc["rate_limit"]
    if rl is not None:
        acc = rl["accuracy_pct"]
        detail = ", ".join(
            f"{p['passed']}/{p['sent']} passed (expected {p['expected']})" for p in rl["probes"]
        )
        t.add_row("rate-limit accuracy", f"{'-' if acc is None else f'{acc:.2f}%'}  {detail}")
    if doc["mode"] == "stress":
        t.add_row("breaking point", breaking_point_text(doc))
    console.print(t)

    lt = Table(title="latency (from intended start)", title_justify="left", box=None)
    for name in ("min", "mean", "p50", "p90", "p95", "p99", "p99.9", "max"):
        lt.add_column(name, justify="right")
    lt.add_row(*(format_ms(lat[k]) for k in ("min", "mean", "p50", "p90", "p95", "p99", "p99.9", "max")))
    console.print(lt)

    if doc["stages"]:
        st = Table(title="stages", title_justify="left", box=None)
        for name in ("rate", "achieved", "p50", "p95", "p99", "errors", "queue", "SLA"):
            st.add_column(name, justify="right")
        for s in doc["stages"]:
            er_s = s["error_rate"]
            st.add_row(
                f"{s['target_rate']:g}",
                f"{s['achieved_rate']:.0f}",
                format_ms(s["p50"]),
                format_ms(s["p95"]),
                format_ms(s["p99"]),
                "-" if er_s is None else f"{er_s * 100:.2f}%",
                "-" if s["queue_depth_max"] is None else f"{s['queue_depth_max']:g}",
                ("✓" if s["met_sla"] else "✗") + (" (generator-bound)" if s["generator_bound"] else ""),
            )
        console.print(st)

    console.print(Text("thresholds", style="bold"))
    for th in doc["thresholds"]:
        mark, style = {"pass": ("✓", "green"), "fail": ("✗", "red"), "skipped": ("-", "dim")}[th["status"]]
        line = Text(f"  {mark} ", style=style)
        line.append(f"{th['expr']:<28}")
        line.append(f"observed {th['observed_text']}", style="dim" if th["status"] != "fail" else "red")
        if th["status"] == "skipped":
            line.append("  (not measured, skipped)", style="dim")
        console.print(line)
    for w in doc["warnings"]:
        console.print(Text(f"warning: {w}", style="yellow"))
    verdict = Text("PASS" if doc["passed"] else "FAIL", style="bold green" if doc["passed"] else "bold red")
    console.print(verdict)
