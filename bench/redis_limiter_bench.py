"""Client CPU per rate-limit check with the Redis limiter, batched or one at a time, and checks/s.

Measures, in this one process, the CPU time (user + system) each check costs the client and the
checks per second it completes, for aigov's RedisRateLimiter with 32 checks in flight at once
(they share pipelined round trips) and with one at a time, and for redis-py's own client calling
the same script as the baselines: EVALSHA through its connection pool (no batching), and a
redis-py pipeline of 32 EVALSHA at a time.

Against a private redis-server started on a free port (nothing saved), or ``--url``.
``--json`` prints one JSON document; BENCH_QUICK=1 runs short.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from daemon.ratelimit.redis import BUCKET_SCRIPT, RedisBackend, RedisRateLimiter  # noqa: E402

QUICK = os.environ.get("BENCH_QUICK") == "1"
CHECKS = 4_000 if QUICK else 40_000
CONCURRENT = 32
PREFIX = "aigov-bench"


class CountingBackend(RedisBackend):
    """Counts round trips, for the mean batch size."""

    round_trips = 0

    async def exchange(self, commands: Any) -> list[Any]:
        self.round_trips += 1
        return await super().exchange(commands)


async def measure(call: Callable[[int], Awaitable[object]], concurrency: int, n: int) -> dict[str, float]:
    """CPU µs per call and calls/s for ``n`` calls made by ``concurrency`` tasks in a loop."""
    async def worker(i: int, count: int) -> None:
        for _ in range(count):
            await call(i)

    await asyncio.gather(*(worker(i, 200 // concurrency + 1) for i in range(concurrency)))  # warm up
    per_task = n // concurrency
    c0, w0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(i, per_task) for i in range(concurrency)))
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    done = per_task * concurrency
    return {"cpu_us_per_check": cpu / done * 1e6, "checks_per_second": done / wall}


async def run(url: str) -> dict[str, Any]:
    """Every measurement against the Redis at ``url``."""
    import redis.asyncio as aioredis

    res: dict[str, Any] = {"checks": CHECKS}
    backend = CountingBackend(url, prefix=PREFIX, timeout=1.0)
    limiter = RedisRateLimiter(backend)

    async def aigov_check(i: int) -> object:
        return await limiter.check(f"key{i}", 10**9, 60)

    try:
        backend.round_trips = 0
        res["aigov_batched"] = await measure(aigov_check, CONCURRENT, CHECKS)
        res["aigov_batched"]["mean_batch"] = CHECKS / max(1, backend.round_trips)
        res["aigov_one_at_a_time"] = await measure(aigov_check, 1, CHECKS // 4)
    finally:
        await limiter.close()

    client = aioredis.Redis.from_url(url, protocol=2)
    sha = await client.script_load(BUCKET_SCRIPT)

    async def redis_py_check(i: int) -> object:
        return await client.evalsha(sha, 1, f"{{{PREFIX}:key{i}}}:bucket", 10**9, 60)  # type: ignore[misc]

    async def redis_py_pipeline(i: int) -> object:  # 32 checks in one redis-py pipeline
        pipe = client.pipeline(transaction=False)
        for j in range(CONCURRENT):
            pipe.evalsha(sha, 1, f"{{{PREFIX}:key{j}}}:bucket", 10**9, 60)
        return await pipe.execute()

    try:
        piped = await measure(redis_py_pipeline, 1, CHECKS // CONCURRENT)
        res["redis_py_pipeline"] = {"cpu_us_per_check": piped["cpu_us_per_check"] / CONCURRENT,
                                    "checks_per_second": piped["checks_per_second"] * CONCURRENT}
        res["redis_py_concurrent"] = await measure(redis_py_check, CONCURRENT, CHECKS)
        res["redis_py_one_at_a_time"] = await measure(redis_py_check, 1, CHECKS // 4)
        keys = [k async for k in client.scan_iter(match=f"{{{PREFIX}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
    return res


def free_port() -> int:
    """A free local port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def private_redis() -> tuple[subprocess.Popen[bytes], str, Path]:
    """A redis-server of our own on a free port; (process, URL, its directory)."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    scratch = Path(tempfile.mkdtemp(prefix="aigov-bench-redis-"))
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(scratch)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("redis-server did not start")
        time.sleep(0.02)
    return proc, f"redis://127.0.0.1:{port}/0", scratch


def text(res: dict[str, Any]) -> str:
    """A short table of the results."""
    rows = [("aigov, 32 concurrent (pipelined)", "aigov_batched"), ("aigov, one at a time", "aigov_one_at_a_time"),
            ("redis-py pipeline of 32 EVALSHA", "redis_py_pipeline"),
            ("redis-py EVALSHA, 32 concurrent", "redis_py_concurrent"),
            ("redis-py EVALSHA, one at a time", "redis_py_one_at_a_time")]
    lines = [f"{'client':36} {'CPU µs/check':>13} {'checks/s':>10}"]
    for label, key in rows:
        r = res[key]
        lines.append(f"{label:36} {r['cpu_us_per_check']:13.1f} {r['checks_per_second']:10.0f}")
    lines.append(f"(mean batch with 32 concurrent: {res['aigov_batched']['mean_batch']:.1f} checks per round trip; "
                 f"event loop: {res['loop']}; {res['checks']} checks)")
    return "\n".join(lines)


def main() -> None:
    """Parse the arguments, run, print."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="a Redis to use instead of a private redis-server (keys under aigov-bench)")
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    args = ap.parse_args()
    try:
        import uvloop  # the daemon's event loop when installed

        loop_name = "uvloop"
        runner: Callable[[Any], Any] = uvloop.run
    except ImportError:
        loop_name, runner = "asyncio", asyncio.run
    proc = scratch = None
    url = args.url
    if url is None:
        proc, url, scratch = private_redis()
    try:
        res = runner(run(url))
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    res["loop"] = loop_name
    print(json.dumps(res, indent=2) if args.json else text(res))


if __name__ == "__main__":
    main()
