"""``aigov serve --workers N``: N processes on one port, supervised by one parent.

Each worker is a whole daemon (its own event loop, key table, decision writer and hash chain) bound
to the same port with SO_REUSEPORT, so the kernel spreads connections over them; limits stay exact
because every worker asks the same Redis. The parent holds the pid file and does nothing on the
request path: it starts the workers, restarts one that dies, forwards SIGHUP (policy reload) to all,
and on SIGTERM/SIGINT asks each to drain (finish in-flight requests, write every queued decision)
before it exits.

Workers share what the CLI and ``/metrics`` need through :class:`WorkerBoard`: a small JSON file
per worker slot in the state directory, rewritten every second, holding the worker's pid, its
policy version and a snapshot of its counters. Whichever worker answers a scrape exports the sum of
every slot's snapshot, so ``/metrics`` is the same whichever worker answers; a worker that
restarts in a slot continues that slot's counters, so they never go backwards.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon.config import Config
from daemon.errors import AigovError, ConfigError
from daemon.metrics import Snapshot, merge

log = logging.getLogger("aigov")

SHARE_INTERVAL = 1.0
START_TIMEOUT = 60.0
RESTART_BACKOFF_MAX = 30.0


def worker_count(config: Config) -> int:
    """How many processes ``workers`` asks for (0 or auto: one per core this process may use)."""
    if config.workers:
        return config.workers
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def check_workers(config: Config, n: int) -> None:
    """ConfigError when ``n`` processes would each keep their own limits."""
    if n > 1 and config.rate_limit_url.startswith("memory:"):
        # Named as the setting (`--workers` sets it too), since either may have asked for it.
        asked = f"{n}" if config.workers else f"auto ({n} cores)"
        raise ConfigError(
            f"workers = {asked} needs a shared rate limiter (with memory:// each process would allow the "
            "whole limit): set rate_limit_url to a Redis URL, e.g. AIGOV_RATE_LIMIT_URL=redis://127.0.0.1:6379/0"
        )


class WorkerBoard:
    """The files through which workers share their state: ``<state_dir>/workers/w<slot>.json``."""

    def __init__(self, directory: Path, slot: int = -1) -> None:
        self.directory = directory
        self.slot = slot

    @classmethod
    def for_config(cls, config: Config, slot: int = -1) -> WorkerBoard:
        """The board of the daemon of ``config``'s home."""
        return cls(config.paths.state_dir / "workers", slot)

    def reset(self) -> None:
        """Start a fresh board (the parent, before it starts its workers)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for f in self.directory.glob("w*.json"):
            f.unlink(missing_ok=True)

    def path(self, slot: int) -> Path:
        """The file of one slot."""
        return self.directory / f"w{slot}.json"

    def previous(self) -> Snapshot | None:
        """The counters a worker left in this slot before it died (a restart continues them)."""
        state = _read(self.path(self.slot))
        if state is None:
            return None
        metrics: Snapshot = state.get("metrics") or {}
        return {**metrics, "queue_size": 0, "active_keys": 0}  # gauges are not carried over

    def share(self, state: dict[str, Any]) -> None:
        """Replace this slot's file, atomically (blocking: call it off the event loop)."""
        path = self.path(self.slot)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(state, f, separators=(",", ":"))
        os.replace(tmp, path)

    def states(self) -> list[dict[str, Any]]:
        """Every slot's last state (blocking)."""
        out = []
        for f in sorted(self.directory.glob("w*.json")):
            state = _read(f)
            if state is not None:
                out.append(state)
        return out

    def merged_metrics(self, own: dict[str, Any]) -> Snapshot:
        """Share ``own`` state, then the sum of every slot's counters (blocking)."""
        self.share(own)
        return merge(s.get("metrics") or {} for s in self.states())


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# --- the parent -------------------------------------------------------------------------------


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound (not listening) to ``host:port`` with SO_REUSEPORT: it fixes the port for every
    worker when ``port`` is 0, and fails early when the port is taken.

    The port is first bound without SO_REUSEPORT: the kernel lets any process of the same user join a
    SO_REUSEPORT port, so the workers of another `aigov serve --workers` (another home) would
    otherwise share it with ours, and connections would go to either deployment."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as alone:
            alone.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT is no one's
            alone.bind((host, port))
            port = alone.getsockname()[1]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        raise ConfigError(f"cannot listen on {host}:{port}: {(e.strerror or str(e)).lower()}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {(e.strerror or str(e)).lower()}") from None
    return sock


