"""Executors that run phases: in this process, or split across worker processes.

Each worker process runs its own :class:`Engine` on its own event loop (uvloop
when installed) and takes every ``workers``-th entry of the schedule; ticks and
phase results travel back over a pipe and are merged here.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Protocol

from aigov_cli.loadtest.engine import Engine, EngineConfig, PhaseResult, Tick
from aigov_cli.loadtest.scenarios import PhaseSpec

TickSink = Callable[[Tick], None]


class Executor(Protocol):
    """Runs phases of a schedule and reports ticks as they happen."""

    workers: int

    async def start(self) -> None:
        """Get ready (spawn workers)."""

    async def run_phase(self, index: int, spec: PhaseSpec, t0: float, on_tick: TickSink) -> PhaseResult:
        """Run one phase starting at absolute monotonic time ``t0``."""
        ...

    def stop(self) -> None:
        """Stop scheduling; the running phase returns soon with what it has."""

    async def close(self) -> None:
        """Release connections and processes."""


def install_uvloop() -> bool:
    """Use uvloop's event loop policy when it is installed."""
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


class LocalExecutor:
    """Runs the engine on the current event loop."""

    def __init__(self, cfg: EngineConfig) -> None:
        self.workers = 1
        self.engine = Engine(cfg)

    async def start(self) -> None:
        """Nothing to prepare."""

    async def run_phase(self, index: int, spec: PhaseSpec, t0: float, on_tick: TickSink) -> PhaseResult:
        """Run the phase in-process."""
        return await self.engine.run_phase(index, spec, t0, 0, 1, on_tick)

    def stop(self) -> None:
        """Stop the engine."""
        self.engine.stop()

    async def close(self) -> None:
        """Close connections."""
        self.engine.close()


def _worker_main(conn: Connection, cfg: EngineConfig, worker: int, workers: int) -> None:
    # The parent owns Ctrl-C: it tells workers to stop over the pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    install_uvloop()
    asyncio.run(_worker_loop(conn, cfg, worker, workers))


async def _worker_loop(conn: Connection, cfg: EngineConfig, worker: int, workers: int) -> None:
    loop = asyncio.get_running_loop()
    engine = Engine(cfg)
    inbox: asyncio.Queue[tuple[object, ...]] = asyncio.Queue()

    def readable() -> None:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            loop.remove_reader(conn.fileno())
            engine.stop()
            inbox.put_nowait(("exit",))
            return
        if msg[0] == "stop":
            engine.stop()
        else:
            inbox.put_nowait(msg)

    loop.add_reader(conn.fileno(), readable)
    conn.send(("ready", worker))
    try:
        while True:
            msg = await inbox.get()
            if msg[0] == "exit":
                break
            if msg[0] == "phase":
                _, index, spec, t0 = msg
                assert isinstance(index, int) and isinstance(spec, PhaseSpec) and isinstance(t0, float)
                result = await engine.run_phase(
                    index, spec, t0, worker, workers, lambda tick: conn.send(("tick", worker, tick))
                )
                conn.send(("result", worker, result))
    finally:
        with contextlib.suppress(Exception):
            loop.remove_reader(conn.fileno())
        engine.close()
        conn.close()


class ProcessExecutor:
    """Runs the engine in ``workers`` processes, each with a share of every phase."""

    def __init__(self, cfg: EngineConfig, workers: int) -> None:
        self.workers = workers
        self.cfg = cfg
        self._procs: list[multiprocessing.process.BaseProcess] = []
        self._conns: list[Connection] = []
        self._queue: asyncio.Queue[tuple[object, ...]] | None = None

    async def start(self) -> None:
        """Spawn the workers and wait until each has its event loop running."""
        ctx = multiprocessing.get_context("spawn")
        loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        share = max(1, self.cfg.connections // self.workers)
        cfg = EngineConfig(**{**self.cfg.__dict__, "connections": share})
        for w in range(self.workers):
            parent, child = ctx.Pipe(duplex=True)
            proc = ctx.Process(
                target=_worker_main,
                args=(child, cfg, w, self.workers),
                daemon=True,
                name=f"aigov-loadtest-{w}",
            )
            proc.start()
            child.close()
            self._procs.append(proc)
            self._conns.append(parent)
            loop.add_reader(parent.fileno(), self._readable, parent)
        ready = 0
        while ready < self.workers:
            msg = await asyncio.wait_for(self._queue.get(), 60)
            if msg[0] == "ready":
                ready += 1
            elif msg[0] == "dead":
                raise RuntimeError("a load-generator worker process exited during start-up")

    def _readable(self, conn: Connection) -> None:
        assert self._queue is not None
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(conn.fileno())
            self._queue.put_nowait(("dead",))
            return
        self._queue.put_nowait(msg)

    async def run_phase(self, index: int, spec: PhaseSpec, t0: float, on_tick: TickSink) -> PhaseResult:
        """Send the phase to every worker, relay ticks, and merge the results."""
        assert self._queue is not None
        for c in self._conns:
            c.send(("phase", index, spec, t0))
        merged: PhaseResult | None = None
        got = 0
        while got < self.workers:
            msg = await self._queue.get()
            if msg[0] == "tick":
                tick = msg[2]
                assert isinstance(tick, Tick)
                on_tick(tick)
            elif msg[0] == "result":
                res = msg[2]
                assert isinstance(res, PhaseResult)
                if merged is None:
                    merged = res
                else:
                    merged.merge(res)
                got += 1
            elif msg[0] == "dead":
                raise RuntimeError("a load-generator worker process died")
        assert merged is not None
        return merged

    def stop(self) -> None:
        """Tell every worker to stop scheduling."""
        for c in self._conns:
            with contextlib.suppress(OSError, ValueError):
                c.send(("stop",))

    async def close(self) -> None:
        """Ask workers to exit, then make sure they are gone."""
        loop = asyncio.get_running_loop()
        for c in self._conns:
            with contextlib.suppress(OSError, ValueError):
                loop.remove_reader(c.fileno())
            with contextlib.suppress(OSError, ValueError):
                c.send(("exit",))
        for p in self._procs:
            for _ in range(100):
                if not p.is_alive():
                    break
                await asyncio.sleep(0.05)
            if p.is_alive():
                p.terminate()
            p.join(2)
        for c in self._conns:
            c.close()
        self._procs.clear()
        self._conns.clear()
