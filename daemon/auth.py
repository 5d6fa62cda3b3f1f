"""Authentication of API tokens against the key table kept in memory.

Warm path (a token verified before): the SHA-256 digest of the token is kept beside the key and
compared in constant time; no ``await`` that suspends, no bcrypt, a few microseconds.

Cold path (first use of a token): parse and checksum the token, look the key up by id (a dict,
O(1)), ask the throttle whether the key id is locked out, then verify the secret with bcrypt in a
low-priority worker thread. Concurrent cold requests with the same token share one bcrypt run. A
token whose key id is unknown, or whose secret is wrong, waits for a fresh look at the key table
(single-flight, at most one every :data:`KEY_LOOK_MIN_GAP`): a key created or rotated a moment ago
works on its first request. Only a secret still wrong after that look counts toward the throttle
(:class:`~daemon.ratelimit.FailureThrottle`, shared by every process through the rate-limit backend).

The key table follows the store's change feed: :meth:`Authenticator.run` applies what changed
whenever the store hears of a change or ``refresh_interval`` passes, and writes last-use times in
batches.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Literal

import bcrypt

from daemon import tokens
from daemon.ratelimit import FailureThrottle, RateLimiterUnavailable
from daemon.storage.interface import KeyRecord, KeyStore

log = logging.getLogger("aigov.auth")

Clock = Callable[[], float]
FailureReason = Literal["missing", "malformed", "unknown", "revoked", "expired", "wrong_secret", "throttled"]
FAILURE_REASONS: tuple[FailureReason, ...] = (
    "missing", "malformed", "unknown", "revoked", "expired", "wrong_secret", "throttled",
)

MIN_BCRYPT_COST = 10
KEY_LOOK_MIN_GAP = 0.05  # looks at the key table that requests ask for: at most 20 a second
LAST_USED_FLUSH_SECONDS = 10.0


class Unauthorized(Exception):
    """A request without a valid token; ``reason`` is for the metrics, never for the caller."""

    def __init__(self, reason: FailureReason) -> None:
        super().__init__(reason)
        self.reason: FailureReason = reason


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


def bearer_token(authorization: str | None, api_key: str | None = None) -> str | None:
    """The token of an ``Authorization: Bearer`` header (scheme in any case), else of ``x-api-key``."""
    if authorization:
        scheme, _, rest = authorization.partition(" ")
        if scheme.lower() == "bearer" and rest.strip():
            return rest.strip()
        return ""  # a header of another kind: malformed, whatever x-api-key says
    if api_key:
        return api_key.strip()
    return None


class KeyEntry:
    """A key as the daemon holds it in memory, with its verified-token digests."""

    __slots__ = ("record", "key_id", "limit", "window", "policy", "expires_at", "revoked",
                 "digest", "prev_digest", "prev_until", "bad_digests")

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
        self.bad_digests: set[bytes] = set()


def _worker_init() -> None:
    # bcrypt threads run at the lowest priority so that a flood of cold or wrong
    # tokens slows other cold tokens, never the event loop serving warm ones.
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (OSError, AttributeError):
        pass


_Verdict = Literal["current", "previous", "wrong", "known_wrong", "unreadable"]
# What a failed judgement of a token tells the metrics: a secret judged wrong before is still wrong,
# and no secret is right for a stored hash bcrypt cannot read.
_REASONS: dict[str, FailureReason] = {**{r: r for r in FAILURE_REASONS}, "wrong": "wrong_secret",
                                      "known_wrong": "wrong_secret", "unreadable": "wrong_secret"}


class Authenticator:
    """Holds the key table in memory, keeps it current, and authenticates tokens against it."""

    def __init__(
        self,
        store: KeyStore,
        throttle: FailureThrottle,
        *,
        clock: Clock = time.time,
        refresh_interval: float = 0.25,
        on_revoked: Callable[[str], Awaitable[None]] | None = None,
        workers: int = 1,
    ) -> None:
        self.store = store
        self.throttle = throttle
        self.clock = clock
        self.refresh_interval = refresh_interval
        self.on_revoked = on_revoked
        self.keys: dict[str, KeyEntry] = {}
        self.key_seq = 0  # the change number of the newest change applied
        self.key_looks = 0  # looks at the store (for tests and the curious)
        self.last_used: dict[str, float] = {}
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="aigov-bcrypt", initializer=_worker_init
        )
        self._inflight: dict[bytes, asyncio.Future[_Verdict]] = {}
        self._look: asyncio.Future[None] | None = None
        self._look_started = float("-inf")
        self._throttle_down = False
        self._unreadable_said: set[tuple[str, bytes]] = set()  # (key id, hash): said once each

    # -- the key table ---------------------------------------------------------------------

    async def start(self) -> None:
        """Load the whole key table (before the daemon answers anything)."""
        await self.keys_current_as_of(asyncio.get_running_loop().time())

    async def run(self) -> None:
        """Follow the store's change feed and write last-use times, until cancelled."""
        loop = asyncio.get_running_loop()
        last_flush = loop.time()
        failing: Exception | None = None
        while True:
            await self.store.wait_for_changes(self.refresh_interval)
            try:
                await self.keys_current_as_of(loop.time())
                if loop.time() - last_flush >= LAST_USED_FLUSH_SECONDS:
                    last_flush = loop.time()
                    await self.flush_last_used()
            except Exception as e:  # the database may be busy or unreachable: keep the last table
                if failing is None:  # once per outage, not four times a second
                    log.warning("could not refresh keys (keeping the table in memory until it can): %s", e)
                failing = e
            else:
                if failing is not None:
                    log.info("keys are refreshed again")
                failing = None

    async def close(self) -> None:
        """Write the last-use times gathered since the last flush and stop the bcrypt workers."""
        with contextlib.suppress(Exception):
            await self.flush_last_used()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def load(self, records: Iterable[KeyRecord]) -> list[str]:
        """Apply new or changed key records; verified digests survive unless the secrets changed.

        Returns the ids of keys that are revoked now (their limiter state can go)."""
        revoked = []
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
            self.keys[rec.key_id] = entry
            if entry.revoked:
                revoked.append(rec.key_id)
        return revoked

    async def refresh(self) -> None:
        """Apply the keys changed since the last look (callers go through :meth:`keys_current_as_of`)."""
        changed = await self.store.changed_since(self.key_seq)
        if changed:
            for key_id in self.load(changed):
                if self.on_revoked is not None:
                    await self.on_revoked(key_id)
            self.key_seq = max(self.key_seq, max(r.seq for r in changed))

    async def keys_current_as_of(self, since: float) -> None:
        """Return once a look at the key table that began at loop time ``since`` or later is done.

        Every look goes through here, one at a time (two at once could apply an older read of a
        key after a newer one), and at most one every :data:`KEY_LOOK_MIN_GAP` seconds however
        many requests wait: tokens with made-up key ids cannot turn into a query each. A failed
        look raises to everyone waiting for it.
        """
        loop = asyncio.get_running_loop()
        while True:
            look, started = self._look, self._look_started
            if look is not None and not look.done():
                await asyncio.shield(look)
                if started >= since:
                    return
                continue
            if look is not None and started >= since:
                look.result()
                return
            wait = started + KEY_LOOK_MIN_GAP - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            self._look_started = loop.time()
            self.key_looks += 1
            self._look = asyncio.ensure_future(self.refresh())
            self._look.add_done_callback(_retrieved)

    async def flush_last_used(self) -> None:
        """Write last-use times gathered since the previous flush, in one transaction."""
        if self.last_used:
            batch, self.last_used = self.last_used, {}
            await self.store.touch(batch)

    def active_count(self) -> int:
        """Keys neither revoked nor expired."""
        now = self.clock()
        return sum(1 for e in self.keys.values() if not e.revoked and e.expires_at > now)

    # -- authentication ----------------------------------------------------------------------

    async def authenticate(self, token: str | None) -> KeyEntry:
        """The key a token belongs to; Unauthorized with the reason otherwise."""
        if not token:
            raise Unauthorized("missing" if token is None else "malformed")
        entry = self.warm(token)
        if entry is None:
            entry = await self._cold(token)
        self.last_used[entry.key_id] = self.clock()
        return entry

    def warm(self, token: str) -> KeyEntry | None:
        """The key for an already-verified token that is still valid, else None."""
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

    async def _cold(self, token: str) -> KeyEntry:
        parsed = tokens.parse_token(token)
        if parsed is None:
            raise Unauthorized("malformed")
        key_id = parsed.key_id
        before = self.keys.get(key_id)
        entry, verdict = await self._verify(token, key_id)
        if verdict in ("unknown", "wrong"):
            # The key may have been created or rotated a moment ago (a deployment script that makes
            # a key and uses it at once): look at the key table, and judge the token again only if
            # the look changed its key (no second bcrypt otherwise).
            try:
                await self.keys_current_as_of(asyncio.get_running_loop().time())
            except Exception as e:  # the database may be busy or briefly unreadable: the answer stands
                log.warning("could not refresh keys: %s", e)
            else:
                after = self.keys.get(key_id)
                if after is not None and (before is None or after.record is not before.record):
                    entry, verdict = await self._verify(token, key_id)
        if entry is not None:
            return entry
        if verdict == "wrong":
            await self._count_failure(key_id)
        raise Unauthorized(_REASONS[verdict])

    async def _verify(self, token: str, key_id: str) -> tuple[KeyEntry | None, FailureReason | _Verdict]:
        """One judgement of a token against the current table: (entry, "ok") or (None, why)."""
        e = self.keys.get(key_id)
        if e is None:
            return None, "unknown"
        now = self.clock()
        if e.revoked:
            return None, "revoked"
        if now >= e.expires_at:
            return None, "expired"
        d = _digest(token)
        if d in e.bad_digests:
            return None, "known_wrong"  # judged before: no bcrypt, and it does not count again
        if await self._locked(key_id):
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
        cur = self.keys.get(key_id)
        if cur is None:
            return None, "unknown"
        if cur.record is not e.record:
            # The key changed (rotated, revoked, new limit) while bcrypt ran: that answer was
            # about the old record, so judge the token again against the current one.
            return await self._verify(token, key_id)
        if which == "unreadable":
            self._say_unreadable(cur.record)
            return None, "unreadable"
        if which == "current":
            cur.digest = d
            return cur, "current"
        if which == "previous":
            cur.prev_digest = d
            return cur, "previous"
        if len(cur.bad_digests) < 1024:
            cur.bad_digests.add(d)
        return None, "wrong"

    @staticmethod
    def _check(rec: KeyRecord, token: str, now: float) -> _Verdict:
        """Blocking bcrypt verification against the current and, in grace, the previous hash."""
        raw = _bcrypt_input(token)
        try:
            if bcrypt.checkpw(raw, rec.secret_hash):
                return "current"
            if rec.prev_secret_hash is not None and now < (rec.prev_expires_at or 0.0):
                if bcrypt.checkpw(raw, rec.prev_secret_hash):
                    return "previous"
        except ValueError:  # a damaged row: no token can match a hash bcrypt cannot read
            return "unreadable"
        return "wrong"

    def _say_unreadable(self, rec: KeyRecord) -> None:
        # The caller gets the 401 every failure gets; the operator is told once per damaged hash.
        if (rec.key_id, rec.secret_hash) not in self._unreadable_said:
            self._unreadable_said.add((rec.key_id, rec.secret_hash))
            log.error("key %s: its stored secret hash cannot be read by bcrypt, so every token for it "
                      "is refused; rotate it (aigov keys rotate %s)", rec.key_id, rec.key_id)

    async def _locked(self, key_id: str) -> bool:
        try:
            locked = await self.throttle.locked_for(key_id) > 0
        except RateLimiterUnavailable as e:
            self._throttle_unavailable(e)
            return False
        self._throttle_down = False
        return locked

    async def _count_failure(self, key_id: str) -> None:
        try:
            await self.throttle.failed(key_id)
        except RateLimiterUnavailable as e:
            self._throttle_unavailable(e)

    def _throttle_unavailable(self, e: Exception) -> None:
        # Without the shared throttle, bcrypt's cost and this process's bad-digest memory still
        # bound guessing; say so once per outage, not once per request.
        if not self._throttle_down:
            self._throttle_down = True
            log.warning("the wrong-secret throttle cannot be reached (%s); not throttling until it can", e)


def _retrieved(future: asyncio.Future[None]) -> None:
    """Mark a look's failure as seen: its waiters, if any, get it; without waiters it is not news."""
    if not future.cancelled():
        future.exception()
