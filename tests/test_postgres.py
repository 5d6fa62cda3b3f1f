"""What only the PostgreSQL store has: the change feed under concurrent writers, LISTEN/NOTIFY and its
reconnection, migrations under an advisory lock, clear connection errors, following the log when
writers commit out of id order, ``aigov db copy``. The behaviour both stores share is tested through
the ``backend`` fixture in the other files."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from daemon.storage.postgres_db import MIGRATIONS, SCHEMA_VERSION, PgTarget, connect, migrate, open_migrated
from daemon.storage.postgres_decisions import append_chained, glob_regex
from daemon.storage.postgres_keys import PostgresKeyStore
from tests.audit_homes import records
from tests.backends import Backend, drop_schema, needs_postgres, new_schema, pg_sql, run_sync, schema_url
from tests.daemon_proc import AIGOV, cli, create_key, env_for, free_port, running_daemon
from tests.pg_cluster import PASSWORD, Cluster, needs_initdb

pytestmark = needs_postgres


@pytest.fixture
def url() -> Iterator[str]:
    """A schema of this test's own on the test server."""
    schema = new_schema()
    yield schema_url(schema)
    drop_schema(schema)


@pytest.fixture
async def keys(url: str) -> AsyncIterator[PostgresKeyStore]:
    store = PostgresKeyStore(PgTarget.parse(url))
    await store.open()
    yield store
    await store.close()


# --- the key change feed --------------------------------------------------------------------


async def test_a_change_that_took_its_seq_first_but_committed_last_is_not_missed(
    url: str, keys: PostgresKeyStore
) -> None:
    a = await keys.create("a", b"ha", 10, 60.0, None, "default")
    b = await keys.create("b", b"hb", 10, 60.0, None, "default")
    seen = await keys.changed_since(0)
    cursor = max(r.seq for r in seen)
    first = await connect(PgTarget.parse(url))
    try:
        # Writer 1 takes its change number and waits; writer 2 takes the next one and commits first.
        tx = first.transaction()
        await tx.start()
        await first.execute("UPDATE api_keys SET revoked_at = 1 WHERE key_id = $1", a.key_id)
        late_seq = await first.fetchval("SELECT seq FROM api_keys WHERE key_id = $1", a.key_id)
        await keys.update(b.key_id, name="b2")
        got = await keys.changed_since(cursor)
        assert [(r.key_id, r.name) for r in got] == [(b.key_id, "b2")]
        assert late_seq < got[0].seq  # the late change's number is below what a reader has seen
        cursor = max(cursor, got[0].seq)
        await tx.commit()
    finally:
        await first.close()
    # "seq > cursor" alone would never return it; the horizon does, once.
    got = await keys.changed_since(cursor)
    assert [(r.key_id, r.status()) for r in got] == [(a.key_id, "revoked")]
    assert got[0].seq == late_seq
    assert await keys.changed_since(max(cursor, got[0].seq)) == []


async def test_a_change_made_by_hand_in_sql_reaches_the_feed(url: str, keys: PostgresKeyStore) -> None:
    a = await keys.create("a", b"ha", 10, 60.0, None, "default")
    await keys.changed_since(0)
    pg_sql(url, "UPDATE api_keys SET rate_limit = 5 WHERE key_id = ?", a.key_id)
    got = await keys.changed_since(a.seq)
    assert [(r.key_id, r.rate_limit) for r in got] == [(a.key_id, 5)]
    await keys.touch({a.key_id: 123.0})  # last use is not a change
    assert await keys.changed_since(got[0].seq) == []


async def test_a_notification_wakes_the_waiting_daemon(url: str, keys: PostgresKeyStore) -> None:
    a = await keys.create("a", b"ha", 10, 60.0, None, "default")
    await keys.changed_since(0)
    waiter = asyncio.create_task(keys.wait_for_changes(60))
    for _ in range(500):  # the listening connection comes up in the background
        if keys.listening:
            break
        await asyncio.sleep(0.01)
    assert keys.listening
    other = PostgresKeyStore(PgTarget.parse(url))  # another process's CLI
    await other.open()
    await other.revoke(a.key_id, 1.0)
    await other.close()
    await asyncio.wait_for(waiter, 10)  # long before its 60 s
    assert [r.status() for r in await keys.changed_since(a.seq)] == ["revoked"]


