"""The Redis rate limiter's own behaviour: URLs, keys, batching, several processes, and Redis failing.

The behaviour it shares with the memory limiter is tested in test_ratelimit.py. The shared
server (AIGOV_TEST_REDIS_URL) is used with a prefix of each test's own, deleted afterwards; the
faults are done to private redis-server processes started here on free ports.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from daemon.ratelimit import RateLimiterUnavailable
from daemon.ratelimit.redis import (
    RedisBackend,
    RedisFailureThrottle,
    RedisRateLimiter,
    connection_options,
    mask_url,
    pack,
    redis_backend,
)
from tests.redis_helpers import (
    REDIS_SERVER,
    REDIS_URL,
    PrivateRedis,
    burst_worker,
    delete_prefix,
    free_port,
    needs_redis,
    poll,
    unique_prefix,
)

ROOT = Path(__file__).resolve().parent.parent
needs_redis_server = pytest.mark.redis  # the `server` fixture skips when there is no redis-server

# -- URLs and names (no server needed) -------------------------------------------------------------


@pytest.mark.parametrize("url, expected", [
    ("redis://127.0.0.1:6379/0", {"host": "127.0.0.1", "port": 6379, "db": 0}),
    ("redis://:pw@cache.internal:6380/2", {"host": "cache.internal", "port": 6380, "db": 2, "password": "pw"}),
    ("redis://user:pw@cache/", {"host": "cache", "username": "user", "password": "pw"}),
    ("rediss://cache:6380/1?ssl_cert_reqs=none", {"host": "cache", "port": 6380, "db": 1, "ssl_cert_reqs": "none"}),
    ("unix:///run/redis/redis.sock?db=3", {"path": "/run/redis/redis.sock", "db": 3}),
])
def test_urls_accepted(url: str, expected: dict[str, Any]) -> None:
    options = connection_options(url, 0.05)
    assert {k: options[k] for k in expected} == expected
    assert options["socket_timeout"] is None and options["socket_connect_timeout"] == 0.05


@pytest.mark.parametrize("url, why", [
    ("memcached://:s3cret@cache:11211", "the scheme must be redis://, rediss:// or unix://"),
    ("redis://:s3cret@cache:port/0", "not a valid URL"),
    ("redis://:s3cret@cache:0/0", "the port must be 1-65535"),
    ("redis://:s3cret@cache:6379/zero", "the database must be a number from 0 up, not 'zero'"),
    ("redis://:s3cret@:6379/0", "no host"),
    ("redis://:s3cret@cache:6379/-1", "the database must be a number from 0 up, not '-1'"),
    ("memory://", "the scheme must be redis://, rediss:// or unix://"),
    ("unix://?db=1&password=s3cret", "a unix:// URL needs the socket's path"),
    ("unix:///run/r.sock?db=x&password=s3cret", "the database must be a number from 0 up, not 'x'"),
    ("redis://:s3cret@cache/0?socket_timeout=9", "unknown option 'socket_timeout'"),
    ("redis://:s3cret@cache/0?ssl_certfile=/c.pem", "unknown option 'ssl_certfile'"),  # TLS options need rediss
])
def test_bad_urls_refused_with_the_password_masked(url: str, why: str) -> None:
    with pytest.raises(ValueError) as e:
        redis_backend(url)
    message = str(e.value)
    assert why in message
    assert message.startswith("rate_limit_url ")
    assert "s3cret" not in message and "\n" not in message


@pytest.mark.parametrize("url, masked", [
    ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
    ("redis://admin:s3cret@cache/0", "redis://admin:***@cache/0"),
    ("redis://cache:6379/0", "redis://cache:6379/0"),
    ("unix:///r.sock?db=1&password=s3cret", "unix:///r.sock?db=1&password=***"),
    ("rediss://:p%40ss:w@cache/0", "rediss://:***@cache/0"),
    ("redis://s3cret@cache/0", "redis://***@cache/0"),  # a user part alone may well be a password
])
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_bad_prefix_and_timeout() -> None:
    with pytest.raises(ValueError, match="redis_prefix"):
        redis_backend("redis://cache/0", prefix="a{b}")
    with pytest.raises(ValueError, match="redis_prefix"):
        redis_backend("redis://cache/0", prefix="")
    with pytest.raises(ValueError, match="rate_limit_timeout"):
        redis_backend("redis://cache/0", timeout=0)


def test_repr_masks_the_password() -> None:
    limiter, throttle = redis_backend("redis://:s3cret@cache:6379/0", prefix="p")
    for thing in (limiter, throttle, limiter.backend):
        assert "s3cret" not in repr(thing) and "redis://:***@cache:6379/0" in repr(thing)


def test_without_the_extra_the_import_says_what_to_install() -> None:
    code = "import sys; sys.modules['redis'] = None; import daemon.ratelimit.redis"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1
    assert "ImportError: the Redis rate limiter needs the redis extra: pip install 'aigov[redis]'" in r.stderr


def test_the_hiredis_parser_and_resp2_are_used() -> None:
    conn = RedisBackend("redis://cache/0")._conn
    assert type(conn._parser).__name__ == "_AsyncHiredisParser" and conn.protocol == 2


def test_keys_are_hash_tagged_per_api_key() -> None:
    backend = RedisBackend("redis://cache/0", prefix="team-a")
    assert backend.key("k1", "bucket") == "{team-a:k1}:bucket"
    assert backend.key("k1", "lockout") == "{team-a:k1}:lockout"


# -- against the shared server -----------------------------------------------------------------------


# A parameter with a skip mark rather than a skipif on each test: pytest -ra then sums up the skips
# in one line.
@pytest.fixture(params=[pytest.param("shared", marks=needs_redis)])
def redis_url() -> str:
    """The shared server's URL (AIGOV_TEST_REDIS_URL)."""
    return REDIS_URL


