"""The batch writer (flush by size, by interval, on shutdown, failures) and the hash chains."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from daemon.decisionlog import DecisionLog, QueueFull
from daemon.policy.model import Reason
from daemon.storage.interface import ChainReport, DecisionStore
from daemon.storage.records import Entry, Fingerprinter, RecordBuilder, stored_input
from daemon.storage.sqlite_db import WalCheckpointer
from daemon.storage.sqlite_decisions import SqliteDecisionReader, SqliteDecisionStore
from tests.backends import Backend, run_sync

BUILDER = RecordBuilder(Fingerprinter(b"k" * 32))


def make_store(path: Path, chain: str = "test/w0", log_inputs: str = "redacted") -> SqliteDecisionStore:
    return SqliteDecisionStore(path, chain, RecordBuilder(Fingerprinter(b"k" * 32), log_inputs))


class Wrapped(DecisionStore):
    """A real store of either backend, remembering each transaction's size; while ``failing`` is set,
    every write raises it first."""

    def __init__(self, inner: DecisionStore) -> None:
        self.inner = inner
        self.chain = inner.chain
        self.batches: list[int] = []
        self.failing: Exception | None = None
        self.attempts = 0

    async def open(self) -> None:
        await self.inner.open()

    async def write(self, batch: Sequence[Entry]) -> None:
        self.attempts += 1
        if self.failing is not None:
            raise self.failing
        self.batches.append(len(batch))
        await self.inner.write(batch)

    async def close(self) -> None:
        await self.inner.close()


def recording(backend: Backend) -> Wrapped:
    return Wrapped(backend.decision_store())


def entry(i: int, text: str = "hello", reasons: tuple[Reason, ...] = ()) -> Entry:
    return Entry(1000.0 + i, f"req-{i}", "key", "gpt-4o", "chat", "input", "allow", (), reasons, text, 0.5,
                 "default", "v1", "ok", None)


def rows(backend: Backend) -> list[tuple[str, str | None]]:
    return [(r[0], r[1]) for r in backend.sql("SELECT request_id, input FROM decisions ORDER BY id")]


def write(backend: Backend, batches: list[list[Entry]], chain: str = "test/w0") -> None:
    """Write each batch in one transaction of a writer of ``chain``."""
    async def go() -> None:
        store = backend.decision_store(chain)
        await store.open()
        try:
            for b in batches:
                await store.write(b)
        finally:
            await store.close()

    run_sync(go)


async def wait_until(cond, limit: float = 2.0) -> bool:  # type: ignore[no-untyped-def]
    for _ in range(int(limit / 0.01)):
        if cond():
            return True
        await asyncio.sleep(0.01)
    return bool(cond())


async def test_flush_by_size(backend: Backend) -> None:
    store = recording(backend)
    log = DecisionLog(store, batch_size=10, flush_interval=3600, max_batch=10)
    await log.start()
    for i in range(9):
        assert log.offer(entry(i))
    assert not await wait_until(lambda: store.batches, 0.2)  # 9 < batch size: nothing written yet
    log.offer(entry(9))
    assert await wait_until(lambda: store.batches == [10])  # the tenth record triggers the write
    for i in range(10, 35):
        log.offer(entry(i))
    assert await wait_until(lambda: sum(store.batches) >= 30)
    assert store.batches == [10, 10, 10]  # a backlog drains in batches of at most max_batch
    await log.close()
    assert store.batches == [10, 10, 10, 5]  # the rest on shutdown
    assert [r[0] for r in rows(backend)] == [f"req-{i}" for i in range(35)]


async def test_backlog_drains_in_larger_transactions(backend: Backend) -> None:
    store = recording(backend)
    log = DecisionLog(store, batch_size=50, flush_interval=3600, max_batch=1000, max_queue=5000)
    for i in range(2500):  # queued before the writer starts: a backlog
        log.offer(entry(i))
    await log.start()
    await log.close()
    assert store.batches == [1000, 1000, 500]


async def test_flush_by_interval(backend: Backend) -> None:
    store = recording(backend)
    log = DecisionLog(store, batch_size=1000, flush_interval=0.05)
    await log.start()
    log.offer(entry(1))
    log.offer(entry(2))
    for _ in range(200):
        if store.batches:
            break
        await asyncio.sleep(0.01)
    assert store.batches == [2]
    await log.close()


async def test_flush_on_shutdown_writes_everything(backend: Backend) -> None:
    store = recording(backend)
    log = DecisionLog(store, batch_size=50, flush_interval=3600, max_queue=1000)
    await log.start()
    for i in range(333):
        assert log.offer(entry(i))
    await log.close()
    assert len(rows(backend)) == 333
    assert not log.offer(entry(999))  # closed: refuses instead of dropping silently


async def test_full_queue_raises_after_bounded_wait(tmp_path: Path) -> None:
    log = DecisionLog(make_store(tmp_path / "d.db"), max_queue=2, enqueue_timeout=0.05)
    # Writer not started: nothing drains the queue.
    assert log.offer(entry(1)) and log.offer(entry(2))
    assert not log.offer(entry(3))
    with pytest.raises(QueueFull):
        await log.put(entry(3))


def test_log_inputs_modes() -> None:
    r = (Reason("pii.email", "email", "monitor", "email address", 6, 17),)
    text = "write a@b.example now"
    assert stored_input(text, r, "none") is None
    assert stored_input(text, r, "full") == text
    assert stored_input(text, r, "redacted") == "write [REDACTED:email] now"


def _store_with(backend: Backend, n: int) -> Backend:
    write(backend, [[entry(i) for i in range(n)]])
    return backend


def only(backend: Backend) -> ChainReport:
    """The one chain's report."""
    with backend.reader() as r:
        reports = r.verify_chains()
    assert len(reports) == 1, reports
    return reports[0]


