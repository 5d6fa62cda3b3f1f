"""LiteLLM's Generic Guardrail API: the translation (pure) and the daemon's route (in-process).

The fixture bodies in tests/fixtures/litellm/ are what LiteLLM 1.108.7's proxy sent for a chat
completion (pre_call, then post_call), captured from a real proxy.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from daemon import guardrail
from daemon.app import SERVICE, create_app
from daemon.config import Config, load_config
from daemon.keyadmin import create, with_store
from daemon.policy.loader import default_policy_text, parse_policy
from daemon.policy.model import Decision, Reason

FIXTURES = Path(__file__).parent / "fixtures" / "litellm"
PRE = json.loads((FIXTURES / "pre_call_request.json").read_text())
POST = json.loads((FIXTURES / "post_call_response.json").read_text())
CARD = "4111 1111 1111 1111"
GITHUB = "ghp_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"
Client = TestClient  # type: ignore[type-arg]
MakeClient = Callable[..., Awaitable[Any]]

REDACTING = """
[policies.default]

[[policies.default.rules]]
id = "pii.email"
detector = "email"
action = "redact"

[[policies.default.rules]]
id = "pii.credit_card"
detector = "credit_card"
action = "block"
applies_to = ["input"]

[[policies.default.rules]]
id = "secrets.github_token"
detector = "github_token"
action = "block"
"""


def body(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(base)
    out.update(changes)
    return out


def decide(texts: list[str], direction: str = "input", policy: str = REDACTING) -> list[Decision]:
    p = parse_policy(policy).get("default")
    assert p is not None
    return [p.evaluate("gpt-4o", "chat", t, direction) for t in texts]


# --- the translation ---------------------------------------------------------------------


def test_parse_the_request_litellm_sends() -> None:
    call = guardrail.parse_request(PRE)
    assert call.input_type == "request" and call.direction == "input"
    assert call.texts == ("be brief", "capital of France?")
    assert call.model == "gpt-4o" and call.operation == "chat"
    assert call.litellm_call_id == PRE["litellm_call_id"]
    answer = guardrail.parse_request(POST)
    assert answer.direction == "output" and answer.texts == ("Paris is the capital of France.",)


def test_unknown_and_future_fields_are_ignored() -> None:
    extra = body(PRE, litellm_future_field={"nested": [1, 2]}, guardrail_mode="pre_call", images=["data:..."],
                 tools=[{"type": "function", "function": {"name": "f"}}])
    assert guardrail.parse_request(extra) == guardrail.parse_request(PRE)


def test_missing_texts_model_and_call_id_have_defaults() -> None:
    call = guardrail.parse_request({"input_type": "response"})
    assert call.texts == () and call.model == "unknown" and call.litellm_call_id is None
    assert guardrail.parse_request(body(PRE, texts=None, model=None)).texts == ()
    assert guardrail.parse_request(body(PRE, model="")).model == "unknown"


def test_operation_comes_from_the_guardrails_config() -> None:
    call = guardrail.parse_request(body(PRE, additional_provider_specific_params={"operation": "embedding"}))
    assert call.operation == "embedding"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "the body must be a JSON object, not an array"),
        ({}, "field 'input_type' must be \"request\" or \"response\", not null"),
        (body(PRE, input_type="during"), "field 'input_type' must be \"request\" or \"response\", not 'during'"),
        (body(PRE, input_type=["request"]), "not an array"),
        (body(PRE, texts="hello"), "field 'texts' must be an array of strings, not a string"),
        (body(PRE, texts=["ok", 3]), "field 'texts[1]' must be a string, not a number"),
        (body(PRE, texts=["\ud800"]), "field 'texts[0]' contains invalid Unicode"),
        (body(PRE, texts=[""] * (guardrail.MAX_TEXTS + 1)), f"at most {guardrail.MAX_TEXTS} texts"),
        (body(PRE, model=7), "field 'model' must be a string, not a number"),
        (body(PRE, model="m" * 257), "field 'model' must be at most 256 characters"),
        (body(PRE, litellm_call_id=5), "field 'litellm_call_id' must be a string"),
        (body(PRE, additional_provider_specific_params={"operation": True}),
         "field 'additional_provider_specific_params.operation' must be a string, not a boolean"),
        (body(PRE, additional_provider_specific_params=[None, None]),
         "field 'additional_provider_specific_params' must be an object or null, not an array"),
    ],
)
def test_bad_requests_name_the_field(data: Any, message: str) -> None:
    with pytest.raises(guardrail.GuardrailRequestError) as e:
        guardrail.parse_request(data)
    assert message in str(e.value)


def test_nothing_found_is_none() -> None:
    texts = ["be brief", "capital of France?"]
    assert guardrail.response_body(texts, decide(texts), "request", "RID") == {
        "action": "NONE", "blocked_reason": None, "texts": None}


def test_a_redaction_returns_every_text_in_order() -> None:
    texts = ["be brief", "mail ann@corp.example please", "thanks"]
    out = guardrail.response_body(texts, decide(texts), "request", "RID")
    assert out == {"action": "GUARDRAIL_INTERVENED", "blocked_reason": None,
                   "texts": ["be brief", "mail [REDACTED:email] please", "thanks"]}


def test_any_block_blocks_and_says_which_rule_not_what_matched() -> None:
    texts = ["mail ann@corp.example", f"card {CARD}"]
    out = guardrail.response_body(texts, decide(texts), "request", "01RID")
    assert out["action"] == "BLOCKED" and out["texts"] is None
    reason = out["blocked_reason"]
    assert reason.startswith("aigov policy 'default' blocked the request: pii.credit_card (")
    assert reason.endswith("[aigov request 01RID]") and CARD not in reason and "ann@" not in reason


def test_direction_follows_input_type() -> None:
    texts = [f"card {CARD}"]
    assert guardrail.response_body(texts, decide(texts, "output"), "response", "R")["action"] == "NONE"
    texts = [f"token {GITHUB}"]
    out = guardrail.response_body(texts, decide(texts, "output"), "response", "R")
    assert out["action"] == "BLOCKED" and "blocked the response: secrets.github_token" in out["blocked_reason"]


def test_the_record_joins_the_texts_and_shifts_offsets() -> None:
    texts = ["hi", "mail ann@corp.example", f"card {CARD}"]
    decisions = decide(texts)
    joined, merged = guardrail.record_decision(texts, decisions)
    assert joined == "hi\nmail ann@corp.example\ncard " + CARD
    assert not merged.allowed and merged.rules == ("pii.email", "pii.credit_card")
    for r in merged.reasons:
        assert r.start is not None and r.end is not None
        found = joined[r.start : r.end]
        assert found == ("ann@corp.example" if r.detector == "email" else CARD)


def test_reasons_without_offsets_appear_once_per_call() -> None:
    denied = Reason("model.denied", "model", "block", "model is not allowed by the policy")
    d = Decision(False, (denied,), "default", "v1")
    _, merged = guardrail.record_decision(["a", "b", "c"], [d, d, d])
    assert merged.reasons == (denied,)


def test_one_text_is_recorded_as_it_is() -> None:
    (d,) = decide([f"card {CARD}"])
    assert guardrail.record_decision([f"card {CARD}"], [d]) == (f"card {CARD}", d)


# --- the route, in-process ---------------------------------------------------------------


@pytest.fixture
def cfg(home: Path) -> Config:
    (home / "policy.toml").write_text(REDACTING)
    return load_config({"log_flush_interval": 0.05})


@pytest.fixture
async def client(cfg: Config, aiohttp_client: MakeClient) -> Client:
    return await aiohttp_client(create_app(cfg))  # type: ignore[no-any-return]


async def make_token(cfg: Config, limit: int = 1000, policy: str = "default") -> str:
    _, token = await with_store(cfg, lambda s: create(s, cfg, name="litellm", limit=limit, window=60.0,
                                                      policy=policy, expires_in=None))
    return token


@pytest.fixture
async def token(cfg: Config, client: Client) -> str:
    t = await make_token(cfg)
    await client.app[SERVICE].auth.refresh()
    return t


async def call(client: Client, data: Any, headers: dict[str, str]) -> Any:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    h = {"Content-Type": "application/json", "Content-Length": str(len(raw)), **headers}
    return await client.post(guardrail.PATH, data=io.BytesIO(raw), headers=h)


async def records(cfg: Config, n: int) -> list[sqlite3.Row]:
    """The decision records, once ``n`` are written (the writer flushes every 50 ms here)."""
    for _ in range(200):
        conn = sqlite3.connect(cfg.db_file)
        conn.row_factory = sqlite3.Row
        try:
            rows = conn.execute("SELECT * FROM decisions WHERE kind IS NULL OR kind != 'checkpoint'"
                                " ORDER BY id").fetchall()
        finally:
            conn.close()
        if len(rows) >= n:
            return rows
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {n} decision records were written")


@pytest.mark.parametrize("how", ["x-api-key", "Bearer", "bearer", "BEARER"])
async def test_token_in_x_api_key_or_bearer_of_any_case(client: Client, token: str, how: str) -> None:
    headers = {"x-api-key": token} if how == "x-api-key" else {"Authorization": f"{how} {token}"}
    r = await call(client, PRE, headers)
    assert r.status == 200, await r.text()
    assert await r.json() == {"action": "NONE", "blocked_reason": None, "texts": None}
    assert r.headers["X-Request-Id"] and r.headers["X-RateLimit-Limit"] == "1000"


@pytest.mark.parametrize(
    "headers",
    [{}, {"x-api-key": ""}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"},
     {"x-api-key": "aigov_nope"}, {"Authorization": "Bearer aigov_abcdefghijkl_notavalidsecret000000"}],
)
async def test_missing_or_wrong_tokens_are_401(client: Client, token: str, headers: dict[str, str]) -> None:
    r = await call(client, PRE, headers)
    assert r.status == 401
    assert (await r.json())["error"]["code"] == "unauthorized"


async def test_redaction_reaches_litellm_and_one_record_per_call(client: Client, cfg: Config, token: str) -> None:
    data = body(PRE, texts=["be brief", "mail ann@corp.example please"])
    r = await call(client, data, {"x-api-key": token})
    assert await r.json() == {"action": "GUARDRAIL_INTERVENED", "blocked_reason": None,
                              "texts": ["be brief", "mail [REDACTED:email] please"]}
    (rec,) = await records(cfg, 1)
    assert rec["request_id"] == r.headers["X-Request-Id"] and rec["model"] == "gpt-4o"
    assert rec["decision"] == "allow" and json.loads(rec["rules"]) == ["pii.email"]
    assert rec["input"] == "be brief\nmail [REDACTED:email] please"  # log_inputs = redacted
    # LiteLLM's call id and input type go into the record's metadata; a request checks an input.
    assert json.loads(rec["metadata"]) == {"source": "litellm", "input_type": "request",
                                           "litellm_call_id": PRE["litellm_call_id"]}
    assert rec["direction"] == "input" and rec["rate_limit"] == "ok"


async def test_a_block_in_one_text_blocks_the_call(client: Client, cfg: Config, token: str) -> None:
    data = body(PRE, texts=["fine", f"card {CARD}", "mail ann@corp.example"])
    r = await call(client, data, {"Authorization": f"Bearer {token}"})
    out = await r.json()
    assert out["action"] == "BLOCKED" and "pii.credit_card" in out["blocked_reason"]
    assert r.headers["X-Request-Id"] in out["blocked_reason"]
    (rec,) = await records(cfg, 1)
    assert rec["decision"] == "block" and set(json.loads(rec["rules"])) == {"pii.credit_card", "pii.email"}
    assert CARD not in rec["input"] and "ann@corp.example" not in rec["input"]


async def test_responses_are_checked_as_outputs(client: Client, token: str) -> None:
    r = await call(client, body(POST, texts=[f"card {CARD}"]), {"x-api-key": token})
    assert (await r.json())["action"] == "NONE"  # the card rule applies to inputs only
    r = await call(client, body(POST, texts=[f"here: {GITHUB}"]), {"x-api-key": token})
    out = await r.json()
    assert out["action"] == "BLOCKED" and "blocked the response: secrets.github_token" in out["blocked_reason"]


async def test_a_call_without_texts_is_recorded(client: Client, cfg: Config, token: str) -> None:
    r = await call(client, body(PRE, texts=None, images=["data:image/png;base64,AAAA"]), {"x-api-key": token})
    assert await r.json() == {"action": "NONE", "blocked_reason": None, "texts": None}
    (rec,) = await records(cfg, 1)
    assert rec["decision"] == "allow" and rec["input_length"] == 0


async def test_one_rate_limit_token_per_call(client: Client, cfg: Config) -> None:
    tok = await make_token(cfg, limit=2)
    await client.app[SERVICE].auth.refresh()
    many = body(PRE, texts=["a", "b", "c", "d", "e"])
    assert (await call(client, many, {"x-api-key": tok})).status == 200
    r = await call(client, many, {"x-api-key": tok})
    assert r.status == 200 and r.headers["X-RateLimit-Remaining"] == "0"
    r = await call(client, many, {"x-api-key": tok})
    assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
    assert (await r.json())["error"]["code"] == "rate_limited"


@pytest.mark.parametrize(
    ("raw", "ctype", "status", "code"),
    [
        (b"{not json", "application/json", 400, "invalid_json"),
        (b"\xff\xfe{}", "application/json", 400, "invalid_json"),
        (json.dumps(PRE).encode(), "text/plain", 415, "unsupported_media_type"),
        (json.dumps({"texts": ["x"]}).encode(), "application/json", 422, "validation_error"),
        (json.dumps(body(PRE, texts=[1])).encode(), "application/json", 422, "validation_error"),
    ],
)
async def test_bad_bodies_get_one_clear_error(
    client: Client, token: str, raw: bytes, ctype: str, status: int, code: str
) -> None:
    h = {"x-api-key": token, "Content-Type": ctype, "Content-Length": str(len(raw))}
    r = await client.post(guardrail.PATH, data=io.BytesIO(raw), headers=h)
    assert r.status == status, await r.text()
    assert (await r.json())["error"]["code"] == code


async def test_get_is_405_and_a_huge_body_413(client: Client, cfg: Config, token: str) -> None:
    r = await client.get(guardrail.PATH, headers={"x-api-key": token})
    assert r.status == 405 and r.headers["Allow"] == "POST"
    big = json.dumps(body(PRE, texts=["x" * (cfg.max_body_bytes + 1)])).encode()
    r = await call(client, big, {"x-api-key": token})
    assert r.status == 413


async def test_a_key_bound_to_an_undefined_policy_fails_closed(client: Client, cfg: Config) -> None:
    tok = await make_token(cfg, policy="nowhere")
    await client.app[SERVICE].auth.refresh()
    r = await call(client, PRE, {"x-api-key": tok})
    out = await r.json()
    assert out["action"] == "BLOCKED" and "policy.unknown" in out["blocked_reason"]


async def test_openapi_documents_the_route_and_direction(client: Client) -> None:
    spec = await (await client.get("/openapi.json")).json()
    op = spec["paths"][guardrail.PATH]["post"]
    assert {"bearer": []} in op["security"] and {"apiKey": []} in op["security"]
    assert spec["components"]["securitySchemes"]["apiKey"] == {"type": "apiKey", "in": "header", "name": "x-api-key"}
    assert spec["components"]["schemas"]["GuardrailResponse"]["properties"]["action"]["enum"] == [
        "BLOCKED", "GUARDRAIL_INTERVENED", "NONE"]
    assert spec["components"]["schemas"]["CheckRequest"]["properties"]["direction"]["enum"] == ["input", "output", None]


def test_default_policy_blocks_secrets_in_litellm_responses() -> None:
    texts = [f"here: {GITHUB}"]
    out = guardrail.response_body(texts, decide(texts, "output", default_policy_text()), "response", "R")
    assert out["action"] == "BLOCKED"