@pytest.fixture
async def shared(redis_url: str) -> AsyncIterator[tuple[RedisRateLimiter, RedisFailureThrottle, aioredis.Redis]]:
    """A limiter and throttle on the shared server under a prefix of this test's, and a plain client."""
    prefix = unique_prefix()
    limiter, throttle = redis_backend(redis_url, prefix=prefix, timeout=5.0)
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield limiter, throttle, client
    finally:
        await limiter.close()
        await client.aclose()
        await delete_prefix(redis_url, prefix)


async def test_idle_state_expires(shared: tuple[RedisRateLimiter, RedisFailureThrottle, aioredis.Redis]) -> None:
    limiter, throttle, client = shared
    p = limiter.backend.prefix
    await limiter.check("k", 10, 60)  # 1 token used: full again in 6 s, gone a second later
    assert 6000 < await client.pttl(f"{{{p}:k}}:bucket") <= 7000
    for _ in range(5):
        await throttle.failed("k")
    assert 59000 < await client.pttl(f"{{{p}:k}}:failures") <= 60000
    assert 0 < await client.pttl(f"{{{p}:k}}:lockout") <= 1000
    assert await client.hget(f"{{{p}:k}}:bucket", "limit") == b"10"


async def test_cleanup_deletes_every_key_of_the_prefix(redis_url: str) -> None:
    prefix = unique_prefix()
    limiter, throttle = redis_backend(redis_url, prefix=prefix)
    try:
        await limiter.check("a", 5, 60)
        await throttle.failed("b")
    finally:
        await limiter.close()
    assert await delete_prefix(redis_url, prefix) == 2
    assert await delete_prefix(redis_url, prefix) == 0


class CountingBackend(RedisBackend):
    """A RedisBackend that counts its round trips."""

    round_trips = 0

    async def exchange(self, commands: Any) -> list[Any]:
        self.round_trips += 1
        return await super().exchange(commands)


async def test_simultaneous_calls_share_one_round_trip(redis_url: str) -> None:
    prefix = unique_prefix()
    backend = CountingBackend(redis_url, prefix=prefix, timeout=5.0)
    limiter, throttle = RedisRateLimiter(backend), RedisFailureThrottle(backend)
    try:
        await limiter.check("warm-up", 1, 60)  # connects and loads the script (three round trips)
        backend.round_trips = 0
        results = await asyncio.gather(*(limiter.check(f"k{i % 4}", 5, 60) for i in range(32)),
                                       throttle.locked_for("k0"))
        assert backend.round_trips == 1
        assert sum(d.allowed for d in results[:32]) == 20  # 4 keys x 5
        for _ in range(3):
            await limiter.check("k9", 5, 60)
        assert backend.round_trips == 4  # one at a time: one round trip each
    finally:
        await limiter.close()
        await delete_prefix(redis_url, prefix)


