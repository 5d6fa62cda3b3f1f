"""``generic_secret``: a high-entropy value assigned to a secret-looking name.

Forms: ``name = value``, ``name: value``, ``name := value``, ``name => value``,
``"name": "value"``, ``NAME=value``, and an ``Authorization: Bearer <value>`` header. The
name must contain a secret word as a whole part (``db_password``, ``apiKey``,
``AWS_SECRET_ACCESS_KEY``, ``client-secret``, ``auth_token``...; ``author`` or ``tokenizer`` do
not count). The value (8-256 characters) is reported when its Shannon entropy is at least
``min_entropy`` bits per character and it mixes at least two character classes (or is 16+
characters long). Placeholders are never reported: ``<your-api-key>``, ``${VAR}``,
``{{ var }}``, ``%(x)s``, ``xxxx``, ``****``, ``changeme``, ``example``, ``dummy``,
``redacted``, function calls and other code expressions.

Options:
- ``allow``: literal values never reported (the finding covers the value only).
- ``min_entropy`` (float, 0-8, default 3.0): bits per character a value needs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from ._base import Detector, Hit, shannon_entropy

# Every secret name contains one of these (lower-cased); names are found around them.
STEMS = ("pass", "pwd", "secret", "token", "key", "auth", "cred")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_VALUE = re.compile(
    r"[\"']?[ \t]{0,8}(?::=|=>|[:=])[ \t]{0,8}"
    r"(?:(?:Bearer|Basic|Token)[ \t]{1,4})?([\"'`]?)([^\s\"'`,;]{8,256})(?:\1)"
)
# A necessary condition for a finding, for the scanner's one-pass prefilter (RE2 syntax): a
# stem, at most 64 more name characters, the assignment operator and 8 value characters.
GATE = (
    r"(?i:pass|pwd|secret|token|key|auth|cred)[A-Za-z0-9_.\-]{0,64}[\"']?[ \t]{0,8}(?::=|=>|[:=])"
    r"[ \t]{0,8}(?:(?i:Bearer|Basic|Token)[ \t]{1,4})?[\"'`]?[^\s\"'`,;]{8}"
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_PARTS = re.compile(r"[^a-z0-9]+")
_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "pass",
        "passphrase",
        "secret",
        "secrets",
        "token",
        "apikey",
        "auth",
        "authorization",
        "credential",
        "credentials",
        "creds",
        "secretkey",
        "accesskey",
        "privatekey",
        "clientsecret",
        "authtoken",
        "accesstoken",
        "refreshtoken",
        "bearer",
        "sessiontoken",
    }
)
_PAIRS = frozenset(
    {
        ("api", "key"),
        ("access", "key"),
        ("private", "key"),
        ("secret", "key"),
        ("signing", "key"),
        ("encryption", "key"),
        ("master", "key"),
        ("client", "secret"),
        ("app", "secret"),
    }
)
_PLACEHOLDER = re.compile(
    r"(?i)^(?:<.*>|\$\{.*\}|\$\(.*\)|\{\{.*\}\}|%\(.*\)s|\$[A-Za-z_]\w*|.*(?:xxxx|\*\*\*\*|\.\.\.|____).*"
    r"|.*(?:changeme|change_me|example|dummy|placeholder|redacted|your[_\-]|my[_\-]|sample|replace|insert).*"
    r"|true|false|null|none|undefined|required|optional|string|password\d*|secret\d*|token)$"
)
_CODE = re.compile(r"[()\[\]{}<>]|^\$|\$\{|^(?:os\.|process\.|env\.|self\.|this\.|config\.|settings\.)")


def secret_name(name: str) -> bool:
    """True when an identifier names a secret (``db_password``, ``apiKey``, ``SECRET_ACCESS_KEY``)."""
    parts = [p for p in _PARTS.split(_CAMEL.sub("_", name).lower()) if p]
    if any(p in _WORDS for p in parts):
        return True
    return any(pair in _PAIRS for pair in zip(parts, parts[1:], strict=False))


class GenericSecretDetector(Detector):
    """High-entropy values assigned to secret-looking names."""

    name = "generic_secret"
    option_names = frozenset({"min_entropy"})

    def __init__(self, options: Mapping[str, object]) -> None:
        """Read ``min_entropy``."""
        super().__init__(options)
        self._min_entropy = self.number(options, "min_entropy", 3.0, 0.0, 8.0)

    def find(self, text: str) -> Iterator[Hit]:
        """Yield the values of secret assignments."""
        lower = text.lower()
        if not any(stem in lower for stem in STEMS):
            return
        seen: set[int] = set()
        for stem in STEMS:
            pos = lower.find(stem)
            while pos >= 0:
                hit = self._at(text, pos, pos + len(stem), seen)
                if hit is not None:
                    yield hit
                pos = lower.find(stem, pos + 1)

    def _at(self, text: str, start: int, end: int, seen: set[int]) -> Hit | None:
        """Check the assignment whose name contains ``text[start:end]``."""
        limit = max(0, start - 64)
        while start > limit and text[start - 1] in _NAME_CHARS:
            start -= 1
        stop = min(len(text), end + 64)
        while end < stop and text[end] in _NAME_CHARS:
            end += 1
        if start in seen:
            return None
        seen.add(start)
        name = text[start:end]
        if not name or not (name[0].isalpha() or name[0] == "_"):
            return None
        m = _VALUE.match(text, end)  # cheaper than secret_name(), and usually fails in prose
        if m is None or not secret_name(name) or not self.secret_value(m.group(2)):
            return None
        return m.start(2), m.end(2), "secret value assigned to a credential name"

    def secret_value(self, value: str) -> bool:
        """True when ``value`` looks like a real secret, not a placeholder or code."""
        if _PLACEHOLDER.match(value) or _CODE.search(value):
            return False
        classes = sum(
            (
                any(c.islower() for c in value),
                any(c.isupper() for c in value),
                any(c.isdigit() for c in value),
                any(not c.isalnum() for c in value),
            )
        )
        if classes < 2 and len(value) < 16:
            return False
        return shannon_entropy(value) >= self._min_entropy
