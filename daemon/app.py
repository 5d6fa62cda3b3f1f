"""The application factory: ``create_app(config) -> web.Application``.

Each resource has its own cleanup context, registered in dependency order:
the database and key table first, then the decision log. aiohttp cleans up
in reverse, so on shutdown the log is flushed before the database closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import aiosqlite
from aiohttp import hdrs, web

from daemon import __version__, tokens
from daemon.auth import Authenticator, FailureReason, KeyEntry
from daemon.config import Config
from daemon.decisionlog import DecisionLog, SqliteDecisionStore
from daemon.guardrail import PATH as GUARDRAIL_PATH
from daemon.guardrail_route import GuardrailHandler
from daemon.handlers import CheckHandler, answer_headers, get_only, json_response, new_request_id, not_found
from daemon.metrics import CONTENT_TYPE, Stats, build_registry, render
from daemon.openapi import openapi_spec
from daemon.policy.loader import PolicySet, load_policy_file
from daemon.ratelimit import MemoryRateLimiter, RateLimiter
from daemon.storage import db as dbmod
from daemon.storage.keys import SqliteKeyStore

log = logging.getLogger("aigov")

LAST_USED_FLUSH_SECONDS = 10.0
KEY_LOOK_MIN_GAP = 0.05  # looks at the key table that requests ask for: at most 20 a second
RETENTION_INTERVAL_SECONDS = 3600.0


class Service:
    """Everything the handlers need, built by :func:`create_app` and filled in at startup."""

    def __init__(self, config: Config, limiter: RateLimiter | None = None) -> None:
        self.config = config
        self.stats = Stats()
        self.registry = build_registry(self.stats)
        self.auth = Authenticator()
        self.limiter: RateLimiter = limiter or MemoryRateLimiter()
        self.policies: PolicySet = load_policy_file(config.policy_path)
        self.last_used: dict[str, float] = {}
        self._reload_lock = asyncio.Lock()
        self.closing = False
        self.started = time.time()
        self.db: aiosqlite.Connection | None = None
        self.keystore: SqliteKeyStore | None = None
        self.key_seq = 0
        self._key_look: asyncio.Future[None] | None = None
        self._key_look_started = float("-inf")
        self.key_looks = 0
        self.dlog: DecisionLog = DecisionLog(
            SqliteDecisionStore(config.db_file, config.log_inputs),
            batch_size=config.log_batch_size,
            flush_interval=config.log_flush_interval,
            max_queue=config.log_queue_size,
            enqueue_timeout=config.log_enqueue_timeout,
            on_written=self._written,
            on_error=self._write_error,
        )
        self.stats.queue_size = self.dlog.qsize
        self.stats.active_keys = self.auth.active_count

    def _written(self, n: int) -> None:
        self.stats.decisions_written += n

    def _write_error(self) -> None:
        self.stats.decision_log_errors += 1

    async def reload_policy(self) -> PolicySet:
        """Load the policy file off the loop and swap it in atomically; PolicyError leaves the old one."""
        # One reload at a time: two SIGHUPs close together must not finish out of order
        # and leave the older file in force.
        async with self._reload_lock:
            new = await asyncio.to_thread(load_policy_file, self.config.policy_path)
            self.policies = new
            return new

    async def keys_current_as_of(self, since: float) -> None:
        """Return once a look at the key table that began at loop time ``since`` or later is done.

        Every look goes through here, one at a time (two at once could apply an older read of a
        key after a newer one), and at most one every :data:`KEY_LOOK_MIN_GAP` seconds however
        many requests wait: tokens with made-up key ids cannot turn into a query each. A failed
        look raises to everyone waiting for it.
        """
        loop = asyncio.get_running_loop()
        while True:
            look, started = self._key_look, self._key_look_started
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
            self._key_look_started = loop.time()
            self.key_looks += 1
            self._key_look = asyncio.ensure_future(self.refresh_keys())
            self._key_look.add_done_callback(_retrieved)

    async def verify_after_key_look(
        self, token: str, reason: FailureReason
    ) -> tuple[KeyEntry | None, FailureReason | None]:
        """Verify a token again after a fresh look at the key table, if the look changed its key.

        For a token that failed as ``unknown`` or ``wrong_secret``: the key may have been created
        or rotated a moment ago (a deployment script that creates or rotates a key and uses it at
        once), and then the token works at once instead of after the next periodic refresh. When
        the look brings nothing new for the key id, the first answer stands (no second bcrypt).
        """
        parsed = tokens.parse_token(token)
        if parsed is None:
            return None, reason
        before = self.auth.keys.get(parsed.key_id)
        try:
            await self.keys_current_as_of(asyncio.get_running_loop().time())
        except Exception as e:  # the database may be busy or briefly unreadable: the answer stands
            log.warning("could not refresh keys: %s", e)
            return None, reason
        after = self.auth.keys.get(parsed.key_id)
        if after is None or (before is not None and after.record is before.record):
            return None, reason
        return await self.auth.verify(token)

    async def refresh_keys(self) -> None:
        """Pick up keys created, changed or revoked since the last look (through keys_current_as_of)."""
        assert self.keystore is not None
        changed = await self.keystore.changed_since(self.key_seq)
        if changed:
            self.auth.load(changed)
            for rec in changed:
                if rec.revoked_at is not None:
                    await self.limiter.forget(rec.key_id)
            self.key_seq = max(self.key_seq, max(r.seq for r in changed))

    async def flush_last_used(self) -> None:
        """Write last-use times gathered since the previous flush, in one transaction."""
        if self.last_used and self.keystore is not None:
            batch, self.last_used = self.last_used, {}
            await self.keystore.touch(batch)

    def status(self) -> dict[str, Any]:
        """What ``aigov status`` and ``/readyz`` show."""
        return {
            "pid": os.getpid(),
            "version": __version__,
            "uptime_seconds": round(time.time() - self.started, 3),
            "active_keys": self.auth.active_count(),
            "queue_depth": self.dlog.qsize(),
            "decision_log_healthy": self.dlog.healthy,
            "policy_version": self.policies.version,
            "policies": self.policies.names,
        }


SERVICE = web.AppKey("service", Service)
CHECK_PATH = "/v1/check"
_CHECK = web.AppKey("check", CheckHandler)


def route_hot_path(app: web.Application, server: web.Server) -> None:
    """Hand ``POST /v1/check`` from ``server`` straight to the app's check handler.

    The router still serves every path, /v1/check included (the in-process test client goes
    that way); this skips, for the one hot path, what the router adds per request: resolving
    the route, building and freezing match info, the middleware check. That is 15.5k of the
    event loop's ~295k instructions per check (``bench/instructions.py``). A request with a
    query string, an ``Expect`` header (the 100-continue handshake lives in the router's
    path) or another path takes the router as before.
    """
    check = app[_CHECK].__call__
    routed = server.request_handler

    def dispatch(request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        if request.raw_path == CHECK_PATH and hdrs.EXPECT not in request.headers:
            return check(request)  # type: ignore[arg-type]  # the app made it: a web.Request
        return routed(request)

    server.request_handler = dispatch


def _retrieved(future: asyncio.Future[None]) -> None:
    """Mark a look's failure as seen: its waiters, if any, get it; without waiters it is not news."""
    if not future.cancelled():
        future.exception()