def run_bursts(url: str, processes: int, phases: list[tuple[int, int]]) -> list[list[int]]:
    """``processes`` processes (each its own event loop and limiter) make the checks of ``phases``
    (limit, checks per process) of one key together; what each process was allowed in each phase."""
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(processes), ctx.Queue()
    prefix = unique_prefix()
    procs = [ctx.Process(target=burst_worker, args=(url, prefix, "k", phases, barrier, out))
             for _ in range(processes)]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=90) for _ in procs]
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
        asyncio.run(delete_prefix(url, prefix))
    for r in results:
        assert isinstance(r, list), f"a worker failed: {r}"
    return results


def test_exact_across_processes(redis_url: str) -> None:
    per_process = run_bursts(redis_url, 4, [(50, 100)])  # 400 simultaneous checks, limit 50
    assert sum(r[0] for r in per_process) == 50


def test_exact_across_processes_when_the_limit_changes(redis_url: str) -> None:
    # 20 used under limit 50; lowered to 30: 10 more; raised to 60: the 30 used stay used.
    per_process = run_bursts(redis_url, 4, [(50, 5), (30, 100), (60, 100)])
    assert [sum(r[i] for r in per_process) for i in range(3)] == [20, 10, 30]


# -- private servers: faults ------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[PrivateRedis]:
    """A redis-server of this test's own."""
    if not Path(REDIS_SERVER).exists():
        pytest.skip(f"{REDIS_SERVER} is not installed: no private Redis to break")
    s = PrivateRedis()
    try:
        yield s
    finally:
        s.stop()


@dataclass
class Load:
    """Checks made continuously by a few tasks, each one logged as (started, ended, outcome)."""

    limiter: RedisRateLimiter
    log: list[tuple[float, float, str]] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, workers: int = 8) -> None:
        """Start the tasks."""
        self.tasks = [asyncio.create_task(self._run(i)) for i in range(workers)]

    async def _run(self, i: int) -> None:
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            t0 = loop.time()
            try:
                await self.limiter.check(f"load{i}", 1_000_000, 60)
                outcome = "ok"
            except RateLimiterUnavailable:
                outcome = "unavailable"
            self.log.append((t0, loop.time(), outcome))
            await asyncio.sleep(0.002)  # a refused call does not suspend: let the others run

    async def finish(self) -> None:
        """Stop the tasks."""
        self.stop.set()
        await asyncio.gather(*self.tasks)

    def since(self, t: float) -> list[tuple[float, float, str]]:
        """The calls started at or after ``t``."""
        return [e for e in self.log if e[0] >= t]

    async def wait_for(self, n: int, after: float, outcome: str, deadline: float = 10.0) -> None:
        """Poll until ``n`` calls started after ``after`` ended with ``outcome``."""
        async def enough() -> bool:
            return sum(1 for e in self.since(after) if e[2] == outcome) >= n
        await poll(enough, deadline, f"{n} calls {outcome}")


def raises_without_waiting(limiter: RedisRateLimiter) -> None:
    """The check raises on its first step: it awaits nothing, so it cannot wait for any timeout."""
    coro = limiter.check("k", 5, 60)
    with pytest.raises(RateLimiterUnavailable):
        coro.send(None)


async def exact_again(limiter: RedisRateLimiter, key: str) -> None:
    """Limits are enforced: 30 simultaneous checks with limit 10 allow exactly 10."""
    decisions = await asyncio.gather(*(limiter.check(key, 10, 3600) for _ in range(30)))
    assert sum(d.allowed for d in decisions) == 10


TIMEOUT = 0.2  # long enough that "raised at once" and "waited for the timeout" cannot be confused
SLACK = 0.3  # what a loaded test machine may add to a call on top of the timeout


