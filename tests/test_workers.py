"""Several processes, one limit: `aigov serve --workers N` and several daemons on one Redis, end to end.

Real daemons on real ports, the real Redis (the machine's, under a prefix of this run's, or a private
redis-server the test stops and kills), real signals.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from daemon.pidfile import PidFile
from tests.daemon_proc import DaemonProc, cli, create_key, running_daemon, until
from tests.redis_helpers import REDIS_URL, PrivateRedis, delete_prefix, needs_redis, unique_prefix

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
BODY = {"model": "gpt-4o", "operation": "chat", "input_text": "What is the capital of France?"}


def status(home: Path, **env: str) -> dict[str, Any]:
    r = cli(home, "status", "--json", **env)
    data: dict[str, Any] = json.loads(r.stdout)
    return data


def wait_for_workers(home: Path, n: int, limit: float = 60.0, **env: str) -> list[int]:
    """The worker pids once ``aigov status`` lists ``n`` of them that answer."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        s = status(home, **env)
        if len(s.get("workers") or []) == n and s.get("ready"):
            return list(s["workers"])
        time.sleep(0.1)
    raise AssertionError(f"{n} workers never came up: {status(home, **env)}")


async def burst(urls: list[str], token: str, n: int, body: dict[str, Any] = BODY) -> list[tuple[int, dict[str, str]]]:
    """``n`` simultaneous checks spread over ``urls``, each on a connection of its own: (status, headers)."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True)) as session:

        async def one(i: int) -> tuple[int, dict[str, str]]:
            async with session.post(f"{urls[i % len(urls)]}/v1/check", json=body,
                                    headers={"Authorization": f"Bearer {token}"}) as r:
                await r.read()
                return r.status, dict(r.headers)

        return await asyncio.gather(*(one(i) for i in range(n)))


def redis_env(prefix: str, url: str = REDIS_URL, **extra: str) -> dict[str, str]:
    """A daemon's environment for the shared limiter. Fail closed with a generous timeout unless a test
    says otherwise: on a loaded machine a round trip can outlast the 50 ms default, and failing open
    would let a request through uncounted, which an exactness test would misread as over-admission."""
    return {"AIGOV_RATE_LIMIT_URL": url, "AIGOV_REDIS_PREFIX": prefix,
            "AIGOV_RATE_LIMIT_ON_ERROR": "closed", "AIGOV_RATE_LIMIT_TIMEOUT": "5", **extra}


@pytest.fixture
def prefix() -> Iterator[str]:
    p = unique_prefix()
    yield p
    if REDIS_URL:
        asyncio.run(delete_prefix(REDIS_URL, p))


def test_workers_need_a_shared_limiter(home: Path) -> None:
    r = cli(home, "serve", "--workers", "2", "--port", "0")
    assert r.returncode == 2
    assert r.stderr.startswith("aigov: error: workers = 2 needs a shared rate limiter") and "rate_limit_url" in r.stderr
    cores = len(os.sched_getaffinity(0))
    if cores > 1:  # with one core, auto is one process, which serves
        (home / "config.toml").write_text('workers = "auto"\n')
        r = cli(home, "serve", "--port", "0")
        assert r.returncode == 2
        assert r.stderr.startswith(f"aigov: error: workers = auto ({cores} cores) needs a shared rate limiter")
    assert len(r.stderr.strip().splitlines()) == 1
    r = cli(home, "serve", "--workers", "many")
    assert r.returncode == 2 and "workers" in r.stderr and "Traceback" not in r.stderr


@needs_redis
def test_exact_limit_across_two_workers_and_a_second_daemon(home: Path, tmp_path: Path, prefix: str) -> None:
    key = create_key(home, "shared", "--rate-limit", "50/1h")
    # The second daemon: a home of its own whose database is the first one's file.
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    env = redis_env(prefix)
    with running_daemon(home, "--workers", "2", **env) as a, \
            running_daemon(other, **env, AIGOV_DB_PATH=str(home / "aigov.db")) as b:
        wait_for_workers(home, 2, **env)
        answers = asyncio.run(burst([a.url, b.url], key["token"], 400))
        statuses = [s for s, _ in answers]
        assert statuses.count(200) == 50 and statuses.count(429) == 350, statuses
        for s, h in answers:
            assert h["X-RateLimit-Limit"] == "50"
            if s == 429:
                assert h["X-RateLimit-Remaining"] == "0" and int(h["Retry-After"]) >= 1
        # A new limit reaches every process within a second (the contract), keeping what was used:
        # 80 - 50 = 30 more.
        assert cli(home, "keys", "update", key["key_id"], "--rate-limit", "80/1h").returncode == 0
        time.sleep(1.5)
        answers = asyncio.run(burst([a.url, b.url], key["token"], 400))
        statuses = [s for s, _ in answers]
        assert statuses.count(200) == 30 and statuses.count(429) == 370, statuses
        assert all(h["X-RateLimit-Limit"] == "80" for _, h in answers)


@needs_redis
def test_workers_answer_drain_on_sigterm_and_keep_their_own_chains(home: Path, prefix: str) -> None:
    key = create_key(home, "drain", "--rate-limit", "100000/1h")
    env = redis_env(prefix)
    with running_daemon(home, "--workers", "2", **env) as d:
        pids = wait_for_workers(home, 2, **env)
        # Both workers answer: /readyz names the process that answered.
        seen: set[int] = set()
        deadline = time.monotonic() + 30
        while seen != set(pids) and time.monotonic() < deadline:
            seen.add(d.request("GET", "/readyz").json()["pid"])
        assert seen == set(pids)
        answered = asyncio.run(load_until_stopped(d, key["token"]))
        assert d.proc.wait(60) == 0
    ids = {rid for rid in answered}
    assert len(ids) > 100
    stored = decision_ids(home)
    assert ids <= stored, f"{len(ids - stored)} answered decisions were lost"
    reports = verify(home)
    assert len(reports) == 2 and all(r.ok for r in reports), reports


async def load_until_stopped(d: DaemonProc, token: str) -> list[str]:
    """Send checks from 16 clients, SIGTERM the daemon mid-load, return the request ids answered 200."""
    answered: list[str] = []
    stop = asyncio.Event()

    async def client(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            try:
                async with session.post(f"{d.url}/v1/check", json=BODY,
                                        headers={"Authorization": f"Bearer {token}"}) as r:
                    if r.status == 200:
                        answered.append((await r.json())["request_id"])
            except aiohttp.ClientError:
                await asyncio.sleep(0.01)  # refused once the workers stop listening

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True)) as session:
        tasks = [asyncio.create_task(client(session)) for _ in range(16)]
        while len(answered) < 300:
            await asyncio.sleep(0.05)
        d.proc.send_signal(signal.SIGTERM)
        await asyncio.get_running_loop().run_in_executor(None, d.proc.wait, 60)
        stop.set()
        await asyncio.gather(*tasks)
    return answered


def decision_ids(home: Path) -> set[str]:
    conn = sqlite3.connect(home / "aigov.db")
    try:
        return {r[0] for r in conn.execute("SELECT request_id FROM decisions WHERE kind = 'decision'")}
    finally:
        conn.close()


def verify(home: Path) -> list[Any]:
    from daemon.storage.sqlite_decisions import SqliteDecisionReader

    with SqliteDecisionReader(home / "aigov.db") as reader:
        return reader.verify_chains()


@needs_redis
def test_metrics_are_the_same_whichever_worker_answers(home: Path, prefix: str) -> None:
    key = create_key(home, "metrics", "--rate-limit", "100000/1h")
    env = redis_env(prefix)
    with running_daemon(home, "--workers", "2", **env) as d:
        wait_for_workers(home, 2, **env)
        answers = asyncio.run(burst([d.url], key["token"], 120))
        assert [s for s, _ in answers].count(200) == 120

        def totals() -> set[float]:
            seen = set()
            for _ in range(12):  # new connections: the kernel spreads them over both workers
                text = d.request("GET", "/metrics").body.decode()
                line = next(x for x in text.splitlines()
                            if x.startswith('aigov_requests_total{endpoint="/v1/check",status="200"}'))
                seen.add(float(line.split()[-1]))
            return seen

        # Every worker shares its counters each second: poll (a loaded machine may stretch that second).
        until(lambda: totals() == {120.0}, 15, lambda: f"scrapes disagree or fall short: {totals()}")


@needs_redis
def test_a_dead_worker_is_restarted_and_sighup_reaches_every_worker(home: Path, prefix: str) -> None:
    key = create_key(home, "restart", "--rate-limit", "100000/1h")
    env = redis_env(prefix)
    with running_daemon(home, "--workers", "2", **env) as d:
        pids = wait_for_workers(home, 2, **env)
        os.kill(pids[0], signal.SIGKILL)
        # `status` lists a restarted worker once it listens, not when it is spawned.
        def workers() -> list[int]:
            return list(status(home, **env).get("workers") or [])

        until(lambda: len(now := workers()) == 2 and pids[0] not in now,
              60, lambda: f"the killed worker was not replaced: {status(home, **env)}")
        now = workers()
        assert f"worker 0 (pid {pids[0]}) was killed by SIGKILL; restarting it" in d.output()
        assert f"worker 0 (pid {now[0]}) listening again" in d.output()
        # The survivor dies too: until it is back, the restarted worker alone listens, and answers.
        os.kill(pids[1], signal.SIGKILL)
        until(lambda: pids[1] not in workers(), 30, lambda: f"the killed survivor is still listed: {workers()}")
        assert [d.check(key["token"], BODY).status for _ in range(5)] == [200] * 5
        wait_for_workers(home, 2, **env)
        assert "Traceback" not in d.output()
        policy = home / "policy.toml"
        assert cli(home, "init").returncode == 0
        policy.write_text(policy.read_text() + "\n# a change: a new version\n")
        r = cli(home, "policy", "reload", **env)
        assert r.returncode == 0, r.stderr
        assert "in all 2 workers" in r.stdout


@pytest.mark.parametrize(("workers", "line"), [
    ([], "no worker listening now (starting or restarting)"),
    ([111], "1 worker listening: pids 111"),
    ([111, 222], "2 workers listening: pids 111, 222"),
])
def test_status_says_which_workers_listen_even_none(home: Path, workers: list[int], line: str) -> None:
    # A supervisor whose workers all died lists none until they listen again; it is not a lone daemon.
    held = PidFile(home / "aigov.pid")
    held.acquire()
    try:
        held.write({"pid": os.getpid(), "url": "http://127.0.0.1:9", "workers": workers})
        assert status(home)["workers"] == workers
        out = cli(home, "status").stdout
        assert f"pid {os.getpid()}" in out and line in out
        held.write({"pid": os.getpid(), "url": "http://127.0.0.1:9", "workers": [os.getpid()]})
        assert status(home)["workers"] == [os.getpid()]
        assert "listening" not in cli(home, "status").stdout
    finally:
        held.release()


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie nobody reaped counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (FileNotFoundError, ProcessLookupError):
        return True


@needs_redis
def test_workers_drain_and_exit_when_their_parent_is_killed(home: Path, prefix: str) -> None:
    key = create_key(home, "orphans", "--rate-limit", "100000/1h")
    env = redis_env(prefix)
    with running_daemon(home, "--workers", "2", **env) as d:
        pids = wait_for_workers(home, 2, **env)
        assert d.check(key["token"], BODY).status == 200
        d.proc.kill()  # SIGKILL: the parent cannot pass anything on
        d.proc.wait(10)
        until(lambda: all(gone(p) for p in pids), 30, lambda: f"workers {pids} outlived their parent")
        assert d.output().count("stopped (") == 2  # each drained: finished its requests, wrote its decisions
    assert len(decision_ids(home)) == 1  # the one answered check was written before its worker exited
    with running_daemon(home, "--workers", "2", **env) as again:  # the home and its port are free again
        wait_for_workers(home, 2, **env)
        assert again.check(key["token"], BODY).status == 200


@needs_redis
def test_a_port_another_deployments_workers_listen_on_is_refused(home: Path, prefix: str) -> None:
    with socket.socket() as other:  # a worker of another home's `aigov serve --workers`
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        r = cli(home, "serve", "--workers", "2", "--port", str(port), **redis_env(prefix))
    assert r.returncode == 2
    assert r.stderr == f"aigov: error: cannot listen on 127.0.0.1:{port}: address already in use\n"


@needs_redis
def test_a_worker_that_cannot_start_again_is_retried_while_the_others_serve(home: Path, prefix: str) -> None:
    key = create_key(home, "retry", "--rate-limit", "100000/1h")
    env = redis_env(prefix)
    assert cli(home, "init").returncode == 0
    policy = home / "policy.toml"
    good = policy.read_text()
    with running_daemon(home, "--workers", "2", **env) as d:
        pids = wait_for_workers(home, 2, **env)
        policy.write_text(good + "\n[[rules]]\nid = \"broken\"\n")  # invalid, and nobody reloads it
        os.kill(pids[0], signal.SIGKILL)
        until(lambda: "worker 0 could not start" in d.output(), 30, d.output)
        assert status(home, **env)["workers"] == [pids[1]]
        assert d.check(key["token"], BODY).status == 200  # the other worker carries on
        policy.write_text(good)
        pids_after = wait_for_workers(home, 2, **env)
        assert pids_after[1] == pids[1] and pids_after[0] != pids[0]
        assert f"worker 0 (pid {pids_after[0]}) listening again" in d.output()
        assert "Traceback" not in d.output()


@pytest.mark.parametrize("mode", ["open", "closed"])
def test_redis_hung_and_killed_under_load(home: Path, mode: str) -> None:
    redis = PrivateRedis()
    try:
        # A long timeout makes the two kinds of answer easy to tell apart: waiting on a hung Redis
        # takes a second, the circuit's refusal a few milliseconds.
        env = redis_env("faults", redis.url, AIGOV_RATE_LIMIT_ON_ERROR=mode, AIGOV_RATE_LIMIT_TIMEOUT="1.0")
        key = create_key(home, "faults", "--rate-limit", "100000/1h")
        with running_daemon(home, **env) as d:
            assert d.check(key["token"], BODY).status == 200
            for breaking in (signal.SIGSTOP, signal.SIGKILL):
                redis.signal(breaking)
                during = outage(d, key["token"])
                if mode == "open":
                    assert {s for s, _, _ in during} == {200}, during
                else:
                    assert {s for s, _, _ in during} == {503}, during
                    assert {c for _, c, _ in during} == {"rate_limit_unavailable"}
                ready = d.request("GET", "/readyz")
                if mode == "open":  # checks are answered: ready, and degraded
                    assert ready.status == 200 and any("rate limiter" in p for p in ready.json()["degraded"])
                else:
                    assert ready.status == 503 and any("rate limiter" in p for p in ready.json()["problems"])
                if breaking == signal.SIGSTOP:
                    redis.signal(signal.SIGCONT)
                else:
                    redis.start()
                # Open keeps the daemon ready through the outage: wait for the limiter itself to be fine.
                def limiter_fine() -> bool:
                    ready = d.request("GET", "/readyz")
                    return ready.status == 200 and "rate limiter" not in json.dumps(ready.json())

                until(limiter_fine, 5, lambda: "limits not enforced again after Redis came back")
            # Exact again: a fresh key of limit 20, 100 at once.
            fresh = create_key(home, "after", "--rate-limit", "20/1h")
            statuses = [s for s, _ in asyncio.run(burst([d.url], fresh["token"], 100))]
            assert statuses.count(200) == 20 and statuses.count(429) == 80
            metrics = d.request("GET", "/metrics").body.decode()
            errors = next(x for x in metrics.splitlines() if x.startswith("aigov_rate_limit_backend_errors_total"))
            assert float(errors.split()[-1]) >= 3
        if mode == "open":  # the decisions let through say the limiter was not asked
            conn = sqlite3.connect(home / "aigov.db")
            try:
                states = {r[0] for r in conn.execute("SELECT rate_limit FROM decisions WHERE kind = 'decision'")}
            finally:
                conn.close()
            assert states == {"ok", "unavailable"}
    finally:
        redis.stop()


def outage(d: DaemonProc, token: str) -> list[tuple[int, str | None, float]]:
    """Checks sent while Redis is down, once the circuit has opened: (status, error code, seconds)."""
    deadline = time.monotonic() + 20
    while "circuit open" not in json.dumps(d.request("GET", "/readyz").json()):
        assert time.monotonic() < deadline, "the circuit never opened"
        d.check(token, BODY)
    out = []
    for _ in range(30):
        t0 = time.monotonic()
        r = d.check(token, BODY)
        took = time.monotonic() - t0
        code = r.json().get("error", {}).get("code") if r.status != 200 else None
        out.append((r.status, code, took))
    slow = [t for _, _, t in out if t >= 1.0]
    assert not slow, f"{len(slow)} requests waited for the limiter's timeout with the circuit open"
    return out