async def test_a_lost_listener_reconnects_and_resyncs_everything(url: str, keys: PostgresKeyStore,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    a = await keys.create("a", b"ha", 10, 60.0, None, "default")
    await keys.changed_since(0)
    waiter = asyncio.create_task(keys.wait_for_changes(60))
    for _ in range(500):
        if keys.listening:
            break
        await asyncio.sleep(0.01)
    killed = pg_sql(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE application_name = 'aigov key listener' AND query ~ 'LISTEN|SELECT 1'")
    assert killed
    await asyncio.wait_for(waiter, 10)  # woken by the reconnection
    for _ in range(500):
        if keys.reconnects and keys.listening:
            break
        await asyncio.sleep(0.01)
    assert keys.reconnects >= 1
    # The resync reads everything; a key changed in a way the feed cannot see (its seq put back by hand,
    # as a notification lost while away would be) shows up again.
    pg_sql(url, "ALTER TABLE api_keys DISABLE TRIGGER api_keys_changed")
    pg_sql(url, "UPDATE api_keys SET name = 'renamed', seq = seq + 100 WHERE key_id = ?", a.key_id)
    got = await keys.changed_since(a.seq + 1000)
    assert [(r.key_id, r.name) for r in got] == [(a.key_id, "renamed")]


# --- migrations -----------------------------------------------------------------------------


def _catalog(url: str) -> list[tuple[Any, ...]]:
    """Tables, columns, indexes, sequences, triggers and functions of a schema, comparable between schemas."""
    schema = PgTarget.parse(url).schema
    cols = pg_sql(url, "SELECT table_name, column_name, data_type, is_nullable, column_default, ordinal_position "
                       "FROM information_schema.columns WHERE table_schema = ? ORDER BY 1, 6", schema)
    idx = pg_sql(url, "SELECT indexname, replace(indexdef, ?, 'S') FROM pg_indexes WHERE schemaname = ? ORDER BY 1",
                 schema, schema)
    trg = pg_sql(url, "SELECT tgname, tgtype FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                      "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ? ORDER BY 1", schema)
    fns = pg_sql(url, "SELECT proname, prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                      "WHERE n.nspname = ? ORDER BY 1", schema)
    seqs = pg_sql(url, "SELECT sequence_name, data_type FROM information_schema.sequences WHERE sequence_schema = ? "
                       "ORDER BY 1", schema)
    return [*cols, *idx, *trg, *fns, *seqs]


@pytest.mark.parametrize("version", [0, *[m.version for m in MIGRATIONS[:-1]]])
def test_a_schema_at_every_earlier_version_migrates_to_what_a_fresh_one_is(version: int) -> None:
    fresh, old = new_schema(), new_schema()
    try:
        async def go() -> None:
            conn = await open_migrated(PgTarget.parse(schema_url(fresh)))
            await conn.close()
            conn = await connect(PgTarget.parse(schema_url(old)))
            try:
                assert await migrate(conn, old, MIGRATIONS[:version]) == list(range(1, version + 1))
                if version >= 1:  # data written at the old version survives
                    await conn.execute("INSERT INTO decisions (time, request_id, decision, rules, reasons, prev_hash, "
                                       "hash) VALUES (1, 'r1', 'allow', '[]', '[]', 'p', 'h')")
                assert await migrate(conn, old) == list(range(version + 1, SCHEMA_VERSION + 1))
                assert await migrate(conn, old) == []
            finally:
                await conn.close()

        run_sync(go)
        assert _catalog(schema_url(old)) == _catalog(schema_url(fresh))
        if version >= 1:
            assert pg_sql(schema_url(old), "SELECT request_id, kind, chain, seq FROM decisions") == [
                ("r1", "decision", "legacy", 1)]
    finally:
        drop_schema(fresh)
        drop_schema(old)


def test_a_newer_schema_is_refused(url: str, home: Path) -> None:
    run_sync(lambda: _open_close(url))
    pg_sql(url, "INSERT INTO schema_migrations VALUES (999, 'future', 0)")
    r = cli(home, "logs", AIGOV_DATABASE_URL=url)
    assert r.returncode == 2 and "newer than this aigov" in r.stderr, r.stderr


async def _open_close(url: str) -> None:
    conn = await open_migrated(PgTarget.parse(url))
    await conn.close()


@pytest.mark.slow
def test_ten_processes_starting_at_once_migrate_once(url: str, home: Path) -> None:
    env = env_for(home, AIGOV_DATABASE_URL=url)
    procs = [subprocess.Popen([AIGOV, "db", "upgrade", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(10)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    applied = [json.loads(o[0])["applied"] for o in outs]
    assert sorted(applied, key=len) == [[]] * 9 + [[1, 2, 3]], applied
    assert pg_sql(url, "SELECT version FROM schema_migrations ORDER BY 1") == [(1,), (2,), (3,)]
    status = json.loads(cli(home, "db", "status", "--json", AIGOV_DATABASE_URL=url).stdout)
    assert status["backend"] == "postgresql" and status["pending_migrations"] == [] and status["schema_version"] == 3
    assert status["rows"] == {"api_keys": 0, "decisions": 0, "chains": 0}


def test_db_status_of_an_empty_schema_migrates_nothing(url: str, home: Path) -> None:
    r = cli(home, "db", "status", "--json", AIGOV_DATABASE_URL=url)
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    assert status["schema_version"] == 0 and status["pending_migrations"] == [1, 2, 3] and status["rows"] is None
    assert status["location"] == url
    assert pg_sql(url, "SELECT count(*) FROM information_schema.schemata WHERE schema_name = ?",
                  PgTarget.parse(url).schema) == [(0,)]


def test_db_status_says_which_database_it_looked_at(url: str, home: Path) -> None:
    parts = urlsplit(url)
    schema = parse_qs(parts.query)["schema"][0]
    want = {"host": parts.hostname, "port": parts.port or 5432, "database": parts.path.strip("/"),
            "schema": schema, "user": parts.username or ""}
    r = cli(home, "db", "status", "--json", AIGOV_DATABASE_URL=url)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["database"] == want
    text = cli(home, "db", "status", AIGOV_DATABASE_URL=url).stdout
    assert f"database  host {want['host']}, port {want['port']}, database {want['database']}, schema {schema}" in text
    assert json.loads(cli(home, "db", "status", "--json").stdout)["database"] == {"path": str(home / "aigov.db")}


# --- connection errors: one line, host and database named, exit 2, no password ---------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if subprocess.run(["true"]).returncode != 0:  # pragma: no cover
        pytest.skip("no shell")
    c = Cluster()
    c.start()
    yield c
    c.destroy()


def _one_line_error(r: subprocess.CompletedProcess[str], *must: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aigov: error: "), r.stderr
    assert "Traceback" not in r.stderr and PASSWORD not in r.stderr + r.stdout and "hunter2" not in r.stderr
    for m in must:
        assert m in lines[0], lines[0]


@needs_initdb
@pytest.mark.parametrize("command", [["keys", "list"], ["logs"], ["db", "status"]])
def test_bad_password_missing_database_refused_and_wrong_url(home: Path, cluster: Cluster, command: list[str]) -> None:
    _one_line_error(cli(home, *command, AIGOV_DATABASE_URL=cluster.url(password="hunter2")),
                    "127.0.0.1", "database postgres", "authentication failed")
    _one_line_error(cli(home, *command, AIGOV_DATABASE_URL=cluster.url(database="nosuchdb")),
                    f"127.0.0.1:{cluster.port}", "database nosuchdb", "does not exist")
    closed = free_port()
    _one_line_error(cli(home, *command, AIGOV_DATABASE_URL=f"postgresql://u:hunter2@127.0.0.1:{closed}/app"),
                    f"127.0.0.1:{closed}", "database app", "refused")
    _one_line_error(cli(home, *command, AIGOV_DATABASE_URL="postgresql://u:hunter2@127.0.0.1:99999/app"), "port")
    _one_line_error(cli(home, *command, AIGOV_DATABASE_URL="postgresql://u:hunter2@no-such-host.invalid:5432/app"),
                    "no-such-host.invalid", "database app")


@needs_initdb
def test_serve_with_a_bad_password_exits_2_with_one_line(home: Path, cluster: Cluster) -> None:
    r = subprocess.run([AIGOV, "serve", "--port", str(free_port())], capture_output=True, text=True, timeout=60,
                       env=env_for(home, AIGOV_DATABASE_URL=cluster.url(password="hunter2")))
    assert r.returncode == 2, r.stderr
    assert "authentication failed" in r.stderr and "hunter2" not in r.stderr and "Traceback" not in r.stderr


@needs_initdb
def test_the_right_password_works(home: Path, cluster: Cluster) -> None:
    url = cluster.url() + "?schema=pw_test"
    r = cli(home, "keys", "create", "--name", "pw", "--json", AIGOV_DATABASE_URL=url)
    assert r.returncode == 0, r.stderr
    key = json.loads(r.stdout)
    shown = cli(home, "keys", "show", key["key_id"], "--json", AIGOV_DATABASE_URL=url)
    assert shown.returncode == 0 and json.loads(shown.stdout)["name"] == "pw"
    status = cli(home, "db", "status", AIGOV_DATABASE_URL=url)
    assert PASSWORD not in status.stdout and "postgres:***@127.0.0.1" in status.stdout


# --- the decision log ------------------------------------------------------------------------


def test_follow_sees_a_batch_that_took_its_ids_first_but_committed_last(url: str) -> None:
    from daemon.storage.interface import DecisionFilter
    from daemon.storage.postgres_decisions import PostgresDecisionReader
    from daemon.storage.records import VALUE_FIELDS

    def vals(n: int, start: int) -> list[tuple[Any, ...]]:
        return [tuple(r[f] for f in VALUE_FIELDS) for r in records(n, start=start)]

    run_sync(lambda: _open_close(url))
    reader = PostgresDecisionReader(PgTarget.parse(url))
    try:
        cursor = reader.follow_start(reader.max_id())

        async def go() -> tuple[list[int], object]:
            slow, fast = await connect(PgTarget.parse(url)), await connect(PgTarget.parse(url))
            try:
                tx = slow.transaction()
                await tx.start()
                await append_chained(slow, "host/w0", vals(3, 0))  # takes ids 1..3, commits last
                async with fast.transaction():
                    await append_chained(fast, "host/w1", vals(2, 3))  # ids 4, 5, committed first
                rows, after = await asyncio.to_thread(reader.follow_next, DecisionFilter(), cursor)
                await tx.commit()
                return [r["id"] for r in rows], after
            finally:
                await slow.close()
                await fast.close()

        shown, after = run_sync(go)
        assert shown == [4, 5]
        rows, _ = reader.follow_next(DecisionFilter(), after)
        assert [r["id"] for r in rows] == [1, 2, 3]  # below the ids already shown: "id > 5" would miss them
        # The library loop, from the same start, shows each record once.
        got: list[str] = []
        from aigov_cli.logs.query import follow

        ticks = iter(range(3))
        follow(reader, DecisionFilter(), lambda r: got.append(r["request_id"]), cursor=cursor,
               stop=lambda: next(ticks, None) is None, sleep=lambda _: None)
        assert sorted(got) == [f"req-{i:07d}" for i in range(5)]
    finally:
        reader.close()


def test_a_nul_character_is_stored_as_a_replacement_and_the_chain_verifies(backend_pg: Backend) -> None:
    from daemon.storage.records import Entry

    e = Entry(1.0, "r-nul", "k", "gpt\x00x", "chat", "input", "allow", (), (), "a\x00b", 0.1, "default", "v", "ok",
              None)

    async def go() -> None:
        store = backend_pg.decision_store()
        await store.open()
        await store.write([e])
        await store.close()

    run_sync(go)
    assert backend_pg.sql("SELECT model, input FROM decisions") == [("gpt\ufffdx", "a\ufffdb")]
    with backend_pg.reader() as r:
        assert all(rep.ok for rep in r.verify_chains())


@pytest.fixture
def backend_pg(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    from tests.backends import make_backend

    b, cleanup = make_backend("postgresql", home, monkeypatch)
    yield b
    cleanup()


@pytest.mark.parametrize(("pattern", "yes", "no"), [
    ("pii.*", ["pii.email", "pii."], ["xpii.email", "PII.email"]),
    ("gpt-4?", ["gpt-4o"], ["gpt-4", "gpt-4oo"]),
    ("[ab]*", ["apple", "b"], ["cat"]),
    ("[^ab]*", ["cat"], ["apple"]),
    ("a(b)+c$", ["a(b)+c$"], ["abc"]),
    ("[unclosed", [], ["[unclosed", "u"]),
    ("[]x]", ["]", "x"], ["y"]),
    ("[^]x]", ["y"], ["]", "x"]),
    ("a\\b.c", ["a\\b.c"], ["a\\bxc"]),
])
def test_glob_matches_as_sqlite_glob_does(pattern: str, yes: list[str], no: list[str]) -> None:
    import re
    import sqlite3

    conn = sqlite3.connect(":memory:")
    rx = glob_regex(pattern)
    for s in yes + no:
        want = bool(conn.execute("SELECT ? GLOB ?", (s, pattern)).fetchone()[0])
        assert bool(re.search(rx, s)) == want, (pattern, s)
        assert want == (s in yes)


# --- aigov db copy ------------------------------------------------------------------------------


def test_db_copy_moves_keys_and_decisions_and_output_is_the_same(home: Path, url: str) -> None:
    from tests.backends import Backend as B

    sqlite_home = B("sqlite", home)
    create_key(home, "keep")
    revoked = create_key(home, "revoked")
    gone = create_key(home, "gone")
    assert cli(home, "keys", "revoke", revoked["key_id"]).returncode == 0
    from daemon.config import load_config
    from daemon.keyadmin import with_store

    run_sync(lambda: with_store(load_config(), lambda s: s.delete(gone["key_id"])))
    sqlite_home.write_decisions(records(30), chain="host-a/w0")
    sqlite_home.write_decisions(records(20, start=30), chain="host-b/w1")
    before = {args: cli(home, *args).stdout for args in (("logs", "--json", "--limit", "0", "--show-input"),
                                                          ("logs", "stats", "--json"), ("keys", "list", "--all",
                                                                                         "--json"))}
    r = cli(home, "db", "copy", "--to", url, "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report == {**report, "decisions": 50, "chains": 2, "keys": 2, "deleted_keys": 1}
    after = {args: cli(home, *args, AIGOV_DATABASE_URL=url).stdout for args in before}
    assert after == before
    audit = json.loads(cli(home, "audit", "--json", "--skip-deps", AIGOV_DATABASE_URL=url).stdout)
    assert "AG501" not in {f["id"] for f in audit["findings"]}
    # A second copy is refused, and says why.
    again = cli(home, "db", "copy", "--to", url)
    assert again.returncode == 2 and "only fills an empty store" in again.stderr


def test_db_copy_refuses_a_broken_chain_and_leaves_the_target_empty(home: Path, url: str) -> None:
    from tests.backends import Backend as B

    sqlite_home = B("sqlite", home)
    sqlite_home.write_decisions(records(10))
    sqlite_home.sql("UPDATE decisions SET model = 'edited' WHERE id = 4")
    r = cli(home, "db", "copy", "--to", url)
    assert r.returncode == 2 and "does not verify" in r.stderr and "id 4" in r.stderr, r.stderr
    assert pg_sql(url, "SELECT count(*) FROM decisions") == [(0,)]


def test_db_copy_usage_errors(home: Path, url: str) -> None:
    r = cli(home, "db", "copy", "--to", "mysql://u:hunter2@h/db")
    assert r.returncode == 2 and "postgresql://" in r.stderr and "hunter2" not in r.stderr
    r = cli(home, "db", "copy", "--to", "postgresql://u:hunter2@/")  # libpq's defaults would pick a database
    assert r.returncode == 2 and r.stderr == ("aigov: error: --to postgresql://u:***@/: names no host and no "
                                              "database: write it postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE\n")
    r = cli(home, "db", "copy", "--to", url)
    assert r.returncode == 2 and "no SQLite database" in r.stderr
    r = cli(home, "db", "copy", "--to", url, AIGOV_DATABASE_URL=url)
    assert r.returncode == 2 and "copies from the SQLite store" in r.stderr


def test_db_copy_refuses_while_the_homes_daemon_runs(home: Path, url: str) -> None:
    create_key(home, "keep")
    with running_daemon(home) as d:  # decisions it wrote after the copy would stay behind in SQLite
        r = cli(home, "db", "copy", "--to", url)
        _one_line_error(r, f"the daemon (pid {d.proc.pid}) is running on {home / 'aigov.db'}: stop it first")
    assert pg_sql(url, "SELECT count(*) FROM information_schema.schemata WHERE schema_name = ?",
                  PgTarget.parse(url).schema) == [(0,)]  # refused before anything was made
    r = cli(home, "db", "copy", "--to", url)
    assert r.returncode == 0, r.stderr


def test_db_copy_refusal_of_a_store_in_use_names_the_schema(home: Path, url: str) -> None:
    create_key(home, "here")
    assert cli(home, "keys", "create", "--name", "there", AIGOV_DATABASE_URL=url).returncode == 0
    target = PgTarget.parse(url)
    _one_line_error(cli(home, "db", "copy", "--to", url),
                    f"PostgreSQL at {target.host}:{target.port}, database {target.database}, schema {target.schema} "
                    "already holds 1 key(s) and 0 decision(s)")
