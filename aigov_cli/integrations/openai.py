"""The OpenAI SDK, checked by aigov: ``guard(openai_client)`` returns a client of the same kind.

    from openai import OpenAI
    from aigov_cli.integrations.openai import GovernanceBlocked, guard

    client = guard(OpenAI())                # aigov: AIGOV_URL / AIGOV_TOKEN, else the home's daemon
    try:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    except GovernanceBlocked as e:
        print(e.result.reasons)

Before a request leaves, its texts are checked in one ``/v1/check`` (``direction="input"``): the
text content of chat messages from the user, system, developer and tools; the Responses API's
``input`` and ``instructions``; legacy completions' ``prompt``; embeddings' ``input``. The model
and the operation (``chat``, ``responses``, ``completion``, ``embedding``) come from the request.
A block raises :class:`GovernanceBlocked` and nothing is sent; with ``redact=True`` a redacting
rule's spans are masked in the outgoing body. A successful answer is checked too
(``direction="output"``): its text and tool-call arguments. A streamed answer is checked once,
on the text assembled when the stream ends (just before its last event is handed on): the
earlier chunks have reached the caller by then, and a stream the caller stops reading early is
not checked.

The aigov client ``guard()`` makes when none is given is closed with the guarded client
(``close()``, ``with`` / ``async with``); one the caller passes in is left open, for the caller to close.

How: the guarded client's ``http_client`` is the SDK's own ``DefaultHttpxClient`` (or
``DefaultAsyncHttpxClient``: ``httpx2`` in openai 3.x, ``httpx`` before) with a transport that
checks and then sends through a second default client, so the SDK's timeouts, retries,
connection limits and proxy settings from the environment stay as they were. No private SDK
method is used. Needs openai >= 2.31 (the first release that lets an ``OpenAIError`` raised by
the HTTP client through without retrying or wrapping it). A custom ``http_client`` the original
client was given is not reused (the SDK offers no public way to read it).
"""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TypeVar

import openai

from aigov_cli.client import AigovClientError, AsyncClient, CheckResult, Client

__all__ = ["GovernanceBlocked", "GovernanceCheckFailed", "GovernanceError", "guard"]

SEPARATOR = "\n\n"  # between the texts of one request in its single check
_CUSTOM = ("literal", "pattern")  # reasons of custom rules are labelled by rule id, like the daemon does
# path suffix -> operation; chat first, since "/chat/completions" also ends with "/completions"
_OPERATIONS = (("/chat/completions", "chat"), ("/completions", "completion"), ("/embeddings", "embedding"),
               ("/responses", "responses"))
_CHECKED_ROLES = frozenset(("user", "system", "developer", "tool", "function"))
_RESPONSE_END = frozenset(("response.completed", "response.incomplete", "response.failed"))
_DROPPED_HEADERS = frozenset(("content-length", "content-encoding", "transfer-encoding"))

OpenAIClient = TypeVar("OpenAIClient", openai.OpenAI, openai.AsyncOpenAI)


class GovernanceError(openai.OpenAIError):
    """Raised by a guarded client instead of sending or returning; an ``OpenAIError``, so never retried."""


class GovernanceBlocked(GovernanceError):
    """aigov blocked the request (``direction == "input"``) or the model's answer (``"output"``)."""

    def __init__(self, result: CheckResult, direction: str) -> None:
        rules = "; ".join(dict.fromkeys(f"{r.rule} ({r.message})" for r in result.reasons if r.action == "block"))
        what = "the request" if direction == "input" else "the model's answer"
        super().__init__(f"aigov blocked {what}: {rules or 'policy'} [aigov request {result.request_id}]")
        self.result = result
        self.direction = direction


class GovernanceCheckFailed(GovernanceError):
    """aigov could not be asked (``error``: Unavailable, RateLimited, Unauthorized...): nothing was sent."""

    def __init__(self, error: AigovClientError) -> None:
        super().__init__(f"the aigov check failed: {error}")
        self.error = error


# --- what a request asks, and what an answer says (pure) --------------------------------


@dataclass
class _Plan:
    """One request's texts to check, and where each sits in its decoded JSON body."""

    operation: str
    model: str
    body: dict[str, Any]
    slots: list[tuple[Any, Any]] = field(default_factory=list)  # (container, key): container[key] is a text

    def texts(self) -> list[str]:
        """The texts, in order."""
        return [c[k] for c, k in self.slots]


