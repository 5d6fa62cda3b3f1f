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


_TOKEN = tokens.make_token("abcdefghijkl", "Q7xZ0aB9cD8eF7gH6iJ5kL")
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"


def _alphabet(i: int) -> str:
    """What may stand at position ``i`` of a token, so that only the checksum can tell a change."""
    if i < len(tokens.PREFIX):
        return "abcdefghijklmnopqrstuvwxyz_"
    if i < len(tokens.PREFIX) + tokens.KEY_ID_LEN:
        return _BASE32
    if i == len(tokens.PREFIX) + tokens.KEY_ID_LEN:
        return "_-"
    return tokens.BASE62


@pytest.mark.parametrize("i", range(tokens.TOKEN_LEN))
def test_every_changed_character_is_rejected(i: int) -> None:
    # Every position (prefix, key id, separator, secret, and each checksum character, the last
    # included), changed to every other character that may stand there.
    assert len(_TOKEN) == tokens.TOKEN_LEN and tokens.parse_token(_TOKEN) is not None
    for c in _alphabet(i):
        if c != _TOKEN[i]:
            bad = _TOKEN[:i] + c + _TOKEN[i + 1 :]
            assert tokens.parse_token(bad) is None, (i, c)


def test_parse_returns_the_parts_it_was_made_of() -> None:
    parsed = tokens.parse_token(_TOKEN)
    assert parsed == ("abcdefghijkl", "Q7xZ0aB9cD8eF7gH6iJ5kL")


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


@pytest.mark.parametrize(
    "body",
    [
        "aigov_abcdefghijkl-" + "A" * 22,  # separator
        "aigov_abcdefghijkl" + "A" * 23,  # no separator at all
        "aigov_ABCDEFGHIJKL_" + "A" * 22,  # key id in upper case
        "aigov_abcdefghijk1_" + "A" * 22,  # 1, 8, 9 and 0 are not base32
        "aigov_abcdefghijkl_" + "A" * 21 + "!",  # secret outside base62
        "AIGOV_abcdefghijkl_" + "A" * 22,  # prefix
    ],
)
def test_a_wrong_shape_is_rejected_even_with_a_right_checksum(body: str) -> None:
    # The checksum covers the whole body, so these would pass it: only the shape checks refuse them.
    token = body + tokens.checksum(body)
    assert len(token) == tokens.TOKEN_LEN
    assert tokens.parse_token(token) is None


@pytest.mark.parametrize(
    ("key_id", "valid"),
    [("abcdefghijkl", True), ("a2b3c4d5e6f7", True), ("abcdefghijk", False), ("abcdefghijklm", False),
     ("ABCDEFGHIJKL", False), ("abcdefghijk1", False), ("", False)],
)
def test_is_valid_key_id(key_id: str, valid: bool) -> None:
    assert tokens.is_valid_key_id(key_id) is valid
