"""In-process tests of the HTTP app: every row of the error table, headers, limits."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from daemon.app import SERVICE, create_app
from daemon.config import Config, load_config
from daemon.keyadmin import create, with_store
from tests.backends import Backend

BODY = {"model": "gpt-4o", "operation": "chat", "input_text": "What is the capital of France?"}
Client = TestClient  # type: ignore[type-arg]
MakeClient = Callable[..., Awaitable[Any]]


async def make_key(cfg: Config, limit: int = 1000, window: float = 60.0, policy: str = "default",
                   expires_in: float | None = None) -> tuple[str, str]:
    rec, token = await with_store(
        cfg, lambda s: create(s, cfg, name="t", limit=limit, window=window, policy=policy, expires_in=expires_in)
    )
    return rec.key_id, token


@pytest.fixture
def cfg(backend: Backend) -> Config:
    """The app's configuration, on each store (the auth and decision tests run on both)."""
    return load_config({"log_flush_interval": 0.05})


@pytest.fixture
async def client(cfg: Config, aiohttp_client: MakeClient) -> Client:
    return await aiohttp_client(create_app(cfg))  # type: ignore[no-any-return]


@pytest.fixture
async def token(cfg: Config) -> str:
    return (await make_key(cfg))[1]


async def post(client: Client, token: str | None, body: Any, ctype: str = "application/json",
               extra: dict[str, str] | None = None) -> Any:
    headers = {"Content-Type": ctype, **(extra or {})}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    raw = data.encode() if isinstance(data, str) else data
    return await client.post("/v1/check", data=io.BytesIO(raw), headers={**headers, "Content-Length": str(len(raw))})


async def refresh(client: Client) -> None:
    await client.app[SERVICE].auth.refresh()


async def expect_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    data = await resp.json()
    assert data["error"]["code"] == code and data["error"]["message"]
    assert resp.headers["Cache-Control"] == "no-store" and resp.headers["X-Request-Id"]
    return data  # type: ignore[no-any-return]


async def test_allow_with_headers(client: Client, token: str) -> None:
    await refresh(client)
    r = await post(client, token, BODY)
    assert r.status == 200
    data = await r.json()
    assert data["decision"] == "allow" and data["allowed"] is True and data["reasons"] == []
    assert data["request_id"] == r.headers["X-Request-Id"] and len(data["request_id"]) == 26
    assert data["policy"]["name"] == "default" and len(data["policy"]["version"]) == 12
    assert data["redacted_text"] is None
    assert r.headers["X-RateLimit-Limit"] == "1000" and r.headers["X-RateLimit-Remaining"] == "999"
    assert int(r.headers["X-RateLimit-Reset"]) >= 0 and r.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer"])
async def test_the_auth_scheme_is_case_insensitive(client: Client, token: str, scheme: str) -> None:
    await refresh(client)
    r = await post(client, None, BODY, extra={"Authorization": f"{scheme} {token}"})
    assert r.status == 200, await r.text()


async def test_a_token_in_x_api_key(client: Client, token: str) -> None:
    await refresh(client)
    assert (await post(client, None, BODY, extra={"x-api-key": token})).status == 200
    # An Authorization header of another kind is not overridden by x-api-key: malformed, 401.
    r = await post(client, None, BODY, extra={"x-api-key": token, "Authorization": "Basic abc"})
    await expect_error(r, 401, "unauthorized")


async def test_missing_token(client: Client) -> None:
    await expect_error(await post(client, None, BODY), 401, "unauthorized")


@pytest.mark.parametrize("tok", ["aigov_abc", "Basic xyz", "aigov_" + "a" * 12 + "_" + "A" * 28, "", "🙂" * 10])
async def test_malformed_tokens(client: Client, tok: str) -> None:
    await expect_error(await post(client, tok, BODY), 401, "unauthorized")


