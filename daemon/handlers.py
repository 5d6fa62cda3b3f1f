"""HTTP handlers. ``/v1/check`` follows the request path of DESIGN.md, one step per function:

body size -> auth -> rate limit -> JSON validation -> policy -> enqueue decision -> respond -> metrics.

The hot path has no middleware, no ``await`` that suspends when the key is warm, and no disk.

Speed tricks on this path, and what each buys in CPU per check (``bench/cpu_ab.py``, the daemon
against a copy without the trick, side by side, 3-4 rounds, 2026-11-30): the router bypass for
``POST /v1/check`` (:func:`daemon.app.route_hot_path`) 8 %; request ids from cached time characters
(:func:`new_request_id`) 5 %; header names as ``istr`` and ``tuple.__new__`` for the records and rate
decisions, together 4 %; the template answer for a plain allow (:func:`render_decision`) 4 %; the JSON
scanner called directly (:func:`parse_json`) 4 %; a body that came with its headers taken whole
(:meth:`Checkpoint.read_body`) 3.5 % (measured when it was made). Each is marked where it is.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import sys
import time
from collections.abc import Callable
from typing import Any

from aiohttp import hdrs, web
from multidict import istr

from daemon.auth import KeyEntry, Unauthorized, bearer_token
from daemon.decisionlog import QueueFull
from daemon.errors import ERROR_CODES
from daemon.fastjson import dumps as _encode
from daemon.fastjson import json_type
from daemon.policy.model import Decision
from daemon.ratelimit import RateDecision, RateLimiterUnavailable
from daemon.service import Service
from daemon.storage.records import Entry
from daemon.units import format_duration

log = logging.getLogger("aigov.http")

JSON_CT = "application/json"
_SURROGATE = re.compile("[\ud800-\udfff]")
_FIELDS = frozenset(("model", "operation", "input_text", "metadata", "direction"))
_DIRECTIONS = ("input", "output")
_rand = random.Random(os.urandom(16))
MAX_NAME_CHARS = 256
MAX_METADATA_KEYS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 1024
_ABSENT: Any = object()


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # 10 bits -> 2 characters
_high: tuple[int, str] = (-1, "")  # (ms >> 10, its 8 characters): changes about once a second


def _encode_time(ms: int) -> str:
    return "".join(_CROCKFORD[(ms >> s) & 31] for s in (45, 40, 35, 30, 25, 20, 15, 10, 5, 0))


def new_request_id() -> str:
    """A ULID: 48-bit millisecond time + 80 random bits in Crockford base32, sortable by time.

    Speed (5 % of a check): the first 8 time characters change about once a second and are cached;
    the rest come from a table of character pairs, 10 bits at a time.
    """
    global _high
    ms = time.time_ns() // 1_000_000
    hi = ms >> 10
    if _high[0] != hi:
        _high = (hi, _encode_time(ms)[:8])
    # The last two time characters are the low 10 bits; 80 random bits as 30 + 30 + 20, each one
    # machine word, so that the shifts stay cheap.
    p = _PAIRS
    a = _rand.getrandbits(30)
    b = _rand.getrandbits(30)
    c = _rand.getrandbits(20)
    return "".join((_high[1], p[ms & 1023], p[a >> 20], p[(a >> 10) & 1023], p[a & 1023], p[b >> 20],
                    p[(b >> 10) & 1023], p[b & 1023], p[c >> 10], p[c & 1023]))


# Header names as multidict's istr: the response's CIMultiDict takes them without re-folding case
# (with tuple.__new__ below: 4 % of a check).
_H_LIMIT = istr("X-RateLimit-Limit")
_H_REMAINING = istr("X-RateLimit-Remaining")
_H_RESET = istr("X-RateLimit-Reset")
_H_RETRY_AFTER = istr("Retry-After")
_H_REQUEST_ID = istr("X-Request-Id")


def answer_headers(
    request_id: str, headers: dict[str, str] | None = None, content_type: str = JSON_CT
) -> dict[str, str]:
    """``headers`` (extended in place) plus what every answer carries: its type (JSON unless
    said otherwise), no-store, X-Request-Id."""
    h = {} if headers is None else headers
    h[hdrs.CONTENT_TYPE] = content_type
    h[hdrs.CACHE_CONTROL] = "no-store"
    h[_H_REQUEST_ID] = request_id
    return h


def error_response(
    status: int, message: str, request_id: str, headers: dict[str, str] | None = None, code: str | None = None
) -> web.Response:
    """The JSON error shape of the contract: ``{"error": {"code", "message"}}`` (code by status unless given)."""
    body = _encode({"error": {"code": code or ERROR_CODES[status], "message": message}})
    return web.Response(status=status, body=body.encode(), headers=answer_headers(request_id, headers))


def json_response(data: Any, status: int = 200, request_id: str | None = None) -> web.Response:
    """A JSON response with the headers every answer carries."""
    h = answer_headers(request_id or new_request_id())
    return web.Response(status=status, body=_encode(data).encode(), headers=h)


class NumberTooLarge(ValueError):
    """A body that is JSON but holds a number aigov cannot hold (a 422, not a 400)."""


def _not_json(constant: str) -> Any:
    # json accepts NaN, Infinity and -Infinity; RFC 8259 does not, nor does anything reading the log.
    raise ValueError(f"{constant} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if value in (_INF, -_INF):  # 1e400 is valid JSON, but not a number a double holds
        raise NumberTooLarge(f"a number in the body is too large ({text[:24]}{'…' if len(text) > 24 else ''})")
    return value


_INF = float("inf")
# parse_constant is called only for NaN/Infinity, parse_float only for numbers with a fraction or an
# exponent: a body without either costs what it did. Integers keep the C fast path.
_DECODER = json.JSONDecoder(parse_constant=_not_json, parse_float=_finite)
# The C scanner under json.loads (typeshed does not declare the attribute).
_scan_once: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]


def _digits_error(e: ValueError) -> ValueError:
    """Python's limit on integer digits, raised as a plain ValueError, as NumberTooLarge; others as they are."""
    msg = str(e)
    if isinstance(e, json.JSONDecodeError) or "integer string conversion" not in msg:
        return e
    digits = msg.rsplit("value has ", 1)[-1].split(" ", 1)[0]
    return NumberTooLarge(f"a number in the body is too large ({digits} digits; at most "
                          f"{sys.get_int_max_str_digits()})")


