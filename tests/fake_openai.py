"""A local OpenAI-compatible upstream for tests and benchmarks: the remote model, faked.

It answers chat completions, legacy completions, embeddings and the Responses API, streamed or
not, with ``reply`` as the model's text, and keeps every request body it received (so a test can
assert what reached the upstream, or that nothing did). It runs an aiohttp server on its own
event loop in a daemon thread, on a free port of 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from aiohttp import web

DEFAULT_REPLY = "Paris is the capital of France."


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _pieces(text: str, n: int = 3) -> list[str]:
    """``text`` in ``n`` pieces (a streamed answer arrives in several deltas)."""
    size = max(1, -(-len(text) // n))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


class FakeOpenAI:
    """The fake upstream; ``url`` is its base URL with ``/v1``."""

    def __init__(self, reply: str = DEFAULT_REPLY) -> None:
        self.reply = reply
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # --- the endpoints -------------------------------------------------------------------
    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._take(request)
        created, model = int(time.time()), body.get("model", "gpt-4o")
        if body.get("stream"):
            chunks = [{"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": [{"index": 0, "delta": {"role": "assistant", "content": p}, "finish_reason": None}]}
                      for p in _pieces(self.reply)]
            chunks.append({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created,
                           "model": model, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            return await self._stream(request, [_sse(c) for c in chunks] + [b"data: [DONE]\n\n"])
        return web.json_response({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": self.reply},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
        })

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._take(request)
        created, model = int(time.time()), body.get("model", "gpt-3.5-turbo-instruct")
        if body.get("stream"):
            chunks = [{"id": "cmpl-fake", "object": "text_completion", "created": created, "model": model,
                       "choices": [{"index": 0, "text": p, "finish_reason": None, "logprobs": None}]}
                      for p in _pieces(self.reply)]
            return await self._stream(request, [_sse(c) for c in chunks] + [b"data: [DONE]\n\n"])
        return web.json_response({
            "id": "cmpl-fake", "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": 0, "text": self.reply, "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
        })

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await self._take(request)
        inputs = body.get("input")
        n = len(inputs) if isinstance(inputs, list) else 1
        return web.json_response({
            "object": "list", "model": body.get("model", "text-embedding-3-small"),
            "data": [{"object": "embedding", "index": i, "embedding": [0.0, 0.5, 1.0]} for i in range(n)],
            "usage": {"prompt_tokens": 3, "total_tokens": 3},
        })

    def _response_object(self, model: str, text: str, status: str = "completed") -> dict[str, Any]:
        return {
            "id": "resp_fake", "object": "response", "created_at": int(time.time()), "model": model,
            "status": status, "output": [{
                "type": "message", "id": "msg_fake", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }] if text else [],
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
        }

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body = await self._take(request)
        model = body.get("model", "gpt-4o")
        if body.get("stream"):
            events: list[dict[str, Any]] = [
                {"type": "response.created", "sequence_number": 0,
                 "response": self._response_object(model, "", "in_progress")}]
            for i, p in enumerate(_pieces(self.reply)):
                events.append({"type": "response.output_text.delta", "sequence_number": i + 1, "item_id": "msg_fake",
                               "output_index": 0, "content_index": 0, "delta": p, "logprobs": []})
            events.append({"type": "response.completed", "sequence_number": len(events),
                           "response": self._response_object(model, self.reply)})
            return await self._stream(
                request, [f"event: {e['type']}\n".encode() + _sse(e) for e in events]
            )
        return web.json_response(self._response_object(model, self.reply))

    # --- plumbing ------------------------------------------------------------------------
    async def _take(self, request: web.Request) -> dict[str, Any]:
        body: dict[str, Any] = await request.json()
        self.requests.append((request.path, body))
        return body

    async def _stream(self, request: web.Request, parts: list[bytes]) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for part in parts:
            await resp.write(part)
        await resp.write_eof()
        return resp

    def app(self) -> web.Application:
        """The aiohttp application (also usable in-process)."""
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/responses", self._responses)
        return app

    def start(self) -> FakeOpenAI:
        """Serve on a free port in a background thread; sets ``url``."""
        ready = threading.Event()

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            self._runner = web.AppRunner(self.app(), access_log=None)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            port = self._runner.addresses[0][1]
            self.url = f"http://127.0.0.1:{port}/v1"
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-openai", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fake upstream did not start")
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