async def test_wrong_secret_unknown_revoked_expired(cfg: Config, client: Client, token: str) -> None:
    from daemon import tokens
    from daemon.keyadmin import revoke_key

    await refresh(client)
    kid = token.split("_")[1]
    wrong = tokens.make_token(kid, "B" * 22)
    unknown = tokens.make_token("zzzzzzzzzzzz", "B" * 22)
    r1 = await expect_error(await post(client, wrong, BODY), 401, "unauthorized")
    r2 = await expect_error(await post(client, unknown, BODY), 401, "unauthorized")
    assert r1 == r2  # one message for every failure: nothing to learn from it
    await asyncio.to_thread(revoke_key, kid, cfg)
    await refresh(client)
    await expect_error(await post(client, token, BODY), 401, "unauthorized")
    _, short = await make_key(cfg, expires_in=0.2)
    await refresh(client)
    assert (await post(client, short, BODY)).status == 200
    # Accepted until it expires, then refused: poll for the refusal rather than sleep past the expiry.
    deadline = asyncio.get_running_loop().time() + 10
    while (r := await post(client, short, BODY)).status == 200:
        assert asyncio.get_running_loop().time() < deadline, "the expired key was still accepted"
        await asyncio.sleep(0.02)
    await expect_error(r, 401, "unauthorized")
    fails = client.app[SERVICE].stats.auth_failures
    assert fails.get("wrong_secret") == 1 and fails.get("unknown") == 1 and fails.get("revoked") == 1
    assert fails.get("expired") == 1


async def test_a_key_created_while_running_works_at_once(home: Path, aiohttp_client: MakeClient) -> None:
    # The periodic refresh is a minute away: only the look an unknown key id asks for can find it.
    cfg = load_config({"key_refresh_interval": 60.0})
    client = await aiohttp_client(create_app(cfg))
    svc = client.app[SERVICE]
    looks = svc.auth.key_looks
    _, token = await make_key(cfg)
    r = await post(client, token, BODY)
    assert r.status == 200, await r.text()
    assert svc.auth.key_looks == looks + 1
    assert (await post(client, token, BODY)).status == 200
    assert svc.auth.key_looks == looks + 1  # known now: no further look


async def test_made_up_key_ids_share_a_few_looks_at_the_key_table(home: Path, aiohttp_client: MakeClient) -> None:
    from daemon import tokens

    cfg = load_config({"key_refresh_interval": 60.0})
    client = await aiohttp_client(create_app(cfg))
    svc = client.app[SERVICE]
    looks = svc.auth.key_looks
    made_up = [tokens.make_token(tokens.new_key_id(), tokens.new_secret()) for _ in range(50)]
    answers = await asyncio.gather(*(post(client, t, BODY) for t in made_up))
    assert [a.status for a in answers] == [401] * 50
    # One look that began before some of them arrived, one after: never one per request.
    assert 1 <= svc.auth.key_looks - looks <= 3
    assert svc.stats.auth_failures.get("unknown") == 50


