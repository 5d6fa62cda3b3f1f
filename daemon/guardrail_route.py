"""``POST /beta/litellm_basic_guardrail_api``: LiteLLM's guardrail calls on the check's request path.

The steps are those of ``/v1/check`` (:class:`~daemon.handlers.Checkpoint`: body size -> auth ->
rate limit -> JSON -> policy -> decision log -> respond); LiteLLM sends the token in ``x-api-key``
(what it sends for a guardrail's ``api_key``), which every checkpoint accepts. One call checks several
texts but takes one rate-limit token and leaves one decision record, whose metadata names LiteLLM's
call id and input type. The translation itself lives in :mod:`daemon.guardrail`.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from daemon import guardrail
from daemon.auth import KeyEntry
from daemon.fastjson import dumps as _encode
from daemon.handlers import Checkpoint, answer_headers, error_response
from daemon.storage.records import Entry

MAX_CALL_ID_CHARS = 256


class GuardrailHandler(Checkpoint):
    """``POST /beta/litellm_basic_guardrail_api``."""

    endpoint = guardrail.PATH

    async def check(
        self, data: Any, key: KeyEntry, rid: str, t0: float, limiter: str, rate_headers: dict[str, str]
    ) -> web.StreamResponse:
        """Every text of the call on its own (redaction is per text); no texts still checks model and operation."""
        try:
            call = guardrail.parse_request(data)
        except guardrail.GuardrailRequestError as e:
            return error_response(422, str(e), rid)
        texts = call.texts or ("",)
        decisions = [self.svc.evaluate(key.policy, call.model, call.operation, t, call.direction) for t in texts]
        text, merged = guardrail.record_decision(texts, decisions)
        metadata: dict[str, Any] = {"source": "litellm", "input_type": call.input_type}
        if call.litellm_call_id is not None:
            metadata["litellm_call_id"] = call.litellm_call_id[:MAX_CALL_ID_CHARS]
        refused = await self.record(Entry(
            time.time(), rid, key.key_id, call.model, call.operation, call.direction, merged.decision,
            merged.rules, merged.reasons, text, (time.perf_counter() - t0) * 1000.0, merged.policy_name,
            merged.policy_version, limiter, metadata,
        ), rid)
        if refused is not None:
            return refused
        self.count(merged)
        body = guardrail.response_body(texts, decisions, call.input_type, rid)
        return web.Response(body=_encode(body).encode(), headers=answer_headers(rid, rate_headers))