def test_chain_verifies(backend: Backend) -> None:
    _store_with(backend, 20)
    rep = only(backend)
    assert rep.ok and rep.records == 20 and rep.chain == "test/w0"


def test_edited_record_breaks_chain(backend: Backend) -> None:
    db = _store_with(backend, 20)
    db.sql("UPDATE decisions SET decision = 'block' WHERE id = 7")
    rep = only(db)
    assert not rep.ok and rep.first_bad_id == 7 and "edited" in (rep.problem or "")


def test_edited_record_with_its_own_hash_recomputed_breaks_the_link(backend: Backend) -> None:
    # Whoever edits a record and recomputes its hash still breaks the next record's link.
    from daemon.storage.records import ROW_FIELDS, record_hash

    db = _store_with(backend, 20)
    db.sql("UPDATE decisions SET decision = 'block' WHERE id = 7")
    row = dict(zip(ROW_FIELDS, db.sql(f"SELECT {', '.join(ROW_FIELDS)} FROM decisions WHERE id = 7")[0], strict=True))
    db.sql("UPDATE decisions SET hash = ? WHERE id = 7", record_hash(row))
    rep = only(db)
    assert not rep.ok and rep.first_bad_id == 8 and "link" in (rep.problem or "")


def test_deleted_record_breaks_chain(backend: Backend) -> None:
    db = _store_with(backend, 20)
    db.sql("DELETE FROM decisions WHERE id = 11")
    rep = only(db)
    assert not rep.ok and rep.first_bad_id == 12 and "missing" in (rep.problem or "")


def test_reordered_records_break_chain(backend: Backend) -> None:
    db = _store_with(backend, 20)
    # Swap the places of records 5 and 6 in the chain.
    db.sql("UPDATE decisions SET seq = -1 WHERE seq = 5")
    db.sql("UPDATE decisions SET seq = 5 WHERE seq = 6")
    db.sql("UPDATE decisions SET seq = 6 WHERE seq = -1")
    rep = only(db)
    assert not rep.ok and rep.first_bad_id == 6


