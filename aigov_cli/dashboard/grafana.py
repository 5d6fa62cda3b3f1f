"""The Grafana dashboard: panels over the metric names the daemon exports, as importable JSON."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

DS = "${DS_PROMETHEUS}"
JOB = 'job=~"$job"'


@dataclass(frozen=True)
class Panel:
    """One time-series (or stat) panel: a title, its PromQL queries with legends, a unit."""

    title: str
    targets: tuple[tuple[str, str], ...]
    unit: str = "short"
    kind: str = "timeseries"
    description: str = ""
    stack: bool = False


PANELS: tuple[Panel, ...] = (
    Panel("Request rate by status", (
        (f'sum by (status) (rate(aigov_requests_total{{{JOB}, endpoint="/v1/check"}}[$__rate_interval]))',
         "{{status}}"),
    ), "reqps", description="Answers of /v1/check per second, by HTTP status.", stack=True),
    Panel("Allowed vs blocked", (
        (f"sum(rate(aigov_governance_allowed_total{{{JOB}}}[$__rate_interval]))", "allowed"),
        (f"sum(rate(aigov_governance_blocked_total{{{JOB}}}[$__rate_interval]))", "blocked (per blocking rule)"),
    ), "reqps", description="Checks answered allow or block."),
    Panel("Blocked by rule", (
        (f"sum by (rule) (rate(aigov_governance_blocked_total{{{JOB}}}[$__rate_interval]))", "{{rule}}"),
    ), "reqps", description="Blocked checks per second, by the rule that blocked them.", stack=True),
    Panel("Rate-limit hits", (
        (f"sum(rate(aigov_rate_limit_hits_total{{{JOB}}}[$__rate_interval]))", "429 per second"),
    ), "reqps", description="Requests refused with 429."),
    Panel("Latency p50 / p95 / p99", tuple(
        (f"histogram_quantile({q}, sum by (le) (rate(aigov_request_latency_seconds_bucket{{{JOB}}}"
         f"[$__rate_interval])))", f"p{int(q * 100)}")
        for q in (0.5, 0.95, 0.99)
    ), "s", description="Latency of /v1/check inside the daemon, from the histogram."),
    Panel("Decision-log queue depth", (
        (f"max(aigov_async_logger_queue_size{{{JOB}}})", "queued"),
    ), "short", description="Decisions waiting to be written; a full queue means 503s."),
    Panel("Decisions written", (
        (f"sum(rate(aigov_decisions_written_total{{{JOB}}}[$__rate_interval]))", "written per second"),
        (f"sum(rate(aigov_decision_log_errors_total{{{JOB}}}[$__rate_interval]))", "write errors per second"),
    ), "ops", description="Records written to the decision log, and failed (retried) writes."),
    Panel("Auth failures by reason", (
        (f"sum by (reason) (rate(aigov_auth_failures_total{{{JOB}}}[$__rate_interval]))", "{{reason}}"),
    ), "reqps", description="Failed authentications per second, by reason.", stack=True),
    Panel("Active API keys", (
        (f"max(aigov_active_api_keys{{{JOB}}})", "active keys"),
    ), "short", kind="stat", description="Keys neither revoked nor expired."),
    Panel("Process memory (RSS)", (
        (f"process_resident_memory_bytes{{{JOB}}}", "{{instance}}"),
    ), "bytes", description="Resident memory of the daemon."),
    Panel("Process CPU", (
        (f"rate(process_cpu_seconds_total{{{JOB}}}[$__rate_interval])", "{{instance}}"),
    ), "percentunit", description="CPU seconds per second used by the daemon."),
    Panel("Error rate", (
        (f'sum(rate(aigov_requests_total{{{JOB}, endpoint="/v1/check", status=~"5.."}}[$__rate_interval])) '
         f'/ clamp_min(sum(rate(aigov_requests_total{{{JOB}, endpoint="/v1/check"}}[$__rate_interval])), 1e-9)',
         "5xx share"),
        (f'sum(rate(aigov_requests_total{{{JOB}, endpoint="/v1/check", status=~"4.."}}[$__rate_interval])) '
         f'/ clamp_min(sum(rate(aigov_requests_total{{{JOB}, endpoint="/v1/check"}}[$__rate_interval])), 1e-9)',
         "4xx share"),
    ), "percentunit", description="Share of /v1/check answers that are server (5xx) or client (4xx) errors."),
    Panel("Open file descriptors", (
        (f"process_open_fds{{{JOB}}}", "open"),
        (f"process_max_fds{{{JOB}}}", "limit"),
    ), "short", description="File descriptors of the daemon against its limit."),
)

_PROMQL_WORDS = frozenset({
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "inf", "nan", "le", "status", "endpoint", "rule", "reason", "job", "instance",
})
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (functions, keywords, labels and strings left out)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    e = re.sub(r"\{[^}]*\}", "", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # range selectors
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", e)  # grouping labels
    names = set()
    for m in _IDENT.finditer(e):
        word = m.group(0)
        rest = e[m.end():].lstrip()
        if rest.startswith("(") or word.lower() in _PROMQL_WORDS or word.startswith("$"):
            continue
        if m.start() > 0 and e[m.start() - 1] in "$.0123456789":
            continue
        names.add(word)
    return names


def _panel_json(i: int, p: Panel) -> dict[str, Any]:
    w, h = 12, 8
    fieldcfg: dict[str, Any] = {"unit": p.unit}
    if p.kind == "timeseries":
        fieldcfg["custom"] = {"fillOpacity": 10, "lineWidth": 1, "showPoints": "never",
                              "stacking": {"mode": "normal" if p.stack else "none"}}
    return {
        "id": i + 1,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": {"type": "prometheus", "uid": DS},
        "gridPos": {"x": (i % 2) * w, "y": (i // 2) * h, "w": w, "h": h},
        "fieldConfig": {"defaults": fieldcfg, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"}} if p.kind == "timeseries" else
                   {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}, "colorMode": "value"},
        "targets": [
            {"refId": chr(ord("A") + j), "expr": expr, "legendFormat": legend,
             "datasource": {"type": "prometheus", "uid": DS}}
            for j, (expr, legend) in enumerate(p.targets)
        ],
    }


def dashboard(title: str = "aigov", uid: str = "aigov-overview") -> dict[str, Any]:
    """The dashboard JSON, importable through Grafana's "Import dashboard" (asks for the Prometheus source)."""
    from daemon import __version__

    return {
        "__inputs": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "description": "Prometheus scraping aigov",
                      "type": "datasource", "pluginId": "prometheus", "pluginName": "Prometheus"}],
        "__requires": [
            {"type": "grafana", "id": "grafana", "name": "Grafana", "version": "9.0.0"},
            {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
            {"type": "panel", "id": "timeseries", "name": "Time series", "version": ""},
            {"type": "panel", "id": "stat", "name": "Stat", "version": ""},
        ],
        "uid": uid,
        "title": title,
        "description": f"aigov governance daemon (dashboard from aigov {__version__})",
        "tags": ["aigov"],
        "timezone": "browser",
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [{
            "name": "job", "label": "job", "type": "query", "datasource": {"type": "prometheus", "uid": DS},
            "query": {"query": "label_values(aigov_requests_total, job)", "refId": "job"},
            "definition": "label_values(aigov_requests_total, job)", "refresh": 1,
            "includeAll": True, "multi": True, "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        }]},
        "annotations": {"list": []},
        "panels": [_panel_json(i, p) for i, p in enumerate(PANELS)],
    }


def bind_datasource(board: dict[str, Any], datasource_uid: str) -> dict[str, Any]:
    """``board`` for file provisioning: every panel on the datasource ``datasource_uid``, no import inputs.

    Grafana substitutes ``${DS_PROMETHEUS}`` only when a person imports the dashboard; a provisioned
    file must name the datasource itself.
    """
    import json

    out: dict[str, Any] = json.loads(json.dumps(board).replace(json.dumps(DS), json.dumps(datasource_uid)))
    out.pop("__inputs", None)
    out.pop("__requires", None)
    return out


def queries(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression of a dashboard (panels and variables)."""
    out = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    variables = board.get("templating", {}).get("list", [])
    out += [v["query"]["query"] for v in variables if isinstance(v.get("query"), dict)]
    return out
