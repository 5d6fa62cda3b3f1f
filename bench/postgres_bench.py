"""The PostgreSQL store's goals: decision drain, /v1/check with PostgreSQL over SQLite, key change to refusal.

    python bench/postgres_bench.py [--url postgresql://...] [--only drain,throughput,revocation] [--json]

- drain: records/s from a full queue into PostgreSQL, batches of 50, one transaction each
  (:class:`PostgresDecisionStore`: binary COPY on its own thread). Goal >= 50,000.
- throughput: ``aigov serve`` on SQLite and on PostgreSQL side by side (both on core 0, each
  saturated by its own wrk on core 1, CPU per request from /proc, as bench/cpu_ab.py does), the same
  key in both (copied with ``aigov db copy``). Reported as PostgreSQL's throughput over SQLite's
  (SQLite's CPU per request over PostgreSQL's). Goal >= 0.9.
- revocation: two daemons on one PostgreSQL; 50 times a key warm on the second daemon is revoked
  (through the key store, as ``aigov keys revoke`` does) and the second daemon is asked until it
  refuses. p99 of the delay from the commit to the refusal. Goal < 1 s.

The server: ``--url``, else AIGOV_BENCH_POSTGRES_URL or AIGOV_TEST_POSTGRES_URL, else the local
server at 127.0.0.1:5432 (database test). Every run works in a schema of its own, dropped after.
BENCH_QUICK=1 runs short.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
import run  # noqa: E402  (bench/run.py: the key, wrk, pinning, side by side)

QUICK = os.environ.get("BENCH_QUICK") == "1"
DEFAULT_URL = (os.environ.get("AIGOV_BENCH_POSTGRES_URL") or os.environ.get("AIGOV_TEST_POSTGRES_URL")
               or "postgresql://postgres@127.0.0.1:5432/test")


def with_schema(url: str, schema: str) -> str:
    """``url`` with ``?schema=``."""
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


async def _drop(url: str, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


def bench_drain(url: str) -> dict[str, Any]:
    """Records/s into PostgreSQL, batches of 50 (one transaction each), and a backlog as the daemon drains it."""
    from daemon.decisionlog import DecisionLog
    from daemon.handlers import new_request_id
    from daemon.policy.model import Reason
    from daemon.storage.postgres_db import PgTarget
    from daemon.storage.postgres_decisions import PostgresDecisionStore
    from daemon.storage.records import Entry, Fingerprinter, RecordBuilder

    n = 20_000 if QUICK else 200_000
    schema = f"aigov_bench_{uuid.uuid4().hex[:8]}"
    target = PgTarget.parse(with_schema(url, schema))
    reasons = (Reason("pii.email", "email", "monitor", "email address", 10, 25),)
    entries = [Entry(time.time(), new_request_id(), "key", "gpt-4o", "chat", "input", "allow", ("pii.email",), reasons,
                     "write to alice@example.com about the plan", 0.1, "default", "v", "ok", None) for _ in range(n)]

    async def batches_of_50() -> float:
        store = PostgresDecisionStore(target, "bench/w0", RecordBuilder(Fingerprinter(b"b" * 32)))
        await store.open()
        t0 = time.perf_counter()
        for i in range(0, n, 50):
            await store.write(entries[i:i + 50])
        elapsed = time.perf_counter() - t0
        await store.close()
        return elapsed

    async def backlog() -> float:
        store = PostgresDecisionStore(target, "bench/w1", RecordBuilder(Fingerprinter(b"b" * 32)))
        log = DecisionLog(store, batch_size=50, flush_interval=5.0, max_queue=n + 1)
        await log.start()
        for e in entries:
            log.offer(e)
        t0 = time.perf_counter()
        await log.close()
        return time.perf_counter() - t0

    try:
        small = asyncio.run(batches_of_50())
        large = asyncio.run(backlog())
    finally:
        asyncio.run(_drop(url, schema))
    return {"records": n, "batch_50_records_per_second": n / small, "backlog_records_per_second": n / large}


def bench_throughput(url: str, seconds: int, rounds: int) -> dict[str, Any]:
    """SQLite and PostgreSQL daemons side by side on core 0: CPU per request, and the ratio."""
    home, env, token, _ = run.make_home()
    schema = f"aigov_bench_{uuid.uuid4().hex[:8]}"
    pg = with_schema(url, schema)
    try:
        subprocess.run([run.AIGOV, "db", "copy", "--to", pg], env=env, check=True, capture_output=True)
        servers: dict[str, run.Server] = {
            "sqlite": lambda h: ([run.AIGOV, "serve", "--port", "{port}"], dict(os.environ, AIGOV_HOME=h)),
            "postgresql": lambda h: ([run.AIGOV, "serve", "--port", "{port}"],
                                     dict(os.environ, AIGOV_HOME=h, AIGOV_DATABASE_URL=pg)),
        }
        script = run.lua(token)
        out = []
        for _ in range(rounds):
            r = run.side_by_side(home, servers, script, seconds)
            out.append({**r, "ratio": r["sqlite"]["cpu_us_per_request"] / r["postgresql"]["cpu_us_per_request"]})
        return {
            "rounds": out,
            "seconds": seconds,
            "sqlite_cpu_us_median": statistics.median(r["sqlite"]["cpu_us_per_request"] for r in out),
            "postgresql_cpu_us_median": statistics.median(r["postgresql"]["cpu_us_per_request"] for r in out),
            "ratio_median": statistics.median(r["ratio"] for r in out),
            "non2xx": sum(r[k]["non2xx"] for r in out for k in ("sqlite", "postgresql")),
        }
    finally:
        asyncio.run(_drop(url, schema))
        shutil.rmtree(home, ignore_errors=True)


def _status(port: int, token: str) -> int:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("POST", "/v1/check", body=run.BODY, headers={"Content-Type": "application/json",
                                                               "Authorization": f"Bearer {token}"})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def bench_revocation(url: str, n: int = 50) -> dict[str, Any]:
    """Delay from a revocation's commit to the second daemon's first refusal, over ``n`` keys."""
    from daemon import keyadmin
    from daemon.config import load_config
    from daemon.storage import open_key_store

    schema = f"aigov_bench_{uuid.uuid4().hex[:8]}"
    pg = with_schema(url, schema)
    homes = [tempfile.mkdtemp(prefix="aigov-bench-rev-") for _ in range(2)]
    procs: list[run.Proc] = []
    delays: list[float] = []
    try:
        for h in homes:
            port = run.free_port()
            procs.append(run.Proc([run.AIGOV, "serve", "--port", str(port)],
                                  dict(os.environ, AIGOV_HOME=h, AIGOV_DATABASE_URL=pg), f"http://127.0.0.1:{port}"))
        second = int(procs[1].url.rsplit(":", 1)[1])
        cfg = load_config(env={"AIGOV_HOME": homes[0], "AIGOV_DATABASE_URL": pg, "AIGOV_BCRYPT_COST": "10"})

        async def go() -> None:
            store = await open_key_store(cfg)
            try:
                for _ in range(n):
                    rec, token = await keyadmin.create(store, cfg, name="rev", limit=1_000_000, window=60.0)
                    while await asyncio.to_thread(_status, second, token) != 200:  # known and warm there
                        await asyncio.sleep(0.01)
                    await store.revoke(rec.key_id, time.time())
                    t0 = time.perf_counter()
                    while await asyncio.to_thread(_status, second, token) != 401:
                        await asyncio.sleep(0.002)
                    delays.append(time.perf_counter() - t0)
            finally:
                await store.close()

        asyncio.run(go())
    finally:
        for p in procs:
            p.stop()
        for h in homes:
            shutil.rmtree(h, ignore_errors=True)
        asyncio.run(_drop(url, schema))
    delays.sort()
    return {"revocations": n, "p50_ms": statistics.median(delays) * 1000,
            "p99_ms": delays[max(0, int(len(delays) * 0.99 + 0.5) - 1)] * 1000, "max_ms": delays[-1] * 1000}


def main() -> None:
    """Parse arguments, run the chosen measurements, print them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help="the PostgreSQL server (a schema of its own is used)")
    parser.add_argument("--only", default="drain,throughput,revocation", help="comma-separated measurements")
    parser.add_argument("--seconds", type=int, default=3 if QUICK else 8, help="seconds of load per round")
    parser.add_argument("--rounds", type=int, default=1 if QUICK else 3, help="side-by-side rounds")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    run.RESULTS.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {}
    only = set(args.only.split(","))
    if "drain" in only:
        res["drain"] = bench_drain(args.url)
    if "throughput" in only:
        if not shutil.which("wrk"):
            res["throughput"] = {"error": "wrk is not installed"}
        else:
            res["throughput"] = bench_throughput(args.url, args.seconds, args.rounds)
    if "revocation" in only:
        res["revocation"] = bench_revocation(args.url, 10 if QUICK else 50)
    print(json.dumps(res, indent=2) if args.json else "\n".join(summary_rows(res)))


def summary_rows(res: dict[str, Any]) -> list[str]:
    """One line per measurement."""
    rows = []
    if "drain" in res:
        d = res["drain"]
        rows.append(f"drain into PostgreSQL: {d['batch_50_records_per_second']:,.0f} records/s in batches of 50, "
                    f"{d['backlog_records_per_second']:,.0f} records/s draining a backlog")
    t = res.get("throughput", {})
    if "ratio_median" in t:
        rows.append(f"/v1/check PostgreSQL / SQLite: {t['ratio_median']:.3f} ({t['postgresql_cpu_us_median']:.0f} vs "
                    f"{t['sqlite_cpu_us_median']:.0f} µs per request, side by side)")
    if "revocation" in res:
        r = res["revocation"]
        rows.append(f"key revoked -> refused on a second daemon: p99 {r['p99_ms']:.0f} ms, p50 {r['p50_ms']:.0f} ms "
                    f"over {r['revocations']}")
    return rows


if __name__ == "__main__":
    main()
