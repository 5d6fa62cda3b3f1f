"""The batch writer (flush by size, by interval, on shutdown) and the hash chain."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.decisionlog import (
    FIELDS,
    DecisionLog,
    Entry,
    QueueFull,
    SqliteDecisionStore,
    chain_hash,
    prune,
    stored_input,
    verify_chain,
)
from daemon.policy.model import Reason
from daemon.storage.db import WalCheckpointer


class RecordingStore(SqliteDecisionStore):
    """The real store, remembering the size of each transaction."""

    def __init__(self, path: Path, log_inputs: str = "redacted") -> None:
        super().__init__(path, log_inputs)
        self.batches: list[int] = []

    def write_batches(self, batches):  # type: ignore[no-untyped-def]
        self.batches.extend(len(b) for b in batches)
        return super().write_batches(batches)


def entry(i: int, text: str = "hello", reasons: tuple[Reason, ...] = ()) -> Entry:
    return Entry(1000.0 + i, f"req-{i}", "key", "gpt-4o", "chat", "allow", (), reasons, text, 0.5, "default", "v1")


def rows(path: Path) -> list[tuple[str, str | None]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT request_id, input FROM decisions ORDER BY id").fetchall()
    finally:
        conn.close()


async def wait_until(cond, limit: float = 2.0) -> bool:  # type: ignore[no-untyped-def]
    for _ in range(int(limit / 0.01)):
        if cond():
            return True
        await asyncio.sleep(0.01)
    return bool(cond())


async def test_flush_by_size(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "d.db")
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
    assert [r[0] for r in rows(tmp_path / "d.db")] == [f"req-{i}" for i in range(35)]


async def test_backlog_drains_in_larger_transactions(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "d.db")
    log = DecisionLog(store, batch_size=50, flush_interval=3600, max_batch=1000, max_queue=5000)
    for i in range(2500):  # queued before the writer starts: a backlog
        log.offer(entry(i))
    await log.start()
    await log.close()
    assert store.batches == [1000, 1000, 500]


async def test_flush_by_interval(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "d.db")
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


async def test_flush_on_shutdown_writes_everything(tmp_path: Path) -> None:
    store = RecordingStore(tmp_path / "d.db")
    log = DecisionLog(store, batch_size=50, flush_interval=3600, max_queue=1000)
    await log.start()
    for i in range(333):
        assert log.offer(entry(i))
    await log.close()
    assert len(rows(tmp_path / "d.db")) == 333
    assert not log.offer(entry(999))  # closed: refuses instead of dropping silently


async def test_full_queue_raises_after_bounded_wait(tmp_path: Path) -> None:
    log = DecisionLog(SqliteDecisionStore(tmp_path / "d.db"), max_queue=2, enqueue_timeout=0.05)
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


def _store_with(tmp_path: Path, n: int) -> sqlite3.Connection:
    store = SqliteDecisionStore(tmp_path / "c.db")
    store.open()
    store.write_batches([[entry(i) for i in range(n)]])
    assert store.conn is not None
    return store.conn


def test_chain_verifies(tmp_path: Path) -> None:
    conn = _store_with(tmp_path, 20)
    assert verify_chain(conn).ok and verify_chain(conn).records == 20


def test_edited_record_breaks_chain(tmp_path: Path) -> None:
    conn = _store_with(tmp_path, 20)
    conn.execute("UPDATE decisions SET decision = 'block' WHERE id = 7")
    rep = verify_chain(conn)
    assert not rep.ok and rep.first_bad_id == 7 and "edited" in (rep.problem or "")


def test_deleted_record_breaks_chain(tmp_path: Path) -> None:
    conn = _store_with(tmp_path, 20)
    conn.execute("DELETE FROM decisions WHERE id = 11")
    rep = verify_chain(conn)
    assert not rep.ok and rep.first_bad_id in (11, 12)


def test_deleted_head_without_checkpoint_breaks_chain(tmp_path: Path) -> None:
    conn = _store_with(tmp_path, 10)
    conn.execute("DELETE FROM decisions WHERE id <= 3")
    rep = verify_chain(conn)
    assert not rep.ok and rep.first_bad_id == 4


def test_prune_with_checkpoint_still_verifies(tmp_path: Path) -> None:
    conn = _store_with(tmp_path, 30)
    deleted = prune(conn, before=1000.0 + 10)  # entries 0..9 are older
    assert deleted == 10
    rep = verify_chain(conn)
    assert rep.ok, rep
    kinds = [k for (k,) in conn.execute("SELECT kind FROM decisions ORDER BY id")]
    assert kinds[-1] == "checkpoint" and kinds.count("decision") == 20


def test_redacted_log_labels_custom_rules_by_rule_id() -> None:
    r = (Reason("custom.codename", "literal", "block", "code name", 4, 10),)
    assert stored_input("the Falcon plan", r, "redacted") == "the [REDACTED:custom.codename] plan"


@pytest.mark.parametrize("sizes", [[1, 2, 3], [7, 50], [65, 130, 1100]])
def test_batches_of_any_size_keep_order_and_chain(tmp_path: Path, sizes: list[int]) -> None:
    # Batches are written as multi-row INSERTs in power-of-two chunks (at most 64 rows each):
    # every size, including ones that span several chunks, must keep ids, order and the chain.
    store = SqliteDecisionStore(tmp_path / "d.db")
    store.open()
    n = 0
    for size in sizes:
        store.write_batches([[entry(n + i) for i in range(size)]])
        n += size
    assert store.conn is not None
    got = store.conn.execute("SELECT id, request_id FROM decisions ORDER BY id").fetchall()
    assert got == [(i + 1, f"req-{i}") for i in range(n)]
    rep = verify_chain(store.conn)
    assert rep.ok and rep.records == n, rep
    store.close()


async def test_put_waits_for_room_then_enqueues(tmp_path: Path) -> None:
    log = DecisionLog(SqliteDecisionStore(tmp_path / "d.db"), max_queue=2, enqueue_timeout=5.0)
    assert log.offer(entry(1)) and log.offer(entry(2))
    waiting = asyncio.create_task(log.put(entry(3)))
    assert await wait_until(log._wake.is_set)  # the put found the queue full and asked the writer to drain
    assert not waiting.done() and log.qsize() == 2  # full: the put waits, nothing is dropped
    taken = log._take()  # what the writer does: take the waiting records out
    await asyncio.wait_for(waiting, 1.0)
    assert [e.request_id for e in taken] == ["req-1", "req-2"]
    assert [e.request_id for e in log._take()] == ["req-3"]


async def test_put_on_a_closing_log_refuses(tmp_path: Path) -> None:
    log = DecisionLog(SqliteDecisionStore(tmp_path / "d.db"), max_queue=1, enqueue_timeout=5.0)
    assert log.offer(entry(1))
    waiting = asyncio.create_task(log.put(entry(2)))
    assert await wait_until(log._wake.is_set)  # the put is waiting for room
    log.closing = True
    log._take()
    with pytest.raises(QueueFull, match="closing"):
        await asyncio.wait_for(waiting, 1.0)


# --- WAL checkpoints: in a thread of their own, with a short catch-up by the writer ---------


def _wal_size(db: Path) -> int:
    wal = db.with_name(db.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_checkpoints_run_beside_the_writer_and_keep_the_log_short(tmp_path: Path) -> None:
    """Under steady writes the log is copied in the background and restarted; nothing is lost."""
    db = tmp_path / "w.db"
    store = SqliteDecisionStore(db)
    store.open()
    assert store.conn is not None and store.checkpointer is not None
    assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)  # none inside a commit
    store.checkpointer.interval = 0.02
    written = 0
    largest_log = 0
    for batch in range(150):
        store.write_batches([[entry(written + i, "x" * 300) for i in range(100)]])
        written += 100
        largest_log = max(largest_log, _wal_size(db))
        if batch % 10 == 0:
            time.sleep(0.03)  # give the background thread its turns, as a loaded daemon would
    cp = store.checkpointer
    assert cp.checkpoints >= 2 and cp.catch_ups >= 2 and cp.failures == 0
    # 15,000 records of ~0.7 KB: an unchecked log would pass 20 MB; restarted, it stays a fraction.
    assert largest_log < 8_000_000, largest_log
    rep = verify_chain(store.conn)
    assert rep.ok and rep.records == written
    store.close()
    assert _wal_size(db) == 0  # the last connection's close checkpoints and removes the log
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM decisions").fetchone() == (written,)
    conn.close()


def test_a_failing_checkpoint_never_fails_a_write(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # The background thread cannot open its database: it logs, counts and keeps going.
    lost = WalCheckpointer(tmp_path / "missing" / "x.db", interval=0.01)
    lost.start()
    store = SqliteDecisionStore(tmp_path / "f.db")
    store.open()
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
    store.write_batches([[entry(i) for i in range(10)]])
    assert verify_chain(store.conn).records == 10
    store.close()


def test_checkpointer_stops_promptly_when_idle(tmp_path: Path) -> None:
    store = SqliteDecisionStore(tmp_path / "i.db")
    store.open()  # creates the database
    store.close()
    cp = WalCheckpointer(tmp_path / "i.db", interval=30.0)
    cp.start()
    t0 = time.monotonic()
    cp.stop()
    assert time.monotonic() - t0 < 1.0


# --- tampering: what the chain must catch, each forgery done as well as an attacker could ------
#
# Every record is built with SqliteDecisionStore.append and tampered with through plain SQL on a
# connection of its own, as someone with the database file would; every forged record gets its
# own hash recomputed with the public chain_hash, so that it is self-consistent and only the
# links between records can give it away.


def _record(i: int) -> dict[str, Any]:
    """A decision as ``append`` takes it: every chained field but the id (a field the chain
    gains later defaults to NULL here)."""
    rec: dict[str, Any] = dict.fromkeys(FIELDS[1:])
    rec.update(time=2000.0 + i, request_id=f"req-{i}", key_id="key", model="gpt-4o", operation="chat",
               decision="allow", rules="[]", reasons="[]", input_length=5, kind="decision")
    return rec


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A database holding a verified chain of 20 records, and a plain connection to tamper with."""
    path = tmp_path / "chain.db"
    store = SqliteDecisionStore(path)
    store.append([_record(i) for i in range(12)])
    store.append([_record(i) for i in range(12, 20)])  # two transactions: the chain spans them
    store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    rep = verify_chain(conn)
    assert rep.ok and rep.records == 20, rep
    yield conn
    conn.close()