async def test_a_key_rotated_while_running_takes_its_new_token_at_once(
    backend: Backend, aiohttp_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from daemon import tokens
    from daemon.auth import Authenticator
    from daemon.keyadmin import rotate

    cfg = load_config({"key_refresh_interval": 60.0})
    client = await aiohttp_client(create_app(cfg))
    key_id, old = await make_key(cfg)
    assert (await post(client, old, BODY)).status == 200
    _, new = await with_store(cfg, lambda s: rotate(s, cfg, key_id, None))
    r = await post(client, new, BODY)
    assert r.status == 200, await r.text()
    await expect_error(await post(client, old, BODY), 401, "unauthorized")  # no grace asked for
    # A wrong secret for a key the look finds unchanged is judged once: one bcrypt, not two.
    checks = 0
    real_check = Authenticator._check

    def counting(rec: Any, token: str, now: float) -> str | None:
        nonlocal checks
        checks += 1
        return real_check(rec, token, now)

    monkeypatch.setattr(Authenticator, "_check", staticmethod(counting))
    await expect_error(await post(client, tokens.make_token(key_id, "C" * 22), BODY), 401, "unauthorized")
    assert checks == 1


async def test_a_failed_key_look_answers_401_and_the_next_one_recovers(
    home: Path, aiohttp_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load_config({"key_refresh_interval": 60.0})
    client = await aiohttp_client(create_app(cfg))
    svc = client.app[SERVICE]
    _, token = await make_key(cfg)
    real = svc.auth.refresh

    async def broken() -> None:
        raise OSError("database is locked")

    monkeypatch.setattr(svc.auth, "refresh", broken)
    await expect_error(await post(client, token, BODY), 401, "unauthorized")
    monkeypatch.setattr(svc.auth, "refresh", real)
    assert (await post(client, token, BODY)).status == 200


async def test_wrong_secrets_are_throttled(cfg: Config, client: Client) -> None:
    from daemon import tokens

    _, warm = await make_key(cfg)
    _, cold = await make_key(cfg)
    await refresh(client)
    assert (await post(client, warm, BODY)).status == 200  # verified once: now warm
    stats = client.app[SERVICE].stats
    for kid in (warm.split("_")[1], cold.split("_")[1]):
        for i in range(8):
            await post(client, tokens.make_token(kid, f"{i:022d}"), BODY)
    # Five wrong secrets per key id cost bcrypt; after that the key id is locked out without bcrypt.
    assert stats.auth_failures["wrong_secret"] == 10 and stats.auth_failures["throttled"] == 6
    # A token verified before the attack keeps working (warm path, no bcrypt) ...
    assert (await post(client, warm, BODY)).status == 200
    # ... while a never-verified token of a locked key waits for the lockout to pass.
    assert (await post(client, cold, BODY)).status == 401


async def test_405(client: Client) -> None:
    r = await client.get("/v1/check")
    await expect_error(r, 405, "method_not_allowed")
    r = await client.post("/metrics")
    await expect_error(r, 405, "method_not_allowed")


async def test_413_by_header_before_auth(client: Client) -> None:
    await expect_error(await post(client, None, "x" * (2 * 1024 * 1024)), 413, "body_too_large")


async def test_413_chunked(client: Client, token: str) -> None:
    await refresh(client)

    async def gen() -> Any:
        for _ in range(20):
            yield b"x" * 100_000

    r = await client.post("/v1/check", data=gen(),
                          headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    await expect_error(r, 413, "body_too_large")


GZIP = "Content-Encoding: gzip\r\n"


async def send_whole(client: Client, token: str, body: bytes, extra: str = "") -> tuple[int, dict[str, Any]]:
    """POST /v1/check with headers and body in one write, so that the body is there when the handler runs."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(
            f"POST /v1/check HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
            .encode() + body
        )
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


async def test_body_sent_whole_is_checked(client: Client, token: str) -> None:
    await refresh(client)
    status, data = await send_whole(client, token, json.dumps(BODY).encode())
    assert (status, data["decision"]) == (200, "allow")
    status, data = await send_whole(client, token, b'{"model": "gpt-4o", "operation": "chat", "input_text": ')
    assert (status, data["error"]["code"]) == (400, "invalid_json")


async def test_413_compressed_body_that_expands_past_the_limit(client: Client, token: str) -> None:
    # Content-Length is small and the whole body arrives at once; what it decompresses to is not.
    await refresh(client)
    inflated = json.dumps({**BODY, "input_text": "x" * (2 * 1024 * 1024)}).encode()
    raw = gzip.compress(inflated)
    assert len(raw) < 16 * 1024
    status, data = await send_whole(client, token, raw, GZIP)
    assert (status, data["error"]["code"]) == (413, "body_too_large")
    # The same through the client, whose body may arrive after the headers.
    await expect_error(await post(client, token, raw, extra={"Content-Encoding": "gzip"}), 413, "body_too_large")


async def test_413_compressed_body_whole_in_the_buffer(home: Path, aiohttp_client: MakeClient) -> None:
    # A small limit, so that the inflated body is all buffered when the handler runs: the fast path's own check.
    cfg = load_config({"log_flush_interval": 0.05, "max_body_bytes": 2000})
    client = await aiohttp_client(create_app(cfg))
    _, token = await make_key(cfg)
    await refresh(client)
    raw = gzip.compress(json.dumps({**BODY, "input_text": "z" * 5000}).encode())
    assert len(raw) < 2000
    status, data = await send_whole(client, token, raw, GZIP)
    assert (status, data["error"]["code"]) == (413, "body_too_large")
    status, data = await send_whole(client, token, gzip.compress(json.dumps(BODY).encode()), GZIP)
    assert (status, data["decision"]) == (200, "allow")


async def test_compressed_body_within_the_limit_is_checked(client: Client, token: str) -> None:
    await refresh(client)
    status, data = await send_whole(client, token, gzip.compress(json.dumps(BODY).encode()), GZIP)
    assert (status, data["decision"]) == (200, "allow")


async def test_body_in_several_segments_is_read_whole(client: Client, token: str) -> None:
    # A body that is still arriving when the handler runs goes through request.read().
    await refresh(client)
    body = json.dumps({**BODY, "input_text": "y " * 40_000}).encode()

    async def slow() -> Any:
        for i in range(0, len(body), 16384):
            yield body[i:i + 16384]
            await asyncio.sleep(0.01)

    r = await client.post("/v1/check", data=slow(), headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json", "Content-Length": str(len(body))})
    assert r.status == 200
    assert (await r.json())["decision"] == "allow"


# --- the body size limit at its edge: exactly max_body_bytes is accepted, one byte more is 413 ---

LIMIT = 4096


def body_of(size: int) -> bytes:
    """A valid check body of exactly ``size`` bytes."""
    empty = len(json.dumps({**BODY, "input_text": ""}).encode())
    body = json.dumps({**BODY, "input_text": "a" * (size - empty)}).encode()
    assert len(body) == size
    return body


def chunked(body: bytes, piece: int = 1000) -> bytes:
    """``body`` in HTTP/1.1 chunked transfer coding."""
    parts = [body[i:i + piece] for i in range(0, len(body), piece)]
    return b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


async def send_chunked(client: Client, token: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """POST /v1/check with a chunked body, headers and body in one write."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(
            f"POST /v1/check HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            .encode() + chunked(body)
        )
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload)


@pytest.fixture
async def small(home: Path, aiohttp_client: MakeClient) -> tuple[Client, str]:
    """A client of an app whose max_body_bytes is LIMIT, and a warm token."""
    cfg = load_config({"log_flush_interval": 0.05, "max_body_bytes": LIMIT})
    client = await aiohttp_client(create_app(cfg))
    _, token = await make_key(cfg)
    await refresh(client)
    return client, token


def _expect_size_answer(status: int, data: dict[str, Any], want: int) -> None:
    assert status == want, data
    if want == 200:
        assert data["decision"] == "allow"
    else:
        assert data["error"]["code"] == "body_too_large" and str(LIMIT) in data["error"]["message"]


@pytest.mark.parametrize(("size", "want"), [(LIMIT, 200), (LIMIT + 1, 413)])
async def test_body_size_edge_by_content_length(small: tuple[Client, str], size: int, want: int) -> None:
    client, token = small
    r = await post(client, token, body_of(size))  # the body may arrive after the headers: read()
    _expect_size_answer(r.status, await r.json(), want)
    _expect_size_answer(*await send_whole(client, token, body_of(size)), want)  # all there at once


@pytest.mark.parametrize(("size", "want"), [(LIMIT, 200), (LIMIT + 1, 413)])
async def test_body_size_edge_chunked(small: tuple[Client, str], size: int, want: int) -> None:
    client, token = small
    body = body_of(size)

    async def pieces() -> Any:
        for i in range(0, len(body), 1000):
            yield body[i:i + 1000]

    # No Content-Length: the client sends the generator chunked, and only the bytes read can tell.
    r = await client.post("/v1/check", data=pieces(),
                          headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    _expect_size_answer(r.status, await r.json(), want)
    _expect_size_answer(*await send_chunked(client, token, body), want)


async def test_415(client: Client, token: str) -> None:
    await refresh(client)
    await expect_error(await post(client, token, json.dumps(BODY), ctype="text/plain"), 415, "unsupported_media_type")


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe{}", b"", b"[" * 100_000 + b"]" * 100_000,
                                 json.dumps({**BODY, "metadata": {"x": float("nan")}}).encode(),
                                 json.dumps({**BODY, "metadata": {"x": float("inf")}}).encode()])