async def break_and_mend(server: PrivateRedis, breaking: signal.Signals) -> None:
    """Break the server mid-load, check the calls and the circuit, mend it, check the limits are back."""
    limiter, _ = redis_backend(server.url, prefix=unique_prefix(), timeout=TIMEOUT)
    load = Load(limiter)
    loop = asyncio.get_running_loop()
    try:
        load.start()
        await load.wait_for(50, 0.0, "ok")
        broken_at = loop.time()
        server.signal(breaking)

        async def circuit_open() -> bool:
            return limiter.problem() is not None
        await poll(circuit_open, 5.0, "the circuit opening")
        opened_at = loop.time()
        problem = limiter.problem()
        assert problem is not None
        assert f"redis unreachable at {server.url} (circuit open since " in problem
        raises_without_waiting(limiter)
        await load.wait_for(100, opened_at, "unavailable")

        # Every call answered or raised within the timeout; once the circuit was open, all raised at once.
        assert max(end - start for start, end, _ in load.log) < TIMEOUT + SLACK
        after_open = load.since(opened_at)
        assert {outcome for _, _, outcome in after_open} == {"unavailable"}
        assert max(end - start for start, end, _ in after_open) < TIMEOUT / 2
        assert {outcome for _, _, outcome in load.since(broken_at)} <= {"ok", "unavailable"}

        if breaking == signal.SIGSTOP:
            server.signal(signal.SIGCONT)
        else:
            await asyncio.to_thread(server.start)
        mended_at = loop.time()
        await load.wait_for(1, mended_at, "ok", deadline=1.0)  # limits enforced again within a second
        await exact_again(limiter, "after")
        assert limiter.problem() is None
        await load.finish()
        unavailable = sum(1 for e in load.log if e[2] == "unavailable")
        assert limiter.backend_errors == unavailable + 1  # the +1: raises_without_waiting's call
    finally:
        await load.finish()
        await limiter.close()


@needs_redis_server
@pytest.mark.slow
async def test_redis_hung_mid_load(server: PrivateRedis) -> None:
    await break_and_mend(server, signal.SIGSTOP)


@needs_redis_server
@pytest.mark.slow
async def test_redis_killed_mid_load_and_restarted(server: PrivateRedis) -> None:
    await break_and_mend(server, signal.SIGKILL)


async def test_nothing_listening() -> None:
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    limiter, throttle = redis_backend(url, prefix="p")
    try:
        for _ in range(3):  # refused at once: three failed round trips open the circuit
            with pytest.raises(RateLimiterUnavailable) as e:
                await limiter.check("k", 5, 60)
            assert "s3cret" not in str(e.value) and "Connect" in str(e.value)
        problem = limiter.problem()
        assert problem is not None and "circuit open since" in problem and "s3cret" not in problem
        raises_without_waiting(limiter)
        with pytest.raises(RateLimiterUnavailable):
            await throttle.locked_for("k")
        assert limiter.backend_errors == 5
    finally:
        await limiter.close()


@needs_redis_server
async def test_scripts_reloaded_after_script_flush(server: PrivateRedis) -> None:
    limiter, throttle = redis_backend(server.url, prefix="p", timeout=5.0)
    client = aioredis.Redis.from_url(server.url)
    try:
        assert (await limiter.check("k", 2, 60)).allowed
        await client.script_flush()
        assert (await limiter.check("k", 2, 60)).allowed
        assert not (await limiter.check("k", 2, 60)).allowed
        await client.script_flush()
        for _ in range(5):
            await throttle.failed("k")
        assert await throttle.locked_for("k") > 0
        assert limiter.backend_errors == 0
    finally:
        await limiter.close()
        await client.aclose()


@needs_redis_server
@pytest.mark.slow
async def test_read_only_replica_opens_the_circuit_until_it_is_writable(server: PrivateRedis) -> None:
    replica = PrivateRedis("--replicaof", "127.0.0.1", str(server.port))
    limiter, _ = redis_backend(replica.url, prefix="p", timeout=5.0)
    client = aioredis.Redis.from_url(replica.url)
    try:
        for _ in range(3):
            with pytest.raises(RateLimiterUnavailable, match="read only replica"):
                await limiter.check("k", 5, 60)
        assert limiter.problem() is not None
        raises_without_waiting(limiter)
        await client.replicaof("NO", "ONE")
        async def answers() -> bool:
            try:
                return (await limiter.check("k", 5, 60)).allowed
            except RateLimiterUnavailable:
                return False
        await poll(answers, 1.0, "the limiter answering once the replica is writable")
        assert limiter.problem() is None
    finally:
        await limiter.close()
        await client.aclose()
        replica.stop()


