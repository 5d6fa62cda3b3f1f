"""The decision log in PostgreSQL: the writer (:class:`PostgresDecisionStore`) and the reader behind
``aigov logs`` and ``aigov audit`` (:class:`PostgresDecisionReader`).

The writer appends each batch to its own chain in one transaction: it locks the chain's row in
``chains`` (``SELECT ... FOR UPDATE``: writers of other chains never wait), links the records after
the head, sends them with binary COPY and moves the head. All of it runs on an event loop in a thread
of its own, so that building, hashing and encoding records never takes the daemon's loop.

Record ids come from one sequence, and the transactions of different writers commit in any order,
so "id > the last one seen" can miss a record that commits late. ``aigov logs --follow`` therefore
follows each chain by ``seq`` instead (:meth:`PostgresDecisionReader.follow_next`): within a chain,
records become visible in seq order, and the chain's head says how far they go.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from daemon.errors import StorageError
from daemon.storage.interface import ChainReport, DecisionFilter, DecisionReader, DecisionStore
from daemon.storage.postgres_db import (
    CLI_STATEMENT_TIMEOUT_MS,
    MIGRATIONS,
    SCHEMA_VERSION,
    LoopThread,
    PgTarget,
    describe_error,
    is_database_error,
    migrate,
    open_migrated,
    pending_versions,
    schema_version,
)
from daemon.storage.records import (
    GENESIS,
    ROW_FIELDS,
    STORED_FIELDS,
    VALUE_FIELDS,
    ChainVerifier,
    Entry,
    RecordBuilder,
    checkpoint_values,
    link,
)

if TYPE_CHECKING:
    import asyncpg

WRITE_TIMEOUT = 30.0  # seconds the writer waits for one statement before it counts as failed
PING_TIMEOUT = 2.0
PRUNE_BATCH = 5000
VERIFY_PAGE = 2000
PROBE_SOURCES = ("audit", "loadtest")
PERCENTILES = (50, 90, 95, 99)

_LOCK_HEAD = "SELECT head_seq, head_hash FROM chains WHERE chain = $1 FOR UPDATE"
_REGISTER = ("INSERT INTO chains (chain, head_seq, head_hash, created_at) VALUES ($1, 0, $2, $3) "
             "ON CONFLICT (chain) DO NOTHING")
_MOVE_HEAD = "UPDATE chains SET head_seq = $2, head_hash = $3 WHERE chain = $1"
# The values a person sends (model, operation, the input) may hold NUL, which PostgreSQL text cannot.
_USER_TEXT = tuple(VALUE_FIELDS.index(f) for f in ("model", "operation", "input"))


def without_nul(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """Record values with any NUL character in the sent text replaced by U+FFFD, before they are hashed."""
    if not any(values[i] is not None and "\x00" in values[i] for i in _USER_TEXT):
        return values
    fixed = list(values)
    for i in _USER_TEXT:
        if fixed[i] is not None:
            fixed[i] = fixed[i].replace("\x00", "\ufffd")
    return tuple(fixed)


async def append_chained(conn: asyncpg.Connection, chain: str, values: Sequence[tuple[Any, ...]]) -> int:
    """Inside an open transaction: append records to ``chain`` after its (locked) head; returns how many."""
    head = await conn.fetchrow(_LOCK_HEAD, chain)
    if head is None:
        await conn.execute(_REGISTER, chain, GENESIS, time.time())
        head = await conn.fetchrow(_LOCK_HEAD, chain)
        assert head is not None
    rows = list(link(values, chain, head["head_seq"], head["head_hash"]))
    if not rows:
        return 0
    await conn.copy_records_to_table("decisions", records=rows, columns=STORED_FIELDS)
    last = rows[-1]
    await conn.execute(_MOVE_HEAD, chain, last[2], last[-1])
    return len(rows)


class PostgresDecisionStore(DecisionStore):
    """Appends this writer's batches to its chain, on an event loop in a thread of its own."""

    def __init__(self, target: PgTarget, chain: str, builder: RecordBuilder) -> None:
        self.target = target
        self.chain = chain
        self.builder = builder
        self._thread: LoopThread | None = None
        self._conn: asyncpg.Connection | None = None  # used on the thread's loop only
        self._ping_conn: asyncpg.Connection | None = None

    @property
    def thread(self) -> LoopThread:
        """The writer's thread (started by :meth:`open`)."""
        if self._thread is None:
            self._thread = LoopThread("aigov-dlog")
        return self._thread

    async def open(self) -> None:
        """Connect and migrate (StorageError, one line, when the database cannot be reached)."""
        await self.thread.run_async(self._connection())

    async def write(self, batch: Sequence[Entry]) -> None:
        """Append ``batch`` to this writer's chain in one transaction, off the caller's loop."""
        await self.thread.run_async(self._write(batch))

    async def ping(self) -> None:
        """Raise if the database cannot be reached now (a connection of its own: the writer may be busy)."""
        await self.thread.run_async(self._ping())

    async def close(self) -> None:
        """Close the connections and stop the thread."""
        if self._thread is None:
            return
        await self._thread.run_async(self._close())
        self._thread.stop()
        self._thread = None

    # -- on the writer's loop -------------------------------------------------------------------

    async def _connection(self) -> asyncpg.Connection:
        conn = self._conn
        if conn is None or conn.is_closed():
            self._conn = None
            # synchronous_commit off for this session only: a commit returns without waiting for the
            # WAL to reach disk (that wait was ~10 ms per batch here, 5k records/s). What the daemon
            # answered already waits up to log_flush_interval in memory; a crash of the *server* can now
            # lose its last ~0.6 s of commits as well (never a torn chain: the WAL is flushed in order),
            # as SQLite's synchronous=NORMAL can lose its last commits on power loss.
            conn = await open_migrated(self.target, application_name=f"aigov writer {self.chain}",
                                       synchronous_commit="off")
            try:
                await conn.execute(_REGISTER, self.chain, GENESIS, time.time())
            except Exception as e:
                await _close_quietly(conn)
                if is_database_error(e):
                    raise describe_error(self.target, e) from None
                raise
            self._conn = conn
        return conn

    async def _write(self, batch: Sequence[Entry]) -> None:
        values = self.builder.values
        records = [without_nul(values(e)) for e in batch]
        conn = await self._connection()
        try:
            async with conn.transaction():
                await append_chained(conn, self.chain, records)
        except Exception as e:
            if is_database_error(e):
                # Whatever state the connection is in, the next try starts from a new one.
                self._conn = None
                await _close_quietly(conn)
                raise describe_error(self.target, e) from None
            raise

    async def _ping(self) -> None:
        try:
            if self._ping_conn is None or self._ping_conn.is_closed():
                self._ping_conn = await open_migrated(self.target, migrate_schema=False,
                                                      application_name="aigov readiness")
            await self._ping_conn.fetchval("SELECT 1 FROM chains LIMIT 1", timeout=PING_TIMEOUT)
        except StorageError:
            raise
        except Exception as e:
            if self._ping_conn is not None:
                await _close_quietly(self._ping_conn)
                self._ping_conn = None
            if is_database_error(e):
                raise describe_error(self.target, e) from None
            raise

    async def _close(self) -> None:
        for conn in (self._conn, self._ping_conn):
            if conn is not None:
                await _close_quietly(conn)
        self._conn = self._ping_conn = None


