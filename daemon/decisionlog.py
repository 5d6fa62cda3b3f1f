"""The decision log: a bounded queue, one writer, batched transactions, a hash chain.

Requests append a small tuple to a bounded deque and never wait on disk. One
writer task wakes when ``batch_size`` records are waiting or ``flush_interval``
has passed, takes what is waiting (at most ``max_batch``, so that a backlog
drains in fewer, larger transactions) and hands it to a dedicated thread,
which computes the input digest, the stored form of the input and the hash
chain, and writes the batch in one transaction. A failed write is retried, never dropped: while the
queue stays full, requests get 503 instead.

Chain: ``hash = sha256(prev_hash + canonical(record))``, where the canonical
form is the record's fields (:data:`FIELDS`, in that order) as a compact JSON
array: unambiguous whatever the text holds, and built by the C encoder. The
first record's ``prev_hash`` is :data:`GENESIS`. Pruning old records appends a
``checkpoint`` record naming the first kept id and the hash of the last pruned
record, so what remains still verifies.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import hashlib
import itertools
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from daemon.fastjson import dumps as _json
from daemon.fastjson import quote as _quote
from daemon.policy.engine import redact
from daemon.policy.model import Reason
from daemon.storage.db import WalCheckpointer, connect_sync

log = logging.getLogger("aigov.decisionlog")

GENESIS = "0" * 64
FIELDS = (
    "id", "time", "request_id", "key_id", "model", "operation", "decision", "rules", "reasons",
    "input_length", "input_sha256", "input", "latency_ms", "policy_name", "policy_version", "kind",
)
_COLS = len(FIELDS) + 2  # the fields, prev_hash, hash
_CHUNK = 64  # rows per INSERT (64 * 18 parameters; SQLite allows 32766 since 3.32)


@functools.lru_cache(maxsize=8)
def _insert_sql(rows: int) -> str:
    """An INSERT of ``rows`` rows."""
    one = "(" + ",".join("?" * _COLS) + ")"
    return f"INSERT INTO decisions ({', '.join(FIELDS)}, prev_hash, hash) VALUES " + ",".join([one] * rows)


class Entry(NamedTuple):
    """What a request hands the log: cheap to build on the event loop."""

    time: float
    request_id: str
    key_id: str
    model: str
    operation: str
    decision: str
    rules: tuple[str, ...]
    reasons: tuple[Reason, ...]
    input_text: str
    latency_ms: float
    policy_name: str
    policy_version: str


def _canonical_values(values: list[Any]) -> str:
    """The canonical form of a record's values in :data:`FIELDS` order: a compact JSON array."""
    return _json(values)


def canonical(record: Mapping[str, Any]) -> str:
    """The canonical form of a record's chained fields."""
    return _canonical_values([record[k] for k in FIELDS])


def chain_hash(prev_hash: str, record: Mapping[str, Any]) -> str:
    """The hash of a record given its predecessor's hash."""
    return _hash(prev_hash, canonical(record))


def _hash(prev_hash: str, canon: str) -> str:
    return hashlib.sha256((prev_hash + canon).encode("utf-8", "surrogatepass")).hexdigest()


def _rules_json(rules: tuple[str, ...]) -> str:
    # Rule ids are validated identifiers ([a-z0-9._-]): nothing to escape.
    return '["' + '","'.join(rules) + '"]' if rules else "[]"


def _int_or_null(v: int | None) -> str:
    return "null" if v is None else str(v)


def _reasons_json(reasons: tuple[Reason, ...]) -> str:
    # The same JSON as dumps([r.as_dict() ...]), built without dicts: this runs once per record.
    if not reasons:
        return "[]"
    return "[" + ",".join(
        f'{{"rule":{_quote(r.rule)},"detector":{_quote(r.detector)},"action":"{r.action}",'
        f'"message":{_quote(r.message)},"start":{_int_or_null(r.start)},"end":{_int_or_null(r.end)}}}'
        for r in reasons
    ) + "]"


_CUSTOM = frozenset(("literal", "pattern"))