def _row(conn: sqlite3.Connection, rid: int) -> dict[str, Any]:
    cur = conn.execute("SELECT * FROM decisions WHERE id = ?", (rid,))
    return dict(zip([d[0] for d in cur.description], cur.fetchone(), strict=True))


def _put(conn: sqlite3.Connection, row: dict[str, Any], *, insert: bool = False) -> str:
    """Write ``row`` with its hash recomputed from its own prev_hash; returns that hash."""
    row = {**row, "hash": chain_hash(row["prev_hash"], row)}
    cols = [c for c in row if c != "id"]
    if insert:
        conn.execute(f"INSERT INTO decisions (id, {', '.join(cols)}) VALUES ({', '.join('?' * (len(cols) + 1))})",
                     [row["id"], *(row[c] for c in cols)])
    else:
        conn.execute(f"UPDATE decisions SET {', '.join(c + ' = ?' for c in cols)} WHERE id = ?",
                     [*(row[c] for c in cols), row["id"]])
    return str(row["hash"])


def _self_consistent(conn: sqlite3.Connection, rid: int) -> bool:
    row = _row(conn, rid)
    return chain_hash(row["prev_hash"], row) == row["hash"]


def test_edited_record_with_its_hash_recomputed_breaks_the_next_link(chain: sqlite3.Connection) -> None:
    _put(chain, {**_row(chain, 7), "decision": "block", "rules": '["pii.credit_card"]'})
    assert _self_consistent(chain, 7)  # the edit alone does not show: only the next link can
    rep = verify_chain(chain)
    assert not rep.ok and rep.first_bad_id == 8 and "link" in (rep.problem or ""), rep


