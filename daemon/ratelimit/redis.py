"""The shared rate limiting: token buckets and wrong-secret counts in Redis, one state for every process.

Each decision is one Lua script run atomically by Redis, with the time taken from Redis ``TIME``,
so any number of processes and daemons sharing a server keep a limit exact (limit L, any number of
simultaneous checks anywhere: exactly L allowed) whatever their own clocks say. The bucket is the
memory limiter's (:mod:`daemon.ratelimit.memory`): capacity L refilled continuously at L/window,
and a limit change keeps what was used.

Keys are hash-tagged per API key, ``{PREFIX:KEY_ID}:bucket`` (and ``:failures``, ``:lockout``), so
every key a script touches is in one Redis Cluster slot. A bucket expires a second after it would be
full again, and a full bucket is what a missing one means, so idle keys cost nothing.

Calls made together are sent together: every call waits in a queue that one task drains, one
pipelined round trip per batch over one connection. A batch sent while another is on the wire
waits for it, so the busier the daemon, the bigger the batches and the less CPU each call costs.

Each call answers within ``timeout`` or raises :class:`RateLimiterUnavailable`. After
``failures_to_open`` round trips in a row fail, the circuit opens: calls raise at once, without
waiting for anything, while a background probe retries Redis with a growing pause (at most
``probe_max`` seconds), and the first probe that succeeds closes the circuit again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

try:
    from redis.asyncio.connection import AbstractConnection, Connection, parse_url
    from redis.exceptions import NoScriptError, ResponseError
except ImportError as e:  # an optional extra: say which
    raise ImportError(f"the Redis rate limiter needs the redis extra: pip install 'aigov[redis]' ({e})") from e

from daemon.config import mask_url  # one rule for every URL the daemon shows
from daemon.ratelimit.interface import (
    FAILURE_WINDOW,
    MAX_FAILURES,
    MAX_LOCKOUT,
    FailureThrottle,
    RateDecision,
    RateLimiter,
    RateLimiterUnavailable,
)
from daemon.ratelimit.url import REDIS_SCHEMES, check_url

log = logging.getLogger("aigov")

SCHEMES = REDIS_SCHEMES
# What checks get while Redis cannot be asked (rate_limit_on_error), for the outage's warning.
_ON_ERROR = {
    "open": "checks are let through without a limit (rate_limit_on_error = open)",
    "closed": "checks are answered 503 rate_limit_unavailable (rate_limit_on_error = closed)",
}

# The memory limiter's bucket (TokenBucket.take and MemoryRateLimiter.take), step for step and in the
# same floating-point operations, so both answer alike. Numbers are stored with 17 significant digits
# (tostring keeps 14, which would round a bucket a hair short of a token up to a whole one).
# KEYS[1] the bucket; ARGV limit, window. Returns {allowed, remaining, reset, retry_after}.
BUCKET_SCRIPT = b"""
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local s = redis.call('HMGET', KEYS[1], 'tokens', 'updated', 'limit', 'window')
local tokens = limit
local updated = now
if s[1] then
  tokens = tonumber(s[1])
  updated = tonumber(s[2])
  local old_limit = tonumber(s[3])
  local old_window = tonumber(s[4])
  if now > updated then
    tokens = tokens + (now - updated) * (old_limit / old_window)
    if tokens > old_limit then tokens = old_limit end
    updated = now
  end
  if old_limit ~= limit or old_window ~= window then
    -- a new limit keeps what was used, so that changing it cannot reset it; below zero when more is
    -- used than the new limit allows (a debt, refilled first: see the memory limiter)
    tokens = limit - (old_limit - tokens)
    updated = now
  end
end
local rate = limit / window
local allowed, remaining, retry = 0, 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
  remaining = math.floor(tokens)
else
  retry = math.max(1, math.ceil((1 - tokens) / rate))
end
local to_full = (limit - tokens) / rate
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'updated', string.format('%.17g', updated),
           'limit', ARGV[1], 'window', ARGV[2])