def _operation(method: str, path: str) -> str | None:
    if method != "POST":
        return None
    for suffix, op in _OPERATIONS:
        if path.endswith(suffix):
            return op
    return None


def _add(plan: _Plan, container: Any, key: Any) -> None:
    if isinstance(container[key], str):
        plan.slots.append((container, key))


def _add_strings(plan: _Plan, container: dict[str, Any], key: str) -> None:
    """A field that is a string or a list of strings (token arrays are skipped)."""
    value = container.get(key)
    if isinstance(value, str):
        plan.slots.append((container, key))
    elif isinstance(value, list):
        for i in range(len(value)):
            _add(plan, value, i)


def _add_content(plan: _Plan, message: dict[str, Any], part_types: tuple[str, ...]) -> None:
    content = message.get("content")
    if isinstance(content, str):
        plan.slots.append((message, "content"))
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("type") in part_types and isinstance(part.get("text"), str):
                plan.slots.append((part, "text"))


def plan_request(method: str, path: str, body: Any) -> _Plan | None:
    """The texts of a request to check, or None when it is not one aigov checks."""
    op = _operation(method, path)
    if op is None or not isinstance(body, dict):
        return None
    model = body.get("model")
    plan = _Plan(op, model if isinstance(model, str) and model else "unknown", body)
    if op == "chat":
        for m in body.get("messages") or ():
            if isinstance(m, dict) and m.get("role") in _CHECKED_ROLES:
                _add_content(plan, m, ("text",))
    elif op == "completion":
        _add_strings(plan, body, "prompt")
    elif op == "embedding":
        _add_strings(plan, body, "input")
    else:
        if isinstance(body.get("instructions"), str):
            plan.slots.append((body, "instructions"))
        items = body.get("input")
        if isinstance(items, str):
            plan.slots.append((body, "input"))
        for item in items if isinstance(items, list) else ():
            if not isinstance(item, dict):
                continue
            if item.get("type", "message") == "message" and item.get("role") in _CHECKED_ROLES:
                _add_content(plan, item, ("input_text",))
            elif item.get("type") == "function_call_output":
                _add(plan, item, "output")
    return plan


def redact_slots(plan: _Plan, result: CheckResult) -> bool:
    """Mask the redacting reasons' spans in the body's texts (offsets count across the joined texts).

    A span that crosses from one text into the next is masked in both. Labels are the daemon's:
    ``[REDACTED:<detector>]``, or the rule id for custom rules. True when anything changed.
    """
    spans = [(r.start, r.end, r.rule if r.detector in _CUSTOM else r.detector)
             for r in result.reasons if r.action == "redact" and r.start is not None and r.end is not None]
    if not spans:
        return False
    changed = False
    offset = 0
    for container, key in plan.slots:
        text: str = container[key]
        end = offset + len(text)
        mine = [(max(s, offset) - offset, min(e, end) - offset, label)
                for s, e, label in spans if s < end and e > offset]
        if mine:
            container[key] = _mask(text, mine)
            changed = True
        offset = end + len(SEPARATOR)
    return changed


def _mask(text: str, spans: list[tuple[int, int, str]]) -> str:
    """The daemon's redaction: each span becomes ``[REDACTED:label]``; overlapping spans merge under the first."""
    merged: list[list[Any]] = []
    for start, end, label in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end, label])
    out, pos = [], 0
    for start, end, label in merged:
        out += [text[pos:start], f"[REDACTED:{label}]"]
        pos = end
    out.append(text[pos:])
    return "".join(out)


def answer_text(operation: str, data: Any) -> str:
    """The text of a non-streamed answer: message contents and tool-call arguments."""
    parts: list[str] = []
    if not isinstance(data, dict):
        return ""
    if operation in ("chat", "completion"):
        for choice in data.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            if operation == "completion":
                parts.append(choice.get("text") or "")
                continue
            message = choice.get("message") or {}
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            for call in message.get("tool_calls") or ():
                parts.append(((call or {}).get("function") or {}).get("arguments") or "")
    elif operation == "responses":
        for item in data.get("output") or ():
            if not isinstance(item, dict):
                continue
            if item.get("type") == "message":
                parts += [c.get("text") or "" for c in item.get("content") or ()
                          if isinstance(c, dict) and c.get("type") == "output_text"]
            elif item.get("type") == "function_call":
                parts.append(item.get("arguments") or "")
    return SEPARATOR.join(p for p in parts if isinstance(p, str) and p)


