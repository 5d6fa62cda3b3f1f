"""Helpers for the tests that need Redis: the shared test server, private servers to break, key clean-up."""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

REDIS_URL = os.environ.get("AIGOV_TEST_REDIS_URL", "")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


NO_REDIS = "AIGOV_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379/0): no Redis to test against"
# An unconditional skip chosen once here rather than a skipif: pytest -ra folds a file's skips of this
# kind into one summary line.
needs_redis = pytest.mark.skip(reason=NO_REDIS) if not REDIS_URL else pytest.mark.redis

# One prefix per test run, so that runs sharing a server never see each other's keys.
RUN_PREFIX = f"aigov-test-{uuid.uuid4().hex[:12]}"


def unique_prefix() -> str:
    """A prefix of this run's, used by one test only."""
    return f"{RUN_PREFIX}-{uuid.uuid4().hex[:8]}"


async def delete_prefix(url: str, prefix: str) -> int:
    """Delete every key of ``prefix`` (found by SCAN, never KEYS); how many there were."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{{{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
        return len(keys)
    finally:
        await client.aclose()


# Move a prefix's state back in time by ARGV[1] seconds, as if that long had passed: bucket and failure
# times move back, times to live shrink (a key whose time to live runs out is deleted, as Redis would
# have). The fake clock of the Redis tests: the scripts themselves read the real Redis TIME.
ADVANCE_SCRIPT = """
local dt = tonumber(ARGV[1])
local cursor = '0'
repeat
  local r = redis.call('SCAN', cursor, 'MATCH', ARGV[2], 'COUNT', 1000)
  cursor = r[1]
  for _, k in ipairs(r[2]) do
    local ttl = redis.call('PTTL', k)
    if ttl > 0 and ttl <= dt * 1000 then
      redis.call('DEL', k)
    else
      local kind = redis.call('TYPE', k).ok
      if kind == 'hash' then
        local u = tonumber(redis.call('HGET', k, 'updated'))
        redis.call('HSET', k, 'updated', string.format('%.17g', u - dt))
      elseif kind == 'zset' then
        local all = redis.call('ZRANGE', k, 0, -1, 'WITHSCORES')
        for i = 1, #all, 2 do
          redis.call('ZADD', k, string.format('%.17g', tonumber(all[i + 1]) - dt), all[i])
        end
      end
      if ttl > 0 then redis.call('PEXPIRE', k, ttl - math.floor(dt * 1000)) end
    end
  end
until cursor == '0'
"""


async def advance(url: str, prefix: str, seconds: float) -> None:
    """Let ``seconds`` pass for the state of ``prefix`` (see ADVANCE_SCRIPT)."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        await client.eval(ADVANCE_SCRIPT, 0, seconds, f"{{{prefix}:*")  # type: ignore[misc]
    finally:
        await client.aclose()


def free_port() -> int:
    """A free local TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ping(port: int) -> bool:
    """Whether a Redis answers PING on ``port`` right now."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith((b"+PONG", b"-NOAUTH"))  # up (a password is asked for later)
    except OSError:
        return False


class PrivateRedis:
    """A redis-server of the test's own on a free port (nothing saved), to stop, kill and restart."""

    def __init__(self, *extra: str) -> None:
        self.port = free_port()
        self.extra = extra
        self.dir = Path(tempfile.mkdtemp(prefix="aigov-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopped = False
        self.start()

    @property
    def url(self) -> str:
        """Its redis:// URL."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it (again, on the same port) and wait until it answers."""
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not ping(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.01)

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` (SIGSTOP: hangs, SIGCONT: resumes, SIGKILL: dies)."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        if sig == signal.SIGSTOP:
            self.stopped = True
        elif sig == signal.SIGCONT:
            self.stopped = False
        elif sig == signal.SIGKILL:
            self.proc.wait(10)

    def stop(self) -> None:
        """Kill it for good and remove its directory."""
        if self.proc is not None and self.proc.poll() is None:
            if self.stopped:
                self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


async def poll(condition: Callable[[], bool | Awaitable[bool]], deadline_s: float, what: str) -> float:
    """Check ``condition()`` (awaited when it is a coroutine) until true; seconds it took. Fails the test
    after ``deadline_s``."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    while True:
        met = condition()
        if await met if inspect.isawaitable(met) else met:
            return loop.time() - t0
        if loop.time() - t0 > deadline_s:
            pytest.fail(f"{what}: not within {deadline_s} s")
        await asyncio.sleep(0.005)


def burst_worker(url: str, prefix: str, key: str, phases: list[tuple[int, int]], barrier: Any, out: Any) -> None:
    """In a process of its own: for each (limit, n) of ``phases``, wait for the others, then make n
    simultaneous checks of ``key``; put the number allowed in each phase on ``out``."""
    from daemon.ratelimit.redis import redis_backend

    async def main() -> list[int]:
        limiter, _ = redis_backend(url, prefix=prefix, timeout=10.0)
        try:
            await limiter.check("warm-up", 1, 1)  # connected and the script loaded before the race
            counts = []
            for limit, n in phases:
                await asyncio.to_thread(barrier.wait, 60)
                decisions = await asyncio.gather(*(limiter.check(key, limit, 86400) for _ in range(n)))
                counts.append(sum(d.allowed for d in decisions))
            return counts
        finally:
            await limiter.close()

    try:
        out.put(asyncio.run(main()))
    except BaseException as e:  # reported by the test rather than lost with the process
        out.put(repr(e))
        barrier.abort()
