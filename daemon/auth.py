"""Authentication of API tokens.

Cold path (first use of a token): parse and checksum the token, look the key
up by id (a dict, O(1)), then verify the secret with bcrypt in a worker thread.
Warm path: after one successful verification the SHA-256 digest of the token
is kept beside the key and compared in constant time; no ``await``, no bcrypt,
a few microseconds. Concurrent cold requests with the same token share one
bcrypt run, and wrong secrets for a key id are throttled so that guessing
cannot pin the CPU.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Literal

import bcrypt

from daemon import tokens
from daemon.storage.keys import KeyRecord

Clock = Callable[[], float]
FailureReason = Literal["missing", "malformed", "unknown", "revoked", "expired", "wrong_secret", "throttled"]

MIN_BCRYPT_COST = 10
MAX_FAILURES = 5  # wrong secrets per key id per FAILURE_WINDOW before throttling
FAILURE_WINDOW = 60.0
MAX_LOCKOUT = 300.0


def hash_secret(token: str, cost: int = 12) -> bytes:
    """The bcrypt hash stored for a token (blocking: call it off the event loop)."""
    if cost < MIN_BCRYPT_COST:
        raise ValueError(f"bcrypt cost must be at least {MIN_BCRYPT_COST}")
    return bcrypt.hashpw(_bcrypt_input(token), bcrypt.gensalt(rounds=cost))


def _bcrypt_input(token: str) -> bytes:
    # bcrypt reads at most 72 bytes; a token is 47, so it is hashed whole.
    return token.encode("ascii")


def _digest(token: str) -> bytes:
    try:
        return hashlib.sha256(token.encode()).digest()
    except UnicodeEncodeError:  # undecodable header bytes: never a valid token
        return b""


class KeyEntry:
    """A key as the daemon holds it in memory, with its verified-token digests."""

    __slots__ = ("record", "key_id", "limit", "window", "policy", "expires_at", "revoked",
                 "digest", "prev_digest", "prev_until", "failures", "locked_until", "bad_digests")

    def __init__(self, record: KeyRecord) -> None:
        self.record = record
        self.key_id = record.key_id
        self.limit = record.rate_limit
        self.window = record.rate_window
        self.policy = record.policy
        self.expires_at = record.expires_at if record.expires_at is not None else float("inf")
        self.revoked = record.revoked_at is not None
        self.digest: bytes | None = None
        self.prev_digest: bytes | None = None
        self.prev_until = record.prev_expires_at or 0.0
        self.failures: list[float] = []
        self.locked_until = 0.0
        self.bad_digests: set[bytes] = set()


def _worker_init() -> None:
    # bcrypt threads run at the lowest priority so that a flood of cold or wrong
    # tokens slows other cold tokens, never the event loop serving warm ones.
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (OSError, AttributeError):
        pass


class Authenticator:
    """Holds the key table in memory and authenticates tokens against it."""

    def __init__(self, clock: Clock = time.time, workers: int = 1) -> None:
        self.clock = clock
        self.keys: dict[str, KeyEntry] = {}
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="aigov-bcrypt", initializer=_worker_init
        )
        self._inflight: dict[bytes, asyncio.Future[str | None]] = {}

    def close(self) -> None:
        """Stop the bcrypt workers."""
        self.executor.shutdown(wait=False, cancel_futures=True)

    # -- key table ---------------------------------------------------------

    def load(self, records: Iterable[KeyRecord]) -> None:
        """Apply new or changed key records; verified digests survive unless the secrets changed."""
        for rec in records:
            old = self.keys.get(rec.key_id)
            entry = KeyEntry(rec)
            if old is not None:
                if old.record.secret_hash == rec.secret_hash:
                    entry.digest = old.digest
                elif rec.prev_secret_hash == old.record.secret_hash:
                    entry.prev_digest = old.digest  # rotated with grace: the old token stays warm
                if old.record.prev_secret_hash == rec.prev_secret_hash and entry.prev_digest is None:
                    entry.prev_digest = old.prev_digest
                entry.failures, entry.locked_until = old.failures, old.locked_until
            self.keys[rec.key_id] = entry

    def active_count(self) -> int:
        """Keys neither revoked nor expired."""
        now = self.clock()
        return sum(1 for e in self.keys.values() if not e.revoked and e.expires_at > now)

    # -- authentication ------------------------------------------------------

    def warm(self, token: str) -> KeyEntry | None:
        """The key for an already-verified token that is still valid, else None (then call ``verify``)."""
        e = self.keys.get(token[6:18])
        if e is None or e.revoked:
            return None
        d = _digest(token)
        now = self.clock()
        if e.digest is not None and hmac.compare_digest(d, e.digest):
            return e if now < e.expires_at else None
        if e.prev_digest is not None and hmac.compare_digest(d, e.prev_digest):
            return e if now < e.prev_until and now < e.expires_at else None
        return None

    async def verify(self, token: str) -> tuple[KeyEntry | None, FailureReason | None]:
        """Full verification: (entry, None) on success, (None, reason) on failure."""
        parsed = tokens.parse_token(token)
        if parsed is None:
            return None, "malformed"
        e = self.keys.get(parsed.key_id)
        if e is None:
            return None, "unknown"
        now = self.clock()
        if e.revoked:
            return None, "revoked"
        if now >= e.expires_at:
            return None, "expired"
        d = _digest(token)
        if d in e.bad_digests:
            return None, "wrong_secret"
        if now < e.locked_until:
            return None, "throttled"
        fut = self._inflight.get(d)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._inflight[d] = fut
            try:
                which = await asyncio.get_running_loop().run_in_executor(
                    self.executor, self._check, e.record, token, now
                )
            except BaseException as exc:
                fut.set_exception(exc)
                fut.exception()  # mark retrieved: waiters, if any, re-raise it
                raise
            finally:
                self._inflight.pop(d, None)
            fut.set_result(which)
        else:
            which = await asyncio.shield(fut)
        cur = self.keys.get(parsed.key_id)
        if cur is None:
            return None, "unknown"
        if cur.record is not e.record:
            # The key changed (rotated, revoked, new limit) while bcrypt ran: that answer was
            # about the old record, so judge the token again against the current one.
            return await self.verify(token)
        if which == "current":
            cur.digest = d
            return cur, None
        if which == "previous":
            cur.prev_digest = d
            return cur, None
        self._fail(cur, d, now)
        return None, "wrong_secret"

    @staticmethod
    def _check(rec: KeyRecord, token: str, now: float) -> str | None:
        """Blocking bcrypt verification against the current and, in grace, the previous hash."""
        raw = _bcrypt_input(token)
        if bcrypt.checkpw(raw, rec.secret_hash):
            return "current"
        if rec.prev_secret_hash is not None and now < (rec.prev_expires_at or 0.0):
            if bcrypt.checkpw(raw, rec.prev_secret_hash):
                return "previous"
        return None

    def _fail(self, e: KeyEntry, d: bytes, now: float) -> None:
        if len(e.bad_digests) < 1024:
            e.bad_digests.add(d)
        e.failures = [t for t in e.failures if now - t < FAILURE_WINDOW]
        e.failures.append(now)
        if len(e.failures) >= MAX_FAILURES:
            # Back off exponentially with further failures, up to MAX_LOCKOUT.
            extra = len(e.failures) - MAX_FAILURES
            e.locked_until = now + min(MAX_LOCKOUT, 2.0 ** extra)
