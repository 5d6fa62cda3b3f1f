"""API keys in PostgreSQL, and the change feed that brings every change to every daemon within a second.

Several processes change keys at once here (the CLI anywhere, daemons touching last-use times), so
the change numbers cannot be SQLite's ``MAX(seq) + 1``. Every change to a key or a tombstone goes
through a trigger (migration 3) that takes its ``seq`` from a sequence, records the changing
transaction's id (``xid``) and sends ``NOTIFY aigov_keys``.

A sequence alone is not enough: transaction A may take seq 7, transaction B seq 8, and B commit
first. A reader that saw 8 and then asks for "seq > 8" would never see 7. So each read also takes
the oldest transaction still running at that moment (``pg_snapshot_xmin`` of its snapshot, the
*horizon*), and the next read asks for ``seq > last OR xid >= horizon``: every transaction older than
the horizon had finished before the previous read, so whatever it wrote was seen then; anything not
seen yet was written by a transaction at or after the horizon. This is exact, whatever the commit
order (a window of seq numbers re-read behind the last one would be a guess: a transaction can stay
open for any time). A change read twice this way is handed out once (the store remembers the seq it
last handed out for each key). The feed is per store object: each daemon has its own.

``wait_for_changes`` listens on a dedicated connection (LISTEN/NOTIFY) and returns as soon as a
change is announced. Notifications sent while that connection is down are lost, so when it comes
back the next read is a full one; a full read also happens every :data:`SAFETY_RESYNC_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from daemon import tokens
from daemon.errors import NotFoundError, StorageError
from daemon.storage.interface import UPDATABLE_KEY_FIELDS, KeyRecord, KeyStore
from daemon.storage.postgres_db import (
    CONNECT_TIMEOUT,
    DAEMON_STATEMENT_TIMEOUT_MS,
    KEY_CHANNEL,
    PgTarget,
    _import_asyncpg,
    connect,
    describe_error,
    is_database_error,
    migrate,
    server_settings,
)
from daemon.storage.sqlite_keys import tombstone

if TYPE_CHECKING:
    import asyncpg

log = logging.getLogger("aigov.storage")

SAFETY_RESYNC_SECONDS = 60.0
LISTENER_CHECK_SECONDS = 5.0  # how often the listening connection is asked whether it still works
COMMAND_TIMEOUT = 10.0  # seconds the client waits for one statement (a hung server must not hang auth)
_NO_HORIZON = 1 << 62  # "no transaction is still running": only seq > last is read

_COLUMNS = ("key_id, name, secret_hash, prev_secret_hash, prev_expires_at, created_at, expires_at, revoked_at, "
            "rotated_at, last_used_at, rate_limit, rate_window, policy, seq")
# One statement, so that the rows and the horizon come from one snapshot. The LEFT JOIN keeps a row
# (with kind NULL) when nothing changed, to carry the horizon.
_FEED = f"""
WITH h AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon)
SELECT h.horizon, c.* FROM h LEFT JOIN (
    SELECT 'k' AS kind, {_COLUMNS} FROM api_keys WHERE seq > $1 OR xid >= $2
    UNION ALL
    SELECT 't', key_id, NULL, NULL, NULL, NULL, deleted_at, NULL, NULL, NULL, NULL, NULL, NULL, NULL, seq
        FROM key_tombstones WHERE seq > $1 OR xid >= $2
) c ON true
"""


def _record(row: asyncpg.Record) -> KeyRecord:
    return KeyRecord(
        row["key_id"], row["name"], bytes(row["secret_hash"]),
        bytes(row["prev_secret_hash"]) if row["prev_secret_hash"] is not None else None,
        row["prev_expires_at"], row["created_at"], row["expires_at"], row["revoked_at"], row["rotated_at"],
        row["last_used_at"], row["rate_limit"], row["rate_window"], row["policy"], row["seq"],
    )


class PostgresKeyStore(KeyStore):
    """KeyStore over a small asyncpg pool, with a listening connection for the change feed."""

    def __init__(self, target: PgTarget, *, pool_size: int = 2) -> None:
        self.target = target
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._horizon: int | None = None
        self._handed_out: dict[tuple[str, str], int] = {}  # (kind, key_id) -> seq last handed out
        self._last_full = 0.0
        self._resync = False
        self._changed = asyncio.Event()
        self._listener: asyncio.Task[None] | None = None
        self.listening = False  # the dedicated connection is up (for tests and status)
        self.reconnects = 0

    @property
    def pool(self) -> asyncpg.Pool:
        """The open pool."""
        if self._pool is None:
            raise StorageError("the key store is not open")
        return self._pool

    async def open(self) -> None:
        """Connect, and migrate the schema."""
        asyncpg = _import_asyncpg()
        try:
            # min_size=0: connections are made when asked for. With a floor, asyncpg reconnects in the
            # background while the server is away and logs a traceback each time it fails.
            self._pool = await asyncpg.create_pool(
                self.target.dsn, min_size=0, max_size=self.pool_size, timeout=CONNECT_TIMEOUT,
                command_timeout=COMMAND_TIMEOUT,
                server_settings=server_settings(self.target, DAEMON_STATEMENT_TIMEOUT_MS, "aigov keys"),
            )
            async with self.pool.acquire() as conn:
                await migrate(conn, self.target.schema)
        except StorageError:
            await self.close()
            raise
        except Exception as e:
            await self.close()
            if is_database_error(e):
                raise describe_error(self.target, e) from None
            raise

    async def close(self) -> None:
        """Stop listening and close the pool."""
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), 5)

    # -- statements, each a clear StorageError when the database fails -------------------------

    async def _fetch(self, sql: str, *args: Any, unique_ok: bool = False) -> list[asyncpg.Record]:
        try:
            rows: list[asyncpg.Record] = await self.pool.fetch(sql, *args)
        except Exception as e:
            if unique_ok and isinstance(e, _import_asyncpg().UniqueViolationError):
                raise
            if is_database_error(e):
                raise describe_error(self.target, e) from None
            raise
        return rows

    async def _one(self, sql: str, *args: Any, unique_ok: bool = False) -> KeyRecord | None:
        rows = await self._fetch(sql, *args, unique_ok=unique_ok)
        return _record(rows[0]) if rows else None

    async def create(
        self, name: str, secret_hash: bytes, rate_limit: int, rate_window: float,
        expires_at: float | None, policy: str, key_id: str | None = None,
    ) -> KeyRecord:
        """Store a new key and return it."""
        asyncpg = _import_asyncpg()
        for _ in range(5):
            kid = key_id or tokens.new_key_id()
            try:
                rec = await self._one(
                    f"INSERT INTO api_keys (key_id, name, secret_hash, created_at, expires_at, rate_limit, "
                    f"rate_window, policy, seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0) RETURNING {_COLUMNS}",
                    kid, name, secret_hash, time.time(), expires_at, rate_limit, rate_window, policy, unique_ok=True,
                )
            except asyncpg.UniqueViolationError:
                if key_id:
                    raise StorageError(f"key {key_id} exists already") from None
                continue
            assert rec is not None
            return rec
        raise StorageError("could not allocate a unique key id")

    async def get(self, key_id: str) -> KeyRecord | None:
        """The key with this id, or None."""
        return await self._one(f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = $1", key_id)

    async def list_all(self) -> list[KeyRecord]:
        """Every key, oldest first."""
        return [_record(r) for r in await self._fetch(f"SELECT {_COLUMNS} FROM api_keys "
                                                      'ORDER BY created_at, key_id COLLATE "C"')]

    async def _require(self, key_id: str) -> KeyRecord:
        rec = await self.get(key_id)
        if rec is None:
            raise NotFoundError(f"no key with id {key_id!r}")
        return rec

    async def revoke(self, key_id: str, at: float) -> KeyRecord:
        """Mark a key revoked (idempotent); NotFoundError if there is none."""
        rec = await self._one(f"UPDATE api_keys SET revoked_at = $2 WHERE key_id = $1 AND revoked_at IS NULL "
                              f"RETURNING {_COLUMNS}", key_id, at)
        return rec if rec is not None else await self._require(key_id)

    async def rotate(self, key_id: str, secret_hash: bytes, grace_until: float | None, at: float) -> KeyRecord:
        """Replace a key's secret; the old one stays valid until ``grace_until`` (None: not at all)."""
        rec = await self._require(key_id)
        if rec.revoked_at is not None:
            raise StorageError(f"key {key_id} is revoked; create a new key instead")
        prev = rec.secret_hash if grace_until is not None else None
        new = await self._one(
            "UPDATE api_keys SET secret_hash = $2, prev_secret_hash = $3, prev_expires_at = $4, rotated_at = $5 "
            f"WHERE key_id = $1 RETURNING {_COLUMNS}", key_id, secret_hash, prev, grace_until, at,
        )
        return new if new is not None else await self._require(key_id)

    async def update(self, key_id: str, **fields: Any) -> KeyRecord:
        """Change name, rate_limit, rate_window, policy or expires_at."""
        unknown = set(fields) - UPDATABLE_KEY_FIELDS
        if unknown:
            raise ValueError(f"cannot update {', '.join(sorted(unknown))}")
        if not fields:
            return await self._require(key_id)
        sets = ", ".join(f"{k} = ${i}" for i, k in enumerate(fields, 2))
        rec = await self._one(f"UPDATE api_keys SET {sets} WHERE key_id = $1 RETURNING {_COLUMNS}",
                              key_id, *fields.values())
        if rec is None:
            raise NotFoundError(f"no key with id {key_id!r}")
        return rec

    async def delete(self, key_id: str) -> None:
        """Remove a key, leaving a tombstone for the change feed; NotFoundError if there is none."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                gone = await conn.fetchval("DELETE FROM api_keys WHERE key_id = $1 RETURNING key_id", key_id)
                if gone is None:
                    raise NotFoundError(f"no key with id {key_id!r}")
                await conn.execute(
                    "INSERT INTO key_tombstones (key_id, deleted_at, seq) VALUES ($1, $2, 0) "
                    "ON CONFLICT (key_id) DO UPDATE SET deleted_at = EXCLUDED.deleted_at", key_id, time.time(),
                )
        except NotFoundError:
            raise
        except Exception as e:
            if is_database_error(e):
                raise describe_error(self.target, e) from None
            raise

    async def touch(self, last_used: Mapping[str, float]) -> None:
        """Record last-use times in one statement (last_used_at never moves back; not a change)."""
        if not last_used:
            return
        ids, times = zip(*last_used.items(), strict=True)
        await self._fetch(
            "UPDATE api_keys k SET last_used_at = GREATEST(COALESCE(k.last_used_at, 0), u.t) "
            "FROM unnest($1::text[], $2::float8[]) AS u(key_id, t) WHERE k.key_id = u.key_id",
            list(ids), list(times),
        )

    # -- the change feed ------------------------------------------------------------------------

    async def changed_since(self, seq: int) -> list[KeyRecord]:
        """Keys changed after change number ``seq`` (and changes that committed late), in change order."""
        now = time.monotonic()
        full = seq == 0 or self._resync or now - self._last_full >= SAFETY_RESYNC_SECONDS
        if seq == 0:
            self._handed_out.clear()
        if full:
            self._resync = False
            after, horizon = 0, 0
        else:
            after, horizon = seq, (self._horizon if self._horizon is not None else _NO_HORIZON)
        rows = await self._fetch(_FEED, after, horizon)
        changed = self._hand_out(rows)
        self._horizon = int(rows[0]["horizon"])
        if full:
            self._last_full = now
        return changed

    def _hand_out(self, rows: Iterable[asyncpg.Record]) -> list[KeyRecord]:
        """The rows not handed out before (with this seq), as records in change order."""
        out = []
        for r in rows:
            kind = r["kind"]
            if kind is None:
                continue
            ident = (kind, r["key_id"])
            if self._handed_out.get(ident) == r["seq"]:
                continue
            self._handed_out[ident] = r["seq"]
            out.append(_record(r) if kind == "k" else tombstone(r["key_id"], r["created_at"], r["seq"]))
        out.sort(key=lambda rec: rec.seq)
        return out

    async def wait_for_changes(self, timeout: float) -> None:
        """Return when a change is announced (NOTIFY), or after ``timeout`` seconds."""
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="aigov-key-listener")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)
        self._changed.clear()

    def _notified(self, conn: object, pid: int, channel: str, payload: object) -> None:
        if payload == self.target.schema:
            self._changed.set()

    async def _listen(self) -> None:
        """Keep a connection listening, reconnecting with backoff; a full resync after each reconnect."""
        delay = 0.1
        ever = False
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await connect(self.target, application_name="aigov key listener")
                lost = asyncio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(KEY_CHANNEL, self._notified)
                if ever:  # what was announced while we were away is lost: read everything once
                    self.reconnects += 1
                    log.warning("key change listener reconnected; resynchronising keys")
                    self._resync = True
                    self._changed.set()
                ever = True
                self.listening = True
                delay = 0.1
                while not lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), LISTENER_CHECK_SECONDS)
                    if not lost.is_set():  # a server that hangs closes nothing: ask it
                        await conn.execute("SELECT 1", timeout=CONNECT_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if self.listening or delay == 0.1:
                    log.warning("key change listener: %s; reconnecting", describe_error(self.target, e)
                                if is_database_error(e) else e)
            finally:
                self.listening = False
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