async def _close_quietly(conn: asyncpg.Connection) -> None:
    with contextlib.suppress(Exception):
        if not conn.is_closed():
            await conn.close(timeout=2)
        return
    conn.terminate()


# --- reading ------------------------------------------------------------------------------


def glob_regex(pattern: str) -> str:
    """SQLite's GLOB (``*``, ``?``, ``[...]`` with ``^`` for not; case-sensitive) as an anchored regex."""
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            start = i + 1
            neg = pattern[start:start + 1] == "^"
            start += neg
            first = start + (pattern[start:start + 1] == "]")  # a ] first in the set is one of its members
            end = pattern.find("]", first)
            if end < 0:
                return "^(?!)"  # SQLite: a set that is never closed matches nothing
            body = pattern[start:end].replace("\\", "\\\\").replace("[", "\\[")
            out.append("[" + ("^" if neg else "") + body + "]")
            i = end
        else:
            out.append("\\" + c if not c.isalnum() and c != "_" and ord(c) < 128 else c)
        i += 1
    out.append("$")
    return "".join(out)


def where(flt: DecisionFilter, first: int = 1) -> tuple[str, list[Any]]:
    """The SQL condition for a filter (placeholders from ``$first``), and its parameters."""
    conds: list[str] = []
    params: list[Any] = []

    def p(value: Any) -> str:
        params.append(value)
        return f"${first + len(params) - 1}"

    if not flt.checkpoints:
        conds.append("kind = 'decision'")
    if flt.since is not None:
        conds.append(f"time >= {p(flt.since)}")
    if flt.until is not None:
        conds.append(f"time < {p(flt.until)}")
    if flt.key is not None:
        conds.append(f"key_id = {p(flt.key)}")
    if flt.decision is not None:
        conds.append(f"decision = {p(flt.decision)}")
    if flt.rule is not None:
        conds.append(f"EXISTS (SELECT 1 FROM json_array_elements_text(decisions.rules::json) AS r(v) "
                     f"WHERE r.v ~ {p(glob_regex(flt.rule))})")
    if flt.model is not None:
        conds.append(f"model ~ {p(glob_regex(flt.model))}")
    if flt.request_id is not None:  # the X-Request-Id of an answer; indexed
        conds.append(f"request_id = {p(flt.request_id)}")
    if flt.direction is not None:
        conds.append(f"COALESCE(direction, 'input') = {p(flt.direction)}")
    if not flt.include_probes:
        # -> (json), not ->> (text): a value holding \u0000 cannot become text, but compares as JSON.
        conds.append(f"(metadata IS NULL OR COALESCE((metadata::json -> 'source')::text, '') "
                     f"NOT IN ({p(_json_str(PROBE_SOURCES[0]))}, {p(_json_str(PROBE_SOURCES[1]))}))")
    return (" AND ".join(conds) or "true"), params


