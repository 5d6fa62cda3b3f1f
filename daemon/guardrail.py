"""LiteLLM's Generic Guardrail API, translated to and from aigov's policy decisions.

LiteLLM (``guardrail: generic_guardrail_api``) POSTs to ``/beta/litellm_basic_guardrail_api``:

    {"input_type": "request" | "response", "texts": [str, ...], "model": str | null,
     "litellm_call_id": str | null, "litellm_trace_id": ..., "structured_messages": [...],
     "request_data": {...}, "additional_provider_specific_params": {...}, ...}

and reads back ``{"action": "BLOCKED" | "GUARDRAIL_INTERVENED" | "NONE", "blocked_reason": str | null,
"texts": [str, ...] | null}``: a block stops the call; with ``GUARDRAIL_INTERVENED`` LiteLLM puts
``texts`` (one per text it sent, in order) in place of the ones it sent.

Everything here is a pure function over plain values, so that the HTTP wiring stays thin.
Fields this module does not know are ignored: LiteLLM adds fields between releases.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from daemon.policy.model import Decision, Reason

PATH = "/beta/litellm_basic_guardrail_api"
DIRECTION_OF = {"request": "input", "response": "output"}
DEFAULT_OPERATION = "chat"
UNKNOWN_MODEL = "unknown"
MAX_NAME_CHARS = 256
MAX_TEXTS = 4096  # each text is evaluated on the event loop: bound the count, not only the bytes
RECORD_SEPARATOR = "\n"
"""Between the texts of one call in its decision record (whose reasons' offsets count across them)."""

_SURROGATE = re.compile("[\ud800-\udfff]")


class GuardrailRequestError(ValueError):
    """A body that is not a Generic Guardrail API request; the message names the field."""


@dataclass(frozen=True, slots=True)
class GuardrailRequest:
    """What aigov needs from one LiteLLM guardrail call."""

    input_type: str
    texts: tuple[str, ...]
    model: str
    operation: str
    litellm_call_id: str | None = None

    @property
    def direction(self) -> str:
        """``input`` for a request LiteLLM is about to send, ``output`` for a model's response."""
        return DIRECTION_OF[self.input_type]


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return "a number"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return "a string"


def _text(v: Any, field: str) -> str:
    if not isinstance(v, str):
        raise GuardrailRequestError(f"field '{field}' must be a string, not {_kind(v)}")
    if not v.isascii() and _SURROGATE.search(v):
        raise GuardrailRequestError(f"field '{field}' contains invalid Unicode (a lone surrogate)")
    return v


def _name(v: Any, field: str, default: str) -> str:
    """A model or operation name: absent, null or empty means ``default``."""
    if v is None or v == "":
        return default
    name = _text(v, field)
    if len(name) > MAX_NAME_CHARS:
        raise GuardrailRequestError(f"field '{field}' must be at most {MAX_NAME_CHARS} characters")
    return name


def parse_request(data: Any) -> GuardrailRequest:
    """Read a decoded request body; GuardrailRequestError names the field that is wrong.

    ``texts`` absent or null means nothing to check (LiteLLM sends images or tool calls alone
    that way). ``model`` absent, null or empty is ``unknown``. The operation, which LiteLLM
    does not send, is ``chat`` unless the guardrail's config sets
    ``additional_provider_specific_params: {operation: ...}``.
    """
    if not isinstance(data, dict):
        raise GuardrailRequestError(f"the body must be a JSON object, not {_kind(data)}")
    input_type = data.get("input_type")
    if input_type not in ("request", "response"):  # a tuple: a list or an object is compared, never hashed
        shown = f"'{input_type[:32]}'" if isinstance(input_type, str) and input_type.isascii() \
            and input_type.isprintable() else _kind(input_type)
        raise GuardrailRequestError(f"field 'input_type' must be \"request\" or \"response\", not {shown}")
    raw_texts = data.get("texts")
    if raw_texts is None:
        raw_texts = []
    if not isinstance(raw_texts, list):
        raise GuardrailRequestError(f"field 'texts' must be an array of strings, not {_kind(raw_texts)}")
    if len(raw_texts) > MAX_TEXTS:
        raise GuardrailRequestError(f"field 'texts' may hold at most {MAX_TEXTS} texts, not {len(raw_texts)}")
    texts = tuple(_text(t, f"texts[{i}]") for i, t in enumerate(raw_texts))
    params = data.get("additional_provider_specific_params")
    if params is not None and not isinstance(params, dict):
        raise GuardrailRequestError(
            f"field 'additional_provider_specific_params' must be an object or null, not {_kind(params)}"
        )
    operation = params.get("operation") if params else None
    call_id = data.get("litellm_call_id")
    return GuardrailRequest(
        input_type=input_type,
        texts=texts,
        model=_name(data.get("model"), "model", UNKNOWN_MODEL),
        operation=_name(operation, "additional_provider_specific_params.operation", DEFAULT_OPERATION),
        litellm_call_id=_text(call_id, "litellm_call_id") if call_id is not None else None,
    )


def blocked_reason(decisions: Sequence[Decision], input_type: str, request_id: str) -> str:
    """One line saying which rules blocked the call, never the matched text itself."""
    seen: dict[str, str] = {}
    for d in decisions:
        for r in d.reasons:
            if r.action == "block":
                seen.setdefault(r.rule, r.message)
    what = "request" if input_type == "request" else "response"
    rules = "; ".join(f"{rule} ({message})" for rule, message in seen.items())
    policy = decisions[0].policy_name if decisions else "?"
    return f"aigov policy {policy!r} blocked the {what}: {rules} [aigov request {request_id}]"


def response_body(
    texts: Sequence[str], decisions: Sequence[Decision], input_type: str, request_id: str
) -> dict[str, Any]:
    """LiteLLM's answer for the decisions on ``texts`` (one decision per text, in order).

    Any block blocks the call. Otherwise, when a redacting rule rewrote any text, ``texts`` holds
    every text, rewritten or as sent, so that LiteLLM can put them back one for one. (A call
    without texts is checked as one empty text: its model and operation still count.)
    """
    if any(not d.allowed for d in decisions):
        return {"action": "BLOCKED", "blocked_reason": blocked_reason(decisions, input_type, request_id),
                "texts": None}
    if any(d.redacted_text is not None for d in decisions):
        out = [t if d.redacted_text is None else d.redacted_text for t, d in zip(texts, decisions, strict=True)]
        return {"action": "GUARDRAIL_INTERVENED", "blocked_reason": None, "texts": out}
    return {"action": "NONE", "blocked_reason": None, "texts": None}


def record_decision(texts: Sequence[str], decisions: Sequence[Decision]) -> tuple[str, Decision]:
    """The one decision record of a call: the texts joined by :data:`RECORD_SEPARATOR`, and one
    decision whose reasons' offsets point into that joined text (so ``log_inputs = "redacted"``
    masks the same spans); blocked when any text was."""
    if len(texts) == 1:
        return texts[0], decisions[0]
    reasons: list[Reason] = []
    offset = 0
    for text, d in zip(texts, decisions, strict=True):
        for r in d.reasons:
            if r.start is None or r.end is None:
                if r not in reasons:  # model.denied and the like: once for the call, not once per text
                    reasons.append(r)
            else:
                reasons.append(Reason(r.rule, r.detector, r.action, r.message, r.start + offset, r.end + offset))
        offset += len(text) + len(RECORD_SEPARATOR)
    first = decisions[0]
    merged = Decision(all(d.allowed for d in decisions), tuple(reasons), first.policy_name, first.policy_version)
    return RECORD_SEPARATOR.join(texts), merged