async def _key_refresher(svc: Service) -> None:
    last_flush = time.monotonic()
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(svc.config.key_refresh_interval)
        try:
            await svc.keys_current_as_of(loop.time())
            if time.monotonic() - last_flush >= LAST_USED_FLUSH_SECONDS:
                last_flush = time.monotonic()
                await svc.flush_last_used()
        except Exception as e:  # the database may be busy or briefly unreadable: keep the last table
            log.warning("could not refresh keys: %s", e)


def _prune_once(config: Config) -> int:
    """Delete decisions older than ``log_retention_days`` (with a checkpoint record); blocking."""
    from daemon.decisionlog import prune

    conn = dbmod.connect_sync(config.db_file)
    try:
        return prune(conn, time.time() - config.log_retention_days * 86400)
    finally:
        conn.close()


async def _retention(svc: Service) -> None:
    while True:
        try:
            n = await asyncio.to_thread(_prune_once, svc.config)
            if n:
                log.info("retention: pruned %d decisions older than %d days", n, svc.config.log_retention_days)
        except Exception as e:  # keep serving; the next run retries
            log.warning("retention: prune failed: %s", e)
        await asyncio.sleep(RETENTION_INTERVAL_SECONDS)


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the database, load the key table, keep it fresh; close on shutdown."""
    svc = app[SERVICE]
    svc.db = await dbmod.connect(svc.config.db_file)
    svc.keystore = SqliteKeyStore(svc.db)
    await svc.keys_current_as_of(asyncio.get_running_loop().time())
    tasks = [asyncio.create_task(_key_refresher(svc), name="aigov-key-refresher")]
    if svc.config.log_retention_days > 0:
        tasks.append(asyncio.create_task(_retention(svc), name="aigov-retention"))
    yield
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    with contextlib.suppress(Exception):
        await svc.flush_last_used()
    await svc.db.close()
    svc.auth.close()


async def decision_log_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start the decision writer; on shutdown refuse new records and write all queued ones."""
    svc = app[SERVICE]
    await svc.dlog.start()
    yield
    svc.closing = True
    await svc.dlog.close(timeout=max(30.0, svc.config.shutdown_timeout))


def create_app(config: Config, *, limiter: RateLimiter | None = None) -> web.Application:
    """Build the aiohttp application for ``config``; PolicyError if the policy file is invalid."""
    svc = Service(config, limiter)
    app = web.Application(client_max_size=config.max_body_bytes)
    app[SERVICE] = svc
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(decision_log_ctx)

    async def healthz(request: web.Request) -> web.StreamResponse:
        return json_response({"status": "ok", "uptime_seconds": round(time.time() - svc.started, 3)})

    async def readyz(request: web.Request) -> web.StreamResponse:
        status = svc.status()
        problems = []
        try:
            assert svc.db is not None
            async with svc.db.execute("SELECT 1") as cur:
                await cur.fetchone()
        except Exception as e:
            problems.append(f"database: {e}")
        if not svc.dlog.healthy:
            problems.append("decision log: writes are failing")
        if svc.closing:
            problems.append("shutting down")
        status["ready"] = not problems
        status["problems"] = problems
        return json_response(status, status=200 if not problems else 503)

    async def metrics(request: web.Request) -> web.StreamResponse:
        headers = answer_headers(new_request_id(), content_type=CONTENT_TYPE)
        return web.Response(body=render(svc.registry), headers=headers)

    spec = openapi_spec()

    async def openapi(request: web.Request) -> web.StreamResponse:
        return json_response(spec)

    check = app[_CHECK] = CheckHandler(svc)
    app.router.add_route("*", CHECK_PATH, check.__call__)
    app.router.add_route("*", GUARDRAIL_PATH, GuardrailHandler(svc).__call__)  # LiteLLM's guardrail API
    for path, fn in (("/healthz", healthz), ("/readyz", readyz), ("/metrics", metrics), ("/openapi.json", openapi)):
        app.router.add_route("*", path, get_only(svc, path, fn))
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app