def _json_str(s: str) -> str:
    return f'"{s}"'


_SELECT = f"SELECT {', '.join(ROW_FIELDS)} FROM decisions"


def _row(r: asyncpg.Record) -> dict[str, Any]:
    return dict(zip(ROW_FIELDS, r, strict=True))


async def verify_chains(conn: asyncpg.Connection) -> list[ChainReport]:
    """Verify every chain, each read in seq order through the (chain, seq) index."""
    heads = {r["chain"]: (int(r["head_seq"]), str(r["head_hash"]))
             for r in await conn.fetch("SELECT chain, head_seq, head_hash FROM chains")}
    # The distinct chains of the records, one index probe per chain (a "loose index scan").
    found = await conn.fetch("""
        WITH RECURSIVE c AS (
            SELECT min(chain) AS chain FROM decisions
            UNION ALL
            SELECT (SELECT min(chain) FROM decisions WHERE chain > c.chain) FROM c WHERE c.chain IS NOT NULL
        ) SELECT chain FROM c WHERE chain IS NOT NULL""")
    names = sorted(set(heads) | {r["chain"] for r in found})
    page = await conn.prepare(f"{_SELECT} WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT {VERIFY_PAGE}")
    seq_at = ROW_FIELDS.index("seq")
    reports = []
    for chain in names:
        v = ChainVerifier(chain, heads.get(chain))
        last = -(1 << 62)
        while True:
            rows = await page.fetch(chain, last)
            for r in rows:
                v.add(_row(r))
            if len(rows) < VERIFY_PAGE:
                break
            last = rows[-1][seq_at]
        reports.append(v.report())
    return reports


async def _prune(conn: asyncpg.Connection, before: float) -> int:
    olds = await conn.fetch("SELECT chain, max(seq) AS through FROM decisions WHERE time < $1 AND kind = 'decision' "
                            "GROUP BY chain", before)
    deleted = 0
    for old in olds:
        chain, through = old["chain"], old["through"]
        last = await conn.fetchval("SELECT hash FROM decisions WHERE chain = $1 AND seq = $2", chain, through)
        count = await conn.fetchval("SELECT count(*) FROM decisions WHERE chain = $1 AND seq <= $2", chain, through)
        async with conn.transaction():  # the checkpoint first, in a short transaction holding the head
            await append_chained(conn, chain, [checkpoint_values(time.time(), chain, through + 1,
                                                                 last if last is not None else GENESIS, count)])
        while True:  # then the old records, in batches, so that no lock is held for long
            status = await conn.execute(
                "DELETE FROM decisions WHERE id IN (SELECT id FROM decisions WHERE chain = $1 AND seq <= $2 "
                "LIMIT $3)", chain, through, PRUNE_BATCH)
            n = int(status.split()[-1])
            deleted += n
            if n < PRUNE_BATCH:
                break
    return deleted


