"""``POST /beta/litellm_basic_guardrail_api``: LiteLLM's guardrail calls on the check's own pieces.

The steps are those of ``/v1/check`` (body size -> auth -> rate limit -> JSON -> policy -> decision
log -> respond), with two differences: the token may come in ``x-api-key`` (what LiteLLM sends
for a guardrail's ``api_key``) as well as in ``Authorization: Bearer``, and one call checks
several texts but takes one rate-limit token and leaves one decision record. The translation
itself lives in :mod:`daemon.guardrail`.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from aiohttp import web

from daemon import guardrail
from daemon.decisionlog import Entry, QueueFull
from daemon.fastjson import dumps as _encode
from daemon.handlers import JSON_CT, answer_headers, error_response, new_request_id, parse_json
from daemon.policy.engine import unknown_policy_decision
from daemon.policy.model import Decision

if TYPE_CHECKING:
    from daemon.app import Service

log = logging.getLogger("aigov.http")
ENDPOINT = guardrail.PATH


def token_of(*, api_key: str | None, authorization: str | None) -> str | None:
    """The token of a request: ``x-api-key``, else ``Authorization: Bearer`` (any case of the scheme)."""
    if api_key:
        return api_key.strip()
    if authorization:
        scheme, _, rest = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and rest.strip():
            return rest.strip()
    return None


class GuardrailHandler:
    """``POST /beta/litellm_basic_guardrail_api``."""

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.max_body = svc.config.max_body_bytes

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        """Answer one guardrail call; never raises (an unexpected error is a logged JSON 500)."""
        t0 = time.perf_counter()
        rid = new_request_id()
        try:
            resp = await self.handle(request, rid, t0)
        except Exception:  # a bug, never bad input: log it, answer JSON, keep serving
            log.exception("internal error in %s (request %s)", ENDPOINT, rid)
            resp = error_response(500, "internal error; see the daemon log", rid)
        self.svc.stats.request(ENDPOINT, resp.status)
        return resp

    async def handle(self, request: web.Request, rid: str, t0: float) -> web.StreamResponse:
        """The request path, in order."""
        svc = self.svc
        if request.method != "POST":
            return error_response(405, "use POST", rid, {"Allow": "POST"})
        if svc.closing:
            return error_response(503, "the daemon is shutting down", rid)
        # 1. body size
        cl = request.content_length
        if cl is not None and cl > self.max_body:
            return error_response(413, f"the body is over {self.max_body} bytes", rid)
        # 2. auth
        token = token_of(api_key=request.headers.get("x-api-key"),
                         authorization=request.headers.get("Authorization"))
        if token is None:
            present = "x-api-key" in request.headers or "Authorization" in request.headers
            svc.stats.auth_failure("malformed" if present else "missing")
            return error_response(401, "missing or invalid API key", rid)
        entry = svc.auth.warm(token)
        if entry is None:
            entry, reason = await svc.auth.verify(token)
            if reason == "unknown" or reason == "wrong_secret":
                entry, reason = await svc.verify_after_key_look(token, reason)
            if entry is None:
                svc.stats.auth_failure(reason or "unknown")
                return error_response(401, "missing or invalid API key", rid)
        svc.last_used[entry.key_id] = time.time()
        # 3. rate limit: one token for the whole call, however many texts it carries
        rd = await svc.limiter.check(entry.key_id, entry.limit, entry.window)
        rate_headers = {"X-RateLimit-Limit": str(rd.limit), "X-RateLimit-Remaining": str(rd.remaining),
                        "X-RateLimit-Reset": str(rd.reset)}
        if not rd.allowed:
            svc.stats.rate_limit_hits += 1
            rate_headers["Retry-After"] = str(rd.retry_after)
            return error_response(429, f"rate limit of {rd.limit} requests exceeded", rid, rate_headers)
        # 4. JSON
        if request.content_type != JSON_CT:
            return error_response(415, "send the body as application/json", rid)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return error_response(413, f"the body is over {self.max_body} bytes", rid)
        if len(raw) > self.max_body:
            return error_response(413, f"the body is over {self.max_body} bytes", rid)
        try:
            call = guardrail.parse_request(parse_json(raw))
        except UnicodeDecodeError:
            return error_response(400, "the body is not UTF-8", rid)
        except guardrail.GuardrailRequestError as e:
            return error_response(422, str(e), rid)
        except (ValueError, RecursionError):
            return error_response(400, "the body is not valid JSON", rid)
        # 5. policy: each text on its own (redaction is per text); no texts still checks model and operation
        policies = svc.policies
        policy = policies.get(entry.policy)
        texts = call.texts or ("",)
        decisions: list[Decision] = (
            [policy.evaluate(call.model, call.operation, t, call.direction) for t in texts]
            if policy is not None
            else [unknown_policy_decision(entry.policy, policies.version)] * len(texts)
        )
        text, merged = guardrail.record_decision(texts, decisions)
        latency_ms = (time.perf_counter() - t0) * 1000.0
        # 6. one decision record for the call, enqueued before answering
        # (litellm_call_id and input_type go into the record's metadata with the storage rework)
        record = Entry(
            time.time(), rid, entry.key_id, call.model, call.operation, merged.decision, merged.rules,
            merged.reasons, text, latency_ms, merged.policy_name, merged.policy_version,
        )
        if not svc.dlog.offer(record):
            try:
                await svc.dlog.put(record)
            except QueueFull:
                return error_response(503, "the decision log cannot accept more records; retry later", rid)
        # 7. respond; 8. metrics
        if merged.allowed:
            svc.stats.allowed += 1
        else:
            svc.stats.block(tuple(dict.fromkeys(r.rule for r in merged.reasons if r.action == "block")))
        body = guardrail.response_body(texts, decisions, call.input_type, rid)
        return web.Response(body=_encode(body).encode(), headers=answer_headers(rid, rate_headers))
