"""parse_json is json.loads(raw.decode()) with a shortcut: it must agree with it on every input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.handlers import parse_json


def outcome(fn: Any, raw: bytes) -> tuple[str, Any]:
    try:
        return "ok", fn(raw)
    except UnicodeDecodeError:
        return "unicode", None
    except RecursionError:
        return "recursion", None
    except ValueError:
        return "invalid", None


def reference(raw: bytes) -> Any:
    return json.loads(raw.decode("utf-8"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400)
@given(json_values, st.sampled_from(["", " ", "\n", "\t "]), st.sampled_from(["", " ", "\n", "x", "}", "{}"]))
def test_agrees_on_json_with_padding_and_trailing_data(value: Any, before: str, after: str) -> None:
    raw = (before + json.dumps(value) + after).encode()
    assert outcome(parse_json, raw) == outcome(reference, raw)


@settings(max_examples=400)
@given(st.binary(max_size=64))
def test_agrees_on_random_bytes(raw: bytes) -> None:
    assert outcome(parse_json, raw) == outcome(reference, raw)


@pytest.mark.parametrize(
    "raw",
    [b"", b" ", b"{", b'{"a":1}}', b'{"a":1} x', b"NaN", b"[1,]", b'"\\ud800"', b"\xff", b"[" * 100_000,
     b'{"model":"m"}\x00', b"\xef\xbb\xbf{}"],
)
def test_agrees_on_edge_cases(raw: bytes) -> None:
    assert outcome(parse_json, raw) == outcome(reference, raw)