class StreamText:
    """Assembles a streamed answer's text from its server-sent events, fed raw as they arrive."""

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.parts: list[str] = []
        self._buffer = b""

    def feed(self, chunk: bytes) -> bool:
        """Take a chunk; True when it completes the stream's last event (time to check)."""
        self._buffer += chunk.replace(b"\r\n", b"\n")
        *events, self._buffer = self._buffer.split(b"\n\n")
        ended = False
        for event in events:
            data = b"\n".join(line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:"))
            if not data:
                continue
            if data.strip() == b"[DONE]":
                ended = True
                continue
            try:
                obj = json.loads(data)
            except ValueError:
                continue
            ended = self._take(obj) or ended
        return ended

    def _take(self, obj: Any) -> bool:
        if not isinstance(obj, dict):
            return False
        if self.operation == "responses":
            kind = obj.get("type")
            if kind in ("response.output_text.delta", "response.function_call_arguments.delta"):
                if isinstance(obj.get("delta"), str):
                    self.parts.append(obj["delta"])
            return kind in _RESPONSE_END
        for choice in obj.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            if self.operation == "completion":
                text = choice.get("text")
                if isinstance(text, str):
                    self.parts.append(text)
                continue
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                self.parts.append(delta["content"])
            for call in delta.get("tool_calls") or ():
                args = ((call or {}).get("function") or {}).get("arguments")
                if isinstance(args, str):
                    self.parts.append(args)
        return False

    def text(self) -> str:
        """Everything assembled so far."""
        return "".join(self.parts)


# --- the transports ----------------------------------------------------------------------


def _httpx_of(client_class: type) -> ModuleType:
    """The HTTP library the installed SDK builds on (``httpx2`` for openai 3.x, ``httpx`` before)."""
    for base in client_class.__mro__:
        module = sys.modules.get(base.__module__.split(".")[0])
        if module is not None and base in (getattr(module, "Client", None), getattr(module, "AsyncClient", None)):
            return module
    raise RuntimeError(f"cannot tell which HTTP library {client_class.__name__} is built on")


def _stripped(headers: Any) -> list[tuple[str, str]]:
    """Response headers for a body that is handed on decoded and whole or re-streamed."""
    return [(k, v) for k, v in headers.multi_items() if k.lower() not in _DROPPED_HEADERS]


class _Checks:
    """The checking done by both transports: plan a request, read the decision, rewrite the body."""

    def __init__(self, hx: ModuleType, redact: bool) -> None:
        self.hx = hx
        self.redact = redact

    def plan(self, request: Any) -> _Plan | None:
        if request.method != "POST" or not request.headers.get("content-type", "").startswith("application/json"):
            return None
        try:
            raw = request.content
        except self.hx.RequestNotRead:  # a streamed upload: not one of the calls aigov checks
            return None
        try:
            body = json.loads(raw)
        except ValueError:
            return None
        return plan_request(request.method, request.url.path, body)

    def after_input_check(self, request: Any, plan: _Plan, result: CheckResult) -> Any:
        """The request to send: raise when blocked, rewritten when a rule redacted and ``redact`` is on."""
        if not result.allowed:
            raise GovernanceBlocked(result, "input")
        if not (self.redact and result.redacted_text is not None and redact_slots(plan, result)):
            return request
        body = json.dumps(plan.body, ensure_ascii=False, separators=(",", ":")).encode()
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() != "content-length"]
        return self.hx.Request(request.method, request.url, headers=headers, content=body,
                               extensions=request.extensions)

    @staticmethod
    def after_output_check(result: CheckResult) -> None:
        if not result.allowed:
            raise GovernanceBlocked(result, "output")

    @staticmethod
    def wants_output_check(plan: _Plan | None, response: Any) -> str | None:
        """``json`` or ``sse`` when the answer is one to check, else None."""
        if plan is None or plan.operation == "embedding" or not 200 <= response.status_code < 300:
            return None
        ctype = response.headers.get("content-type", "")
        if ctype.startswith("text/event-stream"):
            return "sse"
        return "json" if ctype.startswith("application/json") else None


