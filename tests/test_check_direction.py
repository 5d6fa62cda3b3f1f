"""``POST /v1/check`` with ``"direction"``: which of the policy's rules run, and its validation."""

from __future__ import annotations

import io
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from daemon.app import SERVICE, create_app
from daemon.config import Config, load_config
from daemon.keyadmin import create, with_store

Client = TestClient  # type: ignore[type-arg]
MakeClient = Callable[..., Awaitable[Any]]
CARD = "4111 1111 1111 1111"
GITHUB = "ghp_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"


@pytest.fixture
def cfg(home: Path) -> Config:
    return load_config({"log_flush_interval": 0.05})


@pytest.fixture
async def client(cfg: Config, aiohttp_client: MakeClient) -> Client:
    return await aiohttp_client(create_app(cfg))  # type: ignore[no-any-return]


@pytest.fixture
async def token(cfg: Config, client: Client) -> str:
    _, tok = await with_store(cfg, lambda s: create(s, cfg, name="t", limit=1000, window=60.0, policy="default",
                                                    expires_in=None))
    await client.app[SERVICE].auth.refresh()
    return tok


async def check(client: Client, token: str, text: str, **extra: Any) -> Any:
    raw = json.dumps({"model": "gpt-4o", "operation": "chat", "input_text": text, **extra}).encode()
    h = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Content-Length": str(len(raw))}
    return await client.post("/v1/check", data=io.BytesIO(raw), headers=h)


async def test_direction_picks_the_rules(client: Client, token: str) -> None:
    card = f"my card is {CARD}"
    assert (await (await check(client, token, card)).json())["decision"] == "block"
    assert (await (await check(client, token, card, direction="input")).json())["decision"] == "block"
    assert (await (await check(client, token, card, direction=None)).json())["decision"] == "block"
    out = await (await check(client, token, card, direction="output")).json()
    assert out["decision"] == "allow" and out["reasons"] == []
    out = await (await check(client, token, f"token {GITHUB}", direction="output")).json()
    assert out["decision"] == "block" and out["reasons"][0]["rule"] == "secrets.github_token"


@pytest.mark.parametrize(
    ("direction", "shown"),
    [("sideways", "'sideways'"), ("", "''"), ("in\u200bput", "a string"), (1, "a number"), (["input"], "an array"),
     ({"x": 1}, "an object"), (False, "a boolean")],
)
async def test_a_bad_direction_is_422_naming_the_field(client: Client, token: str, direction: Any, shown: str) -> None:
    r = await check(client, token, "hello", direction=direction)
    assert r.status == 422
    err = (await r.json())["error"]
    assert err["code"] == "validation_error"
    assert err["message"] == f"field 'direction' must be \"input\" or \"output\", not {shown}"


async def test_a_lone_surrogate_in_direction_is_422_not_500(client: Client, token: str) -> None:
    raw = b'{"model": "m", "operation": "chat", "input_text": "x", "direction": "\\ud800"}'
    h = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Content-Length": str(len(raw))}
    r = await client.post("/v1/check", data=io.BytesIO(raw), headers=h)
    assert r.status == 422 and "field 'direction'" in (await r.json())["error"]["message"]


async def test_the_unknown_field_message_lists_direction(client: Client, token: str) -> None:
    r = await check(client, token, "hello", directions="output")
    assert r.status == 422
    assert "(allowed: direction, input_text, metadata, model, operation)" in (await r.json())["error"]["message"]


async def test_an_unknown_field_named_with_a_lone_surrogate_is_422_not_500(client: Client, token: str) -> None:
    raw = b'{"model": "m", "operation": "chat", "input_text": "x", "\\ud800": 1}'
    h = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Content-Length": str(len(raw))}
    r = await client.post("/v1/check", data=io.BytesIO(raw), headers=h)
    assert r.status == 422
    assert (await r.json())["error"]["message"] == "a field name contains invalid Unicode (a lone surrogate)"


async def test_a_metadata_key_with_a_lone_surrogate_and_an_object_value_is_422_not_500(
    client: Client, token: str
) -> None:
    raw = b'{"model": "m", "operation": "chat", "input_text": "x", "metadata": {"\\ud800": {"a": 1}}}'
    h = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Content-Length": str(len(raw))}
    r = await client.post("/v1/check", data=io.BytesIO(raw), headers=h)
    assert r.status == 422
    message = (await r.json())["error"]["message"]
    assert message == "field 'metadata' keys must be at most 64 characters of valid Unicode"