def parse_json(raw: bytes) -> Any:
    """``json.loads(raw.decode("utf-8"))`` without NaN/Infinity, skipping its Python layers for a body
    without padding (speed: 4 % of a check).

    The scanner parses one value from offset 0; when that value is the whole text the result is
    what json.loads gives. Anything else (leading or trailing whitespace, trailing data, no
    value) goes to the decoder itself, so errors and edge cases are exactly the library's. A
    number too large to hold raises NumberTooLarge (valid JSON: a 422, with a message saying so).
    """
    text = raw.decode("utf-8")
    try:
        obj, end = _scan_once(text, 0)
        if end != len(text):
            obj = _DECODER.decode(text)
    except StopIteration:
        try:
            return _DECODER.decode(text)
        except ValueError as e:
            raise _digits_error(e) from None
    except ValueError as e:
        raise _digits_error(e) from None
    return obj


class ValidationError(Exception):
    """A request body of the wrong shape; the message names the field."""


def _rate_headers(rd: RateDecision) -> dict[str, str]:
    return {_H_LIMIT: str(rd.limit), _H_REMAINING: str(rd.remaining), _H_RESET: str(rd.reset)}


def _check_name(data: dict[str, Any], field: str) -> str:
    v = data.get(field)
    if v is None:
        raise ValidationError(f"field '{field}' is required")
    if not isinstance(v, str):
        raise ValidationError(f"field '{field}' must be a string, not {json_type(v)}")
    if not v or len(v) > MAX_NAME_CHARS:
        raise ValidationError(f"field '{field}' must be 1 to {MAX_NAME_CHARS} characters")
    if not v.isascii() and _SURROGATE.search(v):  # isascii() is a flag check: no scan for ASCII text
        raise ValidationError(f"field '{field}' contains invalid Unicode (a lone surrogate)")
    return v