async def test_400(client: Client, token: str, raw: bytes) -> None:
    await refresh(client)
    await expect_error(await post(client, token, raw), 400, "invalid_json")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "gpt-4o", "operation": "chat"}, "input_text"),
        ({**BODY, "model": 5}, "model"),
        ({**BODY, "operation": None}, "operation"),
        ({**BODY, "input_text": ["a"]}, "input_text"),
        ({**BODY, "model": ""}, "model"),
        ({**BODY, "surprise": 1}, "surprise"),
        ({**BODY, "metadata": []}, "metadata"),
        ({**BODY, "metadata": {str(i): "v" for i in range(17)}}, "metadata"),
        ({**BODY, "metadata": {"a": {"b": 1}}}, "metadata.a"),
        ({**BODY, "input_text": "\ud800"}, "input_text"),
        ({**BODY, "input_text": "caf\u00e9 \ud83d"}, "input_text"),
        ({**BODY, "model": "gpt\udc00"}, "model"),
        ({**BODY, "operation": "chat\ud800"}, "operation"),
        ([BODY], "object"),
        ("just a string", "object"),
    ],
)
async def test_422_names_the_field(client: Client, token: str, body: Any, field: str) -> None:
    await refresh(client)
    data = await expect_error(await post(client, token, json.dumps(body)), 422, "validation_error")
    assert field in data["error"]["message"]


