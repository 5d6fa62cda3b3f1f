"""``aigov logs``: filters, JSON Lines, table, follow, export (100,000 rows in bounded memory), stats, prune."""

from __future__ import annotations

import csv
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from aigov_cli.logs.query import Filter, parse_time
from tests.audit_homes import records, write_decisions
from tests.backends import Backend
from tests.daemon_proc import AIGOV, cli, create_key, env_for, running_daemon

N = 40


@pytest.fixture
def logged(backend: Backend) -> Path:
    """A home with N decisions, one minute apart, ending now; every 4th blocked (on each store)."""
    backend.write_decisions(records(N, step=60))
    return backend.home


def jsonl(home: Path, *args: str) -> list[dict[str, Any]]:
    """``aigov logs --json ARGS`` parsed line by line."""
    r = cli(home, "logs", "--json", *args)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_json_lines_fields_and_default_order(logged: Path) -> None:
    rows = jsonl(logged, "--limit", "5")
    assert [r["request_id"] for r in rows] == [f"req-{i:07d}" for i in range(N - 5, N)]
    r = rows[-1]
    for k in ("request_id", "time", "key_id", "model", "operation", "decision", "rules", "reasons",
              "input_length", "input_fingerprint", "latency_ms", "direction", "rate_limit", "metadata",
              "policy_name", "policy_version"):
        assert k in r
    assert isinstance(r["rules"], list) and isinstance(r["reasons"], list)
    assert r["time"].endswith("Z")
    assert "input" not in r  # never printed unless asked
    assert "input" in jsonl(logged, "--limit", "1", "--show-input")[0]


def select(home: Path, **kw: Any) -> list[dict[str, Any]]:
    """The library query behind ``aigov logs --limit 0``, on the home's store."""
    from aigov_cli.logs.query import public
    from daemon import storage
    from daemon.config import load_config

    with storage.decision_reader(load_config()) as reader:
        return [public(r) for r in reader.iter_decisions(Filter(**kw), page=7)]


def test_filters_through_the_cli(logged: Path) -> None:
    blocked = jsonl(logged, "--decision", "block", "--limit", "0")
    assert len(blocked) == N // 4 and all(r["decision"] == "block" for r in blocked)
    by_rule = jsonl(logged, "--rule", "pii.*", "--limit", "0", "--key", "bbbbbbbbbbbb", "--model", "gpt*")
    assert by_rule and all(r["rules"] == ["pii.credit_card"] and r["key_id"] == "bbbbbbbbbbbb"
                           and r["model"] == "gpt-4o" for r in by_rule)
    recent = jsonl(logged, "--since", "10m", "--limit", "0")
    assert 9 <= len(recent) <= 11


def test_request_id_finds_one_decision(logged: Path) -> None:
    rows = jsonl(logged, "--request-id", "req-0000007")
    assert [r["request_id"] for r in rows] == ["req-0000007"]
    assert jsonl(logged, "--request-id", "req-9999999") == []
    assert [r["request_id"] for r in select(logged, request_id="req-0000012", decision="block")] == ["req-0000012"]
    assert select(logged, request_id="req-0000013", decision="block") == []
    # Found through the index, not a scan of the table.
    assert "decisions_request_id" in plan(Filter(request_id="req-0000007"))


def plan(flt: Filter) -> str:
    """The query plan of ``aigov logs`` (the newest 50 matching) on the home's store."""
    from daemon.config import load_config

    cfg = load_config()
    if cfg.backend == "sqlite":
        from daemon.storage.sqlite_decisions import SqliteDecisionReader
        from daemon.storage.sqlite_decisions import where as sqlite_where

        with SqliteDecisionReader(cfg.db_file) as reader:
            assert reader.conn is not None
            cond, params = sqlite_where(flt)
            return " ".join(r[3] for r in reader.conn.execute(
                f"EXPLAIN QUERY PLAN SELECT id FROM decisions WHERE id <= ? AND {cond} ORDER BY id DESC LIMIT 50",
                (10**9, *params)))
    from daemon.storage.postgres_decisions import where as pg_where
    from tests.backends import pg_sql

    cond, params = pg_where(flt, 2)
    # A few rows fit one page, and a scan of one page is cheaper than any index: ask for the plan the
    # planner makes once the table is large.
    return " ".join(r[0] for r in pg_sql(
        cfg.database_url, f"EXPLAIN SELECT id FROM decisions WHERE id <= ? AND {cond} ORDER BY id DESC LIMIT 50",
        10**9, *params, before=["SET enable_seqscan = off"]))


def test_filters(logged: Path) -> None:
    blocked = select(logged, decision="block")
    assert len(blocked) == N // 4
    assert len(select(logged, key="aaaaaaaaaaaa")) == N // 2
    assert [r["request_id"] for r in select(logged, rule="pii.*")] == [r["request_id"] for r in blocked]
    assert select(logged, rule="secrets.*") == []
    claude = select(logged, model="claude*")
    assert len(claude) == len([i for i in range(N) if i % 3 == 0]) and {r["model"] for r in claude} == {"claude-3"}
    now = time.time()
    recent = select(logged, since=now - 600)
    assert 9 <= len(recent) <= 11
    assert len(recent) + len(select(logged, until=now - 600)) == N
    assert len(select(logged)) == N  # paged in sevens: nothing lost at page edges