class PostgresDecisionReader(DecisionReader):
    """Reads the decision log in PostgreSQL; blocking, for the synchronous CLI.

    asyncpg is asynchronous: the reader runs it on an event loop in a thread of its own and waits for
    each call, so that it works the same from plain code, from a worker thread, and from code that
    already runs an event loop (where a loop of the caller's thread could not be used).
    """

    backend = "postgresql"
    current_version = SCHEMA_VERSION

    def __init__(self, target: PgTarget, *, migrate: bool = True) -> None:
        self.target = target
        self.migrate = migrate
        self._thread: LoopThread | None = None
        self._conn: asyncpg.Connection | None = None
        self._in_snapshot = False

    def _run(self, coro_fn: Any, *args: Any) -> Any:
        if self._thread is None:
            self._thread = LoopThread("aigov-reader")

        async def call() -> Any:
            if self._conn is None:
                self._conn = await open_migrated(self.target, migrate_schema=self.migrate,
                                                 statement_timeout_ms=CLI_STATEMENT_TIMEOUT_MS,
                                                 application_name="aigov cli")
            try:
                return await coro_fn(self._conn, *args)
            except StorageError:
                raise
            except Exception as e:
                if is_database_error(e):
                    raise describe_error(self.target, e) from None
                raise

        return self._thread.run(call())

    def close(self) -> None:
        """Close the connection and stop the thread."""
        if self._thread is None:
            return
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self._thread.run(_close_quietly(conn))
        self._thread.stop()
        self._thread = None

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see the log as of one moment (a REPEATABLE READ transaction)."""
        if self._in_snapshot:
            yield
            return

        async def begin(conn: asyncpg.Connection) -> None:
            await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

        async def end(conn: asyncpg.Connection) -> None:
            if not conn.is_closed() and conn.is_in_transaction():
                await conn.execute("COMMIT")

        self._run(begin)
        self._in_snapshot = True
        try:
            yield
        finally:
            self._in_snapshot = False
            with contextlib.suppress(Exception):  # interrupted mid-read: closing the reader ends it too
                self._run(end)

    def max_id(self) -> int:
        """The highest record id (0 when empty)."""
        async def q(conn: asyncpg.Connection) -> int:
            return int(await conn.fetchval("SELECT COALESCE(max(id), 0) FROM decisions"))
        return int(self._run(q))

    def iter_decisions(self, flt: DecisionFilter, after_id: int = 0, page: int = 1000) -> Iterator[dict[str, Any]]:
        """Matching records above ``after_id`` in id order, read in pages."""
        cond, params = where(flt, 3)
        sql = f"{_SELECT} WHERE id > $1 AND {cond} ORDER BY id LIMIT $2"

        async def q(conn: asyncpg.Connection, last: int) -> list[dict[str, Any]]:
            return [_row(r) for r in await conn.fetch(sql, last, page, *params)]

        last = after_id
        while True:
            rows = self._run(q, last)
            yield from rows
            if len(rows) < page:
                return
            last = rows[-1]["id"]

    def latest(self, flt: DecisionFilter, limit: int, upto: int | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` matching records (id <= ``upto``), oldest first."""
        cond, params = where(flt, 3)
        top = self.max_id() if upto is None else upto
        sql = f"{_SELECT} WHERE id <= $1 AND {cond} ORDER BY id DESC LIMIT $2"

        async def q(conn: asyncpg.Connection) -> list[dict[str, Any]]:
            return [_row(r) for r in await conn.fetch(sql, top, limit, *params)]

        rows: list[dict[str, Any]] = self._run(q)
        rows.reverse()
        return rows

    def stats(self, flt: DecisionFilter, top: int) -> dict[str, Any]:
        """Totals, top counts and latency percentiles of the matching decisions, computed in SQL."""
        cond, params = where(flt)

        async def q(conn: asyncpg.Connection) -> dict[str, Any]:
            async def counts(expr: str, source: str = "decisions", limit: int | None = None) -> dict[str, int]:
                lim = f" LIMIT {int(limit)}" if limit else ""
                # Ties in byte order, NULL first: as SQLite sorts them.
                rows = await conn.fetch(f"SELECT {expr} AS k, count(*) AS n FROM {source} WHERE {cond} GROUP BY k "
                                        f'ORDER BY n DESC, ({expr}) COLLATE "C" NULLS FIRST{lim}', *params)
                return {str(r["k"]) if r["k"] is not None else "-": int(r["n"]) for r in rows}

            total = await conn.fetchrow(f"SELECT count(*) AS n, min(time) AS first, max(time) AS last "
                                        f"FROM decisions WHERE {cond}", *params)
            assert total is not None
            return {
                "total": int(total["n"]),
                "first": total["first"],
                "last": total["last"],
                "by_decision": await counts("decision"),
                "by_rule": await counts("r.v", "decisions, json_array_elements_text(decisions.rules::json) AS r(v)",
                                        top),
                "by_key": await counts("key_id", limit=top),
                "by_model": await counts("model", limit=top),
                "latency_ms": await _latency(conn, cond, params),
            }

        result: dict[str, Any] = self._run(q)
        return result

    def verify_chains(self) -> list[ChainReport]:
        """Verify every chain."""
        reports: list[ChainReport] = self._run(verify_chains)
        return reports

    def prune(self, before: float) -> int:
        """Delete decisions older than ``before`` chain by chain; a checkpoint keeps each chain verifiable.

        As in SQLite: the checkpoint goes in first, in a short transaction that holds the chain's head
        (the writer of that chain waits for it, no other); the old records are then deleted in batches
        of :data:`PRUNE_BATCH`. A prune interrupted between batches leaves chains that verify.
        """
        return int(self._run(_prune, before))

    def follow_start(self, upto: int) -> object:
        """Per chain, the last seq at or below record id ``upto`` (within a chain, ids grow with seq)."""
        async def q(conn: asyncpg.Connection) -> dict[str, int]:
            out = {}
            for r in await conn.fetch("SELECT chain FROM chains"):
                seq = await conn.fetchval("SELECT seq FROM decisions WHERE chain = $1 AND id <= $2 "
                                          "ORDER BY seq DESC LIMIT 1", r["chain"], upto)
                out[r["chain"]] = int(seq) if seq is not None else 0
            return out
        return self._run(q)

    def follow_next(self, flt: DecisionFilter, cursor: object) -> tuple[list[dict[str, Any]], object]:
        """Matching records written since ``cursor``: per chain, seq after the cursor up to the head."""
        assert isinstance(cursor, dict)
        cond, params = where(flt, 4)
        sql = f"{_SELECT} WHERE chain = $1 AND seq > $2 AND seq <= $3 AND {cond} ORDER BY seq"

        async def q(conn: asyncpg.Connection) -> tuple[list[dict[str, Any]], dict[str, int]]:
            rows: list[dict[str, Any]] = []
            nxt = dict(cursor)
            # One snapshot: a chain's head and its records are committed together.
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                for r in await conn.fetch("SELECT chain, head_seq FROM chains"):
                    chain, head = r["chain"], int(r["head_seq"])
                    after = nxt.get(chain, 0)
                    if head > after:
                        rows.extend(_row(x) for x in await conn.fetch(sql, chain, after, head, *params))
                        nxt[chain] = head
            rows.sort(key=lambda d: d["id"])
            return rows, nxt

        rows, nxt = self._run(q)
        return rows, nxt

    def schema_version(self) -> int:
        """The highest applied migration."""
        return int(self._run(schema_version))

    def pending_migrations(self) -> list[int]:
        """Migrations this aigov would apply."""
        pending: list[int] = self._run(pending_versions)
        return pending

    def upgrade(self) -> list[int]:
        """Apply the pending migrations; returns those applied."""
        async def q(conn: asyncpg.Connection) -> list[int]:
            return await migrate(conn, self.target.schema)
        applied: list[int] = self._run(q)
        return applied

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        async def q(conn: asyncpg.Connection) -> dict[str, int]:
            tables = ("api_keys", "decisions", "chains")
            return {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}")) for t in tables}
        result: dict[str, int] = self._run(q)
        return result

    def location(self) -> str:
        """The URL, without its password."""
        return self.target.location()

    def where(self) -> dict[str, str | int]:
        """Host, port, database, schema and user."""
        return self.target.where()


async def _latency(conn: asyncpg.Connection, cond: str, params: list[Any]) -> dict[str, float | None]:
    """Nearest-rank percentiles (percentile_disc is exactly that), max and mean of latency_ms.

    The sum runs in ascending order, as SQLite's reader adds them up, so both print the same mean.
    """
    out: dict[str, float | None] = {f"p{p}": None for p in PERCENTILES}
    out["max"] = out["mean"] = None
    n = len(params) + 1
    row = await conn.fetchrow(
        f"SELECT count(latency_ms) AS n, percentile_disc(${n}::float8[]) WITHIN GROUP (ORDER BY latency_ms) AS ps, "
        f"max(latency_ms) AS max, sum(latency_ms ORDER BY latency_ms) AS total FROM decisions WHERE {cond}",
        *params, [p / 100 for p in PERCENTILES])
    if row is None or not row["n"]:
        return out
    for p, v in zip(PERCENTILES, row["ps"], strict=True):
        out[f"p{p}"] = round(v, 3)
    out["max"] = round(row["max"], 3)
    out["mean"] = round(row["total"] / row["n"], 3)
    return out


__all__ = ["PostgresDecisionReader", "PostgresDecisionStore", "append_chained", "verify_chains", "where",
           "MIGRATIONS"]