@pytest.mark.parametrize(("number", "message"), [
    ("7" * 5000, "a number in the body is too large (5000 digits; at most 4300)"),
    ("1e400", "a number in the body is too large (1e400)"),
])
async def test_a_number_too_large_is_422_saying_so(client: Client, token: str, number: str, message: str) -> None:
    # Valid JSON (a 400 used to call it "not valid JSON"), but not a number aigov can hold.
    await refresh(client)
    raw = json.dumps({**BODY, "metadata": {"n": 0}}).replace('"n": 0', f'"n": {number}')
    data = await expect_error(await post(client, token, raw), 422, "validation_error")
    assert data["error"]["message"] == message


async def test_metadata_accepted(client: Client, token: str) -> None:
    await refresh(client)
    r = await post(client, token, {**BODY, "metadata": {"team": "x", "n": 3, "ok": True, "none": None}})
    assert r.status == 200


async def test_429_with_headers_and_retry_after(cfg: Config, client: Client) -> None:
    _, tok = await make_key(cfg, limit=3, window=60)
    await refresh(client)
    statuses = [(await post(client, tok, BODY)).status for _ in range(3)]
    assert statuses == [200, 200, 200]
    r = await post(client, tok, BODY)
    data = await expect_error(r, 429, "rate_limited")
    assert data["error"]["message"] == "rate limit of 3 per 1m exceeded; retry after 20 s"
    assert r.headers["X-RateLimit-Limit"] == "3" and r.headers["X-RateLimit-Remaining"] == "0"
    assert int(r.headers["Retry-After"]) == 20 and int(r.headers["X-RateLimit-Reset"]) == 60
    assert client.app[SERVICE].stats.rate_limit_hits == 1


async def test_429_exact_under_concurrency(cfg: Config, client: Client) -> None:
    _, tok = await make_key(cfg, limit=20, window=3600)
    await refresh(client)  # cold: the first requests race through bcrypt together
    results = await asyncio.gather(*(post(client, tok, BODY) for _ in range(60)))
    statuses = [r.status for r in results]
    assert statuses.count(200) == 20 and statuses.count(429) == 40


async def test_503_when_decision_log_stays_full(cfg: Config, client: Client, token: str) -> None:
    await refresh(client)
    svc = client.app[SERVICE]
    svc.dlog.enqueue_timeout = 0.05
    # Park the writer on a "slow disk" so that nothing drains the queue.
    release, entered = threading.Event(), threading.Event()
    store = svc.dlog.store
    real = store.write

    async def slow(batch: Any) -> None:
        entered.set()
        await asyncio.to_thread(release.wait, 30)
        await real(batch)

    store.write = slow  # type: ignore[method-assign]
    try:
        svc.dlog.offer(svc_entry())
        await asyncio.to_thread(entered.wait, 10)
        while svc.dlog.offer(svc_entry()):
            pass
        r = await post(client, token, BODY)
        await expect_error(r, 503, "unavailable")
    finally:
        release.set()
    # Once the disk recovers the same request succeeds, and everything queued is written.
    for _ in range(200):
        if svc.dlog.qsize() < svc.dlog.max_queue:
            break
        await asyncio.sleep(0.01)
    assert (await post(client, token, BODY)).status == 200


