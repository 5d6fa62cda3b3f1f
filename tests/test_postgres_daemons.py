"""Real ``aigov serve`` processes on PostgreSQL: two daemons sharing keys and one audit log, and a daemon
whose database goes away under load (a private cluster the test stops and starts)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.backends import Backend, drop_schema, needs_postgres, new_schema, schema_url
from tests.daemon_proc import DaemonProc, cli, running_daemon, until
from tests.pg_cluster import Cluster, needs_initdb

pytestmark = [needs_postgres, pytest.mark.e2e, pytest.mark.slow]

BODY = {"model": "gpt-4o", "operation": "chat", "input_text": "hello there"}


def _homes(tmp_path: Path, url: str, n: int) -> list[Path]:
    """``n`` homes on one database, sharing the fingerprint secret as daemons of one deployment should."""
    secret = tmp_path / "fingerprint.key"
    homes = []
    for i in range(n):
        h = tmp_path / f"home{i}"
        h.mkdir(mode=0o700)
        (h / "config.toml").write_text(f'database_url = "{url}"\nfingerprint_secret_file = "{secret}"\n'
                                       "log_flush_interval = 0.2\n")
        homes.append(h)
    return homes


@pytest.fixture
def url() -> Iterator[str]:
    schema = new_schema()
    yield schema_url(schema)
    drop_schema(schema)


def _verify(url: str, home: Path) -> tuple[int, list[object]]:
    b = Backend("postgresql", home, url)
    with b.reader() as r:
        reports = r.verify_chains()
    n = b.sql("SELECT count(*) FROM decisions WHERE kind = 'decision'")[0][0]
    return int(n), reports  # type: ignore[return-value]


def test_two_daemons_share_keys_and_one_audit_log(tmp_path: Path, url: str) -> None:
    a_home, b_home = _homes(tmp_path, url, 2)
    with ExitStack() as stack:
        daemons: list[DaemonProc] = [stack.enter_context(running_daemon(h)) for h in (a_home, b_home)]
        r = cli(a_home, "keys", "create", "--name", "shared", "--rate-limit", "100000/1s", "--json")
        assert r.returncode == 0, r.stderr
        token = json.loads(r.stdout)["token"]
        for d in daemons:  # created through one daemon's home, known to both
            until(lambda d=d: d.check(token, BODY).status == 200, 5)

        # 10,000 checks spread over both.
        def one(i: int) -> int:
            return daemons[i % 2].check(token, {**BODY, "input_text": f"check {i}"}).status

        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(one, range(10_000)))
        assert statuses.count(200) == 10_000, {s: statuses.count(s) for s in set(statuses)}

        # Revoked through one CLI call: refused by both within a second.
        assert cli(b_home, "keys", "revoke", json.loads(r.stdout)["key_id"]).returncode == 0
        t0 = time.monotonic()
        for d in daemons:
            until(lambda d=d: d.check(token, BODY).status == 401, 1.0 - (time.monotonic() - t0), step=0.01)
        for d in daemons:
            assert d.stop() == 0
    n, reports = _verify(url, a_home)
    assert n == 10_000 + 2  # and the two that saw the key arrive
    assert reports and all(rep.ok for rep in reports), reports  # type: ignore[attr-defined]


@needs_initdb
def test_the_database_stopped_for_5s_under_load_loses_nothing(tmp_path: Path) -> None:
    cluster = Cluster()
    try:
        cluster.start()
        url = cluster.url() + "?schema=faults"
        (home,) = _homes(tmp_path, url, 1)
        r = cli(home, "keys", "create", "--name", "load", "--rate-limit", "100000/1s", "--json")
        assert r.returncode == 0, r.stderr
        token = json.loads(r.stdout)["token"]
        answered: list[str] = []
        other: list[int] = []
        stop = threading.Event()
        with running_daemon(home) as d:
            until(lambda: d.check(token, BODY).status == 200, 5)

            def load() -> None:
                i = 0
                while not stop.is_set():
                    resp = d.check(token, {**BODY, "input_text": f"load {i}"})
                    if resp.status == 200:
                        answered.append(resp.json()["request_id"])
                    else:
                        other.append(resp.status)
                    i += 1
                    time.sleep(0.002)

            threads = [threading.Thread(target=load) for _ in range(2)]
            for t in threads:
                t.start()
            until(lambda: len(answered) > 200, 10)
            cluster.stop()
            down = time.monotonic()
            # Readiness says so while the checks go on being answered (and queued).
            until(lambda: d.request("GET", "/readyz").status == 503, 5)
            ready = d.request("GET", "/readyz").json()
            assert any("database" in p for p in ready["problems"]), ready
            during = len(answered)
            time.sleep(max(0.0, 5 - (time.monotonic() - down)))
            assert len(answered) > during  # answered all along
            assert d.proc.poll() is None
            cluster.start()
            until(lambda: d.request("GET", "/readyz").status == 200, 30, step=0.1)
            stop.set()
            for t in threads:
                t.join()
            assert d.proc.poll() is None  # the daemon never exited
            assert d.stop() == 0  # SIGTERM flushes what is queued
            log = d.output()
            assert "decision log write failed" in log and "writes succeed again" in log, log[-2000:]
            assert "Traceback" not in log, log[-2000:]
        assert not other, other[:10]
        b = Backend("postgresql", home, url)
        stored = {row[0] for row in b.sql("SELECT request_id FROM decisions WHERE key_id IS NOT NULL")}
        missing = set(answered) - stored
        assert not missing, f"{len(missing)} answered decisions were lost"
        with b.reader() as reader:
            assert all(rep.ok for rep in reader.verify_chains())
    finally:
        cluster.destroy()

