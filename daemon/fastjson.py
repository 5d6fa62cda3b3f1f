"""Compact JSON encoding without per-call set-up.

``json.dumps(obj, separators=...)`` and even a reused ``JSONEncoder().encode``
build a new C encoder on every call; on the request path and in the decision
writer that set-up costs more than the encoding. This module builds the C
encoder once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

_c_make_encoder: Any
try:
    from _json import make_encoder as _c_make_encoder
except ImportError:  # pragma: no cover - CPython always has _json
    _c_make_encoder = None


def _default(o: Any) -> Any:
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def _make() -> Callable[[Any], str]:
    fallback = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    if _c_make_encoder is None:
        return fallback
    from json.encoder import c_encode_basestring  # type: ignore[attr-defined]

    # (markers, default, encoder, indent, key_separator, item_separator, sort_keys, skipkeys, allow_nan)
    enc = _c_make_encoder(None, _default, c_encode_basestring, None, ":", ",", False, False, True)

    def dumps(obj: Any) -> str:
        if isinstance(obj, str):
            return fallback(obj)
        return "".join(enc(obj, 0))

    return dumps


dumps: Callable[[Any], str] = _make()
"""Compact JSON (no spaces, non-ASCII kept) of plain data; no circular-reference check."""


def _make_quote() -> Callable[[str], str]:
    try:
        from json.encoder import c_encode_basestring  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover
        from json.encoder import py_encode_basestring as c_encode_basestring
    return c_encode_basestring  # type: ignore[no-any-return]


quote: Callable[[str], str] = _make_quote()
"""A JSON string literal (with quotes) for ``s``, non-ASCII kept."""


def json_type(v: Any) -> str:
    """What kind of JSON value ``v`` is, for error messages: ``null``, ``a boolean``, ``an array`` ..."""
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
