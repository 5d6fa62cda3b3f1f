"""Token format and checksum."""

from __future__ import annotations

import re

import pytest

from daemon import tokens


def test_token_shape_and_roundtrip() -> None:
    kid = tokens.new_key_id()
    tok = tokens.make_token(kid, tokens.new_secret())
    assert re.fullmatch(r"aigov_[a-z2-7]{12}_[A-Za-z0-9]{28}", tok)
    parsed = tokens.parse_token(tok)
    assert parsed is not None and parsed.key_id == kid and len(parsed.secret) == 22


def test_secret_has_128_bits() -> None:
    import math

    assert tokens.SECRET_LEN * math.log2(62) >= 128
    assert len({tokens.new_secret() for _ in range(200)}) == 200


@pytest.mark.parametrize("i", range(0, 47, 5))
def test_any_changed_character_fails_checksum(i: int) -> None:
    tok = tokens.make_token("abcdefghijkl", "A" * 22)
    c = tok[i]
    repl = "b" if c != "b" else "c"
    if i < 6 or i == 18:
        repl = "x"
    bad = tok[:i] + repl + tok[i + 1 :]
    assert tokens.parse_token(bad) is None


@pytest.mark.parametrize(
    "bad", ["", "aigov_", "aigov_abc", "Bearer x", "aigov_ABCDEFGHIJKL_" + "A" * 28, "aigov_abcdefghijkl_" + "!" * 28,
            "x" * 47, "aigov_abcdefghijk1_" + "A" * 28]
)
def test_malformed_tokens_rejected(bad: str) -> None:
    assert tokens.parse_token(bad) is None


def test_checksum_is_crc32_base62() -> None:
    import zlib

    body = "aigov_abcdefghijkl_" + "B" * 22
    n = 0
    for ch in tokens.checksum(body):
        n = n * 62 + tokens.BASE62.index(ch)
    assert n == zlib.crc32(body.encode())
