"""Running the daemon: single-instance pid file, listening socket, signals, graceful shutdown.

SIGTERM/SIGINT: stop listening, let in-flight requests finish (up to ``shutdown_timeout``), flush
the decision log, close the database, exit 0. SIGHUP: reload the policy file; an invalid file keeps
the old policy. With ``workers`` above 1 a parent supervises that many such processes on one port
(:mod:`daemon.workers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from daemon import tls
from daemon.app import SERVICE, create_app, route_hot_path
from daemon.config import Config
from daemon.errors import AigovError, ConfigError
from daemon.pidfile import PidFile
from daemon.sentry import init_sentry

log = logging.getLogger("aigov")


class ServerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server log, where a request that is not valid HTTP is the client's error, not ours.

    aiohttp answers such a request 400 itself and logs it with a traceback at ERROR (which Sentry would
    report as a crash); here it is one INFO line. The parser's message is left out: it quotes the bad
    header line, which may hold a token.
    """

    def exception(self, msg: object, *args: object, exc_info: object = True, **kwargs: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if isinstance(exc, HttpProcessingError):
            peer = args[0] if args else "?"
            self.info("answered %s to a request from %s that is not valid HTTP", exc.code, peer)
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)  # type: ignore[arg-type]


def _url(host: str, port: int, *, secure: bool) -> str:
    scheme = "https" if secure else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


async def serve(config: Config, on_ready: Callable[[str], None] | None = None) -> None:
    """Run the daemon in this process until SIGTERM or SIGINT; AigovError for start-up problems."""
    config.paths.ensure()
    pid = PidFile(config.paths.pid_file)
    pid.acquire()
    try:

        def listening(url: str) -> None:
            pid.write({"pid": os.getpid(), "url": url, "started_at": time.time(), "db": config.database,
                       "workers": [os.getpid()]})
            if on_ready:
                on_ready(url)

        await run_app(config, slot=0, port=config.port, on_listening=listening)
    finally:
        pid.release()


def serve_workers(config: Config, n: int, on_ready: Callable[[str], None] | None = None) -> None:
    """Run ``n`` worker processes on one port under this one until SIGTERM or SIGINT (blocking)."""
    from daemon import storage
    from daemon.storage.records import load_or_create_secret
    from daemon.workers import Supervisor, WorkerBoard, check_workers, reserve_port

    check_workers(config, n)
    init_sentry(config)  # the parent's own errors (a worker that dies); each worker sets up its own
    config.paths.ensure()
    pid = PidFile(config.paths.pid_file)
    pid.acquire()
    try:
        # What every worker would otherwise race for: the schema, the fingerprint secret, the port.
        with storage.decision_reader(config, migrate=False) as reader:
            reader.upgrade()
        load_or_create_secret(config.fingerprint_path)
        WorkerBoard.for_config(config).reset()
        reserved = reserve_port(config.host, config.port)
        port = int(reserved.getsockname()[1])
        url = _url(config.host, port, secure=config.tls)
        info = {"pid": os.getpid(), "url": url, "started_at": time.time(), "db": config.database}
        sup = Supervisor(config, n, port, lambda pids: pid.write({**info, "workers": pids}))
        pid.write({**info, "workers": []})  # clients see the daemon (not yet ready) while its workers start
        try:
            sup.start()
        finally:
            reserved.close()
        pid.write({**info, "workers": sup.pids()})
        log.info("aigov listening on %s with %d workers (pids %s)", url, n, ", ".join(map(str, sup.pids())))
        if on_ready:
            on_ready(url)
        sup.run()
    finally:
        pid.release()
    log.info("stopped")


async def run_app(
    config: Config, *, slot: int, port: int, shared: bool = False, on_listening: Callable[[str], None] | None = None
) -> None:
    """Serve the app on ``config.host:port`` until SIGTERM (or SIGINT), then shut down gracefully.

    ``slot`` is the worker's place under ``--workers N`` (0 when alone); ``shared`` workers share
    the port (SO_REUSEPORT) and their state (:class:`daemon.workers.WorkerBoard`).
    """
    init_sentry(config)  # nothing without sentry_dsn
    app = create_app(config, worker=slot, shared=shared)
    svc = app[SERVICE]
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=config.shutdown_timeout,
                           logger=ServerLog(logging.getLogger("aiohttp.server"), {}))
    await runner.setup()
    assert runner.server is not None  # set by setup()
    route_hot_path(app, runner.server)
    try:
        ssl_context = tls.listen_context(config)  # None: plain HTTP (warned about beyond loopback)
        site = web.TCPSite(runner, config.host, port, backlog=2048, reuse_address=True, reuse_port=shared,
                           ssl_context=ssl_context)
        try:
            await site.start()
        except OSError as e:
            # aiohttp's message repeats the address ("error while attempting to bind on address
            # ('127.0.0.1', 8080): address already in use"): the errno's own words say it once.
            why = os.strerror(e.errno).lower() if e.errno else str(e)
            raise ConfigError(f"cannot listen on {config.host}:{port}: {why}") from None
        addrs = runner.addresses
        url = _url(config.host, int(addrs[0][1]) if addrs else port, secure=ssl_context is not None)
        log.info(
            "aigov %s on %s (%s, policy %s, %d active keys, rate limits %s)",
            f"worker {slot} (pid {os.getpid()}) listening" if shared else "listening", url,
            config.database, svc.policies.version,
            svc.auth.active_count(), config.rate_limit_url.partition(":")[0],
        )
        if on_listening:
            on_listening(url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # SIGINT ignored in a worker: the parent sends SIGTERM
                loop.add_signal_handler(sig, stop.set)

        async def reload() -> None:
            try:
                new = await svc.reload_policy()
                log.info("policy reloaded: version %s (%s)", new.version, ", ".join(new.names))
            except AigovError as e:
                log.error("policy reload failed, keeping version %s: %s", svc.policies.version, e)

        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(reload()))
        await stop.wait()
        log.info("shutting down: finishing in-flight requests, flushing the decision log")
        loop.remove_signal_handler(signal.SIGHUP)
        # A second SIGTERM (a supervisor's, after its process group got one) must not cut the drain short.
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):
                loop.add_signal_handler(sig, lambda: log.info("already shutting down"))
    finally:
        await runner.cleanup()
    log.info("stopped (%d decisions written)", svc.stats.decisions_written)
