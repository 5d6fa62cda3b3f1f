"""API token format: ``aigov_<key_id>_<secret><checksum>``.

``key_id`` is 12 lowercase base32 characters (60 random bits), ``secret`` is 22
base62 characters (>= 128 random bits) and ``checksum`` is the CRC32 of
everything before it, in 6 base62 characters. The checksum lets a malformed or
mistyped token be rejected without touching storage, and lets secret scanners
(aigov's own ``aigov_token`` detector included) recognise a real token.
"""

from __future__ import annotations

import base64
import secrets
import zlib
from typing import NamedTuple

PREFIX = "aigov_"
KEY_ID_LEN = 12
SECRET_LEN = 22
CHECKSUM_LEN = 6
TOKEN_LEN = len(PREFIX) + KEY_ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BASE32_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz234567")
_BASE62_SET = frozenset(BASE62)


class ParsedToken(NamedTuple):
    """A syntactically valid token split into its parts."""

    key_id: str
    secret: str


def _b62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(BASE62[r])
    return "".join(reversed(out))


def checksum(body: str) -> str:
    """The 6-character base62 CRC32 checksum of ``body`` (the token without it)."""
    return _b62(zlib.crc32(body.encode("ascii")), CHECKSUM_LEN)


def new_key_id() -> str:
    """A fresh random key id: 12 lowercase base32 characters."""
    return base64.b32encode(secrets.token_bytes(8)).decode("ascii")[:KEY_ID_LEN].lower()


def new_secret() -> str:
    """A fresh random secret of 22 base62 characters (about 131 bits)."""
    return "".join(secrets.choice(BASE62) for _ in range(SECRET_LEN))


def make_token(key_id: str, secret: str) -> str:
    """Assemble a token from its key id and secret, appending the checksum."""
    body = f"{PREFIX}{key_id}_{secret}"
    return body + checksum(body)


def parse_token(token: str) -> ParsedToken | None:
    """Split and verify a token; ``None`` when it is malformed or its checksum fails."""
    if len(token) != TOKEN_LEN or not token.startswith(PREFIX):
        return None
    key_id = token[6 : 6 + KEY_ID_LEN]
    if token[6 + KEY_ID_LEN] != "_" or not _BASE32_LOWER.issuperset(key_id):
        return None
    rest = token[7 + KEY_ID_LEN :]
    if not _BASE62_SET.issuperset(rest):
        return None
    body, check = token[:-CHECKSUM_LEN], token[-CHECKSUM_LEN:]
    if checksum(body) != check:
        return None
    return ParsedToken(key_id, rest[:SECRET_LEN])


def is_valid_key_id(key_id: str) -> bool:
    """True when ``key_id`` has the shape of a key id."""
    return len(key_id) == KEY_ID_LEN and _BASE32_LOWER.issuperset(key_id)
