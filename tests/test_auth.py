"""The authenticator on its own: a real SQLite key store, the in-process throttle, a clock the test sets.

The request-level behaviour (status codes, headers, the key table followed while a daemon runs) is
in test_app.py and the end-to-end tests; these pin the rules each answer comes from: warm and cold
paths, expiry and rotation grace at their edges, what survives a reload of the key table, and what
counts as a wrong secret.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from daemon import auth as auth_module
from daemon import tokens
from daemon.auth import KEY_LOOK_MIN_GAP, Authenticator, KeyEntry, Unauthorized, bearer_token, hash_secret
from daemon.errors import StorageError
from daemon.ratelimit.interface import MAX_FAILURES
from daemon.ratelimit.memory import MemoryFailureThrottle
from daemon.storage.sqlite_keys import SqliteKeyStore
from tests.redis_helpers import REDIS_SERVER, PrivateRedis, poll

T0 = 1_900_000_000.0


class Clock:
    """Wall time as the test says (the authenticator's ``clock`` and the throttle's)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Keys:
    """Keys made in the store the authenticator reads, each with its token."""

    def __init__(self, store: SqliteKeyStore, auth: Authenticator) -> None:
        self.store = store
        self.auth = auth

    async def create(self, *, expires_at: float | None = None, limit: int = 10) -> tuple[str, str]:
        """A new key the authenticator has seen: (key id, token)."""
        key_id, token = await self.store_only(expires_at=expires_at, limit=limit)
        await self.seen()
        return key_id, token

    async def store_only(self, *, expires_at: float | None = None, limit: int = 10,
                         secret_hash: bytes | None = None) -> tuple[str, str]:
        """A new key in the store, not yet applied to the authenticator's table: (key id, token)."""
        key_id = tokens.new_key_id()
        token = tokens.make_token(key_id, tokens.new_secret())
        stored_hash = hash_secret(token, 10) if secret_hash is None else secret_hash
        await self.store.create("t", stored_hash, limit, 60.0, expires_at, "default", key_id=key_id)
        return key_id, token

    async def rotate(self, key_id: str, grace_until: float | None) -> str:
        token = tokens.make_token(key_id, tokens.new_secret())
        await self.store.rotate(key_id, hash_secret(token, 10), grace_until, T0)
        await self.seen()
        return token

    async def seen(self) -> None:
        """The authenticator has applied every change made so far."""
        await self.auth.refresh()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def auth(tmp_path: Path, clock: Clock) -> AsyncIterator[Authenticator]:
    store = SqliteKeyStore(tmp_path / "keys.db")
    await store.open()
    a = Authenticator(store, MemoryFailureThrottle(clock), clock=clock)
    await a.start()
    yield a
    await a.close()
    await store.close()


@pytest.fixture
def keys(auth: Authenticator) -> Keys:
    assert isinstance(auth.store, SqliteKeyStore)
    return Keys(auth.store, auth)


