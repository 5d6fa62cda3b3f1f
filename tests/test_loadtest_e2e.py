"""End to end: the real `aigov loadtest` against a real `aigov serve`, every mode, seconds each."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_proc import AIGOV, DaemonProc, cli, env_for, running_daemon

FAST = {"AIGOV_BCRYPT_COST": "10"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    """One daemon for the module (the tests run one after another)."""
    home = tmp_path_factory.mktemp("lt") / "home"
    with running_daemon(home, **FAST) as d:
        yield d


def loadtest(d: DaemonProc, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return cli(d.home, "loadtest", "--url", d.url, *args, timeout=timeout, **FAST)


def run_json(d: DaemonProc, *args: str, expect: int = 0) -> dict[str, Any]:
    r = loadtest(d, "--json", *args)
    assert r.returncode == expect, (r.returncode, r.stderr, r.stdout[-2000:])
    doc: dict[str, Any] = json.loads(r.stdout)
    assert doc["schema"] == "aigov.loadtest/v1"
    return doc


def loadtest_keys(d: DaemonProc) -> list[dict[str, Any]]:
    r = cli(d.home, "keys", "list", "--all", "--json", **FAST)
    assert r.returncode == 0, r.stderr
    return [k for k in json.loads(r.stdout) if k["name"].startswith("loadtest-")]


def logs(d: DaemonProc, *args: str) -> list[dict[str, Any]]:
    r = cli(d.home, "logs", "--json", "--limit", "0", *args, **FAST)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def check_requests(d: DaemonProc) -> float:
    """How many /v1/check requests the daemon has answered so far."""
    text = d.request("GET", "/metrics", timeout=5).body.decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("aigov_requests_total{") and '"/v1/check"' in line
    )


def wait_for_traffic(d: DaemonProc, proc: subprocess.Popen[str], at_least: float) -> None:
    deadline = time.monotonic() + 20
    while check_requests(d) < at_least:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the load test never started sending"
        time.sleep(0.05)


def test_normal_mode_json_out_csv_and_temporary_keys_deleted(daemon: DaemonProc, tmp_path: Path) -> None:
    before = len(loadtest_keys(daemon))
    out, csv_path = tmp_path / "result.json", tmp_path / "history.csv"
    doc = run_json(daemon, "--rate", "100", "--duration", "2s", "--out", str(out), "--csv", str(csv_path))
    req = doc["requests"]
    assert req["sent"] == req["completed"] == req["ok"] == 200
    assert req["error_rate"] == 0.0 and doc["status_codes"] == {"200": 200}
    lat = doc["latency_ms"]
    assert (
        0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]
    )
    assert doc["bytes"]["sent"] > 200 * 50 and doc["bytes"]["received"] > 0
    assert doc["daemon"]["queue_depth_max"] is not None
    assert {t["expr"]: t["status"] for t in doc["thresholds"]} == {
        "p95<500ms": "pass",
        "error_rate<1%": "pass",
        "queue_depth<500": "pass",
    }
    assert doc["passed"] is True and doc["target"]["key"] == "temporary"
    assert json.loads(out.read_text())["requests"] == req
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("t_s,phase,target_rate,sent,completed,rps")
    assert len(lines) >= 3
    assert len(loadtest_keys(daemon)) == before  # deleted, not left revoked
    assert doc["keys"] == {"created": 1, "deleted": 1}
    # Its checks are marked in the log and left out of `aigov logs` unless asked for.
    deadline = time.monotonic() + 10
    while len(marked := logs(daemon, "--include-probes", "--since", "1m")) < 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(marked) >= 200 and all(r["metadata"] == {"source": "loadtest"} for r in marked)
    assert logs(daemon, "--since", "1m") == []


def test_burst_mode_measures_rate_limit_accuracy(daemon: DaemonProc) -> None:
    doc = run_json(
        daemon,
        "--mode",
        "burst",
        "--rate",
        "20",
        "--duration",
        "2s",
        "--burst-every",
        "1s",
        "--burst-size",
        "30",
        "--probe-limit",
        "10",
    )
    rl = doc["rate_limit"]
    assert rl is not None and len(rl["probes"]) == 1  # one burst fits in 2 s at 1 s intervals
    probe = rl["probes"][0]
    # limit 10, one token spent warming the key up: exactly 9 of the 20 simultaneous requests pass
    assert probe == {"limit": 10, "expected": 9, "sent": 20, "passed": 9, "limited": 11, "other": 0}
    assert rl["accuracy_pct"] == 100.0
    assert doc["requests"]["rate_limited"] == 0 and doc["requests"]["errors"] == 0
    assert any(t["expr"] == "rate_limit_accuracy==100%" and t["status"] == "pass" for t in doc["thresholds"])
    assert loadtest_keys(daemon) == []  # the main key and the probe key deleted


def test_stress_mode_judges_stages(daemon: DaemonProc) -> None:
    # A p99 under a microsecond can never hold, so the first stage breaks the SLA...
    broken = run_json(
        daemon,
        "--mode",
        "stress",
        "--rate",
        "50",
        "--step",
        "2",
        "--stage-duration",
        "1s",
        "--duration",
        "3s",
        "--threshold",
        "p99<1us",
        expect=1,
    )
    assert len(broken["stages"]) == 1 and broken["stages"][0]["met_sla"] is False
    assert broken["breaking_point_rps"] is None and broken["max_rate_met"] is None
    # ...while the default SLA holds at these modest rates for every stage.
    doc = run_json(
        daemon,
        "--mode",
        "stress",
        "--rate",
        "50",
        "--step",
        "2",
        "--stage-duration",
        "1s",
        "--duration",
        "3s",
    )
    assert [s["target_rate"] for s in doc["stages"]] == [50, 100, 200]
    assert all(s["met_sla"] for s in doc["stages"])
    assert doc["breaking_point_rps"] is None and doc["max_rate_met"] == 200  # never broke: none to report
    assert doc["requests"]["sent"] == 50 + 100 + 200


def test_soak_mode_samples_the_daemon_per_interval(daemon: DaemonProc) -> None:
    doc = run_json(
        daemon, "--mode", "soak", "--rate", "50", "--duration", "3s", "--interval", "1s", "--workers", "2"
    )
    assert doc["config"]["workers"] == 2
    assert doc["requests"]["sent"] == 150 and doc["requests"]["ok"] == 150
    rows = doc["history"]
    assert len(rows) >= 3
    assert sum(r["completed"] for r in rows) == 150
    assert any(r["rss_bytes"] for r in rows)
    assert doc["daemon"]["rss_bytes_max"] > 10_000_000
    assert doc["drift"] is None or doc["drift"]["memory_drift"] in (True, False)


def test_provided_key_and_failing_threshold_exit_1(
    daemon: DaemonProc, monkeypatch: pytest.MonkeyPatch
) -> None:
    from daemon.keyadmin import create_key

    monkeypatch.setenv("AIGOV_HOME", str(daemon.home))
    monkeypatch.setenv("AIGOV_BCRYPT_COST", "10")
    _, token = create_key("lt-provided", 10_000, 60.0)
    r = loadtest(daemon, "--key", token, "--rate", "50", "--duration", "1s", "--threshold", "p50<1us")
    assert r.returncode == 1, r.stderr
    assert "✗ p50<1us" in r.stdout and "✓ error_rate<1%" in r.stdout and "FAIL" in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--url", "http://10.1.2.3:8080"), "only loopback"),
        (("--threshold", "p95<fast"), "invalid threshold"),
        (("--duration", "forever"), "invalid --duration"),
        (("--rate", "0"), "--rate"),
        (("--url", "ftp://127.0.0.1:1"), "unsupported URL scheme 'ftp'"),
        (("--url", "https://127.0.0.1:1", "--ca-file", "/nonexistent/ca.pem"), "--ca-file: cannot read"),
        (("--url", "http://127.0.0.1:1", "--ca-file", "/nonexistent/ca.pem"), "--ca-file is for an https"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    r = subprocess.run(
        [AIGOV, "loadtest", *args], capture_output=True, text=True, timeout=30, env=env_for(tmp_path)
    )
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_no_daemon_is_a_configuration_error(tmp_path: Path) -> None:
    r = subprocess.run(
        [AIGOV, "loadtest", "--url", "http://127.0.0.1:9", "--duration", "1s"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env_for(tmp_path),
    )
    assert r.returncode == 2 and "no aigov daemon answers" in r.stderr


def test_without_url_the_running_daemon_of_the_home_is_the_target(daemon: DaemonProc) -> None:
    # The module's daemon listens on a free port, not the default 8080: its pid file says where.
    r = cli(daemon.home, "loadtest", "--rate", "50", "--duration", "1s", "--json", timeout=60, **FAST)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["target"]["url"] == daemon.url


def test_stalled_daemon_shows_in_the_percentiles(daemon: DaemonProc) -> None:
    """SIGSTOP the daemon for one second: corrected latencies must show the stall."""
    proc = subprocess.Popen(
        [AIGOV, "loadtest", "--url", daemon.url, "--rate", "200", "--duration", "4s", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env_for(daemon.home, **FAST),
    )
    try:
        wait_for_traffic(daemon, proc, check_requests(daemon) + 100)
        os.kill(daemon.proc.pid, signal.SIGSTOP)
        time.sleep(1.0)
    finally:
        os.kill(daemon.proc.pid, signal.SIGCONT)
    stdout, stderr = proc.communicate(timeout=60)
    doc = json.loads(stdout)
    lat = doc["latency_ms"]
    # ~200 starts fall inside the stall; the first waits the whole second, so the tail shows it.
    assert lat["max"] >= 900, lat
    assert lat["p99"] >= 500, lat
    assert doc["requests"]["sent"] == 800
    assert proc.returncode in (0, 1), stderr
    # The uncorrected service time is smaller: requests waiting for a connection are not in it.
    assert doc["service_time_ms"]["p50"] <= lat["p50"]


def test_ctrl_c_prints_the_partial_summary_and_revokes_keys(daemon: DaemonProc) -> None:
    proc = subprocess.Popen(
        [AIGOV, "loadtest", "--url", daemon.url, "--rate", "100", "--duration", "30s", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env_for(daemon.home, **FAST),
    )
    wait_for_traffic(daemon, proc, check_requests(daemon) + 50)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - started < 10
    assert proc.returncode == 1, stderr
    assert "Traceback" not in stderr
    doc = json.loads(stdout)
    assert doc["interrupted"] is True and doc["passed"] is False
    assert 0 < doc["requests"]["sent"] < 3000
    assert doc["keys"] == {"created": 1, "deleted": 1}
    assert loadtest_keys(daemon) == []  # deleted even when interrupted
