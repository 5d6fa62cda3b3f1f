"""Running the daemon: single-instance pid file, listening socket, signals, graceful shutdown.

SIGTERM/SIGINT: stop listening, let in-flight requests finish (up to
``shutdown_timeout``), flush the decision log, close the database, exit 0.
SIGHUP: reload the policy file; an invalid file keeps the old policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from daemon.app import SERVICE, create_app, route_hot_path
from daemon.config import Config
from daemon.errors import AigovError, ConfigError

log = logging.getLogger("aigov")


def already_running(info: dict[str, Any]) -> ConfigError:
    """The error for a second daemon on a home whose pid file is held."""
    return ConfigError(
        f"aigov is already running for this home (pid {info.get('pid', '?')}, {info.get('url', '?')}); "
        "stop it with `aigov stop` or use another --home"
    )


class PidFile:
    """The pid file, held under an exclusive flock for the daemon's whole life."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        """Take the lock; ConfigError when another daemon holds it."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise already_running(read_pidfile(self.path) or {}) from None
            raise
        self.fd = fd

    def write(self, info: dict[str, Any]) -> None:
        """Record the running daemon's pid and address."""
        assert self.fd is not None
        data = json.dumps(info).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def release(self) -> None:
        """Remove the file and drop the lock."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self.fd)
            self.fd = None


def read_pidfile(path: Path) -> dict[str, Any] | None:
    """The recorded daemon info, or None when there is no readable pid file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def daemon_running(path: Path) -> dict[str, Any] | None:
    """The info of a live daemon holding the pid file's lock, else None (a stale file is ignored)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return read_pidfile(path) or {"pid": None}
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


async def serve(config: Config, on_ready: Callable[[str], None] | None = None) -> None:
    """Run the daemon until SIGTERM or SIGINT; AigovError for start-up problems."""
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
        site = web.TCPSite(runner, config.host, config.port, backlog=2048, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            # aiohttp's message repeats the address ("error while attempting to bind on address
            # ('127.0.0.1', 8080): address already in use"): the errno's own words say it once.
            why = os.strerror(e.errno).lower() if e.errno else str(e)
            raise ConfigError(f"cannot listen on {config.host}:{config.port}: {why}") from None
        addrs = runner.addresses
        port = int(addrs[0][1]) if addrs else config.port
        host = f"[{config.host}]" if ":" in config.host else config.host
        url = f"http://{host}:{port}"
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
