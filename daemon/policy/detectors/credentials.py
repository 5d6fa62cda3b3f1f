"""Vendor credentials with a recognisable shape.

- ``aws_access_key``: AWS access key ids: ``AKIA``/``ASIA``/``AGPA``/``AIDA``/``AROA``/``ANPA``/
  ``ANVA``/``AIPA`` followed by 16 base32 upper-case characters. AWS's documentation key
  ``AKIAIOSFODNN7EXAMPLE`` (and any id ending in ``EXAMPLE``) is not reported.
- ``github_token``: classic tokens ``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_`` + 36 base62
  characters, and fine-grained ``github_pat_`` + 22 + ``_`` + 59 characters.
- ``slack_token``: ``xoxb-``/``xoxp-``/``xoxa-``/``xoxr-``/``xoxs-`` tokens (dash-separated
  alphanumeric parts, at least 24 characters after the prefix) and incoming-webhook URLs
  ``https://hooks.slack.com/services/T.../B.../...``.
- ``stripe_key``: secret and restricted keys ``sk_live_``/``sk_test_``/``rk_live_``/``rk_test_``
  + at least 16 alphanumerics. Publishable keys (``pk_``) are public by design and never reported.
- ``openai_key``: legacy ``sk-`` keys (48 characters with the ``T3BlbkFJ`` marker) and
  ``sk-proj-``/``sk-svcacct-``/``sk-admin-`` keys with at least 40 further characters.
- ``aigov_token``: aigov API tokens, reported only when their CRC32 checksum verifies.

All of them: the token must not be glued to other token characters, and a value that is
one repeated character or an obvious placeholder run (``xxxx...``) is not reported.
Options: ``allow`` only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import ClassVar

from daemon.tokens import parse_token

from ._base import Detector, Hit


def _varied(value: str) -> bool:
    """False for placeholder bodies such as ``xxxxxxxx`` or ``00000000``."""
    return len(set(value.lower())) >= 6 and "xxxxxx" not in value.lower()


class _RegexDetector(Detector):
    pattern: ClassVar[re.Pattern[str]]
    message: ClassVar[str]

    def find(self, text: str) -> Iterator[Hit]:
        """Yield matches of the pattern that pass :meth:`valid`."""
        if not any(g in text for g in self.gate):
            return
        for m in self.pattern.finditer(text):
            if self.valid(m):
                yield m.start(), m.end(), self.message

    def valid(self, m: re.Match[str]) -> bool:
        """Extra validation of one match."""
        return _varied(m.group())


class AwsAccessKeyDetector(_RegexDetector):
    """AWS access key ids."""

    name = "aws_access_key"
    gate = ("AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA")
    pattern = re.compile(
        r"(?<![A-Za-z0-9])(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z2-7]{16}(?![A-Za-z0-9])"
    )
    message = "AWS access key id"

    def valid(self, m: re.Match[str]) -> bool:
        """Reject documentation example ids."""
        return not m.group().endswith("EXAMPLE") and _varied(m.group()[4:])


class GithubTokenDetector(_RegexDetector):
    """GitHub personal, OAuth, app and refresh tokens."""

    name = "github_token"
    gate = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")
    pattern = re.compile(
        r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59})(?![A-Za-z0-9_])"
    )
    message = "GitHub token"

    def valid(self, m: re.Match[str]) -> bool:
        """Reject placeholder bodies."""
        return _varied(m.group()[4:])


class SlackTokenDetector(_RegexDetector):
    """Slack API tokens and incoming-webhook URLs."""

    name = "slack_token"
    gate = ("xox", "hooks.slack.com")
    pattern = re.compile(
        r"(?<![A-Za-z0-9])(?:xox[abprs]-[0-9A-Za-z]{1,40}(?:-[0-9A-Za-z]{1,80}){1,5}"
        r"|https?://hooks\.slack\.com/services/T[A-Z0-9]{6,12}/B[A-Z0-9]{6,12}/[A-Za-z0-9]{16,40})(?![A-Za-z0-9])"
    )
    message = "Slack token or webhook URL"

    def valid(self, m: re.Match[str]) -> bool:
        """Require enough token material after the prefix."""
        value = m.group()
        if value.startswith("http"):
            return _varied(value.rsplit("/", 1)[1])
        body = value[5:]
        return len(body) >= 24 and _varied(body.replace("-", ""))


class StripeKeyDetector(_RegexDetector):
    """Stripe secret and restricted keys (not publishable ``pk_`` keys)."""

    name = "stripe_key"
    gate = ("k_live_", "k_test_")
    pattern = re.compile(r"(?<![A-Za-z0-9_])[rs]k_(?:live|test)_[0-9A-Za-z]{16,247}(?![A-Za-z0-9_])")
    message = "Stripe secret key"

    def valid(self, m: re.Match[str]) -> bool:
        """Reject placeholder bodies."""
        return _varied(m.group()[8:])


class OpenAiKeyDetector(_RegexDetector):
    """OpenAI API keys, legacy and project/service-account/admin."""

    name = "openai_key"
    gate = ("sk-",)
    pattern = re.compile(
        r"(?<![A-Za-z0-9_\-])sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{40,250}"
        r"|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20})(?![A-Za-z0-9_\-])"
    )
    message = "OpenAI API key"

    def valid(self, m: re.Match[str]) -> bool:
        """Reject placeholder bodies."""
        return _varied(m.group()[8:])


class AigovTokenDetector(_RegexDetector):
    """aigov API tokens with a valid checksum."""

    name = "aigov_token"
    gate = ("aigov_",)
    pattern = re.compile(r"(?<![A-Za-z0-9_])aigov_[a-z2-7]{12}_[0-9A-Za-z]{28}(?![A-Za-z0-9_])")
    message = "aigov API token (checksum-verified)"

    def valid(self, m: re.Match[str]) -> bool:
        """Verify the CRC32 checksum."""
        return parse_token(m.group()) is not None