def stored_input(text: str, reasons: Sequence[Reason], mode: str) -> str | None:
    """The input as ``log_inputs`` says: none, redacted (every finding's span masked) or full."""
    if mode == "none":
        return None
    if mode == "full":
        return text
    # Labelled like redacted_text in the answer: the detector, or the rule id for custom rules.
    spans = [
        (r.start, r.end, r.rule if r.detector in _CUSTOM else r.detector)
        for r in reasons
        if r.start is not None and r.end is not None
    ]
    return redact(text, spans)


class SqliteDecisionStore:
    """Blocking writes and reads of the ``decisions`` table; used from one writer thread."""

    def __init__(self, path: Path, log_inputs: str = "redacted") -> None:
        self.path = path
        self.log_inputs = log_inputs
        self.conn: sqlite3.Connection | None = None
        self.checkpointer: WalCheckpointer | None = None

    def open(self) -> None:
        """Open (and migrate) the database, tuned for one appending writer."""
        self.conn = connect_sync(self.path)
        # Checkpoints (the only fsyncs with synchronous=NORMAL) run in a thread of their own, so
        # that the writer never stops for one (see WalCheckpointer).
        self.conn.execute("PRAGMA wal_autocheckpoint = 0")
        self.checkpointer = WalCheckpointer(self.path)
        self.checkpointer.start()

    def close(self) -> None:
        """Stop the checkpoint thread and close the connection (which checkpoints what is left)."""
        if self.checkpointer is not None:
            self.checkpointer.stop()
            self.checkpointer = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def to_values(self, e: Entry) -> tuple[Any, ...]:
        """The row for an entry in :data:`FIELDS` order, without the id."""
        text = e.input_text
        return (
            e.time, e.request_id, e.key_id, e.model, e.operation, e.decision,
            _rules_json(e.rules), _reasons_json(e.reasons), len(text),
            hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
            stored_input(text, e.reasons, self.log_inputs),
            round(e.latency_ms, 3), e.policy_name, e.policy_version, "decision",
        )

    def write_batches(self, batches: Sequence[Sequence[Entry]]) -> int:
        """Write each batch in its own transaction, extending the chain; returns records written."""
        n = 0
        for batch in batches:
            self._append_values(self.to_values(e) for e in batch)
            n += len(batch)
        return n

    def append(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Append records (field -> value, without id/hash) to the chain in one transaction."""
        self._append_values([tuple(rec[f] for f in FIELDS[1:]) for rec in records])

    def _append_values(self, rows: Iterable[tuple[Any, ...]]) -> None:
        if self.conn is None:
            self.open()
        conn = self.conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            insert_chained(conn, rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if self.checkpointer is not None:
            self.checkpointer.committed(conn)


def insert_chained(conn: sqlite3.Connection, rows: Iterable[tuple[Any, ...]]) -> None:
    """Inside an open transaction: append rows (FIELDS without id) to the chain.

    ``rows`` is consumed lazily, at most :data:`_CHUNK` rows at a time, each chunk
    prepared and then written with one multi-row INSERT. The sqlite3 module releases
    the GIL once per statement step, so the chunk size bounds how long the writer
    thread keeps the event loop waiting for the GIL (about 0.4 ms); executemany would
    release it once per row, and one statement per batch would hold it for a whole
    backlog batch.
    """
    # Read the tail inside the transaction: a CLI prune may have appended a checkpoint.
    tail = conn.execute("SELECT id, hash FROM decisions ORDER BY id DESC LIMIT 1").fetchone()
    last_id, prev = (tail[0], tail[1]) if tail else (0, GENESIS)
    it = iter(rows)
    while chunk := list(itertools.islice(it, _CHUNK)):
        params: list[Any] = []
        extend = params.extend
        for values in chunk:
            last_id += 1
            full = [last_id, *values]
            h = _hash(prev, _canonical_values(full))
            extend(full)
            params.append(prev)
            params.append(h)
            prev = h
        # A partial chunk goes in power-of-two pieces: a handful of cached statement shapes.
        n, i = len(chunk), 0
        while i < n:
            size = 1 << ((n - i).bit_length() - 1)
            conn.execute(_insert_sql(size), params[i * _COLS:(i + size) * _COLS])
            i += size


@dataclass(frozen=True)
class ChainReport:
    """The result of verifying the hash chain."""

    ok: bool
    records: int
    first_bad_id: int | None = None
    problem: str | None = None


def iter_rows(conn: sqlite3.Connection, batch: int = 2000) -> Iterator[dict[str, Any]]:
    """Every decision row in id order, read in pages (constant memory)."""
    cols = (*FIELDS, "prev_hash", "hash")
    last = -1
    while True:
        rows = conn.execute(
            f"SELECT {', '.join(cols)} FROM decisions WHERE id > ? ORDER BY id LIMIT ?", (last, batch)
        ).fetchall()
        if not rows:
            return
        for r in rows:
            yield dict(zip(cols, r, strict=True))
        last = rows[-1][0]


def verify_chain(conn: sqlite3.Connection) -> ChainReport:
    """Check every record's hash and link; name the first record that breaks the chain."""
    checkpoints: dict[int, str] = {}
    for (reasons,) in conn.execute("SELECT reasons FROM decisions WHERE kind = 'checkpoint' ORDER BY id"):
        try:
            info = json.loads(reasons)
            checkpoints[int(info["first_kept_id"])] = str(info["pruned_last_hash"])
        except (ValueError, KeyError, TypeError):
            continue
    n = 0
    prev: str | None = None
    expected_id: int | None = None
    for row in iter_rows(conn):
        n += 1
        rid = row["id"]
        if prev is None:
            allowed = {GENESIS} | ({checkpoints[rid]} if rid in checkpoints else set())
            if row["prev_hash"] not in allowed:
                why = "records before it were deleted without a checkpoint" if rid != 1 else "bad genesis link"
                return ChainReport(False, n, rid, why)
        elif row["prev_hash"] != prev:
            return ChainReport(
                False, n, rid, "link to the previous record is broken (a record was deleted or inserted)"
            )
        if expected_id is not None and rid != expected_id:
            return ChainReport(False, n, expected_id, "record ids are not consecutive (a record was deleted)")
        if chain_hash(row["prev_hash"], row) != row["hash"]:
            return ChainReport(False, n, rid, "record content does not match its hash (it was edited)")
        prev = row["hash"]
        expected_id = rid + 1
    return ChainReport(True, n)


def prune(conn: sqlite3.Connection, before: float) -> int:
    """Delete decisions older than ``before`` and append a checkpoint, in one transaction; returns the count."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute(
            "SELECT MAX(id) FROM decisions WHERE time < ? AND kind = 'decision'", (before,)
        ).fetchone()
        tail = conn.execute("SELECT MAX(id) FROM decisions").fetchone()[0]
        # Keep the newest record: the chain needs a tail to extend.
        through = min(row[0], tail - 1) if row and row[0] is not None else 0
        if through < 1:
            conn.execute("ROLLBACK")
            return 0
        last_hash = conn.execute("SELECT hash FROM decisions WHERE id = ?", (through,)).fetchone()
        first = conn.execute("SELECT MIN(id) FROM decisions").fetchone()[0]
        deleted = int(conn.execute("DELETE FROM decisions WHERE id <= ?", (through,)).rowcount)
        info = {"first_kept_id": through + 1, "pruned_last_hash": last_hash[0] if last_hash else GENESIS,
                "pruned_from_id": first, "pruned_records": deleted}
        insert_chained(conn, [(
            time.time(), f"checkpoint-{through}", None, None, None, "checkpoint", "[]", json.dumps(info),
            None, None, None, None, None, None, "checkpoint",
        )])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return deleted


class QueueFull(Exception):
    """The decision log could not take a record within the bounded wait."""


class DecisionLog:
    """The bounded queue and its single writer task."""

    def __init__(
        self,
        store: SqliteDecisionStore,
        *,
        batch_size: int = 50,
        flush_interval: float = 5.0,
        max_queue: int = 10_000,
        enqueue_timeout: float = 0.5,
        on_written: Callable[[int], None] = lambda n: None,
        on_error: Callable[[], None] = lambda: None,
        retry_delay: float = 0.5,
        max_batch: int = 1000,
    ) -> None:
        self.store = store
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.enqueue_timeout = enqueue_timeout
        self.max_batch = max(batch_size, max_batch)
        self.max_queue = max_queue
        # A deque, not an asyncio.Queue: appending is the only work a request does here, and
        # Queue.put_nowait/get_nowait cost several times a deque's append/popleft per record.
        self._items: collections.deque[Entry] = collections.deque()
        self._wake = asyncio.Event()  # set when a batch is ready (or on close)
        self._space = asyncio.Event()  # set when the writer has taken records out
        self.on_written = on_written
        self.on_error = on_error
        self.retry_delay = retry_delay
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="aigov-dlog")
        self.task: asyncio.Task[None] | None = None
        self.closing = False
        self.healthy = True

    async def start(self) -> None:
        """Open the store in the writer thread and start the writer task."""
        await asyncio.get_running_loop().run_in_executor(self.executor, self.store.open)
        self.task = asyncio.create_task(self._run(), name="aigov-decision-writer")

    def qsize(self) -> int:
        """Records waiting to be written."""
        return len(self._items)

    def offer(self, entry: Entry) -> bool:
        """Enqueue without waiting; False when the queue is full or closing."""
        items = self._items
        if self.closing or len(items) >= self.max_queue:
            return False
        items.append(entry)
        if len(items) >= self.batch_size and not self._wake.is_set():
            self._wake.set()
        return True

    async def put(self, entry: Entry) -> None:
        """Enqueue, waiting at most ``enqueue_timeout`` for room; QueueFull when the queue stays full."""
        if self.offer(entry):
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.enqueue_timeout
        while not self.closing:
            self._space.clear()
            self._wake.set()  # a full queue is a ready batch
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(self._space.wait(), remaining)
            except TimeoutError:
                break
            if self.offer(entry):
                return
        if self.closing:
            raise QueueFull("the decision log is closing")
        raise QueueFull("the decision log queue stayed full")

    def _take(self) -> list[Entry]:
        """Everything waiting, up to ``max_batch`` records."""
        items = self._items
        n = min(len(items), self.max_batch)
        if n == len(items):
            batch = list(items)
            items.clear()
        else:
            popleft = items.popleft
            batch = [popleft() for _ in range(n)]
        if n:
            self._space.set()
        return batch

    async def _write(self, batches: list[list[Entry]]) -> None:
        loop = asyncio.get_running_loop()
        delay = self.retry_delay
        while True:
            try:
                n = await loop.run_in_executor(self.executor, self.store.write_batches, batches)
                self.healthy = True
                self.on_written(n)
                return
            except sqlite3.Error as e:
                # Never drop what was answered: keep retrying; meanwhile the queue fills and requests get 503.
                self.healthy = False
                self.on_error()
                log.error("decision log write failed (%s); retrying in %.1fs", e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _run(self) -> None:
        # One wait per flush cycle (not per record): woken when a batch is ready, else at the interval.
        while True:
            if len(self._items) < self.batch_size and not self.closing:
                try:
                    await asyncio.wait_for(self._wake.wait(), self.flush_interval)
                except TimeoutError:
                    pass
            self._wake.clear()
            batch = self._take()
            if batch:
                await self._write([batch])
            elif self.closing:
                return

    async def close(self, timeout: float = 30.0) -> None:
        """Stop accepting, write everything queued, close the store."""
        self.closing = True
        if self.task is not None:
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(self.task), timeout)
            except TimeoutError:
                log.error("decision log: %d records could not be written within %.0fs", self.qsize(), timeout)
                self.task.cancel()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self.store.close)
        self.executor.shutdown(wait=True)
