"""The OpenAPI 3 description of the daemon's endpoints and error shapes."""

from __future__ import annotations

from typing import Any

from daemon import __version__
from daemon.errors import ERROR_CODES

_ERROR = {"$ref": "#/components/schemas/Error"}


def _err(status: int, what: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": f"{ERROR_CODES[status]}: {what}",
        "content": {"application/json": {"schema": _ERROR}},
    }
    if headers:
        out["headers"] = headers
    return out


def openapi_spec() -> dict[str, Any]:
    """The OpenAPI 3.1 document served at ``/openapi.json`` (its schemas are JSON Schema 2020-12)."""
    rl_headers = {
        "X-RateLimit-Limit": {"schema": {"type": "integer"}, "description": "requests per window"},
        "X-RateLimit-Remaining": {"schema": {"type": "integer"}, "description": "requests left now"},
        "X-RateLimit-Reset": {"schema": {"type": "integer"}, "description": "seconds until the bucket is full"},
        "X-Request-Id": {"schema": {"type": "string"}},
    }
    text_ok = {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "aigov daemon",
            "version": __version__,
            "description": "Governance checkpoint for calls to AI models.",
        },
        "paths": {
            "/v1/check": {
                "post": {
                    "summary": "Ask whether a model call is allowed",
                    "operationId": "check",
                    "security": [{"bearer": []}],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CheckRequest"}}},
                    },
                    "responses": {
                        "200": {
                            "description": "The decision (allow or block)",
                            "headers": rl_headers,
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/CheckResponse"}}
                            },
                        },
                        "400": _err(400, "the body is not JSON or not UTF-8"),
                        "401": _err(401, "missing, malformed, unknown, revoked, expired or wrong key"),
                        "405": _err(405, "use POST"),
                        "413": _err(413, "the body is larger than max_body_bytes"),
                        "415": _err(415, "the body is not application/json"),
                        "422": _err(422, "a field is missing, of the wrong type, or unknown"),
                        "429": _err(
                            429, "the key's rate limit is used up",
                            {**rl_headers, "Retry-After": {"schema": {"type": "integer"}}},
                        ),
                        "503": _err(503, "shutting down, or the decision log cannot accept more"),
                    },
                }
            },
            "/beta/litellm_basic_guardrail_api": {
                "post": {
                    "summary": "LiteLLM's Generic Guardrail API: check the texts of a call through LiteLLM",
                    "description": "For LiteLLM's `guardrail: generic_guardrail_api`. The token may come in "
                                   "`x-api-key` or `Authorization: Bearer`. One rate-limit token and one "
                                   "decision record per call; input_type `request` checks with direction "
                                   "input, `response` with direction output. Unknown fields are ignored.",
                    "operationId": "litellmGuardrail",
                    "security": [{"bearer": []}, {"apiKey": []}],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/GuardrailRequest"}}},
                    },
                    "responses": {
                        "200": {
                            "description": "BLOCKED, GUARDRAIL_INTERVENED (texts rewritten) or NONE",
                            "headers": rl_headers,
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/GuardrailResponse"}}
                            },
                        },
                        "400": _err(400, "the body is not JSON or not UTF-8"),
                        "401": _err(401, "missing, malformed, unknown, revoked, expired or wrong key"),
                        "405": _err(405, "use POST"),
                        "413": _err(413, "the body is larger than max_body_bytes"),
                        "415": _err(415, "the body is not application/json"),
                        "422": _err(422, "input_type or texts missing or of the wrong type"),
                        "429": _err(
                            429, "the key's rate limit is used up",
                            {**rl_headers, "Retry-After": {"schema": {"type": "integer"}}},
                        ),
                        "503": _err(503, "shutting down, or the decision log cannot accept more"),
                    },
                }
            },
            "/healthz": {"get": {"summary": "Liveness", "operationId": "healthz", "responses": {"200": text_ok}}},
            "/readyz": {
                "get": {
                    "summary": "Readiness: database and decision log healthy",
                    "operationId": "readyz",
                    "responses": {"200": text_ok, "503": text_ok},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "operationId": "metrics",
                    "responses": {"200": {"description": "Prometheus text", "content": {"text/plain": {}}}},
                }
            },
            "/openapi.json": {
                "get": {"summary": "This document", "operationId": "openapi", "responses": {"200": text_ok}}
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
            },
            "schemas": {
                "CheckRequest": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["model", "operation", "input_text"],
                    "properties": {
                        "model": {"type": "string", "minLength": 1, "maxLength": 256},
                        "operation": {"type": "string", "minLength": 1, "maxLength": 256},
                        "input_text": {"type": "string"},
                        "direction": {
                            "type": ["string", "null"], "enum": ["input", "output", None], "default": "input",
                            "description": "input: a text sent to a model; output: a model's answer (null: "
                                           "input). Only the policy rules whose applies_to names it run.",
                        },
                        "metadata": {
                            "type": "object",
                            "description": "Recorded with the decision: at most 16 keys of at most 64 characters; "
                                           "values are strings of at most 1024 characters, numbers within "
                                           "the range of a 64-bit integer, booleans or null.",
                            "maxProperties": 16,
                            "propertyNames": {"maxLength": 64},
                            "additionalProperties": {"anyOf": [
                                {"type": "null"},
                                {"type": "string", "maxLength": 1024},
                                {"type": "number", "minimum": -(2**63), "maximum": 2**63 - 1},
                                {"type": "boolean"}]},
                        },
                    },
                },
                "Reason": {
                    "type": "object",
                    "required": ["rule", "detector", "action", "message"],
                    "properties": {
                        "rule": {"type": "string"},
                        "detector": {"type": "string"},
                        "action": {"type": "string", "enum": ["block", "redact", "monitor"]},
                        "message": {"type": "string"},
                        "start": {"type": ["integer", "null"]},
                        "end": {"type": ["integer", "null"]},
                    },
                },
                "CheckResponse": {
                    "type": "object",
                    "required": ["request_id", "allowed", "decision", "reasons", "policy", "redacted_text"],
                    "properties": {
                        "request_id": {"type": "string"},
                        "allowed": {"type": "boolean"},
                        "decision": {"type": "string", "enum": ["allow", "block"]},
                        "reasons": {"type": "array", "items": {"$ref": "#/components/schemas/Reason"}},
                        "policy": {
                            "type": "object",
                            "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
                        },
                        "redacted_text": {"type": ["string", "null"]},
                    },
                },
                "GuardrailRequest": {
                    "type": "object",
                    "additionalProperties": True,
                    "required": ["input_type"],
                    "properties": {
                        "input_type": {"type": "string", "enum": ["request", "response"]},
                        "texts": {"type": ["array", "null"], "items": {"type": "string"}, "maxItems": 4096},
                        "model": {"type": ["string", "null"], "maxLength": 256},
                        "litellm_call_id": {"type": ["string", "null"]},
                        "litellm_trace_id": {"description": "not read by aigov"},
                        "request_data": {"description": "not read by aigov"},
                        "structured_messages": {"description": "not read by aigov"},
                        "additional_provider_specific_params": {
                            "type": ["object", "null"],
                            "properties": {"operation": {"type": ["string", "null"],
                                                         "description": "null or absent: chat"}},
                        },
                    },
                },
                "GuardrailResponse": {
                    "type": "object",
                    "required": ["action", "blocked_reason", "texts"],
                    "properties": {
                        "action": {"type": "string", "enum": ["BLOCKED", "GUARDRAIL_INTERVENED", "NONE"]},
                        "blocked_reason": {"type": ["string", "null"]},
                        "texts": {"type": ["array", "null"], "items": {"type": "string"},
                                  "description": "one per request text, when a rule redacted any"},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {
                                "code": {"type": "string", "enum": sorted(set(ERROR_CODES.values()))},
                                "message": {"type": "string"},
                            },
                        }
                    },
                },
            },
        },
    }
