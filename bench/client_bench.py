"""What the integrations cost a caller: ``Client.check`` over a warm connection, and the OpenAI guard.

Starts a real ``aigov serve`` (throwaway home, one key of a huge limit) and the fake OpenAI
upstream of the tests, each in its own process on core 0, and measures from core 1:

- ``Client.check`` and ``AsyncClient.check`` round trips (one kept-alive connection), p50/p90/p99;
- a chat completion through ``openai.OpenAI`` against the fake upstream, plain and guarded, the two
  alternating call by call so that drift hits both alike; the guard's extra latency is the
  difference of the medians (it covers two checks: the request and the answer).

Usage: python bench/client_bench.py [--json] [--calls N]   (BENCH_QUICK=1: fewer calls)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aigov_cli.client import AsyncClient, Client  # noqa: E402

AIGOV = str(Path(sys.executable).parent / "aigov")
QUICK = os.environ.get("BENCH_QUICK") == "1"
UPSTREAM = (
    "import sys, time; sys.path.insert(0, sys.argv[1]); from tests.fake_openai import FakeOpenAI; "
    "f = FakeOpenAI().start(); print(f.url, flush=True); time.sleep(10**6)"
)
MESSAGES = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is the capital of France?"}]


def free_port() -> int:
    """A free local port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(core: int) -> list[str]:
    """taskset prefix pinning a command to one core (none on a one-core machine)."""
    return ["taskset", "-c", str(core)] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


def wait_http(url: str, timeout: float = 20) -> None:
    """Wait until ``url`` answers."""
    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            if time.time() > deadline:
                raise RuntimeError(f"{url} did not answer") from None
            time.sleep(0.05)


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50/p90/p99 in microseconds."""
    s = sorted(seconds)
    at = lambda q: s[min(len(s) - 1, int(q * len(s)))] * 1e6  # noqa: E731
    return {"p50_us": round(at(0.5), 1), "p90_us": round(at(0.9), 1), "p99_us": round(at(0.99), 1),
            "calls": len(s)}


def bench_sync(url: str, token: str, calls: int) -> dict[str, float]:
    """``Client.check`` round trips on one warm connection."""
    with Client(url, token) as aigov:
        for _ in range(200):
            aigov.check("What is the capital of France?", model="gpt-4o")
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            aigov.check("What is the capital of France?", model="gpt-4o")
            times.append(time.perf_counter() - t0)
    return percentiles(times)


def bench_async(url: str, token: str, calls: int) -> dict[str, float]:
    """``AsyncClient.check`` round trips, one at a time, on one warm connection."""

    async def run() -> list[float]:
        async with AsyncClient(url, token) as aigov:
            for _ in range(200):
                await aigov.check("What is the capital of France?", model="gpt-4o")
            times = []
            for _ in range(calls):
                t0 = time.perf_counter()
                await aigov.check("What is the capital of France?", model="gpt-4o")
                times.append(time.perf_counter() - t0)
            return times

    return percentiles(asyncio.run(run()))


def bench_guard(url: str, token: str, upstream: str, calls: int) -> dict[str, Any]:
    """A chat completion, plain and guarded, alternating; the guard's cost is the difference of medians."""
    import openai

    from aigov_cli.integrations.openai import guard

    with Client(url, token) as aigov:
        plain = openai.OpenAI(api_key="sk-bench", base_url=upstream, max_retries=0)
        guarded = guard(plain, aigov)
        for c in (plain, guarded):
            for _ in range(100):
                c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        times: dict[str, list[float]] = {"plain": [], "guarded": []}
        cpu = {"plain": 0.0, "guarded": 0.0}  # this process's CPU: what the guard costs the caller, drift-free
        for _ in range(calls):
            for name, c in (("plain", plain), ("guarded", guarded)):
                c0, t0 = time.thread_time(), time.perf_counter()
                c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
                times[name].append(time.perf_counter() - t0)
                cpu[name] += time.thread_time() - c0
        guarded.close()
        plain.close()
    p, g = percentiles(times["plain"]), percentiles(times["guarded"])
    return {"plain": p, "guarded": g,
            "extra_p50_us": round((statistics.median(times["guarded"]) - statistics.median(times["plain"])) * 1e6, 1),
            "extra_client_cpu_us": round((cpu["guarded"] - cpu["plain"]) / calls * 1e6, 1),
            "openai": openai.__version__}


def main() -> None:
    """Start the daemon and the upstream, measure, print (or --json)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON document")
    ap.add_argument("--calls", type=int, default=300 if QUICK else 3000, help="timed calls per measurement")
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="aigov-client-bench-")
    env = dict(os.environ, AIGOV_HOME=home, AIGOV_BCRYPT_COST="10")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        key = json.loads(subprocess.run(
            [AIGOV, "keys", "create", "--name", "bench", "--rate-limit", "1000000000/60s", "--json"],
            env=env, capture_output=True, text=True, check=True).stdout)
        port = free_port()
        procs.append(subprocess.Popen(pin(0) + [AIGOV, "serve", "--port", str(port)], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/healthz")
        up = subprocess.Popen(pin(0) + [sys.executable, "-c", UPSTREAM, str(ROOT)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
        procs.append(up)
        assert up.stdout is not None
        upstream = up.stdout.readline().decode().strip()
        if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(0, {1})
        res = {
            "client_sync": bench_sync(url, key["token"], args.calls),
            "client_async": bench_async(url, key["token"], args.calls),
            "openai_guard": bench_guard(url, key["token"], upstream, max(100, args.calls // 3)),
        }
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(home, ignore_errors=True)
    if args.json:
        print(json.dumps(res))
        return
    s, a, g = res["client_sync"], res["client_async"], res["openai_guard"]
    print(f"Client.check       p50 {s['p50_us']:.0f} µs  p90 {s['p90_us']:.0f}  p99 {s['p99_us']:.0f}  "
          f"({s['calls']} calls)")
    print(f"AsyncClient.check  p50 {a['p50_us']:.0f} µs  p90 {a['p90_us']:.0f}  p99 {a['p99_us']:.0f}")
    print(f"OpenAI chat call   plain p50 {g['plain']['p50_us']:.0f} µs, guarded p50 {g['guarded']['p50_us']:.0f} µs: "
          f"the guard adds {g['extra_p50_us']:.0f} µs (goal < 1000; openai {g['openai']}), "
          f"{g['extra_client_cpu_us']:.0f} µs of it the caller's CPU")


if __name__ == "__main__":
    main()