def validate(data: Any) -> tuple[str, str, str, str, dict[str, Any] | None]:
    """Check a decoded body; (model, operation, input_text, direction, metadata) or ValidationError."""
    if not isinstance(data, dict):
        raise ValidationError(f"the body must be a JSON object, not {json_type(data)}")
    if not _FIELDS.issuperset(data):
        extra = sorted(set(data) - _FIELDS)[0]
        if _SURROGATE.search(extra):  # it could not be encoded into the answer: that was a 500
            raise ValidationError("a field name contains invalid Unicode (a lone surrogate)")
        raise ValidationError(
            f"unknown field '{extra[:64]}' (allowed: direction, input_text, metadata, model, operation)"
        )
    direction = data.get("direction")
    if direction is None:  # absent or null: the default
        direction = "input"
    elif direction not in _DIRECTIONS:  # a list or an object is "not in" too: no hashing of the value
        # Echo only plain text: a lone surrogate could not even be encoded into the answer.
        plain = isinstance(direction, str) and direction.isascii() and direction.isprintable()
        shown = f"'{direction[:64]}'" if plain else "a string" if isinstance(direction, str) else json_type(direction)
        raise ValidationError(f"field 'direction' must be \"input\" or \"output\", not {shown}")
    model = _check_name(data, "model")
    operation = _check_name(data, "operation")
    text = data.get("input_text")
    if text is None:
        raise ValidationError("field 'input_text' is required")
    if not isinstance(text, str):
        raise ValidationError(f"field 'input_text' must be a string, not {json_type(text)}")
    if not text.isascii() and _SURROGATE.search(text):
        raise ValidationError("field 'input_text' contains invalid Unicode (a lone surrogate)")
    meta = data.get("metadata", _ABSENT)
    if meta is _ABSENT:
        return model, operation, text, direction, None
    if not isinstance(meta, dict):
        raise ValidationError(f"field 'metadata' must be an object, not {json_type(meta)}")
    if len(meta) > MAX_METADATA_KEYS:
        raise ValidationError(f"field 'metadata' may have at most {MAX_METADATA_KEYS} keys")
    for k, v in meta.items():
        # The key is checked first: the next messages echo it, and a lone surrogate cannot be encoded.
        if len(k) > MAX_METADATA_KEY_CHARS or _SURROGATE.search(k):
            raise ValidationError(f"field 'metadata' keys must be at most {MAX_METADATA_KEY_CHARS} characters of "
                                  "valid Unicode")
        where = f"field 'metadata.{k}'"
        if isinstance(v, dict | list):
            raise ValidationError(f"{where} must be a string, number, boolean or null")
        if isinstance(v, str) and (len(v) > MAX_METADATA_VALUE_CHARS or _SURROGATE.search(v)):
            raise ValidationError(f"{where} must be at most {MAX_METADATA_VALUE_CHARS} characters of valid Unicode")
        if isinstance(v, int | float) and not isinstance(v, bool) and not -(2**63) <= v < 2**63:
            raise ValidationError(f"{where} is too large (numbers must be within the range of a 64-bit integer)")
    return model, operation, text, direction, meta


_new_entry = tuple.__new__  # Entry._make's constructor: half the cost of Entry(...) (with istr: 4 % of a check)


class Checkpoint:
    """The request path every endpoint that checks texts shares, in DESIGN's order: method, body size,
    auth, rate limit, JSON; then the endpoint's own :meth:`check` (validation, policy, record,
    answer). Subclasses are ``/v1/check`` and LiteLLM's guardrail API (:mod:`daemon.guardrail_route`)."""

    endpoint = ""
    timed = False  # whether the latency goes into aigov_request_latency_seconds (the /v1/check histogram)

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.max_body = svc.config.max_body_bytes

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        """Answer one request; never raises (an unexpected error is a logged JSON 500)."""
        t0 = time.perf_counter()
        rid = new_request_id()
        try:
            resp = await self.handle(request, rid, t0)
        except Exception:  # a bug, never bad input: log it, answer JSON, keep serving
            log.exception("internal error in %s (request %s)", self.endpoint, rid)
            resp = error_response(500, "internal error; see the daemon log", rid)
        status = resp.status
        self.svc.stats.request(self.endpoint, status, time.perf_counter() - t0 if self.timed else None)
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
        headers = request.headers
        try:
            key = await svc.auth.authenticate(bearer_token(headers.get("Authorization"), headers.get("x-api-key")))
        except Unauthorized as e:
            svc.stats.auth_failure(e.reason)
            return error_response(401, "missing or invalid API key", rid)
        # 3. rate limit
        try:
            rd = await svc.limiter.check(key.key_id, key.limit, key.window)
            limiter = "ok"
        except RateLimiterUnavailable:
            if svc.fail_closed:
                return error_response(503, "the rate limiter cannot be reached; retry later", rid,
                                      code="rate_limit_unavailable")
            rd, limiter = _unlimited(key.limit), "unavailable"
        rate_headers = _rate_headers(rd)
        if not rd.allowed:
            svc.stats.rate_limit_hits += 1
            rate_headers[_H_RETRY_AFTER] = str(rd.retry_after)
            return error_response(429, f"rate limit of {rd.limit} per {format_duration(key.window)} exceeded; "
                                       f"retry after {rd.retry_after} s", rid, rate_headers)
        # 4. JSON
        raw = await self.read_body(request, cl, rid)
        if isinstance(raw, web.Response):
            return raw
        try:
            data = parse_json(raw)
        except UnicodeDecodeError:
            return error_response(400, "the body is not UTF-8", rid)
        except NumberTooLarge as e:  # valid JSON: say what is wrong with it
            return error_response(422, str(e), rid)
        except (ValueError, RecursionError):
            return error_response(400, "the body is not valid JSON", rid)
        # 5.-8. validation, policy, record, answer
        return await self.check(data, key, rid, t0, limiter, rate_headers)

    async def check(
        self, data: Any, key: KeyEntry, rid: str, t0: float, limiter: str, rate_headers: dict[str, str]
    ) -> web.StreamResponse:
        """Validate the decoded body, decide, record, answer (the endpoint's own part)."""
        raise NotImplementedError  # every endpoint defines it (an abstract method, without abc's cost)

    async def record(self, entry: Entry, rid: str) -> web.Response | None:
        """Enqueue the decision before answering (nothing answered is lost); a 503 when the log stays full."""
        try:
            await self.svc.dlog.record(entry)
        except QueueFull:
            return error_response(503, "the decision log cannot accept more records; retry later", rid)
        return None

    def count(self, decision: Decision) -> None:
        """The governance counters of one decision."""
        if decision.allowed:
            self.svc.stats.allowed += 1
        else:
            self.svc.stats.block(tuple(dict.fromkeys(r.rule for r in decision.reasons if r.action == "block")))

    async def read_body(self, request: web.Request, cl: int | None, rid: str) -> bytes | web.Response:
        """The body, or the answer for one of the wrong type (415) or over ``max_body_bytes`` (413)."""
        # Fast path on the raw header; parse it (parameters, case) only when it is not the plain form.
        if request.headers.get("Content-Type") != JSON_CT and request.content_type != JSON_CT:
            return error_response(415, "send the body as application/json", rid)
        content = request.content
        if cl is not None and content.is_eof():
            # The whole body came with the headers (the common case for a check): take it as it
            # is, without read()'s loop of awaits. Content-Length bounded what was sent; the size
            # check below bounds what a compressed body became (read() does that by itself).
            raw = content.read_nowait()
        else:
            try:
                raw = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raw = None
        if raw is None or len(raw) > self.max_body:
            return error_response(413, f"the body is over {self.max_body} bytes", rid)
        return raw