def test_inserted_record_breaks_chain(backend: Backend) -> None:
    from daemon.storage.records import STORED_FIELDS

    db = _store_with(backend, 20)
    # A forged record after seq 10 (a copy of it): the records after it move up by one, the head too.
    db.sql("UPDATE decisions SET seq = seq + 1000 WHERE seq > 10")
    db.sql("UPDATE decisions SET seq = seq - 999 WHERE seq > 1000")
    cols = ", ".join(STORED_FIELDS)
    copied = cols.replace("seq", "11")
    db.sql(f"INSERT INTO decisions ({cols}) SELECT {copied} FROM decisions WHERE seq = 10")
    db.sql("UPDATE chains SET head_seq = head_seq + 1")
    forged = db.sql("SELECT id FROM decisions WHERE seq = 11")[0][0]
    rep = only(db)
    assert not rep.ok and rep.first_bad_id == forged, rep


def test_deleted_tail_breaks_chain(backend: Backend) -> None:
    db = _store_with(backend, 20)
    db.sql("DELETE FROM decisions WHERE seq > 17")
    rep = only(db)
    assert not rep.ok and "newest 3 record(s) were deleted" in (rep.problem or "")


def test_deleted_head_without_checkpoint_breaks_chain(backend: Backend) -> None:
    db = _store_with(backend, 10)
    db.sql("DELETE FROM decisions WHERE id <= 3")
    rep = only(db)
    assert not rep.ok and rep.first_bad_id == 4 and "without a checkpoint" in (rep.problem or "")


def test_records_of_an_unregistered_chain_are_reported(backend: Backend) -> None:
    db = _store_with(backend, 5)
    db.sql("UPDATE decisions SET chain = 'forged' WHERE seq = 5")
    with db.reader() as r:
        reports = {rep.chain: rep for rep in r.verify_chains()}
    assert not reports["forged"].ok and "not registered" in (reports["forged"].problem or "")
    assert not reports["test/w0"].ok  # and its own chain lost its head


def test_prune_with_checkpoint_still_verifies(backend: Backend) -> None:
    db = _store_with(backend, 30)
    with db.reader() as reader:
        deleted = reader.prune(before=1000.0 + 10)  # entries 0..9 are older
    assert deleted == 10
    rep = only(db)
    assert rep.ok, rep
    kinds = [k for (k,) in db.sql("SELECT kind FROM decisions ORDER BY id")]
    assert kinds[-1] == "checkpoint" and kinds.count("decision") == 20
    # Pruning again later (everything old now) still leaves a chain that verifies.
    with db.reader() as reader:
        assert reader.prune(before=1e12) == 20  # every decision; the two checkpoints stay
    rep = only(db)
    assert rep.ok and rep.records == 2, rep


def test_a_prune_says_what_it_pruned_in_its_checkpoint(backend: Backend) -> None:
    db = _store_with(backend, 30)
    with db.reader() as reader:
        assert reader.prune(before=1000.0) == 0  # nothing older: no checkpoint either
    assert [k for (k,) in db.sql("SELECT kind FROM decisions")].count("checkpoint") == 0
    last_pruned = db.sql("SELECT hash FROM decisions WHERE seq = 10")[0][0]
    with db.reader() as reader:
        assert reader.prune(before=1000.0 + 10) == 10
    (request_id, reasons, seq), = db.sql("SELECT request_id, reasons, seq FROM decisions WHERE kind = 'checkpoint'")
    assert request_id == "checkpoint-test/w0-11" and seq == 31
    assert json.loads(reasons) == {"first_kept_seq": 11, "pruned_last_hash": last_pruned, "pruned_records": 10}
    assert min(s for (s,) in db.sql("SELECT seq FROM decisions WHERE kind = 'decision'")) == 11