@pytest.fixture
def bcrypt_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The verdict of every bcrypt verification the authenticator runs."""
    runs: list[str] = []
    real = Authenticator._check

    def counting(rec: Any, token: str, now: float) -> Any:
        verdict = real(rec, token, now)
        runs.append(verdict)
        return verdict

    monkeypatch.setattr(Authenticator, "_check", staticmethod(counting))
    return runs


async def refused(auth: Authenticator, token: str | None) -> str:
    """The reason the authenticator refuses ``token`` (fails if it accepts it)."""
    with pytest.raises(Unauthorized) as e:
        await auth.authenticate(token)
    assert str(e.value) == e.value.reason  # what a log line shows: the reason, never the token
    return e.value.reason


# --- the header ------------------------------------------------------------------------------


@pytest.mark.parametrize(("authorization", "api_key", "want"), [
    (None, None, None),
    ("Bearer tok", None, "tok"),
    ("bearer   tok  ", None, "tok"),
    ("BEARER tok", "other", "tok"),
    ("Basic dXNlcjpwYXNz", "tok", ""),  # another scheme is malformed, whatever x-api-key says
    ("Bearer ", None, ""),
    ("Bearer", None, ""),
    ("", " tok ", "tok"),
    (None, "tok", "tok"),
    (None, "", None),
])
def test_bearer_token(authorization: str | None, api_key: str | None, want: str | None) -> None:
    assert bearer_token(authorization, api_key) == want


# --- cold and warm ---------------------------------------------------------------------------


async def test_the_second_use_of_a_token_is_warm(auth: Authenticator, keys: Keys, bcrypt_runs: list[str],
                                                 clock: Clock) -> None:
    key_id, token = await keys.create()
    entry = await auth.authenticate(token)
    assert isinstance(entry, KeyEntry) and entry.key_id == key_id and entry.limit == 10
    assert bcrypt_runs == ["current"]
    assert auth.warm(token) is entry
    clock.now += 1
    assert await auth.authenticate(token) is entry
    assert bcrypt_runs == ["current"]  # no second bcrypt
    assert auth.last_used == {key_id: T0 + 1}


@pytest.mark.parametrize(("token", "reason"), [
    (None, "missing"),
    ("", "malformed"),
    ("not-a-token", "malformed"),
    ("aigov_" + "a" * 12 + "_" + "A" * 28, "malformed"),  # the shape, not the checksum
])
async def test_tokens_refused_before_any_lookup(auth: Authenticator, bcrypt_runs: list[str], token: str | None,
                                                reason: str) -> None:
    looks = auth.key_looks
    assert await refused(auth, token) == reason
    assert auth.key_looks == looks and bcrypt_runs == []


async def test_an_unknown_key_id_looks_at_the_table_once_and_runs_no_bcrypt(
    auth: Authenticator, bcrypt_runs: list[str]
) -> None:
    looks = auth.key_looks
    assert await refused(auth, tokens.make_token(tokens.new_key_id(), tokens.new_secret())) == "unknown"
    assert auth.key_looks == looks + 1 and bcrypt_runs == []


async def test_a_key_expires_at_its_expiry_time(auth: Authenticator, keys: Keys, clock: Clock) -> None:
    key_id, token = await keys.create(expires_at=T0 + 10)
    await auth.authenticate(token)
    assert auth.active_count() == 1
    clock.now = T0 + 10 - 0.001
    assert auth.warm(token) is not None
    clock.now = T0 + 10
    assert auth.warm(token) is None
    assert await refused(auth, token) == "expired"
    assert auth.active_count() == 0


async def test_a_revoked_key_is_refused_warm_or_cold(auth: Authenticator, keys: Keys) -> None:
    key_id, token = await keys.create()
    await auth.authenticate(token)
    revoked: list[str] = []

    async def on_revoked(k: str) -> None:
        revoked.append(k)

    auth.on_revoked = on_revoked
    await keys.store.revoke(key_id, T0)
    await keys.seen()
    assert revoked == [key_id]
    assert auth.warm(token) is None
    assert await refused(auth, token) == "revoked"
    assert auth.active_count() == 0


async def test_the_key_table_moves_to_the_newest_change(auth: Authenticator, keys: Keys) -> None:
    await keys.create()
    key_id, _ = await keys.create()
    newest = (await keys.store.get(key_id))
    assert newest is not None and auth.key_seq == newest.seq
    await keys.store.update(key_id, rate_limit=99)
    await keys.seen()
    assert auth.keys[key_id].limit == 99 and auth.key_seq == newest.seq + 1


# --- what a reload of the table keeps ----------------------------------------------------------


async def test_a_change_that_keeps_the_secret_keeps_the_token_warm(
    auth: Authenticator, keys: Keys, bcrypt_runs: list[str]
) -> None:
    key_id, token = await keys.create()
    await auth.authenticate(token)
    await keys.store.update(key_id, rate_limit=20)
    await keys.seen()
    entry = auth.warm(token)
    assert entry is not None and entry.limit == 20
    assert bcrypt_runs == ["current"]


async def test_rotation_with_grace_keeps_the_old_token_until_the_grace_ends(
    auth: Authenticator, keys: Keys, bcrypt_runs: list[str], clock: Clock
) -> None:
    key_id, old = await keys.create()
    await auth.authenticate(old)
    new = await keys.rotate(key_id, grace_until=T0 + 5)
    # The old token stays warm through the rotation: no bcrypt for it.
    assert auth.warm(old) is not None
    assert bcrypt_runs == ["current"]
    assert (await auth.authenticate(new)).key_id == key_id
    assert bcrypt_runs == ["current", "current"]
    clock.now = T0 + 5 - 0.001
    assert auth.warm(old) is not None and auth.warm(new) is not None
    clock.now = T0 + 5
    assert auth.warm(old) is None
    assert await refused(auth, old) == "wrong_secret"
    assert auth.warm(new) is not None


async def test_an_old_token_first_seen_in_its_grace_is_verified_against_the_previous_secret(
    auth: Authenticator, keys: Keys, bcrypt_runs: list[str], clock: Clock
) -> None:
    key_id, old = await keys.create()
    await keys.rotate(key_id, grace_until=T0 + 5)
    assert (await auth.authenticate(old)).key_id == key_id
    assert bcrypt_runs == ["previous"]
    assert auth.warm(old) is not None  # warm from now on
    clock.now = T0 + 5
    assert auth.warm(old) is None


async def test_the_previous_secret_is_not_tried_once_the_grace_is_over(
    auth: Authenticator, keys: Keys, bcrypt_runs: list[str], clock: Clock
) -> None:
    key_id, old = await keys.create()
    await keys.rotate(key_id, grace_until=T0 + 5)
    clock.now = T0 + 5
    assert await refused(auth, old) == "wrong_secret"
    assert bcrypt_runs == ["wrong"]


async def test_a_second_rotation_keeps_the_previous_token_warm_only_while_it_is_the_previous_one(
    auth: Authenticator, keys: Keys, clock: Clock
) -> None:
    key_id, first = await keys.create()
    await auth.authenticate(first)
    second = await keys.rotate(key_id, grace_until=T0 + 5)
    await auth.authenticate(second)
    await keys.store.update(key_id, rate_limit=30)  # neither secret changes: both stay warm
    await keys.seen()
    assert auth.warm(first) is not None and auth.warm(second) is not None
    await keys.rotate(key_id, grace_until=T0 + 5)  # now the second is the previous one
    assert auth.warm(second) is not None
    assert auth.warm(first) is None


async def test_rotation_without_grace_ends_the_old_token_at_once(auth: Authenticator, keys: Keys) -> None:
    key_id, old = await keys.create()
    await auth.authenticate(old)
    new = await keys.rotate(key_id, grace_until=None)
    assert auth.warm(old) is None
    assert await refused(auth, old) == "wrong_secret"
    assert (await auth.authenticate(new)).key_id == key_id


# --- wrong secrets ---------------------------------------------------------------------------


async def test_a_wrong_secret_counts_once_and_is_remembered(
    auth: Authenticator, keys: Keys, bcrypt_runs: list[str]
) -> None:
    key_id, _ = await keys.create()
    guess = tokens.make_token(key_id, tokens.new_secret())
    assert await refused(auth, guess) == "wrong_secret"
    assert bcrypt_runs == ["wrong"]
    assert await refused(auth, guess) == "wrong_secret"  # known wrong: no bcrypt, not counted again
    assert bcrypt_runs == ["wrong"]
    assert await auth.throttle.locked_for(key_id) == 0
    assert auth.keys[key_id].bad_digests


async def test_wrong_secrets_lock_the_key_id_out(auth: Authenticator, keys: Keys, bcrypt_runs: list[str],
                                                 clock: Clock) -> None:
    key_id, token = await keys.create()
    for _ in range(MAX_FAILURES):
        assert await refused(auth, tokens.make_token(key_id, tokens.new_secret())) == "wrong_secret"
    assert await auth.throttle.locked_for(key_id) > 0
    # Locked out: even the right token is refused cold, without bcrypt.
    runs = len(bcrypt_runs)
    assert await refused(auth, token) == "throttled"
    assert len(bcrypt_runs) == runs
    clock.now += 60
    assert (await auth.authenticate(token)).key_id == key_id


async def test_a_token_warm_before_a_lockout_stays_warm(auth: Authenticator, keys: Keys) -> None:
    key_id, token = await keys.create()
    await auth.authenticate(token)
    for _ in range(MAX_FAILURES):
        await refused(auth, tokens.make_token(key_id, tokens.new_secret()))
    assert await auth.throttle.locked_for(key_id) > 0
    assert (await auth.authenticate(token)).key_id == key_id


# --- last use --------------------------------------------------------------------------------


async def test_last_use_is_written_in_one_batch(auth: Authenticator, keys: Keys, clock: Clock) -> None:
    a, token_a = await keys.create()
    b, token_b = await keys.create()
    await auth.authenticate(token_a)
    clock.now = T0 + 7
    await auth.authenticate(token_b)
    await auth.authenticate(token_a)
    await auth.flush_last_used()
    assert auth.last_used == {}
    rec_a, rec_b = await keys.store.get(a), await keys.store.get(b)
    assert rec_a is not None and rec_a.last_used_at == T0 + 7
    assert rec_b is not None and rec_b.last_used_at == T0 + 7


# --- following the store while the daemon runs -------------------------------------------------


async def test_run_follows_the_store_and_writes_last_use_in_batches(
    auth: Authenticator, keys: Keys, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aigov.auth")
    auth.refresh_interval = 0.01
    task = asyncio.create_task(auth.run())
    try:
        key_id, token = await keys.store_only()
        await poll(lambda: key_id in auth.keys, 10, "the new key in the table")
        looks = auth.key_looks
        await poll(lambda: auth.key_looks >= looks + 3, 10, "three more looks")
        await auth.authenticate(token)
        looks = auth.key_looks
        await poll(lambda: auth.key_looks >= looks + 3, 10, "three more looks")
        # Not yet: last-use times wait for LAST_USED_FLUSH_SECONDS (10 s).
        assert auth.last_used and (await keys.store.get(key_id)).last_used_at is None  # type: ignore[union-attr]
        monkeypatch.setattr(auth_module, "LAST_USED_FLUSH_SECONDS", 0.0)
        await poll(lambda: not auth.last_used, 10, "the last-use batch")
        rec = await keys.store.get(key_id)
        assert rec is not None and rec.last_used_at == T0
        looks = auth.key_looks
        await poll(lambda: auth.key_looks >= looks + 3, 10, "three more looks")
    finally:
        task.cancel()
    assert lines(caplog) == []  # every look and flush went through, and nothing recovered


async def test_run_keeps_the_table_through_an_outage_and_says_so_once(
    auth: Authenticator, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aigov.auth")
    key_id, token = await keys.create()
    auth.refresh_interval = 0.01
    await keys.store.close()  # every look fails until it is open again
    task = asyncio.create_task(auth.run())
    try:
        looks = auth.key_looks
        await poll(lambda: auth.key_looks >= looks + 5, 10, "five failed looks")
        outage = "could not refresh keys (keeping the table in memory until it can): the key store is not open"
        assert lines(caplog) == [outage]
        assert key_id in auth.keys  # the table in memory stands
        await keys.store.open()
        await poll(lambda: "keys are refreshed again" in lines(caplog), 10, "the recovery line")
        looks = auth.key_looks
        await poll(lambda: auth.key_looks >= looks + 3, 10, "three more looks")
        assert lines(caplog) == [outage, "keys are refreshed again"]  # said once, not at every look
        assert (await auth.authenticate(token)).key_id == key_id
        await keys.store.close()  # a second outage is said again
        await poll(lambda: len(lines(caplog)) == 3, 10, "the second outage's line")
        assert lines(caplog) == [outage, "keys are refreshed again", outage]
        await keys.store.open()
    finally:
        task.cancel()


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the authenticator logged."""
    return [r.getMessage() for r in caplog.records if r.name == "aigov.auth"]


