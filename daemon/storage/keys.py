"""API keys at rest: the :class:`KeyStore` interface and its SQLite implementation.

Only bcrypt hashes are stored. Every change bumps ``seq`` to one more than the
largest in the table, so a running daemon picks up exactly the rows changed
since its last look with one indexed query.
"""

from __future__ import annotations

import abc
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import aiosqlite

from daemon import tokens
from daemon.errors import NotFoundError, StorageError
from daemon.units import format_duration


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One API key as stored (hashes included; never print them)."""

    key_id: str
    name: str
    secret_hash: bytes
    prev_secret_hash: bytes | None
    prev_expires_at: float | None
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    rotated_at: float | None
    last_used_at: float | None
    rate_limit: int
    rate_window: float
    policy: str
    seq: int

    def status(self, now: float | None = None) -> str:
        """``active``, ``revoked`` or ``expired``."""
        now = time.time() if now is None else now
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def public(self, now: float | None = None) -> dict[str, Any]:
        """The key as shown to users: no hashes."""
        d = asdict(self)
        for secret in ("secret_hash", "prev_secret_hash", "seq"):
            d.pop(secret)
        d["status"] = self.status(now)
        d["rate_limit"] = f"{self.rate_limit}/{format_duration(self.rate_window)}"
        d["grace_until"] = d.pop("prev_expires_at")
        return d


_COLUMNS = (
    "key_id, name, secret_hash, prev_secret_hash, prev_expires_at, created_at, expires_at, revoked_at, "
    "rotated_at, last_used_at, rate_limit, rate_window, policy, seq"
)
_NEXT_SEQ = "(SELECT COALESCE(MAX(seq), 0) + 1 FROM api_keys)"


def _record(row: sqlite3.Row | tuple[Any, ...]) -> KeyRecord:
    return KeyRecord(*row)


class KeyStore(abc.ABC):
    """Where keys live. Narrow on purpose so that other stores can stand beside SQLite."""

    @abc.abstractmethod
    async def create(
        self, name: str, secret_hash: bytes, rate_limit: int, rate_window: float,
        expires_at: float | None, policy: str, key_id: str | None = None,
    ) -> KeyRecord:
        """Store a new key and return it."""

    @abc.abstractmethod
    async def get(self, key_id: str) -> KeyRecord | None:
        """The key with this id, or None."""

    @abc.abstractmethod
    async def list_all(self) -> list[KeyRecord]:
        """Every key, oldest first."""

    @abc.abstractmethod
    async def revoke(self, key_id: str, at: float) -> KeyRecord:
        """Mark a key revoked; NotFoundError if there is none."""

    @abc.abstractmethod
    async def rotate(self, key_id: str, secret_hash: bytes, grace_until: float | None, at: float) -> KeyRecord:
        """Replace a key's secret; the old one stays valid until ``grace_until``."""

    @abc.abstractmethod
    async def update(self, key_id: str, **fields: Any) -> KeyRecord:
        """Change name, rate_limit, rate_window, policy or expires_at."""

    @abc.abstractmethod
    async def changed_since(self, seq: int) -> list[KeyRecord]:
        """Keys changed after change number ``seq``, in change order."""

    @abc.abstractmethod
    async def touch(self, last_used: Mapping[str, float]) -> None:
        """Record last-use times in one write (never per request)."""


_UPDATABLE = {"name", "rate_limit", "rate_window", "policy", "expires_at"}


class SqliteKeyStore(KeyStore):
    """KeyStore over an aiosqlite connection."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

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
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"cannot update {', '.join(sorted(unknown))}")
        if fields:
            sets = ", ".join(f"{k} = ?" for k in fields)
            await self._write(
                f"UPDATE api_keys SET {sets}, seq = {_NEXT_SEQ} WHERE key_id = ?", (*fields.values(), key_id)
            )
        return await self._require(key_id)

    async def changed_since(self, seq: int) -> list[KeyRecord]:
        """Keys changed after change number ``seq``, in change order."""
        async with self.db.execute(
            f"SELECT {_COLUMNS} FROM api_keys WHERE seq > ? ORDER BY seq", (seq,)
        ) as cur:
            return [_record(tuple(r)) for r in await cur.fetchall()]

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
