"""The OpenAI guard with the real ``openai`` package, a real ``aigov serve`` and a local fake upstream.

No network: the SDK's base_url is the fake upstream (tests/fake_openai.py) on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import gc
import json
import warnings
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from aigov_cli.client import AsyncClient, CheckResult, Client, Reason
from aigov_cli.integrations.openai import (
    SEPARATOR,
    GovernanceBlocked,
    GovernanceCheckFailed,
    StreamText,
    answer_text,
    guard,
    plan_request,
    redact_slots,
)
from tests.daemon_proc import DaemonProc, create_key, free_port, running_daemon
from tests.fake_openai import DEFAULT_REPLY, FakeOpenAI
from tests.guard_policy import CARD, GITHUB, POLICY

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def aigov(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProc, str]]:
    home = tmp_path_factory.mktemp("guard") / "home"
    home.mkdir(mode=0o700)
    (home / "policy.toml").write_text(POLICY)
    key = create_key(home, "guard", "--rate-limit", "100000/60s")
    with running_daemon(home, AIGOV_BCRYPT_COST="10") as d:
        yield d, key["token"]


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def client(aigov: tuple[DaemonProc, str], upstream: FakeOpenAI) -> Iterator[openai.OpenAI]:
    d, token = aigov
    checker = Client(d.url, token)
    raw = openai.OpenAI(api_key="sk-test", base_url=upstream.url, max_retries=0)
    guarded = guard(raw, checker)
    yield guarded
    guarded.close()
    raw.close()
    checker.close()


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def sent(upstream: FakeOpenAI) -> list[dict[str, Any]]:
    return [body for _, body in upstream.requests]


# --- sync ----------------------------------------------------------------------------------


def test_benign_chat_passes(client: openai.OpenAI, upstream: FakeOpenAI) -> None:
    r = client.chat.completions.create(model="gpt-4o", messages=user("What is the capital of France?"))
    assert r.choices[0].message.content == DEFAULT_REPLY
    assert sent(upstream)[0]["messages"] == user("What is the capital of France?")


def test_a_card_number_is_blocked_and_never_sent(client: openai.OpenAI, upstream: FakeOpenAI) -> None:
    with pytest.raises(GovernanceBlocked) as e:
        client.chat.completions.create(model="gpt-4o", messages=user(f"charge {CARD} please"))
    assert isinstance(e.value, openai.OpenAIError) and e.value.direction == "input"
    assert [r.rule for r in e.value.result.reasons] == ["pii.credit_card"] and not e.value.result.allowed
    assert CARD not in str(e.value) and e.value.result.request_id in str(e.value)
    assert upstream.requests == []


def test_an_email_reaches_the_upstream_redacted(client: openai.OpenAI, upstream: FakeOpenAI) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "hello"},
                                     {"type": "text", "text": "mail ann@corp.example and bob@corp.example"}]},
    ]
    client.chat.completions.create(model="gpt-4o", messages=messages)
    (body,) = sent(upstream)
    assert body["messages"][0] == {"role": "system", "content": "You are terse."}
    assert body["messages"][1]["content"][0]["text"] == "hello"
    assert body["messages"][1]["content"][1]["text"] == "mail [REDACTED:email] and [REDACTED:email]"


def test_redact_false_sends_as_written(aigov: tuple[DaemonProc, str], upstream: FakeOpenAI) -> None:
    d, token = aigov
    with Client(d.url, token) as checker:
        c = guard(openai.OpenAI(api_key="sk-test", base_url=upstream.url), checker, redact=False)
        c.chat.completions.create(model="gpt-4o", messages=user("mail ann@corp.example"))
    assert sent(upstream)[0]["messages"] == user("mail ann@corp.example")


def test_system_and_tool_messages_are_checked_assistant_ones_are_not(client: openai.OpenAI,
                                                                      upstream: FakeOpenAI) -> None:
    for role in ("system", "developer"):
        with pytest.raises(GovernanceBlocked):
            client.chat.completions.create(model="gpt-4o", messages=[{"role": role, "content": f"card {CARD}"}])
    tool = [{"role": "assistant", "content": None,
             "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": f"the token is {GITHUB}"}]
    with pytest.raises(GovernanceBlocked):
        client.chat.completions.create(model="gpt-4o", messages=tool)
    assert upstream.requests == []
    earlier = [{"role": "assistant", "content": f"your card {CARD} was charged"}, *user("thanks")]
    client.chat.completions.create(model="gpt-4o", messages=earlier)  # an earlier answer is not re-checked
    assert len(upstream.requests) == 1


def test_a_secret_in_the_answer_raises(client: openai.OpenAI, upstream: FakeOpenAI) -> None:
    upstream.reply = f"Sure, the token is {GITHUB}."
    with pytest.raises(GovernanceBlocked) as e:
        client.chat.completions.create(model="gpt-4o", messages=user("what is the token?"))
    assert e.value.direction == "output" and "the model's answer" in str(e.value)
    assert e.value.result.reasons[0].rule == "secrets.github_token" and len(upstream.requests) == 1
    upstream.reply = f"A card like {CARD} in an answer is allowed (the card rule applies to inputs)."
    r = client.chat.completions.create(model="gpt-4o", messages=user("hi"))
    assert r.choices[0].message.content == upstream.reply


def test_a_streamed_answer_is_checked_when_it_ends(client: openai.OpenAI, upstream: FakeOpenAI) -> None:
    stream = client.chat.completions.create(model="gpt-4o", messages=user("hi"), stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == DEFAULT_REPLY
    upstream.reply = f"here it is: {GITHUB} and more"
    stream = client.chat.completions.create(model="gpt-4o", messages=user("hi"), stream=True)
    seen: list[str] = []
    with pytest.raises(GovernanceBlocked) as e:
        for c in stream:
            seen.append(c.choices[0].delta.content or "" if c.choices else "")
    assert e.value.direction == "output"
    assert "".join(seen) == upstream.reply  # the chunks came through; the block comes at the end


def test_responses_api(client: openai.OpenAI, upstream: FakeOpenAI) -> None:
    r = client.responses.create(model="gpt-4o", input="What is the capital of France?",
                                instructions="Be terse.")
    assert r.output_text == DEFAULT_REPLY
    with pytest.raises(GovernanceBlocked):
        client.responses.create(model="gpt-4o", input=[{"role": "user", "content": [
            {"type": "input_text", "text": f"card {CARD}"}]}])
    client.responses.create(model="gpt-4o", input=[{"role": "user", "content": "mail ann@corp.example"}])
    assert sent(upstream)[-1]["input"][0]["content"] == "mail [REDACTED:email]"
    upstream.reply = f"token {GITHUB}"
    with pytest.raises(GovernanceBlocked):
        client.responses.create(model="gpt-4o", input="hi")
    with pytest.raises(GovernanceBlocked):
        for _ in client.responses.create(model="gpt-4o", input="hi", stream=True):
            pass


def test_legacy_completions_and_embeddings(client: openai.OpenAI, upstream: FakeOpenAI) -> None:
    r = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi")
    assert r.choices[0].text == DEFAULT_REPLY
    with pytest.raises(GovernanceBlocked):
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt=["fine", f"card {CARD}"])
    e = client.embeddings.create(model="text-embedding-3-small", input=["a", "mail ann@corp.example"])
    assert len(e.data) == 2 and sent(upstream)[-1]["input"] == ["a", "mail [REDACTED:email]"]
    with pytest.raises(GovernanceBlocked):
        client.embeddings.create(model="text-embedding-3-small", input=f"card {CARD}")
    upstream.reply = f"token {GITHUB}"
    with pytest.raises(GovernanceBlocked):
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hi")


def test_aigov_down_fails_closed_or_open(upstream: FakeOpenAI) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, "aigov_x") as checker:
        c = guard(openai.OpenAI(api_key="sk-test", base_url=upstream.url), checker)
        with pytest.raises(GovernanceCheckFailed) as e:
            c.chat.completions.create(model="gpt-4o", messages=user("hi"))
    assert isinstance(e.value, openai.OpenAIError) and "is `aigov serve` running" in str(e.value)
    assert upstream.requests == []
    with Client(url, "aigov_x", on_error="open") as checker:
        c = guard(openai.OpenAI(api_key="sk-test", base_url=upstream.url), checker)
        assert c.chat.completions.create(model="gpt-4o", messages=user("hi")).choices[0].message.content


def test_guard_keeps_the_client_and_refuses_mismatches(aigov: tuple[DaemonProc, str], upstream: FakeOpenAI) -> None:
    d, token = aigov
    raw = openai.OpenAI(api_key="sk-test", base_url=upstream.url, timeout=12.5, max_retries=3)
    with Client(d.url, token) as checker:
        g = guard(raw, checker)
        assert isinstance(g, openai.OpenAI) and g.timeout == 12.5 and g.max_retries == 3
        assert str(g.base_url) == str(raw.base_url) and g.api_key == "sk-test"
        with pytest.raises(TypeError, match="needs an aigov Client"):
            guard(raw, AsyncClient(d.url, token))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes an openai.OpenAI or openai.AsyncOpenAI"):
        guard(object())  # type: ignore[type-var]


# --- async ---------------------------------------------------------------------------------


async def test_async_guard_end_to_end(aigov: tuple[DaemonProc, str], upstream: FakeOpenAI) -> None:
    d, token = aigov
    async with AsyncClient(d.url, token) as checker:
        c = guard(openai.AsyncOpenAI(api_key="sk-test", base_url=upstream.url, max_retries=0), checker)
        assert isinstance(c, openai.AsyncOpenAI)
        r = await c.chat.completions.create(model="gpt-4o", messages=user("hi"))
        assert r.choices[0].message.content == DEFAULT_REPLY
        with pytest.raises(GovernanceBlocked):
            await c.chat.completions.create(model="gpt-4o", messages=user(f"card {CARD}"))
        assert len(upstream.requests) == 1
        await c.chat.completions.create(model="gpt-4o", messages=user("mail ann@corp.example"))
        assert sent(upstream)[-1]["messages"] == user("mail [REDACTED:email]")
        upstream.reply = f"token {GITHUB}"
        with pytest.raises(GovernanceBlocked) as e:
            await c.chat.completions.create(model="gpt-4o", messages=user("hi"))
        assert e.value.direction == "output"
        stream = await c.chat.completions.create(model="gpt-4o", messages=user("hi"), stream=True)
        with pytest.raises(GovernanceBlocked):
            async for _ in stream:
                pass
        upstream.reply = DEFAULT_REPLY
        stream = await c.responses.create(model="gpt-4o", input="hi", stream=True)
        kinds = [event.type async for event in stream]
        assert kinds[-1] == "response.completed"
        await c.close()


async def test_async_aigov_down(upstream: FakeOpenAI) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with AsyncClient(url, "aigov_x") as checker:
        c = guard(openai.AsyncOpenAI(api_key="sk-test", base_url=upstream.url), checker)
        with pytest.raises(GovernanceCheckFailed):
            await c.chat.completions.create(model="gpt-4o", messages=user("hi"))
    assert upstream.requests == []
    with pytest.raises(TypeError, match="needs an aigov AsyncClient"):
        guard(openai.AsyncOpenAI(api_key="k"), Client(url, "aigov_x"))  # type: ignore[arg-type]


# --- closing: what the guard made, never what it was given ----------------------------------


def resource_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


def test_guard_closes_the_client_it_made_not_one_passed_in(aigov: tuple[DaemonProc, str], upstream: FakeOpenAI,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    d, token = aigov
    monkeypatch.setenv("AIGOV_URL", d.url)
    monkeypatch.setenv("AIGOV_TOKEN", token)
    raw = openai.OpenAI(api_key="sk-test", base_url=upstream.url, max_retries=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with guard(raw) as c:  # the guard makes its own aigov Client
            c.chat.completions.create(model="gpt-4o", messages=user("hi"))
        del c
        gc.collect()  # an aigov connection left open would warn here, when collected
    assert resource_warnings(caught) == []
    with Client(d.url, token) as checker:
        with guard(raw, checker) as c:
            c.chat.completions.create(model="gpt-4o", messages=user("hi"))
        assert checker.check("hi", model="gpt-4o").allowed  # still the caller's, still open
    raw.close()


async def test_async_guard_closes_the_client_it_made_not_one_passed_in(
    aigov: tuple[DaemonProc, str], upstream: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    d, token = aigov
    monkeypatch.setenv("AIGOV_URL", d.url)
    monkeypatch.setenv("AIGOV_TOKEN", token)
    raw = openai.AsyncOpenAI(api_key="sk-test", base_url=upstream.url, max_retries=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with guard(raw) as c:  # the guard makes its own aigov AsyncClient
            await c.chat.completions.create(model="gpt-4o", messages=user("hi"))
        del c
        gc.collect()  # an unclosed aiohttp session warns here, when collected
    assert resource_warnings(caught) == []
    async with AsyncClient(d.url, token) as checker:
        c = guard(raw, checker)
        await c.chat.completions.create(model="gpt-4o", messages=user("hi"))
        await c.close()
        assert (await checker.check("hi", model="gpt-4o")).allowed  # still the caller's, still open
    await raw.close()


# --- the pure parts ------------------------------------------------------------------------


def test_plan_request_finds_the_texts() -> None:
    chat = plan_request("POST", "/v1/chat/completions", {"model": "m", "messages": [
        {"role": "system", "content": "s"}, {"role": "assistant", "content": "a"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}, {"type": "text", "text": "u"}]},
    ]})
    assert chat is not None and chat.operation == "chat" and chat.texts() == ["s", "u"]
    assert plan_request("GET", "/v1/chat/completions", {}) is None
    assert plan_request("POST", "/v1/files", {}) is None
    tokens = plan_request("POST", "/v1/completions", {"model": "m", "prompt": [[1, 2, 3]]})
    assert tokens is not None and tokens.texts() == []
    resp = plan_request("POST", "/v1/responses", {"model": "m", "instructions": "i", "input": [
        {"role": "user", "content": "u"}, {"type": "function_call_output", "call_id": "c", "output": "o"},
        {"type": "function_call", "name": "f", "arguments": "{}"}]})
    assert resp is not None and resp.operation == "responses" and resp.texts() == ["i", "u", "o"]


def test_redaction_by_offsets_across_texts() -> None:
    plan = plan_request("POST", "/v1/embeddings", {"model": "m", "input": ["ab", "cd", "ef"]})
    assert plan is not None
    joined = SEPARATOR.join(plan.texts())  # "ab\n\ncd\n\nef"
    spans = [Reason("r", "email", "redact", "m", 1, 6), Reason("c", "literal", "redact", "m", 9, 10),
             Reason("b", "email", "block", "m", 0, 1)]
    result = CheckResult(True, "allow", tuple(spans), "x", "id", None)
    assert redact_slots(plan, result) and joined[1:6] == "b\n\ncd"
    assert plan.body["input"] == ["a[REDACTED:email]", "[REDACTED:email]", "e[REDACTED:c]"]


def test_answer_text_and_stream_assembly() -> None:
    data = {"choices": [{"message": {"content": "hi", "tool_calls": [
        {"id": "1", "type": "function", "function": {"name": "f", "arguments": '{"k": 1}'}}]}}]}
    assert answer_text("chat", data) == 'hi' + SEPARATOR + '{"k": 1}'
    assert answer_text("embedding", {"data": []}) == ""
    s = StreamText("chat")
    chunk = json.dumps({"choices": [{"delta": {"content": "Hel"}}]})
    assert not s.feed(f"data: {chunk}\n\ndata: ".encode())
    rest = json.dumps({"choices": [{"delta": {"content": "lo"}}]})
    assert not s.feed(f"{rest}\r\n\r\n".encode())
    assert s.feed(b"data: [DONE]\n\n") and s.text() == "Hello"
    r = StreamText("responses")
    assert not r.feed(b'event: response.output_text.delta\ndata: {"type": "response.output_text.delta", '
                      b'"delta": "ok"}\n\n')
    assert r.feed(b'data: {"type": "response.completed"}\n\n') and r.text() == "ok"


def test_no_network_needed(upstream: FakeOpenAI) -> None:
    assert upstream.url.startswith("http://127.0.0.1:")
    assert asyncio.iscoroutinefunction(AsyncClient.check)