async def test_close_writes_the_last_use_gathered_since_the_last_flush(auth: Authenticator, keys: Keys) -> None:
    key_id, token = await keys.create()
    await auth.authenticate(token)
    await auth.close()
    rec = await keys.store.get(key_id)
    assert rec is not None and rec.last_used_at == T0
    assert auth.executor._shutdown  # no bcrypt after close


async def test_without_a_reachable_throttle_tokens_are_judged_unthrottled(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("redis")
    from daemon.ratelimit.redis import redis_backend

    if not Path(REDIS_SERVER).exists():
        pytest.skip(f"{REDIS_SERVER} is not installed: no private Redis to break")
    redis = PrivateRedis()
    limiter, throttle = redis_backend(redis.url, prefix="p", timeout=0.5)  # one connection, one circuit
    store = SqliteKeyStore(tmp_path / "keys.db")
    await store.open()
    auth = Authenticator(store, throttle, clock=clock)
    said = f"the wrong-secret throttle cannot be reached (redis at {redis.url}: ConnectionError: "
    try:
        await auth.start()
        keys = Keys(store, auth)
        key_id, token = await keys.create()
        for _ in range(2):  # two outages, each said once
            redis.signal(signal.SIGKILL)
            for _ in range(MAX_FAILURES + 2):
                assert await refused(auth, tokens.make_token(key_id, tokens.new_secret())) == "wrong_secret"
            assert (await auth.authenticate(token)).key_id == key_id
            redis.start()
            await poll(lambda: limiter.problem() is None, 10, "the throttle back")
            assert await refused(auth, tokens.make_token(key_id, tokens.new_secret())) == "wrong_secret"
        warnings = [line for line in lines(caplog) if "throttle" in line]
        assert len(warnings) == 2, warnings
        assert all(w.startswith(said) and w.endswith("); not throttling until it can") for w in warnings), warnings
    finally:
        await auth.close()
        await store.close()
        await throttle.close()
        redis.stop()


async def test_simultaneous_first_uses_of_a_token_share_one_bcrypt(
    auth: Authenticator, keys: Keys, bcrypt_runs: list[str]
) -> None:
    key_id, token = await keys.create()
    guess = tokens.make_token(key_id, tokens.new_secret())
    entries = await asyncio.gather(*(auth.authenticate(token) for _ in range(8)))
    assert {e.key_id for e in entries} == {key_id} and bcrypt_runs == ["current"]
    reasons = await asyncio.gather(*(refused(auth, guess) for _ in range(8)))
    assert reasons == ["wrong_secret"] * 8 and bcrypt_runs == ["current", "wrong"]
    assert auth._inflight == {}


class Gate:
    """Holds every bcrypt verification until the test lets it go (set as ``Authenticator._check``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.runs = 0
        real = Authenticator._check

        def gated(rec: Any, token: str, now: float) -> Any:
            self.runs += 1
            self.entered.set()
            assert self.release.wait(10)
            return real(rec, token, now)

        monkeypatch.setattr(Authenticator, "_check", staticmethod(gated))

    async def held(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, 10)


async def test_a_key_changed_while_its_token_is_verified_is_judged_again(
    auth: Authenticator, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_id, token = await keys.create(limit=10)
    gate = Gate(monkeypatch)
    first = asyncio.create_task(auth.authenticate(token))
    await gate.held()
    await keys.store.update(key_id, rate_limit=99)
    await keys.seen()
    gate.release.set()
    entry = await first
    assert entry.limit == 99 and gate.runs == 2  # the answer about the old record was not used


async def test_a_key_deleted_while_its_token_is_verified_is_refused(
    auth: Authenticator, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_id, token = await keys.create()
    gate = Gate(monkeypatch)
    first = asyncio.create_task(refused(auth, token))
    await gate.held()
    await keys.store.delete(key_id)
    await keys.seen()
    gate.release.set()
    assert await first == "revoked"  # a deleted key is a revoked tombstone to every daemon
    del auth.keys[key_id]  # and one this daemon never heard of is unknown
    assert await refused(auth, token) == "unknown"


async def test_a_stored_hash_bcrypt_cannot_read_refuses_every_token_and_is_said_once(
    auth: Authenticator, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aigov.auth")
    key_id, token = await keys.store_only(secret_hash=b"not a bcrypt hash")
    await keys.seen()
    results = await asyncio.gather(*(auth.authenticate(token) for _ in range(3)), return_exceptions=True)
    assert [(type(r), getattr(r, "reason", None)) for r in results] == [(Unauthorized, "wrong_secret")] * 3
    for _ in range(MAX_FAILURES):
        assert await refused(auth, token) == "wrong_secret"
    assert auth._inflight == {}
    # Not the caller's fault: it neither counts toward the lock-out nor marks the token known wrong.
    assert await auth.throttle.locked_for(key_id) == 0 and not auth.keys[key_id].bad_digests
    assert lines(caplog) == [f"key {key_id}: its stored secret hash cannot be read by bcrypt, so every token "
                             f"for it is refused; rotate it (aigov keys rotate {key_id})"]
    assert token.rpartition("_")[2] not in caplog.text


# --- looks at the key table --------------------------------------------------------------------


async def test_a_look_that_began_before_the_question_does_not_answer_it(
    auth: Authenticator, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A look in flight when a key is created cannot have seen it: whoever asks after the creation
    # waits for that look and then for a new one.
    entered, release = asyncio.Event(), asyncio.Event()
    real = keys.store.changed_since

    async def held(seq: int) -> Any:
        rows = await real(seq)  # read before the key exists, answered after
        entered.set()
        await release.wait()
        return rows

    loop = asyncio.get_running_loop()
    await asyncio.sleep(0.06)  # past the minimum gap since the fixture's first look
    monkeypatch.setattr(keys.store, "changed_since", held)
    first = asyncio.create_task(auth.keys_current_as_of(loop.time()))
    await entered.wait()
    monkeypatch.setattr(keys.store, "changed_since", real)
    key_id, _ = await keys.store_only()
    looks = auth.key_looks
    asked = loop.time()
    second = asyncio.create_task(auth.keys_current_as_of(asked))
    await asyncio.sleep(0.01)
    release.set()
    await first
    assert key_id not in auth.keys
    await second
    assert key_id in auth.keys and auth.key_looks == looks + 1
    # Asked again about the same moment, the look just done answers: no new look.
    await auth.keys_current_as_of(asked)
    assert auth.key_looks == looks + 1


async def test_looks_are_at_most_one_per_gap_however_often_asked(auth: Authenticator) -> None:
    loop = asyncio.get_running_loop()
    looks, t0 = auth.key_looks, loop.time()
    while loop.time() - t0 < 0.3:
        await auth.keys_current_as_of(loop.time())
    elapsed = loop.time() - t0
    made = auth.key_looks - looks
    assert 2 <= made <= elapsed / KEY_LOOK_MIN_GAP + 2, (made, elapsed)


async def test_a_failed_look_raises_to_its_waiters_and_the_next_one_recovers(
    auth: Authenticator, keys: Keys
) -> None:
    await keys.store.close()
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0.06)
    results = await asyncio.gather(*(auth.keys_current_as_of(loop.time()) for _ in range(3)),
                                   return_exceptions=True)
    assert all(isinstance(r, StorageError) for r in results), results
    await keys.store.open()
    await auth.keys_current_as_of(loop.time())  # a new look, not the failed one
