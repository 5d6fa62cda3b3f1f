"""The decision log in the embedded SQLite store: the writer (:class:`SqliteDecisionStore`) and the
reader behind ``aigov logs`` and ``aigov audit`` (:class:`SqliteDecisionReader`)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import itertools
import math
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from daemon.errors import StorageError
from daemon.storage.interface import ChainReport, DecisionFilter, DecisionReader, DecisionStore
from daemon.storage.records import (
    GENESIS,
    ROW_FIELDS,
    STORED_FIELDS,
    ChainVerifier,
    Entry,
    RecordBuilder,
    checkpoint_values,
    link,
)
from daemon.storage.sqlite_db import (
    BUSY_TIMEOUT_MS,
    MIGRATIONS,
    SCHEMA_VERSION,
    WalCheckpointer,
    connect_sync,
    migrate,
    pending_versions,
    schema_version,
)

_COLS = len(STORED_FIELDS)
_CHUNK = 64  # rows per INSERT (64 * 23 parameters; SQLite allows 32766 since 3.32)
PRUNE_BATCH = 5000  # rows deleted per transaction, so that a prune never holds the write lock for long
PROBE_SOURCES = ("audit", "loadtest")


@functools.lru_cache(maxsize=8)
def _insert_sql(rows: int) -> str:
    """An INSERT of ``rows`` rows."""
    one = "(" + ",".join("?" * _COLS) + ")"
    return f"INSERT INTO decisions ({', '.join(STORED_FIELDS)}) VALUES " + ",".join([one] * rows)


def _head(conn: sqlite3.Connection, chain: str) -> tuple[int, str]:
    """Inside a write transaction: the chain's head, registering a new chain."""
    row = conn.execute("SELECT head_seq, head_hash FROM chains WHERE chain = ?", (chain,)).fetchone()
    if row is None:
        conn.execute("INSERT INTO chains (chain, head_seq, head_hash, created_at) VALUES (?, 0, ?, ?)",
                     (chain, GENESIS, time.time()))
        return 0, GENESIS
    return int(row[0]), str(row[1])


def append_chained(conn: sqlite3.Connection, chain: str, values: Iterable[tuple[Any, ...]]) -> int:
    """Inside an open write transaction: append records to ``chain`` and move its head; returns how many.

    ``values`` is consumed lazily, at most :data:`_CHUNK` rows at a time, each chunk linked and
    then written with one multi-row INSERT. The sqlite3 module releases the GIL once per statement
    step, so the chunk size bounds how long the writer thread keeps the event loop waiting for the
    GIL (about 0.4 ms); executemany would release it once per row, and one statement per batch
    would hold it for a whole backlog batch.
    """
    head_seq, head_hash = _head(conn, chain)
    rows = link(values, chain, head_seq, head_hash)
    n = 0
    last: list[Any] | None = None
    while chunk := list(itertools.islice(rows, _CHUNK)):
        params = list(itertools.chain.from_iterable(chunk))
        # A partial chunk goes in power-of-two pieces: a handful of cached statement shapes.
        size_left, i = len(chunk), 0
        while i < size_left:
            size = 1 << ((size_left - i).bit_length() - 1)
            conn.execute(_insert_sql(size), params[i * _COLS:(i + size) * _COLS])
            i += size
        n += len(chunk)
        last = chunk[-1]
    if last is not None:
        conn.execute("UPDATE chains SET head_seq = ?, head_hash = ? WHERE chain = ?", (last[2], last[-1], chain))
    return n