@needs_redis_server
async def test_password_is_used_and_never_shown() -> None:
    server = PrivateRedis("--requirepass", "s3cret-pw")
    try:
        good, _ = redis_backend(f"redis://:s3cret-pw@127.0.0.1:{server.port}/0", prefix="p")
        bad, _ = redis_backend(f"redis://:wrong-pw@127.0.0.1:{server.port}/0", prefix="p")
        try:
            assert (await good.check("k", 5, 60)).allowed
            for _ in range(3):
                with pytest.raises(RateLimiterUnavailable) as e:
                    await bad.check("k", 5, 60)
                assert "wrong-pw" not in str(e.value)
            problem = bad.problem()
            assert problem is not None and "wrong-pw" not in problem and ":***@" in problem
        finally:
            await good.close()
            await bad.close()
    finally:
        server.stop()


@needs_redis_server
async def test_unix_socket_url(tmp_path: Path) -> None:
    sock = tmp_path / "redis.sock"
    server = PrivateRedis("--unixsocket", str(sock), "--unixsocketperm", "700")
    try:
        limiter, _ = redis_backend(f"unix://{sock}?db=2", prefix="p", timeout=5.0)
        try:
            assert [(await limiter.check("k", 1, 60)).allowed for _ in range(2)] == [True, False]
        finally:
            await limiter.close()
        client = aioredis.Redis.from_url(f"redis://127.0.0.1:{server.port}/2")
        assert await client.exists("{p:k}:bucket") == 1
        await client.aclose()
    finally:
        server.stop()


@needs_redis_server
async def test_close_fails_what_is_queued_and_refuses_later_calls(server: PrivateRedis) -> None:
    limiter, throttle = redis_backend(server.url, prefix="p", timeout=5.0)
    queued = asyncio.ensure_future(limiter.check("k", 5, 60))
    await limiter.close()
    with pytest.raises(RateLimiterUnavailable, match="closed"):
        await queued
    with pytest.raises(RateLimiterUnavailable, match="closed"):
        await throttle.failed("k")
    await throttle.close()  # closing twice is harmless


@pytest.mark.parametrize("args", [
    ("EVALSHA", "b4c8", 1, "{aigov:k1}:bucket", 50, 60.0),
    ("PTTL", "{a:ключ}:lockout"),
    ("SCRIPT", "LOAD", b"return 1\r\n"),
    ("SET", "k", "", "PX", 1000, 0.1, 1e-07, 10**20),
])
def test_pack_is_what_redis_py_sends(args: tuple[Any, ...]) -> None:
    from redis.asyncio.connection import Connection

    assert pack(*args) == b"".join(Connection().pack_command(*args))


@needs_redis_server
async def test_close_fails_a_call_in_flight(server: PrivateRedis) -> None:
    limiter, _ = redis_backend(server.url, prefix="p", timeout=30.0)
    await limiter.check("k", 5, 60)  # connected
    server.signal(signal.SIGSTOP)
    in_flight = asyncio.ensure_future(limiter.check("k", 5, 60))
    async def sent() -> bool:  # the batch went out and waits for the hung server
        return not limiter.backend._pending and limiter.backend._flusher is not None
    await poll(sent, 5.0, "the call going out")
    assert not in_flight.done()
    await limiter.close()
    with pytest.raises(RateLimiterUnavailable, match="closed"):
        await asyncio.wait_for(in_flight, 5)


