"""The application factory: ``create_app(config) -> web.Application``.

The backends come from the configuration (``database_url``, ``rate_limit_url``) unless a test
passes its own. Each resource has its own cleanup context, registered in dependency order: the key
store and the authenticator that follows it, the rate limiter, then the decision log. aiohttp cleans
up in reverse, so on shutdown the log is flushed before anything it needs goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable

from aiohttp import hdrs, web

from daemon import ratelimit, storage
from daemon.config import Config
from daemon.guardrail import PATH as GUARDRAIL_PATH
from daemon.guardrail_route import GuardrailHandler
from daemon.handlers import CheckHandler, answer_headers, get_only, json_response, new_request_id, not_found
from daemon.metrics import CONTENT_TYPE, build_registry, render
from daemon.openapi import openapi_spec
from daemon.policywatch import policy_watch_ctx
from daemon.ratelimit import FailureThrottle, RateLimiter
from daemon.service import Service
from daemon.storage.interface import DecisionStore, KeyStore
from daemon.storage.records import Fingerprinter, RecordBuilder, load_or_create_secret
from daemon.workers import WorkerBoard

log = logging.getLogger("aigov")

RETENTION_INTERVAL_SECONDS = 3600.0

SERVICE = web.AppKey("service", Service)
CHECK_PATH = "/v1/check"
_CHECK = web.AppKey("check", CheckHandler)


def route_hot_path(app: web.Application, server: web.Server) -> None:
    """Hand ``POST /v1/check`` from ``server`` straight to the app's check handler.

    The router still serves every path, /v1/check included (the in-process test client goes
    that way); this skips, for the one hot path, what the router adds per request: resolving
    the route, building and freezing match info, the middleware check: 8 % of the CPU of a check
    (``bench/cpu_ab.py`` against a copy without it, 4 rounds: 1.07-1.09). A request with a query
    string, an ``Expect`` header (the 100-continue handshake lives in the router's path) or another
    path takes the router as before; the end-to-end tests, which talk to a real daemon, take this
    path, the in-process ones the router.
    """
    check = app[_CHECK].__call__
    routed = server.request_handler

    def dispatch(request: web.BaseRequest) -> Awaitable[web.StreamResponse]:
        if request.raw_path == CHECK_PATH and hdrs.EXPECT not in request.headers:
            return check(request)  # type: ignore[arg-type]  # the app made it: a web.Request
        return routed(request)

    server.request_handler = dispatch


async def _cancel(*tasks: asyncio.Task[None]) -> None:
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def keys_ctx(app: web.Application) -> AsyncIterator[None]:
    """Open the key store, load the key table and follow its changes; close on shutdown."""
    svc = app[SERVICE]
    await svc.keys.open()
    try:
        await svc.auth.start()
        follower = asyncio.create_task(svc.auth.run(), name="aigov-key-feed")
        yield
        await _cancel(follower)
        await svc.auth.close()
    finally:
        await svc.keys.close()


async def limiter_ctx(app: web.Application) -> AsyncIterator[None]:
    """Try the rate limiter once at start; close its and the throttle's connections on shutdown."""
    svc = app[SERVICE]
    # A limiter that cannot be used does not stop the daemon (rate_limit_on_error decides what checks
    # get); the try makes it say so now, in the log and in /readyz, rather than at the first check.
    await svc.limiter.start()
    yield
    await svc.throttle.close()
    await svc.limiter.close()


async def decision_log_ctx(app: web.Application) -> AsyncIterator[None]:
    """Start the decision writer; on shutdown refuse new records and write all queued ones."""
    svc = app[SERVICE]
    await svc.dlog.start()
    retention = None
    if svc.config.log_retention_days > 0 and svc.worker == 0:
        retention = asyncio.create_task(_retention(svc.config), name="aigov-retention")
    yield
    svc.closing = True
    if retention is not None:
        await _cancel(retention)
    await svc.dlog.close(timeout=max(30.0, svc.config.shutdown_timeout))


async def board_ctx(app: web.Application) -> AsyncIterator[None]:
    """Share this worker's state with the others while it runs, and once more at the end."""
    svc = app[SERVICE]
    sharing = asyncio.create_task(svc.share_state(), name="aigov-share-state")
    yield
    await _cancel(sharing)
    assert svc.board is not None
    with contextlib.suppress(OSError):
        await asyncio.to_thread(svc.board.share, svc.shared_state())


def _prune_once(config: Config) -> int:
    """Delete decisions older than ``log_retention_days`` (checkpoints keep the chains verifiable); blocking."""
    with storage.decision_reader(config) as reader:
        return reader.prune(time.time() - config.log_retention_days * 86400)


async def _retention(config: Config) -> None:
    while True:
        try:
            n = await asyncio.to_thread(_prune_once, config)
            if n:
                log.info("retention: pruned %d decisions older than %d days", n, config.log_retention_days)
        except Exception as e:  # keep serving; the next run retries
            log.warning("retention: prune failed: %s", e)
        await asyncio.sleep(RETENTION_INTERVAL_SECONDS)


def create_app(
    config: Config,
    *,
    worker: int = 0,
    shared: bool = False,
    keys: KeyStore | None = None,
    limiter: RateLimiter | None = None,
    throttle: FailureThrottle | None = None,
    decisions: DecisionStore | None = None,
) -> web.Application:
    """Build the aiohttp application for ``config``; PolicyError if the policy file is invalid.

    ``worker`` is this process's slot under ``aigov serve --workers N``: it names the decision
    writer's hash chain; ``shared`` workers share their state with the others (for ``/metrics``
    and the CLI). The backends default to what the configuration names.
    """
    if limiter is None or throttle is None:
        limiter, throttle = ratelimit.from_config(config)
    if decisions is None:
        builder = RecordBuilder(Fingerprinter(load_or_create_secret(config.fingerprint_path)), config.log_inputs)
        decisions = storage.decision_store(config, storage.chain_name(config, worker), builder)
    board = WorkerBoard.for_config(config, worker) if shared else None
    svc = Service(config, keys=keys or storage.key_store(config), limiter=limiter, throttle=throttle,
                  decisions=decisions, worker=worker, board=board)
    app = web.Application(client_max_size=config.max_body_bytes)
    app[SERVICE] = svc
    app.cleanup_ctx.append(keys_ctx)
    app.cleanup_ctx.append(limiter_ctx)
    if shared:  # before the decision log, so that its last share comes after the last write
        app.cleanup_ctx.append(board_ctx)
    app.cleanup_ctx.append(decision_log_ctx)
    if config.policy_watch_interval > 0:
        app.cleanup_ctx.append(policy_watch_ctx(config.policy_path, config.policy_watch_interval,
                                                svc.reload_policy, lambda: svc.policies.version))

    async def healthz(request: web.Request) -> web.StreamResponse:
        return json_response({"status": "ok", "uptime_seconds": round(time.time() - svc.started, 3)})

    async def readyz(request: web.Request) -> web.StreamResponse:
        status = svc.status()
        problems = await svc.problems()
        status["ready"] = not problems
        status["problems"] = problems
        status["degraded"] = svc.degraded()
        return json_response(status, status=200 if not problems else 503)

    async def metrics(request: web.Request) -> web.StreamResponse:
        snapshot = await svc.metrics()
        headers = answer_headers(new_request_id(), content_type=CONTENT_TYPE)
        return web.Response(body=render(build_registry(lambda: snapshot)), headers=headers)

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