-- a full bucket is what a missing one means: let it go a second after it would be full
redis.call('PEXPIRE', KEYS[1], math.ceil(to_full * 1000) + 1000)
return {allowed, remaining, math.ceil(to_full), retry}
"""

# MemoryFailureThrottle.failed: the failures of the last window in a sorted set scored by time,
# and a lockout key whose time to live is the lockout (lockout_seconds, in Lua).
# KEYS[1] failures, KEYS[2] lockout; ARGV window, max failures, max lockout, a unique member.
FAILED_SCRIPT = b"""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[1])
local max_failures = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.17g', now - window))
redis.call('ZADD', KEYS[1], string.format('%.17g', now), ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
local n = redis.call('ZCARD', KEYS[1])
if n >= max_failures then
  local lock = math.min(tonumber(ARGV[3]), 2 ^ (n - max_failures))
  redis.call('SET', KEYS[2], '1', 'PX', math.ceil(lock * 1000))
end
return n
"""

_SCRIPTS = (BUCKET_SCRIPT, FAILED_SCRIPT)
_BUCKET_SHA = hashlib.sha1(BUCKET_SCRIPT).hexdigest()
_MAX_PACKED = 100_000
_FAILED_SHA = hashlib.sha1(FAILED_SCRIPT).hexdigest()


def pack(*args: str | bytes | int | float) -> bytes:
    """One command in the Redis protocol (RESP): an array of bulk strings; numbers as Python writes them."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else a.encode() if isinstance(a, str) else repr(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


_LOAD_SCRIPTS = tuple(pack("SCRIPT", "LOAD", s) for s in _SCRIPTS)


def connection_options(url: str, timeout: float) -> dict[str, Any]:
    """redis-py connection arguments for ``url``; ValueError (password masked) if it is not a Redis URL."""
    shown = mask_url(url)

    def bad(why: str) -> ValueError:
        return ValueError(f"rate_limit_url {shown}: {why}")

    if url.startswith("memory:"):
        raise bad("the scheme must be redis://, rediss:// or unix://")
    try:
        check_url(url)
    except ValueError as e:
        raise bad(str(e)) from None
    try:
        kwargs: dict[str, Any] = dict(parse_url(url))
    except ValueError as e:
        raise bad(str(e)) from None
    # Our own timeout bounds each round trip (one asyncio deadline for the whole batch); no socket
    # timeout per read, no retry inside redis-py (a retry would pay the timeout again), no health
    # check round trips.
    # RESP2: RESP3 would cost a HELLO round trip on every connect and buys nothing for integer replies.
    kwargs.update(socket_timeout=None, socket_connect_timeout=timeout, retry_on_timeout=False,
                  health_check_interval=0, protocol=2)
    return kwargs


class RedisBackend:
    """One Redis connection shared by the limiter and the throttle: batching, timeouts and the circuit.

    Use it from one event loop (each daemon process has its own backend).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "aigov",
        timeout: float = 0.05,
        failures_to_open: int = 3,
        probe_min: float = 0.05,
        probe_max: float = 0.5,
        on_error: str = "open",
    ) -> None:
        if not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(f"redis_prefix {prefix!r}: must be non-empty, without braces")
        if not timeout > 0:
            raise ValueError(f"rate_limit_timeout {timeout!r}: must be a positive number of seconds")
        kwargs = connection_options(url, timeout)
        self.url = mask_url(url)
        self.prefix = prefix
        self.timeout = timeout
        self.failures_to_open = failures_to_open
        self.probe_min = probe_min
        self.probe_max = probe_max
        self.on_error = _ON_ERROR.get(on_error, _ON_ERROR["open"])
        # Scrubbed from every error text redis-py gives us, in case one ever quotes it.
        self._password: str | None = kwargs.get("password") or None
        connection_class = kwargs.pop("connection_class", Connection)
        self._conn: AbstractConnection = connection_class(**kwargs)
        self._pending: list[_Call] = []
        self._flusher: asyncio.Task[None] | None = None
        self._prober: asyncio.Task[None] | None = None
        self._closed = False
        self.errors = 0
        """Calls that raised RateLimiterUnavailable (failed, timed out, or refused by the open circuit)."""
        self.consecutive_failures = 0
        self.open_since: float | None = None  # wall-clock time the circuit opened; None while closed
        self.last_error = ""

    def __repr__(self) -> str:
        state = "closed" if self.open_since is None else "open"
        return f"<RedisBackend {self.url} prefix={self.prefix!r} circuit={state}>"

    def key(self, key_id: str, kind: str) -> str:
        """The Redis key of ``key_id``'s ``kind`` of state, hash-tagged so all of a key's state shares a slot."""
        return f"{{{self.prefix}:{key_id}}}:{kind}"

    async def start(self) -> None:
        """Try Redis once, as the probe does, within ``timeout``; never raises.

        A daemon whose Redis cannot be used must still start (``rate_limit_on_error`` decides what
        checks get), but must not look ready: when this try fails the circuit opens at once, so the
        warning is logged now, ``/readyz`` says why, and the probe closes the circuit when Redis answers.
        """
        if self._closed or self.open_since is not None:
            return
        results = await asyncio.gather(*self._probe_calls(), return_exceptions=True)
        if any(isinstance(r, BaseException) for r in results) and self.open_since is None:
            self._open_circuit()

    # -- calls -------------------------------------------------------------------------------------

    async def call(self, command: bytes) -> Any:
        """Send one :func:`pack`-ed command with the calls made in the same loop turn; its reply, or
        RateLimiterUnavailable."""
        if self.open_since is not None or self._closed:
            self.errors += 1
            raise RateLimiterUnavailable(self._unavailable())
        return await self._submit(command, probe=False)

    def _submit(self, command: bytes, probe: bool) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append(_Call(command, fut, loop.time() + self.timeout, probe))
        if self._flusher is None:
            # Its first step runs on the next turn of the loop: every call made in this turn rides along.
            self._flusher = loop.create_task(self._flush())
        return fut

    async def _flush(self) -> None:
        """Send what is queued, batch after batch, until the queue is empty."""
        batch: list[_Call] = []
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._round_trip(batch)
        finally:
            self._flusher = None
            for c in batch:  # left unanswered only when interrupted (close() cancels us)
                if not c.future.done():
                    self._fail(c, self._unavailable())

    async def _round_trip(self, batch: list[_Call]) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        live: list[_Call] = []
        for c in batch:
            if c.future.done():  # the caller gave up (its request was cancelled)
                continue
            if self.open_since is not None and not c.probe:
                self._fail(c, self._unavailable())  # queued before the circuit opened: do not wait again
            elif c.deadline <= now:
                self._fail(c, f"redis at {self.url}: timed out waiting behind a slow round trip")
            else:
                live.append(c)
        if not live:
            return
        try:
            # Calls were queued in time order: the first one's deadline is the batch's.
            async with asyncio.timeout_at(live[0].deadline):
                replies = await self.exchange([c.command for c in live])
                missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
                if missing:  # Redis restarted or SCRIPT FLUSH: load the scripts and send those calls again
                    loaded = await self.exchange(_LOAD_SCRIPTS)
                    for r in loaded:
                        if isinstance(r, Exception):
                            raise r
                    again = await self.exchange([live[i].command for i in missing])
                    for i, r in zip(missing, again, strict=True):
                        replies[i] = r
        except Exception as e:  # a timeout, a refused or broken connection, anything: this batch failed
            await self._conn.disconnect(nowait=True)  # never reuse a connection with replies in flight
            why = self._describe(e)
            for c in live:
                self._fail(c, f"redis at {self.url}: {why}")
            self._round_trip_failed(why)
            return
        answered = 0
        for c, r in zip(live, replies, strict=True):
            if isinstance(r, ResponseError):  # READONLY, OOM, a NOSCRIPT after a reload, ...
                self._fail(c, f"redis at {self.url}: {self._describe(r)}")
            else:
                answered += 1
                if not c.future.done():
                    c.future.set_result(r)
        if answered:
            self.consecutive_failures = 0
        else:
            self._round_trip_failed(self.last_error)

    async def exchange(self, commands: Sequence[bytes]) -> list[Any]:
        """Write ``commands`` in one go and read their replies (a ResponseError in place of an error reply)."""
        conn = self._conn
        await conn.send_packed_command(b"".join(commands), check_health=False)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await conn.read_response())
            except ResponseError as e:  # read in full: the connection is still in step
                replies.append(e)
        return replies

    def _fail(self, c: _Call, message: str) -> None:
        if not c.probe:  # the probe is ours, not a caller's
            self.errors += 1
        if not c.future.done():
            c.future.set_exception(RateLimiterUnavailable(message))

    def _describe(self, e: BaseException) -> str:
        text = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        if isinstance(e, TimeoutError) and not str(e):
            text = f"no answer within {self.timeout * 1000:g} ms"
        if self._password:
            text = text.replace(self._password, "***")
        self.last_error = text
        return text

    # -- the circuit -------------------------------------------------------------------------------

    def _round_trip_failed(self, why: str) -> None:
        self.consecutive_failures += 1
        if self.open_since is None and self.consecutive_failures >= self.failures_to_open and not self._closed:
            self._open_circuit()

    def _open_circuit(self) -> None:
        """Start an outage: calls fail at once, the probe retries, and the operator is told (once per outage)."""
        self.open_since = time.time()
        log.warning("rate limiter: cannot use redis at %s (%s); %s until it answers again",
                    self.url, self.last_error, self.on_error)
        self._prober = asyncio.get_running_loop().create_task(self._probe())
        # Calls queued behind the failed batch would wait again for nothing.
        waiting, self._pending = self._pending, []
        for c in waiting:
            self._fail(c, self._unavailable())

    async def _probe(self) -> None:
        """While the circuit is open, try Redis after a pause that doubles up to ``probe_max``; close it on success."""
        pause = self.probe_min
        while self.open_since is not None and not self._closed:
            await asyncio.sleep(pause)
            results = await asyncio.gather(*self._probe_calls(), return_exceptions=True)
            if not any(isinstance(r, BaseException) for r in results):
                self.open_since = None
                self.consecutive_failures = 0
                log.info("rate limiter: redis at %s answers again; limits are enforced", self.url)
                return
            pause = min(pause * 2, self.probe_max)

    def _probe_calls(self) -> list[asyncio.Future[Any]]:
        # Load the scripts (a restarted Redis has none) and write a key (a replica would refuse).
        probes = [self._submit(command, probe=True) for command in _LOAD_SCRIPTS]
        probes.append(self._submit(pack("SET", f"{{{self.prefix}}}:probe", "1", "PX", "1000"), probe=True))
        return probes

    def _unavailable(self) -> str:
        if self._closed:
            return f"redis at {self.url}: the limiter is closed"
        if self.open_since is None:
            return f"redis at {self.url}: {self.last_error}"
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.open_since))
        return f"redis unreachable at {self.url} (circuit open since {since}; last error: {self.last_error})"

    def problem(self) -> str | None:
        """Why Redis cannot be relied on now (for ``/readyz``), or None."""
        if self.open_since is None and not self._closed:
            return None
        return self._unavailable()

    async def close(self) -> None:
        """Fail what is queued, stop the probe, close the connection; calls raise afterwards."""
        if self._closed:
            return
        self._closed = True
        for task in (self._prober, self._flusher):
            if task is not None:
                task.cancel()
        waiting, self._pending = self._pending, []
        for c in waiting:
            self._fail(c, self._unavailable())
        await self._conn.disconnect(nowait=True)


class _Call:
    """A command waiting for the next round trip."""

    __slots__ = ("command", "future", "deadline", "probe")

    def __init__(self, command: bytes, future: asyncio.Future[Any], deadline: float, probe: bool) -> None:
        self.command = command
        self.future = future
        self.deadline = deadline
        self.probe = probe


class RedisRateLimiter(RateLimiter):
    """Token buckets in Redis, exact across every process and daemon sharing the server."""

    def __init__(self, backend: RedisBackend) -> None:
        self.backend = backend
        # The packed EVALSHA of each (key, limit, window): the same few per key, request after request;
        # packing one costs more than the rest of a check's client side.
        self._commands: dict[tuple[str, int, float], bytes] = {}

    def __repr__(self) -> str:
        return f"<RedisRateLimiter {self.backend.url} prefix={self.backend.prefix!r}>"

    @property
    def backend_errors(self) -> int:
        """Calls of the limiter and of the throttle that raised RateLimiterUnavailable."""
        return self.backend.errors

    @backend_errors.setter
    def backend_errors(self, value: int) -> None:
        self.backend.errors = value

    async def check(self, key_id: str, limit: int, window: float) -> RateDecision:
        """Consume one request of ``key_id``'s allowance if it has one; RateLimiterUnavailable if Redis cannot tell."""
        command = self._commands.get((key_id, limit, window))
        if command is None:
            if len(self._commands) >= _MAX_PACKED:  # keys come and go: start again rather than grow
                self._commands.clear()
            command = pack("EVALSHA", _BUCKET_SHA, 1, self.backend.key(key_id, "bucket"), limit, window)
            self._commands[key_id, limit, window] = command
        allowed, remaining, reset, retry_after = await self.backend.call(command)
        return RateDecision(allowed == 1, limit, remaining, reset, retry_after)

    async def forget(self, key_id: str) -> None:
        """Drop the bucket of a key."""
        await self.backend.call(pack("DEL", self.backend.key(key_id, "bucket")))

    def problem(self) -> str | None:
        """"redis unreachable at URL (circuit open since ...)" while the circuit is open, else None."""
        return self.backend.problem()

    async def start(self) -> None:
        """Try Redis once (see :meth:`RedisBackend.start`)."""
        await self.backend.start()

    async def close(self) -> None:
        """Close the shared connection."""
        await self.backend.close()


class RedisFailureThrottle(FailureThrottle):
    """Wrong-secret counts in Redis, so N processes allow no more guesses than one."""

    def __init__(self, backend: RedisBackend) -> None:
        self.backend = backend

    def __repr__(self) -> str:
        return f"<RedisFailureThrottle {self.backend.url} prefix={self.backend.prefix!r}>"

    async def locked_for(self, key_id: str) -> float:
        """Seconds until ``key_id`` may try again (0 when it is not locked out)."""
        ms = await self.backend.call(pack("PTTL", self.backend.key(key_id, "lockout")))
        return max(0, int(ms)) / 1000.0

    async def failed(self, key_id: str) -> None:
        """Count one wrong secret for ``key_id`` (and lock it out when that makes too many)."""
        b = self.backend
        await b.call(pack("EVALSHA", _FAILED_SHA, 2, b.key(key_id, "failures"), b.key(key_id, "lockout"),
                          FAILURE_WINDOW, MAX_FAILURES, MAX_LOCKOUT, os.urandom(8).hex()))

    async def close(self) -> None:
        """Close the shared connection."""
        await self.backend.close()


def redis_backend(
    url: str, *, prefix: str = "aigov", timeout: float = 0.05, on_error: str = "open"
) -> tuple[RedisRateLimiter, RedisFailureThrottle]:
    """A limiter and a throttle sharing one connection to the Redis at ``url``; ValueError for a bad URL.

    ``on_error`` (``rate_limit_on_error``) only tells the outage's warning what checks then get.
    """
    backend = RedisBackend(url, prefix=prefix, timeout=timeout, on_error=on_error)
    return RedisRateLimiter(backend), RedisFailureThrottle(backend)


__all__ = ["RedisBackend", "RedisFailureThrottle", "RedisRateLimiter", "mask_url", "redis_backend"]