@functools.cache
def _sync_transport(hx: ModuleType) -> type:
    class GuardTransport(hx.BaseTransport):  # type: ignore[misc,name-defined]
        """Checks each request and its answer, and sends through the SDK's default client."""

        def __init__(self, aigov: Client, checks: _Checks, inner: Any, owns_aigov: bool) -> None:
            self.aigov, self.checks, self.inner = aigov, checks, inner
            self.owns_aigov = owns_aigov  # guard() made the aigov client, so closes it too

        def _check(self, plan: _Plan, text: str, direction: str) -> CheckResult:
            try:
                return self.aigov.check(text, model=plan.model, operation=plan.operation, direction=direction)
            except AigovClientError as e:
                raise GovernanceCheckFailed(e) from e

        def handle_request(self, request: Any) -> Any:
            plan = self.checks.plan(request)
            if plan is not None:
                texts = plan.texts()
                if texts:
                    result = self._check(plan, SEPARATOR.join(texts), "input")
                    request = self.checks.after_input_check(request, plan, result)
            response = self.inner.send(request, stream=True)
            kind = self.checks.wants_output_check(plan, response)
            if kind is None:
                return response
            assert plan is not None
            if kind == "json":
                try:
                    body = response.read()
                finally:
                    response.close()
                try:
                    text = answer_text(plan.operation, json.loads(body))
                except ValueError:
                    text = ""
                if text:
                    self.checks.after_output_check(self._check(plan, text, "output"))
                return hx.Response(response.status_code, headers=_stripped(response.headers), content=body,
                                   extensions=response.extensions, request=request)
            return hx.Response(response.status_code, headers=_stripped(response.headers),
                               stream=SyncStream(self, plan, response), extensions=response.extensions,
                               request=request)

        def close(self) -> None:
            self.inner.close()
            if self.owns_aigov:
                self.aigov.close()

    class SyncStream(hx.SyncByteStream):  # type: ignore[misc,name-defined]
        """A streamed answer handed on as it arrives, checked when its last event comes."""

        def __init__(self, transport: GuardTransport, plan: _Plan, response: Any) -> None:
            self.transport, self.plan, self.response = transport, plan, response

        def __iter__(self) -> Iterator[bytes]:
            assembled = StreamText(self.plan.operation)
            checked = False
            try:
                for chunk in self.response.iter_bytes():
                    if assembled.feed(chunk) and not checked:
                        checked = True
                        self._check(assembled)
                    yield chunk
                if not checked:
                    self._check(assembled)
            finally:  # a block, an error or a caller that stops reading: the connection goes back or away
                self.response.close()

        def _check(self, assembled: StreamText) -> None:
            text = assembled.text()
            if text:
                self.transport.checks.after_output_check(self.transport._check(self.plan, text, "output"))

        def close(self) -> None:
            self.response.close()

    return GuardTransport