class CheckHandler(Checkpoint):
    """``POST /v1/check``."""

    endpoint = "/v1/check"
    timed = True

    async def check(
        self, data: Any, key: KeyEntry, rid: str, t0: float, limiter: str, rate_headers: dict[str, str]
    ) -> web.StreamResponse:
        """One text: validate, decide, record, answer."""
        try:
            model, operation, text, direction, metadata = validate(data)
        except ValidationError as e:
            return error_response(422, str(e), rid)
        decision = self.svc.evaluate(key.policy, model, operation, text, direction)
        refused = await self.record(_new_entry(Entry, (
            time.time(), rid, key.key_id, model, operation, direction, decision.decision, decision.rules,
            decision.reasons, text, (time.perf_counter() - t0) * 1000.0, decision.policy_name,
            decision.policy_version, limiter, metadata,
        )), rid)
        if refused is not None:
            return refused
        self.count(decision)
        return web.Response(body=render_decision(rid, decision), headers=answer_headers(rid, rate_headers))


def _unlimited(limit: int) -> RateDecision:
    """The limiter's answer when it could not be asked and ``rate_limit_on_error`` is open."""
    return RateDecision(True, limit, limit, 0, 0)


_ALLOW_TAILS: dict[tuple[str, str], str] = {}


def render_decision(rid: str, decision: Decision) -> bytes:
    """The 200 body. A plain allow (the common case) is a template with the request id filled in
    (speed: 4 % of a check against encoding the whole answer each time)."""
    if decision.allowed and not decision.reasons:
        key = (decision.policy_name, decision.policy_version)
        tail = _ALLOW_TAILS.get(key)
        if tail is None:
            policy = _encode({"name": decision.policy_name, "version": decision.policy_version})
            tail = f'","allowed":true,"decision":"allow","reasons":[],"policy":{policy},"redacted_text":null}}'
            if len(_ALLOW_TAILS) < 256:
                _ALLOW_TAILS[key] = tail
        return ('{"request_id":"' + rid + tail).encode()
    return _encode({
        "request_id": rid,
        "allowed": decision.allowed,
        "decision": decision.decision,
        "reasons": [r.as_dict() for r in decision.reasons],
        "policy": {"name": decision.policy_name, "version": decision.policy_version},
        "redacted_text": decision.redacted_text,
    }).encode()


def get_only(svc: Service, endpoint: str, fn: Any) -> Any:
    """Wrap a GET endpoint: JSON 405 for other methods, request counting."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            resp = error_response(405, "use GET", new_request_id(), {"Allow": "GET"})
        else:
            try:
                resp = await fn(request)
            except Exception:
                log.exception("internal error in %s", endpoint)
                resp = error_response(500, "internal error; see the daemon log", new_request_id())
        svc.stats.request(endpoint, resp.status)
        return resp

    return handler


async def not_found(request: web.Request) -> web.StreamResponse:
    """JSON 404 for every unknown path."""
    return error_response(404, f"no such endpoint: {request.path[:100]}", new_request_id())
