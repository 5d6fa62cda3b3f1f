"""API keys in the embedded SQLite store.

Only bcrypt hashes are stored. Every change bumps ``seq`` to one more than the largest in use (SQLite
runs one write at a time, so the numbers follow the commits), so a running daemon picks up exactly
the keys changed since its last look with one indexed query. A deleted key leaves a tombstone with
its own change number, which the change feed reports as a revoked key.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import aiosqlite

from daemon import tokens
from daemon.errors import NotFoundError, StorageError
from daemon.storage.interface import UPDATABLE_KEY_FIELDS, KeyRecord, KeyStore
from daemon.storage.sqlite_db import connect

_COLUMNS = (
    "key_id, name, secret_hash, prev_secret_hash, prev_expires_at, created_at, expires_at, revoked_at, "
    "rotated_at, last_used_at, rate_limit, rate_window, policy, seq"
)
_NEXT_SEQ = (
    "(SELECT MAX((SELECT COALESCE(MAX(seq), 0) FROM api_keys), (SELECT COALESCE(MAX(seq), 0) FROM key_tombstones))"
    " + 1)"
)


def _record(row: sqlite3.Row | tuple[Any, ...]) -> KeyRecord:
    return KeyRecord(*row)




class SqliteKeyStore(KeyStore):
    """KeyStore over an aiosqlite connection to the database file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None

    @property
    def db(self) -> aiosqlite.Connection:
        """The open connection."""
        if self._db is None:
            raise StorageError("the key store is not open")
        return self._db

    async def open(self) -> None:
        """Connect to (and migrate) the database."""
        self._db = await connect(self.path)

    async def close(self) -> None:
        """Close the connection."""
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def _one(self, sql: str, params: Iterable[Any]) -> KeyRecord | None:
        async with self.db.execute(sql, tuple(params)) as cur:
            row = await cur.fetchone()
        return _record(tuple(row)) if row else None

    async def _write(self, sql: str, params: Iterable[Any]) -> None:
        try:
            await self.db.execute(sql, tuple(params))
        except sqlite3.Error as e:
            raise StorageError(f"cannot write key: {e}") from None

    async def create(
        self, name: str, secret_hash: bytes, rate_limit: int, rate_window: float,
        expires_at: float | None, policy: str, key_id: str | None = None,
    ) -> KeyRecord:
        """Store a new key and return it."""
        for _ in range(5):
            kid = key_id or tokens.new_key_id()
            try:
                await self.db.execute(
                    f"INSERT INTO api_keys ({_COLUMNS}) VALUES (?, ?, ?, NULL, NULL, ?, ?, NULL, NULL, NULL, ?, ?, ?, "
                    f"{_NEXT_SEQ})",
                    (kid, name, secret_hash, time.time(), expires_at, rate_limit, rate_window, policy),
                )
            except sqlite3.IntegrityError:
                if key_id:
                    raise StorageError(f"key {key_id} exists already") from None
                continue
            rec = await self.get(kid)
            assert rec is not None
            return rec
        raise StorageError("could not allocate a unique key id")

    async def get(self, key_id: str) -> KeyRecord | None:
        """The key with this id, or None."""
        return await self._one(f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = ?", (key_id,))

    async def list_all(self) -> list[KeyRecord]:
        """Every key, oldest first."""
        async with self.db.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, key_id") as cur:
            return [_record(tuple(r)) for r in await cur.fetchall()]

    async def _require(self, key_id: str) -> KeyRecord:
        rec = await self.get(key_id)
        if rec is None:
            raise NotFoundError(f"no key with id {key_id!r}")
        return rec

    async def revoke(self, key_id: str, at: float) -> KeyRecord:
        """Mark a key revoked (idempotent); NotFoundError if there is none."""
        rec = await self._require(key_id)
        if rec.revoked_at is None:
            await self._write(
                f"UPDATE api_keys SET revoked_at = ?, seq = {_NEXT_SEQ} WHERE key_id = ?", (at, key_id)
            )
        return await self._require(key_id)

    async def rotate(self, key_id: str, secret_hash: bytes, grace_until: float | None, at: float) -> KeyRecord:
        """Replace a key's secret; the old one stays valid until ``grace_until`` (None: not at all)."""
        rec = await self._require(key_id)
        if rec.revoked_at is not None:
            raise StorageError(f"key {key_id} is revoked; create a new key instead")
        prev = rec.secret_hash if grace_until is not None else None
        await self._write(
            "UPDATE api_keys SET secret_hash = ?, prev_secret_hash = ?, prev_expires_at = ?, rotated_at = ?, "
            f"seq = {_NEXT_SEQ} WHERE key_id = ?",
            (secret_hash, prev, grace_until, at, key_id),
        )
        return await self._require(key_id)

    async def update(self, key_id: str, **fields: Any) -> KeyRecord:
        """Change name, rate_limit, rate_window, policy or expires_at."""
        await self._require(key_id)
        unknown = set(fields) - UPDATABLE_KEY_FIELDS
        if unknown:
            raise ValueError(f"cannot update {', '.join(sorted(unknown))}")
        if fields:
            sets = ", ".join(f"{k} = ?" for k in fields)
            await self._write(
                f"UPDATE api_keys SET {sets}, seq = {_NEXT_SEQ} WHERE key_id = ?", (*fields.values(), key_id)
            )
        return await self._require(key_id)

    async def delete(self, key_id: str) -> None:
        """Remove a key, leaving a tombstone for the change feed; NotFoundError if there is none."""
        await self._require(key_id)
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            await self.db.execute(
                f"INSERT OR REPLACE INTO key_tombstones (key_id, deleted_at, seq) VALUES (?, ?, {_NEXT_SEQ})",
                (key_id, time.time()),
            )
            await self.db.execute("DELETE FROM api_keys WHERE key_id = ?", (key_id,))
            await self.db.execute("COMMIT")
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise

    async def changed_since(self, seq: int) -> list[KeyRecord]:
        """Keys changed after change number ``seq``, in change order (deleted keys as revoked tombstones)."""
        async with self.db.execute(
            f"SELECT {_COLUMNS} FROM api_keys WHERE seq > ? ORDER BY seq", (seq,)
        ) as cur:
            changed = [_record(tuple(r)) for r in await cur.fetchall()]
        async with self.db.execute(
            "SELECT key_id, deleted_at, seq FROM key_tombstones WHERE seq > ? ORDER BY seq", (seq,)
        ) as cur:
            gone = [tombstone(k, at, s) for k, at, s in await cur.fetchall()]
        if gone:
            changed = sorted(changed + gone, key=lambda r: r.seq)
        return changed

    async def touch(self, last_used: Mapping[str, float]) -> None:
        """Record last-use times in one transaction (last_used_at never moves back)."""
        if not last_used:
            return
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            await self.db.executemany(
                "UPDATE api_keys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?) WHERE key_id = ?",
                [(t, k) for k, t in last_used.items()],
            )
            await self.db.execute("COMMIT")
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise


def tombstone(key_id: str, deleted_at: float, seq: int) -> KeyRecord:
    """How the change feed reports a deleted key: revoked, with no secret that could match."""
    return KeyRecord(key_id, "", b"", None, None, deleted_at, None, deleted_at, None, None, 1, 1.0, "default", seq)