@functools.cache
def _async_transport(hx: ModuleType) -> type:
    class AsyncGuardTransport(hx.AsyncBaseTransport):  # type: ignore[misc,name-defined]
        """Checks each request and its answer, and sends through the SDK's default async client."""

        def __init__(self, aigov: AsyncClient, checks: _Checks, inner: Any, owns_aigov: bool) -> None:
            self.aigov, self.checks, self.inner = aigov, checks, inner
            self.owns_aigov = owns_aigov  # guard() made the aigov client, so closes it too

        async def _check(self, plan: _Plan, text: str, direction: str) -> CheckResult:
            try:
                return await self.aigov.check(text, model=plan.model, operation=plan.operation, direction=direction)
            except AigovClientError as e:
                raise GovernanceCheckFailed(e) from e

        async def handle_async_request(self, request: Any) -> Any:
            plan = self.checks.plan(request)
            if plan is not None:
                texts = plan.texts()
                if texts:
                    result = await self._check(plan, SEPARATOR.join(texts), "input")
                    request = self.checks.after_input_check(request, plan, result)
            response = await self.inner.send(request, stream=True)
            kind = self.checks.wants_output_check(plan, response)
            if kind is None:
                return response
            assert plan is not None
            if kind == "json":
                try:
                    body = await response.aread()
                finally:
                    await response.aclose()
                try:
                    text = answer_text(plan.operation, json.loads(body))
                except ValueError:
                    text = ""
                if text:
                    self.checks.after_output_check(await self._check(plan, text, "output"))
                return hx.Response(response.status_code, headers=_stripped(response.headers), content=body,
                                   extensions=response.extensions, request=request)
            return hx.Response(response.status_code, headers=_stripped(response.headers),
                               stream=AsyncStream(self, plan, response), extensions=response.extensions,
                               request=request)

        async def aclose(self) -> None:
            await self.inner.aclose()
            if self.owns_aigov:
                await self.aigov.aclose()

    class AsyncStream(hx.AsyncByteStream):  # type: ignore[misc,name-defined]
        """A streamed answer handed on as it arrives, checked when its last event comes."""

        def __init__(self, transport: AsyncGuardTransport, plan: _Plan, response: Any) -> None:
            self.transport, self.plan, self.response = transport, plan, response

        async def __aiter__(self) -> AsyncIterator[bytes]:
            assembled = StreamText(self.plan.operation)
            checked = False
            try:
                async for chunk in self.response.aiter_bytes():
                    if assembled.feed(chunk) and not checked:
                        checked = True
                        await self._check(assembled)
                    yield chunk
                if not checked:
                    await self._check(assembled)
            finally:  # a block, an error or a caller that stops reading: the connection goes back or away
                await self.response.aclose()

        async def _check(self, assembled: StreamText) -> None:
            text = assembled.text()
            if text:
                self.transport.checks.after_output_check(await self.transport._check(self.plan, text, "output"))

        async def aclose(self) -> None:
            await self.response.aclose()

    return AsyncGuardTransport


class _OwnedHttpClient(openai.DefaultHttpxClient):
    """The SDK's default client, closed when dropped (as the SDK does with the clients it makes
    itself): the caller never sees these, so cannot be asked to close them."""

    def __del__(self) -> None:
        if not self.is_closed:
            try:
                self.close()
            except Exception:  # interpreter shutdown: nothing left to tidy
                pass


class _OwnedAsyncHttpClient(openai.DefaultAsyncHttpxClient):
    """The SDK's default async client, closed when dropped if a loop is running (as the SDK does)."""

    def __del__(self) -> None:
        if not self.is_closed:
            try:
                asyncio.get_running_loop().create_task(self.aclose())
            except Exception:  # no running loop: the connections go with the process
                pass


def guard(openai_client: OpenAIClient, aigov_client: Client | AsyncClient | None = None, *,
          redact: bool = True) -> OpenAIClient:
    """A copy of ``openai_client`` (``OpenAI`` or ``AsyncOpenAI``) whose calls aigov checks both ways.

    ``aigov_client`` defaults to ``Client()`` for ``OpenAI`` and ``AsyncClient()`` for
    ``AsyncOpenAI`` (URL and token from ``AIGOV_URL`` / ``AIGOV_TOKEN`` or the home's daemon).
    That default client is closed with the returned one (``close()``, ``with`` / ``async with``).
    An ``aigov_client`` passed in is never closed by the guard: it may serve other code, so
    closing it stays with the caller.
    """
    owned = aigov_client is None
    if isinstance(openai_client, openai.AsyncOpenAI):
        if aigov_client is None:
            aigov_client = AsyncClient()
        if not isinstance(aigov_client, AsyncClient):
            raise TypeError("an AsyncOpenAI client needs an aigov AsyncClient (or None for the default one)")
        hx = _httpx_of(openai.DefaultAsyncHttpxClient)
        inner = _OwnedAsyncHttpClient()
        transport = _async_transport(hx)(aigov_client, _Checks(hx, redact), inner, owned)
        return openai_client.with_options(http_client=_OwnedAsyncHttpClient(transport=transport))
    if isinstance(openai_client, openai.OpenAI):
        if aigov_client is None:
            aigov_client = Client()
        if not isinstance(aigov_client, Client):
            raise TypeError("an OpenAI client needs an aigov Client (or None for the default one)")
        hx = _httpx_of(openai.DefaultHttpxClient)
        inner = _OwnedHttpClient()
        transport = _sync_transport(hx)(aigov_client, _Checks(hx, redact), inner, owned)
        return openai_client.with_options(http_client=_OwnedHttpClient(transport=transport))
    raise TypeError(f"guard() takes an openai.OpenAI or openai.AsyncOpenAI client, not {type(openai_client).__name__}")