def test_edited_first_record_with_its_hash_recomputed_breaks_the_chain(chain: sqlite3.Connection) -> None:
    _put(chain, {**_row(chain, 1), "model": "forged"})
    rep = verify_chain(chain)
    assert not rep.ok and rep.first_bad_id == 2, rep


def test_deleted_record_with_its_successor_relinked_breaks_the_chain(chain: sqlite3.Connection) -> None:
    before = _row(chain, 10)["hash"]
    chain.execute("DELETE FROM decisions WHERE id = 11")
    _put(chain, {**_row(chain, 12), "prev_hash": before})  # 12 now follows 10, and says so
    assert _self_consistent(chain, 12)
    rep = verify_chain(chain)
    assert not rep.ok and rep.first_bad_id in (11, 12, 13), rep  # the gap, or the link after the relinked record


def test_forged_record_claiming_to_follow_an_earlier_one_breaks_the_chain(chain: sqlite3.Connection) -> None:
    # A self-consistent record that says it follows record 5, added where the next id is free.
    forged = {**_row(chain, 6), "id": 21, "request_id": "forged", "prev_hash": _row(chain, 5)["hash"]}
    _put(chain, forged, insert=True)
    assert _self_consistent(chain, 21)
    rep = verify_chain(chain)
    assert not rep.ok and rep.first_bad_id == 21 and "link" in (rep.problem or ""), rep