def test_bad_filters_are_usage_errors(logged: Path) -> None:
    assert cli(logged, "logs", "--since", "yesterday-ish").returncode == 2
    assert cli(logged, "logs", "--decision", "maybe").returncode == 2


def test_parse_time_forms() -> None:
    assert parse_time("--since", "1h", now=10_000.0) == 10_000.0 - 3600
    assert parse_time("--since", "2026-01-01T00:00:00Z") == parse_time("--since", "2026-01-01")
    assert parse_time("--since", None) is None


def test_table_output(logged: Path) -> None:
    r = cli(logged, "logs", "--limit", "3")
    assert r.returncode == 0
    assert f"req-{N - 1:07d}" in r.stdout and "3 decision(s)" in r.stdout


def test_empty_home_lists_nothing_and_creates_nothing(home: Path) -> None:
    r = cli(home, "logs", AIGOV_LOG_FLUSH_INTERVAL="2.5", AIGOV_LOG_BATCH_SIZE="20")
    assert r.returncode == 0 and "No decisions" in r.stdout
    # Says why a decision just answered may be missing, with this home's batching settings.
    assert "20 at a time or every 2.5 s" in " ".join(r.stdout.split())
    assert cli(home, "logs", "--json").stdout == ""
    assert not (home / "aigov.db").exists()


