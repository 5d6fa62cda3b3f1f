"""parse_json is json.loads(raw.decode()) with a shortcut, minus NaN/Infinity: the two agree on every input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.handlers import NumberTooLarge, parse_json


def outcome(fn: Any, raw: bytes) -> tuple[str, Any]:
    try:
        return "ok", fn(raw)
    except UnicodeDecodeError:
        return "unicode", None
    except RecursionError:
        return "recursion", None
    except NumberTooLarge:
        return "too large", None
    except ValueError as e:
        if "integer string conversion" in str(e):
            return "too large", None
        return "invalid", None


def _reject(constant: str) -> Any:
    raise ValueError(constant)


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise NumberTooLarge(text)
    return value


def reference(raw: bytes) -> Any:
    """json.loads as RFC 8259 reads JSON: no NaN or Infinity, and no number beyond a double's range."""
    return json.loads(raw.decode("utf-8"), parse_constant=_reject, parse_float=_finite)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
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


@pytest.mark.parametrize("raw", [b"NaN", b'{"a": NaN}', b"[1, Infinity]", b'{"metadata": {"x": -Infinity}}',
                                 b' {"a": NaN} '])
def test_nan_and_infinity_are_not_json(raw: bytes) -> None:
    json.loads(raw)  # Python's json takes them...
    with pytest.raises(ValueError, match="is not JSON") as info:  # ...JSON does not
        parse_json(raw)
    assert not isinstance(info.value, NumberTooLarge)


@pytest.mark.parametrize(("raw", "message"), [
    (b'{"metadata": {"n": ' + b"7" * 5000 + b"}}", "a number in the body is too large (5000 digits; at most 4300)"),
    (b" " + b"7" * 4301 + b" ", "a number in the body is too large (4301 digits; at most 4300)"),
    (b'{"metadata": {"x": 1e400}}', "a number in the body is too large (1e400)"),
    (b'[-2.5e999]', "a number in the body is too large (-2.5e999)"),
])
def test_a_number_too_large_is_valid_json_said_to_be_too_large(raw: bytes, message: str) -> None:
    with pytest.raises(NumberTooLarge) as info:
        parse_json(raw)
    assert str(info.value) == message


def test_numbers_within_range_parse() -> None:
    assert parse_json(b"[" + b"9" * 4300 + b", 1.5e308, -0.0, 1e-400]") == [int("9" * 4300), 1.5e308, -0.0, 0.0]