def test_record_inserted_in_the_middle_breaks_the_chain(chain: sqlite3.Connection) -> None:
    # Make room after record 10 (ids 11.. move up by one), then put a self-consistent forgery there.
    chain.execute("UPDATE decisions SET id = -id WHERE id > 10")
    chain.execute("UPDATE decisions SET id = 1 - id WHERE id < 0")
    _put(chain, {**_row(chain, 10), "id": 11, "request_id": "forged", "prev_hash": _row(chain, 10)["hash"]},
         insert=True)
    assert _self_consistent(chain, 11)
    rep = verify_chain(chain)
    assert not rep.ok and rep.first_bad_id == 12, rep


def test_reordered_records_relinked_break_the_chain(chain: sqlite3.Connection) -> None:
    # Swap what records 8 and 9 say, then relink both so that each is consistent with the one before.
    eight, nine = _row(chain, 8), _row(chain, 9)
    content = [c for c in eight if c not in ("id", "prev_hash", "hash")]
    new8 = _put(chain, {**eight, **{c: nine[c] for c in content}})
    _put(chain, {**nine, **{c: eight[c] for c in content}, "prev_hash": new8})
    assert _self_consistent(chain, 8) and _self_consistent(chain, 9)
    rep = verify_chain(chain)
    assert not rep.ok and rep.first_bad_id == 10 and "link" in (rep.problem or ""), rep


def test_an_untampered_chain_extended_after_verification_still_verifies(chain: sqlite3.Connection,
                                                                         tmp_path: Path) -> None:
    # The control for the tests above: the same steps without a forgery leave a valid chain.
    _put(chain, _row(chain, 7))  # rewriting a record unchanged keeps its hash
    store = SqliteDecisionStore(tmp_path / "chain.db")
    store.append([_record(20)])
    store.close()
    rep = verify_chain(chain)
    assert rep.ok and rep.records == 21, rep