def svc_entry() -> Any:
    from daemon.storage.records import Entry

    return Entry(0.0, "fill", "k", "m", "o", "input", "allow", (), (), "", 0.0, "default", "v", "ok", None)


async def test_unknown_path_404_json(client: Client) -> None:
    r = await client.get("/nope")
    assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"


async def test_health_ready_openapi_metrics(client: Client, token: str) -> None:
    await refresh(client)
    await post(client, token, BODY)
    assert (await client.get("/healthz")).status == 200
    ready = await (await client.get("/readyz")).json()
    assert ready["ready"] is True and ready["active_keys"] == 1
    spec = await (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.") and "/v1/check" in spec["paths"]
    responses = spec["paths"]["/v1/check"]["post"]["responses"]
    assert {"200", "400", "401", "405", "413", "415", "422", "429", "503"} <= set(responses)
    scrape = await client.get("/metrics")
    assert scrape.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert scrape.headers["Cache-Control"] == "no-store" and len(scrape.headers["X-Request-Id"]) == 26
    text = await scrape.text()
    for name in ("aigov_requests_total", "aigov_governance_allowed_total", "aigov_governance_blocked_total",
                 "aigov_rate_limit_hits_total", "aigov_request_latency_seconds_bucket",
                 "aigov_async_logger_queue_size", "aigov_active_api_keys", "aigov_decisions_written_total",
                 "aigov_decision_log_errors_total", "aigov_auth_failures_total", "process_resident_memory_bytes"):
        assert name in text, name
    assert 'aigov_requests_total{endpoint="/v1/check",status="200"} 1.0' in text
    assert token.split("_")[2] not in text


async def test_policy_model_deny_and_too_long(home: Path, aiohttp_client: MakeClient) -> None:
    (home / "policy.toml").write_text(
        '[policies.default]\nmax_input_chars = 10\nmodels = { allow = ["gpt-*"], deny = ["gpt-3*"] }\n'
        'operations = { deny = ["fine_tune"] }\n'
    )
    cfg = load_config()
    _, tok = await make_key(cfg)
    client = await aiohttp_client(create_app(cfg))
    await refresh(client)
    r = await (await post(client, tok, {**BODY, "model": "gpt-3.5", "input_text": "hi"})).json()
    assert r["decision"] == "block" and [x["rule"] for x in r["reasons"]] == ["model.denied"]
    r = await (await post(client, tok, {**BODY, "model": "claude", "input_text": "hi"})).json()
    assert [x["rule"] for x in r["reasons"]] == ["model.denied"]
    r = await (await post(client, tok, {**BODY, "operation": "fine_tune", "input_text": "hi"})).json()
    assert [x["rule"] for x in r["reasons"]] == ["operation.denied"]
    r = await (await post(client, tok, {**BODY, "input_text": "x" * 11})).json()
    assert [x["rule"] for x in r["reasons"]] == ["input.too_long"] and r["allowed"] is False
    r = await (await post(client, tok, {**BODY, "input_text": "short"})).json()
    assert r["allowed"] is True
    text = await (await client.get("/metrics")).text()
    assert 'aigov_governance_blocked_total{rule="model.denied"} 2.0' in text


async def test_decisions_reach_the_database(cfg: Config, client: Client, token: str, backend: Backend) -> None:
    await refresh(client)
    ids = []
    for _ in range(5):
        ids.append((await (await post(client, token, BODY)).json())["request_id"])
    svc = client.app[SERVICE]
    for _ in range(100):
        if svc.stats.decisions_written >= 5:
            break
        await asyncio.sleep(0.02)
    got = [r[0] for r in backend.sql("SELECT request_id FROM decisions ORDER BY id")]
    assert got == ids