def test_stats(logged: Path) -> None:
    r = cli(logged, "logs", "stats", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["total"] == N
    assert s["by_decision"] == {"allow": N - N // 4, "block": N // 4}
    assert s["by_rule"] == {"pii.credit_card": N // 4}
    assert s["by_key"] == {"aaaaaaaaaaaa": N // 2, "bbbbbbbbbbbb": N // 2}
    assert sum(s["by_model"].values()) == N
    lat = s["latency_ms"]
    assert lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"] == 3.9
    assert lat["p50"] == pytest.approx(1.9)
    text = cli(logged, "logs", "stats", "--since", "1h")
    assert text.returncode == 0 and "latency" in text.stdout and "pii.credit_card" in text.stdout


def test_export_jsonl_and_csv(logged: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    r = cli(logged, "logs", "export", "--format", "jsonl", "--out", str(out), "--decision", "block")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == N // 4 and all(r["decision"] == "block" and "hash" in r for r in rows)
    assert "input" not in rows[0]
    assert out.stat().st_mode & 0o777 == 0o600
    out_csv = tmp_path / "out.csv"
    assert cli(logged, "logs", "export", "--format", "csv", "--out", str(out_csv)).returncode == 0
    with out_csv.open(newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == N and json.loads(table[0]["rules"]) == ["pii.credit_card"]
    assert table[-1]["request_id"] == f"req-{N - 1:07d}"


def test_prune_keeps_chain_valid(logged: Path) -> None:
    from daemon import storage
    from daemon.config import load_config

    assert cli(logged, "logs", "prune").returncode == 2  # neither --older-than nor log_retention_days
    (logged / "config.toml").write_text("log_retention_days = 1\n")
    r = cli(logged, "logs", "prune", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["deleted"] == 0
    r = cli(logged, "logs", "prune", "--older-than", "20m", "--json")
    assert r.returncode == 0, r.stderr
    deleted = json.loads(r.stdout)["deleted"]
    assert 15 <= deleted <= 25
    with storage.decision_reader(load_config()) as reader:
        assert all(r.ok for r in reader.verify_chains())
    assert len(jsonl(logged, "--limit", "0")) == N - deleted  # the checkpoint record is not a decision


def _reader(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    q: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            q.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return q


@pytest.mark.e2e
def test_follow_sees_a_decision_written_after_it_started(backend: Backend) -> None:
    home = backend.home
    with running_daemon(home, AIGOV_LOG_FLUSH_INTERVAL="0.05") as d:
        token = create_key(home, "follow")["token"]
        until = time.time() + 5
        while (first := d.check(token, {"model": "m", "operation": "chat", "input_text": "before"})).status == 401:
            assert time.time() < until, "the daemon did not pick up the new key"
            time.sleep(0.05)
        assert first.status == 200
        # SIGINT as a terminal's Ctrl-C: restored in the child, since a shell that starts a job in the
        # background (`make test &`) passes SIGINT on ignored, and then nothing could stop it.
        proc = subprocess.Popen([AIGOV, "logs", "--follow", "--json", "--limit", "1"], stdout=subprocess.PIPE,
                                text=True, env=env_for(home), start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            lines = _reader(proc)
            deadline = time.time() + 10
            # The daemon may not have flushed "before" yet; wait until follow shows it (it has started then).
            seen = json.loads(lines.get(timeout=15))
            assert seen["request_id"] == first.json()["request_id"]
            second = d.check(token, {"model": "m2", "operation": "chat", "input_text": "card 4111 1111 1111 1111"})
            got = json.loads(lines.get(timeout=max(1.0, deadline - time.time())))
            assert got["request_id"] == second.json()["request_id"]
            assert got["decision"] == "block" and got["rules"] == ["pii.credit_card"] and got["model"] == "m2"
            assert "4111" not in json.dumps(got)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()  # never left behind: fail below instead
                proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
        assert proc.returncode == 0


def test_follow_library_emits_new_rows_only(logged: Path, backend: Backend) -> None:
    from aigov_cli.logs.query import follow
    from daemon import storage

    got: list[str] = []
    ticks = {"n": 0}

    def sleep(_: float) -> None:
        ticks["n"] += 1
        if ticks["n"] == 1:
            backend.write_decisions(records(3, start=N))

    with storage.decision_reader(backend.config()) as reader:
        follow(reader, Filter(decision="allow"), lambda r: got.append(r["request_id"]),
               stop=lambda: ticks["n"] >= 2, sleep=sleep)
    assert got == [f"req-{i:07d}" for i in range(N, N + 3) if i % 4]


_MEASURE = """
import sys
from aigov_cli.main import main
sys.argv = ["aigov", "logs", "export", "--format", sys.argv[1], "--out", sys.argv[2]]
try:
    main()
finally:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            sys.stderr.write("HWM %d\\n" % int(line.split()[1]))
"""


def _export_peak_kb(home: Path, fmt: str, out: Path) -> int:
    r = subprocess.run([sys.executable, "-c", _MEASURE, fmt, str(out)], capture_output=True, text=True,
                       env=env_for(home), timeout=120)
    assert r.returncode == 0, r.stderr
    return int(r.stderr.split("HWM ")[1].split()[0])


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc for peak RSS")
def test_export_of_100k_rows_in_bounded_memory(home: Path, tmp_path: Path) -> None:
    write_decisions(home / "aigov.db", list(records(1_000)))
    small = _export_peak_kb(home, "jsonl", tmp_path / "small.jsonl")
    write_decisions(home / "aigov.db", records(99_000, start=1_000), batch=10_000)
    out = tmp_path / "big.jsonl"
    big = _export_peak_kb(home, "jsonl", out)
    with out.open() as f:
        n = sum(1 for _ in f)
    assert n == 100_000
    size_mb = out.stat().st_size / 1e6
    assert size_mb > 40  # the rows, held at once, would need several times this in Python objects
    assert big < 150 * 1024, f"peak RSS {big} kB"
    assert big - small < 20 * 1024, f"peak RSS grew from {small} kB to {big} kB for 99x the rows"


def test_what_a_client_sent_cannot_drive_the_terminal_or_a_spreadsheet(home: Path, tmp_path: Path) -> None:
    from aigov_cli.commands.logs import _line
    from tests.audit_homes import record

    t = time.time() - 10
    sent = [record(1, t, model="\x1b[2J\x1b[31mgpt-evil", operation="ch\x1b[1mat"),
            record(2, t + 1, model="gpt\nfake-row", operation="[/]"),  # "[/]": rich markup, were it read as such
            record(3, t + 2, model='=HYPERLINK("http://x","y")', operation="ch\u202eat")]
    write_decisions(home / "aigov.db", sent)
    for args in (["logs", "--wide"], ["logs", "stats", "--since", "1h"]):
        r = cli(home, *args)
        assert r.returncode == 0, r.stderr
        assert "\x1b" not in r.stdout and "\u202e" not in r.stdout and "\nfake-row" not in r.stdout
        assert "\\x1b[2J\\x1b[31mgpt-evil" in r.stdout and "gpt\\nfake-row" in r.stdout
    assert "[/]" in cli(home, "logs", "--wide").stdout and "ch\\u202eat" in cli(home, "logs", "--wide").stdout
    line = _line(json.loads(cli(home, "logs", "--json", "--limit", "1", "--model", "gpt\nfake-row").stdout))
    assert "\n" not in line and "gpt\\nfake-row/[/]" in line
    out = tmp_path / "out.csv"
    assert cli(home, "logs", "export", "--format", "csv", "--out", str(out)).returncode == 0
    with out.open(newline="") as f:
        table = list(csv.DictReader(f))
    assert [row["model"] for row in table] == ["\x1b[2J\x1b[31mgpt-evil", "gpt\nfake-row", "'=HYPERLINK(\"http://x\",\"y\")"]
    assert table[0]["latency_ms"] == str(sent[0]["latency_ms"])  # numbers are never prefixed
    jl = tmp_path / "out.jsonl"
    assert cli(home, "logs", "export", "--format", "jsonl", "--out", str(jl)).returncode == 0
    assert json.loads(jl.read_text().splitlines()[-1])["model"] == '=HYPERLINK("http://x","y")'  # as sent
