"""``aigov dashboard``: the Grafana JSON, its queries checked against a live /metrics, the scrape config."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from aigov_cli.dashboard.grafana import PANELS, dashboard, metric_names, queries
from tests.daemon_proc import cli, create_key, running_daemon

REQUIRED = ("request rate by status", "allowed vs blocked", "blocked by rule", "rate-limit hits", "p50 / p95 / p99",
            "queue depth", "decisions written", "auth failures", "active api keys", "memory", "cpu", "error rate")


def test_export_writes_an_importable_dashboard(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "aigov-dashboard.json"
    r = cli(home, "dashboard", "export", "--out", str(out))
    assert r.returncode == 0, r.stderr
    board = json.loads(out.read_text())
    assert board["__inputs"][0]["pluginId"] == "prometheus"
    panels = board["panels"]
    assert len(panels) >= 11
    assert len({p["id"] for p in panels}) == len(panels)
    titles = " | ".join(p["title"].lower() for p in panels)
    for want in REQUIRED:
        assert want in titles, want
    for p in panels:
        assert p["targets"] and all(t["expr"] and t["refId"] for t in p["targets"])
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}"
        assert {"x", "y", "w", "h"} <= set(p["gridPos"])
    stdout = cli(home, "dashboard", "export")
    assert json.loads(stdout.stdout) == board


def test_the_readme_lists_every_panel() -> None:
    # The README said 13 panels and listed 12: the list, its count and the export must agree.
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    m = re.search(r"The dashboard has (\d+) panels \(([^)]*)\)", readme.replace("\n", " "))
    assert m, "the README no longer describes the dashboard's panels"
    listed = [item.strip().lower() for item in m[2].split(",")]
    titles = [p.title.lower().replace(" / ", "/").replace("api ", "") for p in PANELS]
    assert int(m[1]) == len(listed) == len(PANELS), (m[1], listed)
    for item, title in zip(listed, titles, strict=True):  # in the dashboard's order
        assert all(word in title for word in item.split()), (item, title)


def test_latency_panel_uses_the_histogram() -> None:
    latency = [p for p in PANELS if "p99" in p.title][0]
    exprs = [e for e, _ in latency.targets]
    quantiles = [re.findall(r"histogram_quantile\((0\.\d+)", e) for e in exprs]
    assert quantiles == [["0.5"], ["0.95"], ["0.99"]]
    assert all("aigov_request_latency_seconds_bucket" in e and "by (le)" in e for e in exprs)


def test_metric_names_parser() -> None:
    q = ('sum by (status) (rate(aigov_requests_total{job=~"$job", endpoint="/v1/check"}[$__rate_interval])) '
         '/ clamp_min(sum(rate(foo_total[5m])), 1e-9)')
    assert metric_names(q) == {"aigov_requests_total", "foo_total"}
    assert metric_names("histogram_quantile(0.99, sum by (le) (rate(x_bucket[1m])))") == {"x_bucket"}
    assert metric_names("label_values(aigov_requests_total, job)") == {"aigov_requests_total"}


def _exported_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


@pytest.mark.e2e
def test_every_query_uses_metrics_the_live_daemon_exports(home: Path) -> None:
    with running_daemon(home, AIGOV_LOG_FLUSH_INTERVAL="0.05") as d:
        token = create_key(home, "dash")["token"]
        until = time.time() + 5
        while d.check(token, {"model": "m", "operation": "chat", "input_text": "hi"}).status == 401:
            assert time.time() < until
            time.sleep(0.05)
        assert d.check(token, {"model": "m", "operation": "chat", "input_text": "4111 1111 1111 1111"}).status == 200
        assert d.check(None, {"model": "m", "operation": "chat", "input_text": "x"}).status == 401
        metrics = d.request("GET", "/metrics")
        assert metrics.status == 200
        exported = _exported_names(metrics.body.decode())
        assert "aigov_governance_blocked_total" in exported
        missing = {}
        for q in queries(dashboard()):
            names = metric_names(q)
            assert names, q
            if names - exported:
                missing[q] = sorted(names - exported)
        assert not missing, missing
        config = cli(home, "dashboard", "prometheus-config")
        assert config.returncode == 0
        assert f"'127.0.0.1:{d.port}'" in config.stdout and "metrics_path: /metrics" in config.stdout


def test_prometheus_config_for_the_configured_port(home: Path) -> None:
    (home / "config.toml").write_text("port = 9191\n")
    r = cli(home, "dashboard", "prometheus-config", "--job", "gov")
    assert r.returncode == 0
    assert 'job_name: "gov"' in r.stdout and "- targets: ['127.0.0.1:9191']" in r.stdout


# Prometheus's own example configuration (documentation/examples/prometheus.yml), as most files start.
EXAMPLE_PROMETHEUS_YML = """\
global:
  scrape_interval: 15s
  evaluation_interval: 15s

alerting:
  alertmanagers:
    - static_configs:
        - targets:

rule_files:

scrape_configs:
  - job_name: "prometheus"
    static_configs:
      - targets: ["localhost:9090"]
"""

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian: prometheus)")


def promtool_check(path: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, "check", "config", str(path)], capture_output=True, text=True, timeout=60)


def test_the_job_is_a_list_item_without_a_top_level_key(home: Path) -> None:
    r = cli(home, "dashboard", "prometheus-config")
    assert r.returncode == 0
    body = [line for line in r.stdout.splitlines() if not line.startswith("#")]
    assert body[0] == '  - job_name: "aigov"' and all(line.startswith("    ") for line in body[1:])
    assert "--full > prometheus.yml" in r.stdout


@needs_promtool
def test_readme_commands_give_files_promtool_accepts(home: Path, tmp_path: Path) -> None:
    # The README: a whole file with --full, or the job appended to an existing prometheus.yml.
    whole = tmp_path / "prometheus.yml"
    r = cli(home, "dashboard", "prometheus-config", "--full", "--job", 'odd: "name" #1', "--interval", "1m30s")
    assert r.returncode == 0
    whole.write_text(r.stdout)
    check = promtool_check(whole)
    assert check.returncode == 0, check.stdout + check.stderr
    appended = tmp_path / "existing.yml"
    job = cli(home, "dashboard", "prometheus-config")
    appended.write_text(EXAMPLE_PROMETHEUS_YML + job.stdout)
    check = promtool_check(appended)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("--interval", "15"), "--interval: '15' is not a Prometheus duration (e.g. 15s, 1m, 1m30s)"),
    (("--interval", "1s1m"), "--interval: '1s1m' is not a Prometheus duration (e.g. 15s, 1m, 1m30s)"),
    (("--job", " "), "--job: the job name is empty"),
])
def test_prometheus_config_refuses_what_prometheus_would(home: Path, args: tuple[str, ...], message: str) -> None:
    r = cli(home, "dashboard", "prometheus-config", *args)
    assert r.returncode == 2 and r.stdout == "" and r.stderr == f"aigov: error: {message}\n"
