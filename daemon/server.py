"""Running the daemon: single-instance pid file, listening socket, signals, graceful shutdown.

SIGTERM/SIGINT: stop listening, let in-flight requests finish (up to
``shutdown_timeout``), flush the decision log, close the database, exit 0.
SIGHUP: reload the policy file; an invalid file keeps the old policy.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable

from aiohttp import web

from daemon import tls
from daemon.app import SERVICE, create_app, route_hot_path
from daemon.config import Config
from daemon.errors import AigovError, ConfigError
from daemon.pidfile import PidFile
from daemon.sentry import init_sentry

log = logging.getLogger("aigov")


async def serve(config: Config, on_ready: Callable[[str], None] | None = None) -> None:
    """Run the daemon until SIGTERM or SIGINT; AigovError for start-up problems."""
    init_sentry(config)  # nothing without sentry_dsn
    config.paths.ensure()
    pid = PidFile(config.paths.pid_file)
    pid.acquire()
    try:
        await _serve(config, pid, on_ready)
    finally:
        pid.release()


async def _serve(config: Config, pid: PidFile, on_ready: Callable[[str], None] | None) -> None:
    app = create_app(config)
    svc = app[SERVICE]
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=config.shutdown_timeout)
    await runner.setup()
    assert runner.server is not None  # set by setup()
    route_hot_path(app, runner.server)
    try:
        ssl_context = tls.listen_context(config)  # None: plain HTTP (warned about beyond loopback)
        site = web.TCPSite(runner, config.host, config.port, backlog=2048, reuse_address=True,
                           ssl_context=ssl_context)
        try:
            await site.start()
        except OSError as e:
            raise ConfigError(f"cannot listen on {config.host}:{config.port}: {e.strerror or e}") from None
        addrs = runner.addresses
        port = int(addrs[0][1]) if addrs else config.port
        host = f"[{config.host}]" if ":" in config.host else config.host
        url = f"{'https' if ssl_context else 'http'}://{host}:{port}"
        pid.write({"pid": os.getpid(), "url": url, "started_at": time.time(), "db": str(config.db_file)})
        log.info(
            "aigov listening on %s (db %s, policy %s, %d active keys)",
            url, config.db_file, svc.policies.version, svc.auth.active_count(),
        )
        if on_ready:
            on_ready(url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
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
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    finally:
        await runner.cleanup()
    log.info("stopped (%d decisions written)", svc.stats.decisions_written)