class Supervisor:
    """Starts N workers, restarts those that die, forwards SIGHUP, drains them all on SIGTERM/SIGINT."""

    def __init__(self, config: Config, n: int, port: int, on_change: Callable[[list[int]], None]) -> None:
        self.config = config
        self.n = n
        self.port = port
        self.on_change = on_change  # called with the worker pids whenever they change
        self.ctx = multiprocessing.get_context("spawn")
        self.procs: list[multiprocessing.process.BaseProcess | None] = [None] * n
        self.started_at = [0.0] * n
        self.backoff = [0.0] * n
        self.stopping = False
        # Restarted workers not yet listening: the pipe on which each says "ready" (or why it cannot).
        self.starting: dict[int, multiprocessing.connection.Connection] = {}
        self._wake_r, self._wake_w = os.pipe()
        self._signals: list[int] = []

    def pids(self) -> list[int]:
        """The pids of the workers that listen (one that is starting again is not counted yet)."""
        return [p.pid for slot, p in enumerate(self.procs)
                if p is not None and p.pid is not None and slot not in self.starting]

    def start(self) -> None:
        """Start every worker and wait until each listens; ConfigError (with the worker's reason) if one cannot."""
        pipes = [self._spawn(slot) for slot in range(self.n)]
        deadline = time.monotonic() + START_TIMEOUT
        for slot, conn in enumerate(pipes):
            error = _wait_ready(conn, self.procs[slot], deadline)
            if error is not None:
                self.stop(timeout=10.0)
                raise ConfigError(error)

    def _spawn(self, slot: int) -> multiprocessing.connection.Connection:
        parent_end, child_end = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(target=worker_main, args=(self.config, slot, self.port, child_end, os.getpid()),
                                name=f"aigov-worker-{slot}", daemon=False)
        proc.start()
        child_end.close()
        self.procs[slot] = proc
        self.started_at[slot] = time.monotonic()
        return parent_end

    def run(self) -> None:
        """Supervise until SIGTERM or SIGINT, then drain the workers."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        restart_at: dict[int, float] = {}
        while not self.stopping:
            sentinels = [p.sentinel for p in self.procs if p is not None]
            timeout = max(0.0, min(restart_at.values()) - time.monotonic()) if restart_at else None
            multiprocessing.connection.wait([*sentinels, *self.starting.values(), self._wake_r], timeout)
            for received in self._take_signals():
                if received == signal.SIGHUP:
                    log.info("SIGHUP: reloading the policy in every worker")
                    self._signal_all(signal.SIGHUP)
                else:
                    self.stopping = True
            if self.stopping:
                break
            self._take_ready()
            for slot, proc in enumerate(self.procs):
                if proc is not None and not proc.is_alive():
                    proc.join()
                    with contextlib.suppress(KeyError):
                        self.starting.pop(slot).close()
                    # One that ran for a while restarts at once; one that keeps dying at start, ever slower.
                    lived = time.monotonic() - self.started_at[slot]
                    again = min(RESTART_BACKOFF_MAX, max(1.0, self.backoff[slot] * 2))
                    self.backoff[slot] = 0.0 if lived > 60 else again
                    log.error("worker %d (pid %s) %s; restarting it%s", slot, proc.pid, _ended(proc.exitcode),
                              f" in {self.backoff[slot]:g} s" if self.backoff[slot] else "")
                    self.procs[slot] = None
                    restart_at[slot] = time.monotonic() + self.backoff[slot]
                    self.on_change(self.pids())
            for slot, when in list(restart_at.items()):
                if time.monotonic() >= when:
                    del restart_at[slot]
                    self.starting[slot] = self._spawn(slot)
        log.info("shutting down: every worker finishes its in-flight requests and writes its decisions")
        self.stop(timeout=self.config.shutdown_timeout + 40.0)

    def stop(self, timeout: float) -> None:
        """SIGTERM every worker and wait for each (SIGKILL after ``timeout``, which loses its queue)."""
        self.stopping = True
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for slot, proc in enumerate(self.procs):
            if proc is None:
                continue
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                log.error("worker %d (pid %s) did not stop within %.0f s; killing it", slot, proc.pid, timeout)
                proc.kill()
                proc.join()
            elif proc.exitcode:
                log.error("worker %d (pid %s) %s", slot, proc.pid, _ended(proc.exitcode))
        for conn in self.starting.values():
            conn.close()
        self.starting.clear()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _take_ready(self) -> None:
        """Count in every restarted worker that now listens; log why one could not start (it exits,
        and the loop restarts it after its backoff)."""
        changed = False
        for slot, conn in list(self.starting.items()):
            if not conn.poll(0):
                continue
            try:
                kind, message = conn.recv()
            except (EOFError, OSError):
                kind, message = "error", "it exited before it listened"
            conn.close()
            del self.starting[slot]
            proc = self.procs[slot]
            if kind == "ready":
                log.info("worker %d (pid %s) listening again", slot, proc.pid if proc else "?")
                changed = True
            else:
                log.error("worker %d could not start: %s", slot, message)
        if changed:
            self.on_change(self.pids())

    def _signal_all(self, sig: int) -> None:
        for proc in self.procs:
            if proc is not None and proc.pid is not None and proc.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, sig)

    def _on_signal(self, sig: int, frame: object) -> None:
        self._signals.append(sig)
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"!")

    def _take_signals(self) -> list[int]:
        with contextlib.suppress(BlockingIOError, OSError):
            os.set_blocking(self._wake_r, False)
            while os.read(self._wake_r, 64):
                pass
        taken, self._signals = self._signals, []
        return taken


def _ended(exitcode: int | None) -> str:
    """How a worker ended, in words: multiprocessing gives -N for a death by signal N."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"was killed by {name}"
    return f"exited with code {exitcode}"