def test_a_prune_deletes_in_batches_and_counts_them_all(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    from daemon.storage import postgres_decisions, sqlite_decisions

    for module in (sqlite_decisions, postgres_decisions):
        monkeypatch.setattr(module, "PRUNE_BATCH", 4)
    db = _store_with(backend, 30)
    with db.reader() as reader:
        assert reader.prune(before=1000.0 + 22) == 22  # five full batches and one of two
    assert only(db).ok
    assert len(db.sql("SELECT 1 FROM decisions WHERE kind = 'decision'")) == 8


def test_an_interrupted_prune_still_verifies(backend: Backend) -> None:
    # A prune writes its checkpoint first, then deletes the old records in batches: stopped between
    # two batches, it leaves some of the records its checkpoint covers, and the chain still verifies.
    from daemon.storage.records import checkpoint_values

    db = _store_with(backend, 30)
    last_pruned = db.sql("SELECT hash FROM decisions WHERE seq = 20")[0][0]
    db.append_values([checkpoint_values(2000.0, "test/w0", 21, last_pruned, 20)])
    db.sql("DELETE FROM decisions WHERE seq <= 5")  # the first batch, of four
    assert only(db).ok, only(db)
    # Records the checkpoint does not cover are still missed when deleted.
    db.sql("DELETE FROM decisions WHERE seq BETWEEN 22 AND 23")
    rep = only(db)
    assert not rep.ok and "missing" in (rep.problem or "")


def test_two_writers_keep_two_chains_in_one_store(backend: Backend) -> None:
    async def go() -> None:
        a, b = backend.decision_store("host/w0"), backend.decision_store("host/w1")
        await a.open()
        await b.open()
        for i in range(10):
            await (a if i % 2 else b).write([entry(i * 10 + j) for j in range(7)])
        await a.close()
        await b.close()

    run_sync(go)
    with backend.reader() as r:
        reports = {rep.chain: rep for rep in r.verify_chains()}
    assert set(reports) == {"host/w0", "host/w1"}
    assert all(r.ok and r.records == 35 for r in reports.values()), reports


def test_records_written_before_chains_had_names_still_verify(tmp_path: Path) -> None:
    """A database of schema 2 (one chain, format 1) migrates, verifies, and gets new chains beside it."""
    import hashlib
    import json as _json

    from daemon.storage import sqlite_db

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    sqlite_db.migrate(conn, sqlite_db.MIGRATIONS[:2])
    prev = "0" * 64
    for i in range(1, 6):
        vals = [i, 1000.0 + i, f"r{i}", "k", "m", "chat", "allow", "[]", "[]", 5, "ab" * 32, None, 0.5, "default",
                "v", "decision"]
        h = hashlib.sha256((prev + _json.dumps(vals, separators=(",", ":"))).encode()).hexdigest()
        conn.execute("INSERT INTO decisions (id, time, request_id, key_id, model, operation, decision, rules, "
                     "reasons, input_length, input_sha256, input, latency_ms, policy_name, policy_version, kind, "
                     "prev_hash, hash) VALUES (" + ",".join("?" * 18) + ")", (*vals, prev, h))
        prev = h
    conn.close()
    store = make_store(path)
    store.open_sync()  # migrates to the current schema
    store.write_sync([entry(i) for i in range(3)])
    reports = {r.chain: r for r in SqliteDecisionReader(path).verify_chains()}
    assert reports["legacy"].ok and reports["legacy"].records == 5, reports
    assert reports["test/w0"].ok and reports["test/w0"].records == 3
    # An old record edited is still caught.
    store.conn.execute("UPDATE decisions SET model = 'x' WHERE id = 3")  # type: ignore[union-attr]
    assert not {r.chain: r for r in SqliteDecisionReader(path).verify_chains()}["legacy"].ok
    store.close_sync()


def test_fingerprints_are_keyed_and_comparable() -> None:
    a, b = Fingerprinter(b"a" * 32), Fingerprinter(b"b" * 32)
    assert a("4111111111111111") == a("4111111111111111")  # equal inputs compare within a deployment
    assert a("4111111111111111") != b("4111111111111111")  # and cannot be brute-forced without the secret
    import hashlib
    import hmac

    assert a("x") != hashlib.sha256(b"x").hexdigest()
    for secret in (b"a" * 32, b"k" * 16, b"long" * 40):  # the standard construction, key sizes included
        for text in ("", "x", "héllo \ud800 wörld", "y" * 10_000):
            want = hmac.new(secret, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
            assert Fingerprinter(secret)(text) == want


def test_fingerprint_secret_is_created_private_and_reused(tmp_path: Path) -> None:
    import os

    from daemon.errors import ConfigError
    from daemon.storage.records import load_or_create_secret

    path = tmp_path / "d" / "fingerprint.key"
    s1 = load_or_create_secret(path)
    assert len(s1) == 32 and os.stat(path).st_mode & 0o777 == 0o600
    assert load_or_create_secret(path) == s1
    path.write_text("not hex")
    with pytest.raises(ConfigError, match="not 16 or more bytes of hex"):
        load_or_create_secret(path)


def test_metadata_and_direction_are_recorded(backend: Backend) -> None:
    e = entry(1)._replace(metadata={"source": "probe", "n": 3}, direction="output", rate_limit="unavailable")
    write(backend, [[e]])
    got = backend.sql("SELECT metadata, direction, rate_limit FROM decisions")
    assert got == [('{"n":3,"source":"probe"}', "output", "unavailable")]
    assert only(backend).ok


def test_redacted_log_labels_custom_rules_by_rule_id() -> None:
    r = (Reason("custom.codename", "literal", "block", "code name", 4, 10),)
    assert stored_input("the Falcon plan", r, "redacted") == "the [REDACTED:custom.codename] plan"


@pytest.mark.parametrize("sizes", [[1, 2, 3], [7, 50], [65, 130, 1100]])
def test_batches_of_any_size_keep_order_and_chain(backend: Backend, sizes: list[int]) -> None:
    # SQLite writes batches as multi-row INSERTs in power-of-two chunks (at most 64 rows each),
    # PostgreSQL by COPY: every size, including ones that span several chunks, keeps ids, order and chain.
    n = 0
    batches = []
    for size in sizes:
        batches.append([entry(n + i) for i in range(size)])
        n += size
    write(backend, batches)
    got = backend.sql("SELECT seq, request_id FROM decisions ORDER BY id")
    assert got == [(i + 1, f"req-{i}") for i in range(n)]
    rep = only(backend)
    assert rep.ok and rep.records == n, rep


async def test_put_waits_for_room_then_enqueues(tmp_path: Path) -> None:
    log = DecisionLog(make_store(tmp_path / "d.db"), max_queue=2, enqueue_timeout=5.0)
    assert log.offer(entry(1)) and log.offer(entry(2))
    waiting = asyncio.create_task(log.put(entry(3)))
    assert await wait_until(log._wake.is_set)  # the put found the queue full and asked the writer to drain
    assert not waiting.done() and log.qsize() == 2  # full: the put waits, nothing is dropped
    taken = log._take()  # what the writer does: take the waiting records out
    await asyncio.wait_for(waiting, 1.0)
    assert [e.request_id for e in taken] == ["req-1", "req-2"]
    assert [e.request_id for e in log._take()] == ["req-3"]


async def test_put_on_a_closing_log_refuses(tmp_path: Path) -> None:
    log = DecisionLog(make_store(tmp_path / "d.db"), max_queue=1, enqueue_timeout=5.0)
    assert log.offer(entry(1))
    waiting = asyncio.create_task(log.put(entry(2)))
    assert await wait_until(log._wake.is_set)  # the put is waiting for room
    log.closing = True
    log._take()
    with pytest.raises(QueueFull, match="closing"):
        await asyncio.wait_for(waiting, 1.0)


# --- WAL checkpoints: in a thread of their own, with a short catch-up by the writer ---------


def only_file(path: Path) -> ChainReport:
    """The one chain's report of an SQLite file."""
    with SqliteDecisionReader(path) as r:
        reports = r.verify_chains()
    assert len(reports) == 1, reports
    return reports[0]


def _wal_size(db: Path) -> int:
    wal = db.with_name(db.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_checkpoints_run_beside_the_writer_and_keep_the_log_short(tmp_path: Path) -> None:
    """Under steady writes the log is copied in the background and restarted; nothing is lost."""
    db = tmp_path / "w.db"
    store = make_store(db)
    store.open_sync()
    assert store.conn is not None and store.checkpointer is not None
    assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)  # none inside a commit
    store.checkpointer.interval = 0.02
    written = 0
    largest_log = 0
    for batch in range(150):
        store.write_sync([entry(written + i, "x" * 300) for i in range(100)])
        written += 100
        largest_log = max(largest_log, _wal_size(db))
        if batch % 10 == 0:
            time.sleep(0.03)  # give the background thread its turns, as a loaded daemon would
    cp = store.checkpointer
    assert cp.checkpoints >= 2 and cp.catch_ups >= 2 and cp.failures == 0
    # 15,000 records of ~0.7 KB: an unchecked log would pass 20 MB; restarted, it stays a fraction.
    assert largest_log < 8_000_000, largest_log
    rep = only_file(db)
    assert rep.ok and rep.records == written
    store.close_sync()
    assert _wal_size(db) == 0  # the last connection's close checkpoints and removes the log
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM decisions").fetchone() == (written,)
    conn.close()


def test_a_failing_checkpoint_never_fails_a_write(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The background thread cannot open its database: it logs, counts and keeps going.
    lost = WalCheckpointer(tmp_path / "missing" / "x.db", interval=0.01)
    lost.start()
    store = make_store(tmp_path / "f.db")
    store.open_sync()
    assert store.conn is not None
    lost.committed(store.conn)
    deadline = time.monotonic() + 10  # a limit, not a pace: the thread's first try comes after 0.01 s
    while lost.failures == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lost.failures >= 1
    assert "WAL checkpoint failed" in caplog.text
    # The writer's catch-up on a broken connection: counted and logged, not raised.
    broken = sqlite3.connect(tmp_path / "other.db")
    broken.close()
    lost._catch_up = True
    lost.committed(broken)
    assert lost.failures >= 2
    lost.stop()
    # Meanwhile the store writes on, with its own checkpointer.
    store.write_sync([entry(i) for i in range(10)])
    assert only_file(tmp_path / "f.db").records == 10
    store.close_sync()


def test_checkpointer_stops_promptly_when_idle(tmp_path: Path) -> None:
    store = make_store(tmp_path / "i.db")
    store.open_sync()  # creates the database
    store.close_sync()
    cp = WalCheckpointer(tmp_path / "i.db", interval=30.0)
    cp.start()
    t0 = time.monotonic()
    cp.stop()
    assert time.monotonic() - t0 < 1.0


async def test_any_write_failure_is_counted_logged_once_retried_and_nothing_is_lost(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    store = recording(backend)
    errors: list[int] = []
    log = DecisionLog(store, batch_size=5, flush_interval=3600, retry_delay=0.01, max_retry_delay=0.02,
                      on_error=lambda: errors.append(1))
    await log.start()
    store.failing = RuntimeError("a bug, not a database error")  # not sqlite3.Error: still retried
    for i in range(5):
        log.offer(entry(i))
    assert await wait_until(lambda: len(errors) >= 4)
    assert not log.healthy and "RuntimeError" in (log.failure or "")
    assert caplog.text.count("decision log write failed") == 1  # once per kind, not per retry
    store.failing = sqlite3.OperationalError("disk I/O error")
    assert await wait_until(lambda: caplog.text.count("decision log write failed") == 2)
    store.failing = None
    assert await wait_until(lambda: log.healthy)
    assert "writes succeed again" in caplog.text
    await log.close()
    assert [r for r, _ in rows(backend)] == [f"req-{i}" for i in range(5)]


async def test_retries_back_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.backends import Backend as B

    monkeypatch.delenv("AIGOV_DATABASE_URL", raising=False)
    backend = B("sqlite", tmp_path)
    store = recording(backend)
    log = DecisionLog(store, batch_size=1, flush_interval=3600, retry_delay=0.05, max_retry_delay=0.4)
    await log.start()
    store.failing = OSError("no space left on device")
    log.offer(entry(1))
    await asyncio.sleep(1.0)
    # 0.05 + 0.1 + 0.2 + 0.4 + 0.4 ... : about 5 attempts in a second, not 20.
    assert 3 <= store.attempts <= 7, store.attempts
    store.failing = None
    await log.close()
    assert len(rows(backend)) == 1


# --- tampering: what the chain must catch, each forgery done as well as an attacker could ------
#
# Every record is written by the real store and tampered with through plain SQL on a connection of
# its own, as someone with the database file would; every forged record gets its own hash recomputed
# with the public record_hash, so that it is self-consistent and only the links between records (and
# their positions in the chain) can give it away.


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A database holding a verified chain of 20 records, and a plain connection to tamper with."""
    path = tmp_path / "chain.db"
    store = make_store(path)
    store.open_sync()
    store.write_sync([entry(i) for i in range(12)])
    store.write_sync([entry(i) for i in range(12, 20)])  # two transactions: the chain spans them
    store.close_sync()
    conn = sqlite3.connect(path, isolation_level=None)
    rep = only_file(path)
    assert rep.ok and rep.records == 20, rep
    yield conn
    conn.close()


def _row(conn: sqlite3.Connection, rid: int) -> dict[str, Any]:
    cur = conn.execute("SELECT * FROM decisions WHERE id = ?", (rid,))
    return dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))


def _put(conn: sqlite3.Connection, row: dict[str, Any], *, insert: bool = False) -> str:
    """Write ``row`` with its hash recomputed from its own prev_hash; returns that hash."""
    from daemon.storage.records import record_hash

    row = {**row, "hash": record_hash(row)}
    cols = [c for c in row if c != "id"]
    if insert:
        conn.execute(f"INSERT INTO decisions (id, {', '.join(cols)}) VALUES ({', '.join('?' * (len(cols) + 1))})",
                     [row["id"], *(row[c] for c in cols)])
    else:
        conn.execute(f"UPDATE decisions SET {', '.join(c + ' = ?' for c in cols)} WHERE id = ?",
                     [*(row[c] for c in cols), row["id"]])
    return str(row["hash"])


def _self_consistent(conn: sqlite3.Connection, rid: int) -> bool:
    from daemon.storage.records import record_hash

    row = _row(conn, rid)
    return record_hash(row) == row["hash"]


def _verify(conn: sqlite3.Connection) -> ChainReport:
    (path,) = [r[2] for r in conn.execute("PRAGMA database_list") if r[1] == "main"]
    return only_file(Path(path))


# What a record says, apart from its place in the chain and its links.
_POSITION = ("id", "format", "chain", "seq", "prev_hash", "hash")


def test_edited_record_with_its_hash_recomputed_breaks_the_next_link(chain: sqlite3.Connection) -> None:
    _put(chain, {**_row(chain, 7), "decision": "block", "rules": '["pii.credit_card"]'})
    assert _self_consistent(chain, 7)  # the edit alone does not show: only the next link can
    rep = _verify(chain)
    assert not rep.ok and rep.first_bad_id == 8 and "link" in (rep.problem or ""), rep


def test_edited_first_record_with_its_hash_recomputed_breaks_the_chain(chain: sqlite3.Connection) -> None:
    _put(chain, {**_row(chain, 1), "model": "forged"})
    rep = _verify(chain)
    assert not rep.ok and rep.first_bad_id == 2, rep


def test_deleted_record_with_its_successor_relinked_breaks_the_chain(chain: sqlite3.Connection) -> None:
    before = _row(chain, 10)["hash"]
    chain.execute("DELETE FROM decisions WHERE id = 11")
    _put(chain, {**_row(chain, 12), "prev_hash": before})  # 12 now follows 10, and says so
    assert _self_consistent(chain, 12)
    rep = _verify(chain)
    assert not rep.ok and rep.first_bad_id == 12 and "missing" in (rep.problem or ""), rep
    # Renumbered too, so that no position is missing: its new position is in its hash, and it was
    # rehashed, but then the head the chains table names is one too far.
    _put(chain, {**_row(chain, 12), "seq": 11, "prev_hash": before})
    for rid in range(13, 21):
        _put(chain, {**_row(chain, rid), "seq": rid - 1, "prev_hash": _row(chain, rid - 1)["hash"]})
    rep = _verify(chain)
    assert not rep.ok and "newest 1 record(s) were deleted" in (rep.problem or ""), rep


def test_forged_record_claiming_to_follow_an_earlier_one_breaks_the_chain(chain: sqlite3.Connection) -> None:
    # A self-consistent record that says it follows record 5, added at the next free place.
    forged = {**_row(chain, 6), "id": 21, "seq": 21, "request_id": "forged", "prev_hash": _row(chain, 5)["hash"]}
    _put(chain, forged, insert=True)
    chain.execute("UPDATE chains SET head_seq = 21, head_hash = ?", (_row(chain, 21)["hash"],))
    assert _self_consistent(chain, 21)
    rep = _verify(chain)
    assert not rep.ok and rep.first_bad_id == 21 and "link" in (rep.problem or ""), rep


def test_record_inserted_in_the_middle_breaks_the_chain(chain: sqlite3.Connection) -> None:
    # Make room after record 10 (ids and places 11.. move up by one), then put a self-consistent
    # forgery there; the chains table is made to agree.
    chain.execute("UPDATE decisions SET id = -id, seq = -seq WHERE id > 10")
    chain.execute("UPDATE decisions SET id = 1 - id, seq = 1 - seq WHERE id < 0")
    chain.execute("UPDATE chains SET head_seq = head_seq + 1")
    _put(chain, {**_row(chain, 10), "id": 11, "seq": 11, "request_id": "forged",
                 "prev_hash": _row(chain, 10)["hash"]}, insert=True)
    assert _self_consistent(chain, 11)
    rep = _verify(chain)
    assert not rep.ok and rep.first_bad_id == 12, rep


def test_reordered_records_relinked_break_the_chain(chain: sqlite3.Connection) -> None:
    # Swap what records 8 and 9 say, then relink both so that each is consistent with the one before.
    eight, nine = _row(chain, 8), _row(chain, 9)
    content = [c for c in eight if c not in _POSITION]
    new8 = _put(chain, {**eight, **{c: nine[c] for c in content}})
    _put(chain, {**nine, **{c: eight[c] for c in content}, "prev_hash": new8})
    assert _self_consistent(chain, 8) and _self_consistent(chain, 9)
    rep = _verify(chain)
    assert not rep.ok and rep.first_bad_id == 10 and "link" in (rep.problem or ""), rep


def test_an_untampered_chain_extended_after_verification_still_verifies(chain: sqlite3.Connection,
                                                                         tmp_path: Path) -> None:
    # The control for the tests above: the same steps without a forgery leave a valid chain.
    _put(chain, _row(chain, 7))  # rewriting a record unchanged keeps its hash
    store = make_store(tmp_path / "chain.db")
    store.open_sync()
    store.write_sync([entry(20)])
    store.close_sync()
    rep = _verify(chain)
    assert rep.ok and rep.records == 21, rep


def test_a_reader_of_a_store_not_made_yet_finds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "none.db"
    with SqliteDecisionReader(path) as reader:
        assert reader.verify_chains() == []
        assert reader.prune(before=1e12) == 0
        assert reader.schema_version() == 0
    assert not path.exists()  # reading made no file