class SqliteDecisionStore(DecisionStore):
    """Appends this writer's batches to its chain, in a thread of its own (sqlite3 blocks)."""

    def __init__(self, path: Path, chain: str, builder: RecordBuilder, *, checkpoints: bool = True) -> None:
        self.path = path
        self.chain = chain
        self.builder = builder
        self.conn: sqlite3.Connection | None = None
        self.checkpointer: WalCheckpointer | None = None
        self._checkpoints = checkpoints
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="aigov-dlog")

    async def open(self) -> None:
        """Open (and migrate) the database in the writer thread."""
        await asyncio.get_running_loop().run_in_executor(self.executor, self.open_sync)

    async def write(self, batch: Sequence[Entry]) -> None:
        """Append ``batch`` in one transaction, in the writer thread."""
        await asyncio.get_running_loop().run_in_executor(self.executor, self.write_sync, batch)

    async def close(self) -> None:
        """Close the connection in the writer thread, then stop the thread."""
        await asyncio.get_running_loop().run_in_executor(self.executor, self.close_sync)
        self.executor.shutdown(wait=True)

    async def ping(self) -> None:
        """Raise if the database file cannot be read now."""

        def probe() -> None:
            conn = sqlite3.connect(self.path.absolute().as_uri() + "?mode=ro", uri=True)
            try:
                conn.execute("SELECT 1 FROM chains LIMIT 1").fetchall()
            finally:
                conn.close()

        await asyncio.to_thread(probe)

    # -- blocking, in the writer thread --------------------------------------------------------

    def open_sync(self) -> None:
        """Open (and migrate) the database, tuned for one appending writer."""
        self.conn = connect_sync(self.path)
        if self._checkpoints:
            # Checkpoints (the only fsyncs with synchronous=NORMAL) run in a thread of their own, so
            # that the writer never stops for one (see WalCheckpointer).
            self.conn.execute("PRAGMA wal_autocheckpoint = 0")
            self.checkpointer = WalCheckpointer(self.path)
            self.checkpointer.start()

    def write_sync(self, batch: Sequence[Entry]) -> None:
        """Append ``batch`` to this writer's chain in one transaction."""
        values = self.builder.values
        self.append_values(values(e) for e in batch)

    def append_values(self, values: Iterable[tuple[Any, ...]]) -> None:
        """Append record values (:data:`~daemon.storage.records.VALUE_FIELDS` order) in one transaction."""
        if self.conn is None:
            self.open_sync()
        conn = self.conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            append_chained(conn, self.chain, values)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if self.checkpointer is not None:
            self.checkpointer.committed(conn)

    def close_sync(self) -> None:
        """Stop the checkpoint thread and close the connection (which checkpoints what is left)."""
        if self.checkpointer is not None:
            self.checkpointer.stop()
            self.checkpointer = None
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# --- reading ------------------------------------------------------------------------------


def where(flt: DecisionFilter) -> tuple[str, list[Any]]:
    """The SQL condition for a filter, and its parameters."""
    conds: list[str] = []
    params: list[Any] = []
    if not flt.checkpoints:
        conds.append("kind = 'decision'")
    if flt.since is not None:
        conds.append("time >= ?")
        params.append(flt.since)
    if flt.until is not None:
        conds.append("time < ?")
        params.append(flt.until)
    if flt.key is not None:
        conds.append("key_id = ?")
        params.append(flt.key)
    if flt.decision is not None:
        conds.append("decision = ?")
        params.append(flt.decision)
    if flt.rule is not None:
        conds.append("EXISTS (SELECT 1 FROM json_each(decisions.rules) WHERE json_each.value GLOB ?)")
        params.append(flt.rule)
    if flt.model is not None:
        conds.append("model GLOB ?")
        params.append(flt.model)
    if flt.request_id is not None:  # the X-Request-Id of an answer; indexed
        conds.append("request_id = ?")
        params.append(flt.request_id)
    if flt.direction is not None:
        # Records from before directions were recorded checked inputs.
        conds.append("COALESCE(direction, 'input') = ?")
        params.append(flt.direction)
    if not flt.include_probes:
        conds.append("(metadata IS NULL OR COALESCE(json_extract(metadata, '$.source'), '') NOT IN (?, ?))")
        params.extend(PROBE_SOURCES)
    return (" AND ".join(conds) or "1"), params


