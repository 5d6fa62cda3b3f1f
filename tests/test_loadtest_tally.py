"""One tally for `aigov loadtest`: the live panel, the summary and the JSON read the same counts, and they add up.

A real daemon, a real run (in this process, so that the live state can be read too): sent = completed +
abandoned, completed = ok + rate_limited + errors, probe traffic on its own, and stress runs that never
broke say so.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterator
from typing import Any

import pytest
from rich.console import Console

from aigov_cli.loadtest.app import CommandArgs, build_options
from aigov_cli.loadtest.keys import default_key_admin
from aigov_cli.loadtest.progress import RichProgress
from aigov_cli.loadtest.report import build_document, outcome_line, render_summary
from aigov_cli.loadtest.runner import LiveState, RunData, run_loadtest
from aigov_cli.loadtest.scenarios import Mode
from tests.daemon_proc import DaemonProc, running_daemon

FAST = {"AIGOV_BCRYPT_COST": "10"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProc]:
    """One daemon for the module."""
    home = tmp_path_factory.mktemp("tally") / "home"
    with running_daemon(home, **FAST) as d:
        yield d


class Recorder:
    """An observer that keeps every live state it is shown and checks the identities on each."""

    def __init__(self) -> None:
        self.state: LiveState | None = None
        self.updates = 0
        self.warnings: list[str] = []

    def update(self, state: LiveState) -> None:
        """Mid-run, what is not completed is in flight: never more completed than sent."""
        for t in (state.main, state.probe):
            assert t.completed == t.ok + t.rate_limited + t.errors
            assert t.completed + t.abandoned <= t.sent
        self.state = state
        self.updates += 1

    def warn(self, message: str) -> None:
        """Keep it."""
        self.warnings.append(message)


def run(d: DaemonProc, monkeypatch: pytest.MonkeyPatch, **flags: Any) -> tuple[RunData, dict[str, Any], Recorder]:
    monkeypatch.setenv("AIGOV_HOME", str(d.home))
    monkeypatch.setenv("AIGOV_BCRYPT_COST", "10")
    opts = build_options(CommandArgs(url=d.url, **flags))
    rec = Recorder()
    data = asyncio.run(run_loadtest(opts, default_key_admin(), rec))
    return data, build_document(data), rec


def adds_up(counts: dict[str, Any]) -> None:
    assert counts["sent"] == counts["completed"] + counts["abandoned"], counts
    assert counts["completed"] == counts["ok"] + counts["rate_limited"] + counts["errors"], counts


def summary_text(doc: dict[str, Any]) -> str:
    buf = io.StringIO()
    render_summary(doc, Console(file=buf, width=200, color_system=None))
    return buf.getvalue()


def panel_text(state: LiveState) -> str:
    buf = io.StringIO()
    progress = RichProgress(Console(file=buf, width=200, color_system=None))
    progress._state = state
    progress.console.print(progress._render())
    return buf.getvalue()


@pytest.mark.e2e
def test_burst_counts_agree_and_add_up(daemon: DaemonProc, monkeypatch: pytest.MonkeyPatch) -> None:
    data, doc, rec = run(daemon, monkeypatch, mode=Mode.burst, rate=20, duration="3s", burst_every="1s",
                         burst_size=30, probe_limit=10)
    req, probe = doc["requests"], doc["probe_requests"]
    adds_up(req)
    adds_up(probe)
    # The run: 429s of the probe keys showed in status_codes and in "429s" but not in requests.
    assert req["sent"] == req["scheduled"] == 3 * 20 + 2 * 30  # two bursts fit in 3 s at 1 s intervals
    assert sum(doc["status_codes"].values()) == req["ok"] + req["rate_limited"] + doc["errors"].get("http_4xx", 0) \
        + doc["errors"].get("http_5xx", 0)
    assert sum(doc["errors"].values()) == req["errors"]
    assert str(429) not in doc["status_codes"] or doc["status_codes"]["429"] == req["rate_limited"]
    # Probes: two keys of limit 10, 20 requests each at once; 9 pass (the warm-up took one).
    assert probe["sent"] == 40 and probe["ok"] == 18 and probe["rate_limited"] == 22
    assert probe["status_codes"] == {"200": 18, "429": 22}
    per_key = doc["rate_limit"]["probes"]
    assert sum(p["sent"] for p in per_key) == probe["sent"]
    assert sum(p["passed"] for p in per_key) == probe["ok"]
    assert sum(p["limited"] for p in per_key) == probe["rate_limited"]
    # Latency is the main traffic's: one value per answer it got.
    assert data.total.latency.total == req["completed"] - sum(
        n for k, n in doc["errors"].items() if not k.startswith("http_"))
    # History rows are the main traffic too, and sum to it.
    assert sum(r["sent"] for r in doc["history"]) == req["sent"]
    assert sum(r["completed"] for r in doc["history"]) == req["completed"]
    # The live state is the same tally: what the panel showed last is what the summary and JSON say.
    assert rec.state is not None and rec.updates > 3
    live = rec.state
    assert (live.main.sent, live.main.ok, live.main.rate_limited, live.main.errors, live.main.abandoned) == \
        (req["sent"], req["ok"], req["rate_limited"], req["errors"], req["abandoned"])
    assert (live.probe.sent, live.probe.ok, live.probe.rate_limited) == \
        (probe["sent"], probe["ok"], probe["rate_limited"])
    panel = panel_text(live)
    assert f"{req['sent']} sent" in panel
    assert f"ok {req['ok']}  429s {req['rate_limited']}  errors {req['errors']}  in flight 0" in panel
    assert f"ok {probe['ok']}  429s {probe['rate_limited']}  errors {probe['errors']}" in panel
    text = summary_text(doc)
    assert f"requests             {outcome_line(req)}" in text
    assert f"probe requests       {outcome_line(probe)}" in text
    assert outcome_line(probe) == "40 sent: 18 ok, 22 rate limited (429), 0 errors"


@pytest.mark.e2e
def test_a_stress_run_that_never_broke_reports_no_breaking_point(
    daemon: DaemonProc, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, doc, _ = run(daemon, monkeypatch, mode=Mode.stress, rate=50, step=2, stage_duration="1s", duration="2s",
                    thresholds=("breaking_point>10",))
    assert [s["met_sla"] for s in doc["stages"]] == [True, True]
    assert doc["breaking_point_rps"] is None and doc["max_rate_met"] == 100
    bp = next(t for t in doc["thresholds"] if t["metric"] == "breaking_point")
    assert (bp["status"], bp["observed"], bp["observed_text"]) == ("skipped", None, "not reached")
    assert doc["passed"] is True
    text = summary_text(doc)
    assert "breaking point   not reached (highest rate tried: 100 req/s, all stages met the SLA)" in text
    adds_up(doc["requests"])
    for stage in doc["stages"]:
        adds_up(stage)
    assert doc["requests"]["sent"] == sum(s["sent"] for s in doc["stages"]) == 150


@pytest.mark.e2e
def test_a_stress_run_that_broke_names_both_rates(daemon: DaemonProc, monkeypatch: pytest.MonkeyPatch) -> None:
    # rps<75 holds at 50 req/s and not at 100: the second stage breaks the SLA.
    _, doc, _ = run(daemon, monkeypatch, mode=Mode.stress, rate=50, step=2, stage_duration="1s", duration="3s",
                    thresholds=("rps<75", "breaking_point>=50"))
    assert [s["met_sla"] for s in doc["stages"]] == [True, False]
    assert doc["breaking_point_rps"] == 50 and doc["max_rate_met"] == 50
    assert next(t for t in doc["thresholds"] if t["metric"] == "breaking_point")["status"] == "pass"
    assert "breaking point   50 req/s (highest rate that met the SLA; 100 req/s did not)" in summary_text(doc)


def test_the_first_frame_never_shows_negative_time() -> None:
    state = LiveState(mode=Mode.burst, planned_s=10, started=time.monotonic() + 0.3, label="burst")
    assert state.elapsed() == 0.0
    text = panel_text(state)
    assert "0.0s elapsed,  10.0s left" in text and "-0." not in text