def _wait_ready(conn: multiprocessing.connection.Connection, proc: Any, deadline: float) -> str | None:
    """None once the worker listens, else why it did not."""
    while time.monotonic() < deadline:
        if conn.poll(0.1):
            try:
                kind, message = conn.recv()
            except EOFError:
                break
            finally:
                conn.close()
            return None if kind == "ready" else str(message)
        if not proc.is_alive():
            break
    conn.close()
    if proc.is_alive():
        return f"a worker did not start listening within {START_TIMEOUT:.0f} s"
    return f"a worker exited at start (code {proc.exitcode}); see the log above"


# --- a worker -----------------------------------------------------------------------------------


def _die_with(parent: int) -> None:
    """Have the kernel send this process SIGTERM (a drain) when ``parent`` dies, however it dies.

    A worker whose parent was killed with SIGKILL would otherwise go on serving the port, unseen by
    `aigov status` and `aigov stop` (the pid file went with the parent), beside the workers of the
    next `aigov serve`. Linux only (prctl); elsewhere workers outlive a killed parent."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        if libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def worker_main(config: Config, slot: int, port: int, conn: multiprocessing.connection.Connection,
                parent: int) -> None:
    """A worker process: run one daemon on the shared port until SIGTERM (or its parent's death)."""
    import asyncio

    from daemon.server import run_app

    _die_with(parent)
    # Ctrl-C reaches every process of the terminal's group; the parent turns it into one SIGTERM each.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, config.log_level.upper(), logging.INFO),
                        format=f"%(asctime)s %(levelname)-7s w{slot} %(message)s", datefmt="%Y-%m-%dT%H:%M:%S")

    def ready(url: str) -> None:
        # A parent that no longer waits (it is stopping, or gone) is no reason to stop serving.
        with contextlib.suppress(OSError):
            conn.send(("ready", url))
        conn.close()

    try:
        try:
            import uvloop
        except ImportError:
            asyncio.run(run_app(config, slot=slot, port=port, shared=True, on_listening=ready))
        else:
            uvloop.run(run_app(config, slot=slot, port=port, shared=True, on_listening=ready))
    except AigovError as e:
        with contextlib.suppress(OSError, ValueError):
            conn.send(("error", str(e)))
        sys.exit(2)