@needs_redis_server
async def test_tls_url(tmp_path: Path) -> None:
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed: no certificate for a TLS server")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    tls_port = free_port()
    server = PrivateRedis("--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                          "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no")
    trusted, _ = redis_backend(f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={cert}", prefix="p", timeout=5.0)
    untrusted, _ = redis_backend(f"rediss://127.0.0.1:{tls_port}/0", prefix="p", timeout=5.0)
    try:
        assert [(await trusted.check("k", 1, 60)).allowed for _ in range(2)] == [True, False]
        with pytest.raises(RateLimiterUnavailable, match="certificate verify failed"):
            await untrusted.check("k", 1, 60)
    finally:
        await trusted.close()
        await untrusted.close()
        server.stop()


# -- the daemon with a limiter it cannot use at start ----------------------------------------------


@pytest.fixture(params=["refused", "wrong password", "database 99", "no unix socket"])
def unusable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A limiter URL (with a password to hide) that fails at once, and a word of why."""
    if request.param == "refused":
        port = free_port()
        yield f"redis://:s3cret@127.0.0.1:{port}/0", f"ConnectionError: Error 111 connecting to 127.0.0.1:{port}"
    elif request.param == "no unix socket":
        yield f"unix://{tmp_path}/missing.sock?db=0&password=s3cret", "No such file"
    else:
        if not Path(REDIS_SERVER).exists():
            pytest.skip(f"{REDIS_SERVER} is not installed: no private Redis to break")
        server = PrivateRedis("--requirepass", "right-pw")
        try:
            if request.param == "wrong password":
                yield f"redis://:s3cret@127.0.0.1:{server.port}/0", "invalid username-password pair"
            else:
                yield f"redis://:right-pw@127.0.0.1:{server.port}/99", "DB index is out of range"
        finally:
            server.stop()


def limiter_logs(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    """The rate limiter's own log lines at ``level`` (not the wrong-secret throttle's)."""
    return [r.getMessage() for r in caplog.records if r.levelno == level and r.getMessage().startswith("rate limiter")]


async def test_a_limiter_that_cannot_be_used_at_start_is_said_at_start(
    home: Path, unusable: tuple[str, str], aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from daemon.app import create_app
    from daemon.config import load_config

    url, why = unusable
    shown = mask_url(url)
    client = await aiohttp_client(create_app(load_config({"rate_limit_url": url, "rate_limit_on_error": "closed"})))
    ready = await client.get("/readyz")  # before any check; it starts all the same
    problems = (await ready.json())["problems"]
    assert ready.status == 503 and len(problems) == 1, problems  # closed: checks get 503, so not ready
    assert problems[0].startswith(f"rate limiter: redis unreachable at {shown} (circuit open since ")
    assert why in problems[0]
    warnings = limiter_logs(caplog, logging.WARNING)
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"rate limiter: cannot use redis at {shown} (") and why in warnings[0], warnings
    assert warnings[0].endswith("checks are answered 503 rate_limit_unavailable (rate_limit_on_error = closed) "
                                "until it answers again")
    assert "s3cret" not in caplog.text + json.dumps(problems)


@needs_redis_server
async def test_the_start_waits_no_longer_than_the_timeout_for_a_hung_redis(
    home: Path, server: PrivateRedis, aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from daemon.app import create_app
    from daemon.config import load_config

    server.signal(signal.SIGSTOP)  # connections are accepted, nothing is answered
    cfg = load_config({"rate_limit_url": server.url, "rate_limit_timeout": TIMEOUT, "rate_limit_on_error": "closed"})
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    client = await aiohttp_client(create_app(cfg))
    assert TIMEOUT <= loop.time() - t0 < TIMEOUT + SLACK + 0.5  # the +0.5: the rest of the app's start
    assert (await client.get("/readyz")).status == 503
    [warning] = limiter_logs(caplog, logging.WARNING)
    assert f"no answer within {TIMEOUT * 1000:g} ms" in warning
    assert "checks are answered 503 rate_limit_unavailable (rate_limit_on_error = closed)" in warning


@needs_redis_server
async def test_ready_once_redis_answers_and_each_outage_said_once(
    home: Path, server: PrivateRedis, aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from daemon.app import SERVICE, create_app
    from daemon.config import load_config

    caplog.set_level(logging.INFO, logger="aigov")
    server.signal(signal.SIGKILL)
    # Closed: a limiter outage is a reason not to be ready (with open, only degraded: see test_e2e_daemon).
    client = await aiohttp_client(create_app(load_config({"rate_limit_url": server.url,
                                                          "rate_limit_on_error": "closed"})))
    limiter = client.app[SERVICE].limiter
    assert (await client.get("/readyz")).status == 503

    async def ready() -> bool:
        return (await client.get("/readyz")).status == 200

    await asyncio.to_thread(server.start)
    await poll(ready, 2.0, "/readyz ready once Redis answers")
    assert (await limiter.check("k", 5, 60)).allowed
    assert limiter_logs(caplog, logging.INFO) == [f"rate limiter: redis at {server.url} answers again; "
                                                  "limits are enforced"]
    server.signal(signal.SIGKILL)  # a second outage, met by checks: said once, however many fail
    for _ in range(10):
        with pytest.raises(RateLimiterUnavailable):
            await limiter.check("k", 5, 60)
    assert not await ready()
    assert len(limiter_logs(caplog, logging.WARNING)) == 2, caplog.text