_SELECT = f"SELECT {', '.join(ROW_FIELDS)} FROM decisions"


def _row(r: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(ROW_FIELDS, r, strict=True))


class SqliteDecisionReader(DecisionReader):
    """Reads the decision log of an SQLite file; a missing file reads as an empty log."""

    backend = "sqlite"
    current_version = SCHEMA_VERSION

    def __init__(self, path: Path, *, migrate: bool = True) -> None:
        self.path = path
        self.migrate = migrate
        self._conn: sqlite3.Connection | None = None

    @property
    def conn(self) -> sqlite3.Connection | None:
        """The connection, opened once the file exists (None before).

        It migrates an older file first (unless told not to: ``aigov audit`` and ``aigov db status``
        report pending migrations rather than apply them), so that every column a reader asks for exists.
        """
        if self._conn is None and self.path.exists():
            self._conn = connect_sync(self.path, create=False, migrate_schema=self.migrate)
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return self._conn

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _q(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        conn = self.conn
        if conn is None:
            return []
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise StorageError(f"cannot read database {self.path}: {e}") from None

    def max_id(self) -> int:
        """The highest record id (0 when empty)."""
        rows = self._q("SELECT COALESCE(MAX(id), 0) FROM decisions")
        return int(rows[0][0]) if rows else 0

    def iter_decisions(self, flt: DecisionFilter, after_id: int = 0, page: int = 1000) -> Iterator[dict[str, Any]]:
        """Matching records above ``after_id`` in id order, read in pages."""
        cond, params = where(flt)
        sql = f"{_SELECT} WHERE id > ? AND {cond} ORDER BY id LIMIT ?"
        last = after_id
        while True:
            rows = self._q(sql, (last, *params, page))
            for r in rows:
                yield _row(r)
            if len(rows) < page:
                return
            last = rows[-1][0]

    def latest(self, flt: DecisionFilter, limit: int, upto: int | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` matching records (id <= ``upto``), oldest first."""
        cond, params = where(flt)
        top = self.max_id() if upto is None else upto
        rows = self._q(f"{_SELECT} WHERE id <= ? AND {cond} ORDER BY id DESC LIMIT ?", (top, *params, limit))
        return [_row(r) for r in reversed(rows)]

    def _counts(self, expr: str, cond: str, params: list[Any], source: str = "decisions",
                limit: int | None = None) -> dict[str, int]:
        lim = f" LIMIT {int(limit)}" if limit else ""
        rows = self._q(f"SELECT {expr} AS k, COUNT(*) AS n FROM {source} WHERE {cond} GROUP BY k "
                       f"ORDER BY n DESC, k{lim}", params)
        return {str(k) if k is not None else "-": int(n) for k, n in rows}

    def stats(self, flt: DecisionFilter, top: int) -> dict[str, Any]:
        """Totals, top counts and latency percentiles of the matching decisions, computed in SQL."""
        cond, params = where(flt)
        rows = self._q(f"SELECT COUNT(*), MIN(time), MAX(time) FROM decisions WHERE {cond}", params)
        total, first, last = rows[0] if rows else (0, None, None)
        return {
            "total": int(total),
            "first": first,
            "last": last,
            "by_decision": self._counts("decision", cond, params),
            "by_rule": self._counts("json_each.value", cond, params, "decisions, json_each(decisions.rules)", top),
            "by_key": self._counts("key_id", cond, params, limit=top),
            "by_model": self._counts("model", cond, params, limit=top),
            "latency_ms": self._latency(cond, params),
        }

    def _latency(self, cond: str, params: list[Any]) -> dict[str, float | None]:
        """Nearest-rank percentiles of latency_ms from one sorted pass (SQLite sorts; Python holds one row)."""
        out: dict[str, float | None] = {f"p{p}": None for p in PERCENTILES}
        out["max"] = out["mean"] = None
        rows = self._q(f"SELECT COUNT(latency_ms) FROM decisions WHERE {cond}", params)
        n = int(rows[0][0]) if rows else 0
        if not n or self.conn is None:
            return out
        rank = {p: max(1, math.ceil(p / 100 * n)) for p in PERCENTILES}
        cur = self.conn.execute(
            f"SELECT latency_ms FROM decisions WHERE {cond} AND latency_ms IS NOT NULL ORDER BY latency_ms", params
        )
        total = value = 0.0
        for i, (value,) in enumerate(cur, 1):
            total += value
            for p, r in rank.items():
                if r == i:
                    out[f"p{p}"] = round(value, 3)
        out["max"] = round(value, 3)
        out["mean"] = round(total / n, 3)
        return out

    def verify_chains(self) -> list[ChainReport]:
        """Verify every chain, each read in seq order through the (chain, seq) index."""
        heads = {c: (int(s), str(h)) for c, s, h in self._q("SELECT chain, head_seq, head_hash FROM chains")}
        names = sorted(set(heads) | {c for (c,) in self._q("SELECT DISTINCT chain FROM decisions")})
        reports = []
        for chain in names:
            v = ChainVerifier(chain, heads.get(chain))
            last = 0
            while True:
                rows = self._q(f"{_SELECT} WHERE chain = ? AND seq > ? ORDER BY seq LIMIT 2000", (chain, last))
                for r in rows:
                    v.add(_row(r))
                if len(rows) < 2000:
                    break
                last = rows[-1][ROW_FIELDS.index("seq")]
            reports.append(v.report())
        return reports

    def prune(self, before: float) -> int:
        """Delete decisions older than ``before`` chain by chain; a checkpoint keeps each chain verifiable.

        The checkpoint goes in first, in a short transaction that holds the chain's head; the old
        records are then deleted in batches of :data:`PRUNE_BATCH`, so that writers never wait long.
        A prune interrupted between batches leaves a chain that still verifies.
        """
        if self.conn is None:
            return 0
        conn = self.conn
        olds = self._q("SELECT chain, MAX(seq) FROM decisions WHERE time < ? AND kind = 'decision' GROUP BY chain",
                       (before,))
        deleted = 0
        for chain, through in olds:
            last = self._q("SELECT hash FROM decisions WHERE chain = ? AND seq = ?", (chain, through))
            count = self._q("SELECT COUNT(*) FROM decisions WHERE chain = ? AND seq <= ?", (chain, through))
            conn.execute("BEGIN IMMEDIATE")
            try:
                append_chained(conn, chain, [checkpoint_values(time.time(), chain, through + 1,
                                                               last[0][0] if last else GENESIS, count[0][0])])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            while True:
                n = conn.execute(
                    "DELETE FROM decisions WHERE id IN (SELECT id FROM decisions WHERE chain = ? AND seq <= ? LIMIT ?)",
                    (chain, through, PRUNE_BATCH),
                ).rowcount
                deleted += n
                if n < PRUNE_BATCH:
                    break
        return deleted

    def schema_version(self) -> int:
        """The highest applied migration (0 when there is no database)."""
        return schema_version(self.conn) if self.conn is not None else 0

    def pending_migrations(self) -> list[int]:
        """Migrations this aigov would apply."""
        return pending_versions(self.conn) if self.conn is not None else [m.version for m in MIGRATIONS]

    def upgrade(self) -> list[int]:
        """Apply the pending migrations; returns those applied."""
        if self.conn is None:
            connect_sync(self.path).close()  # creates the file, migrated
            return [m.version for m in MIGRATIONS]
        return migrate(self.conn)

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        return {t: int(self._q(f"SELECT COUNT(*) FROM {t}")[0][0]) if self.conn is not None else 0
                for t in ("api_keys", "decisions", "chains")}

    def location(self) -> str:
        """The database file."""
        return str(self.path)

    def where(self) -> dict[str, str | int]:
        """The database file."""
        return {"path": str(self.path)}


PERCENTILES = (50, 90, 95, 99)
