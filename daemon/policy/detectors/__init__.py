"""aigov's built-in content detectors and the :class:`Scanner` that runs them.

A :class:`Scanner` is compiled once per policy from ``{detector name: options}`` and then
scans every request. It is immutable and thread-safe. Cheap prefilters decide which
detectors can possibly match (``str.isascii``, one digit search, ``'@' in text``, one search
for the fixed prefixes of vendor credentials...), so a short benign prompt costs a few
microseconds; every pattern is linear in the input (bounded repetitions, no nested
unbounded quantifiers; the phrase patterns of ``prompt_injection`` run on RE2).

Options shared by every detector: ``allow = ["literal", ...]``: a finding whose matched text
equals one of these literals (case-insensitively) is dropped. The other options are
documented in each detector's module. Unknown detectors and unknown or ill-typed options
raise :class:`DetectorOptionError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

import re2

from ._base import Detector, DetectorOptionError, Finding, Hit
from .credentials import (
    AigovTokenDetector,
    AwsAccessKeyDetector,
    GithubTokenDetector,
    OpenAiKeyDetector,
    SlackTokenDetector,
    StripeKeyDetector,
)
from .credit_card import CreditCardDetector
from .email import EmailDetector
from .generic_secret import GenericSecretDetector
from .iban import IbanDetector
from .invisible_text import InvisibleTextDetector
from .ip_address import IpAddressDetector
from .jwt import JwtDetector
from .phone import PhoneDetector
from .private_key import PrivateKeyDetector
from .prompt_injection import PromptInjectionDetector
from .us_ssn import UsSsnDetector

__all__ = ["DETECTOR_NAMES", "GROUPS", "DetectorOptionError", "Finding", "Scanner"]

_CLASSES: dict[str, type[Detector]] = {
    cls.name: cls
    for cls in (
        EmailDetector,
        PhoneDetector,
        CreditCardDetector,
        UsSsnDetector,
        IbanDetector,
        IpAddressDetector,
        AwsAccessKeyDetector,
        GithubTokenDetector,
        SlackTokenDetector,
        StripeKeyDetector,
        OpenAiKeyDetector,
        PrivateKeyDetector,
        JwtDetector,
        AigovTokenDetector,
        GenericSecretDetector,
        PromptInjectionDetector,
        InvisibleTextDetector,
    )
}

DETECTOR_NAMES: tuple[str, ...] = tuple(_CLASSES)
GROUPS: dict[str, tuple[str, ...]] = {
    "pii": ("email", "phone", "credit_card", "us_ssn", "iban", "ip_address"),
    "secrets": (
        "aws_access_key",
        "github_token",
        "slack_token",
        "stripe_key",
        "openai_key",
        "private_key",
        "jwt",
        "aigov_token",
        "generic_secret",
    ),
    "manipulation": ("prompt_injection", "invisible_text"),
}

# Which cheap test must pass before a detector runs at all.
_NEEDS_DIGIT = frozenset({"phone", "credit_card", "us_ssn", "iban"})
_NEEDS_PREFIX = frozenset(
    {
        "aws_access_key",
        "github_token",
        "slack_token",
        "stripe_key",
        "openai_key",
        "private_key",
        "jwt",
        "aigov_token",
    }
)
_DIGITS = "0123456789"
_PREFIXES = (
    "AKIA",
    "ASIA",
    "AGPA",
    "AIDA",
    "AROA",
    "ANPA",
    "ANVA",
    "AIPA",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "xox",
    "hooks.slack",
    "k_live_",
    "k_test_",
    "sk-",
    "PRIVATE KEY",
    "eyJ",
    "aigov_",
)
# Beyond a few hundred characters one RE2 pass beats a loop of substring tests.
_PREFIX_RE2 = re2.compile("|".join(re.escape(p) for p in _PREFIXES))
_SHORT = 256
# Runs of digits and the separators numbers are written with (at least 7 characters); the
# card, SSN, phone and IPv4 patterns only run inside runs with enough digits for them.
_CLUSTER = re.compile(r"[0-9][0-9 ().\-/:]{6,}")
_NOT_DIGITS = str.maketrans("", "", " ().-/:")
_SPECIFIC_SECRETS = frozenset(GROUPS["secrets"]) - {"generic_secret"}
# A phone-shaped run inside one of these is part of that number, not a phone number.
_NUMBERS = frozenset({"credit_card", "us_ssn", "iban", "ip_address"})


class Scanner:
    """Compiled once per policy (at load time), used for every request. Thread-safe, immutable."""

    __slots__ = ("_always", "_allow", "_digit", "_email", "_ip", "_non_ascii", "_prefixed", "names")
    _MIN_DIGITS: dict[str, int] = {"credit_card": 13, "us_ssn": 9, "phone": 7}

    def __init__(self, detectors: Mapping[str, Mapping[str, object]]) -> None:
        """Build the named detectors with their options; raise DetectorOptionError if invalid."""
        built: dict[str, Detector] = {}
        allow: dict[str, frozenset[str]] = {}
        for name, options in detectors.items():
            cls = _CLASSES.get(name)
            if cls is None:
                raise DetectorOptionError(f"unknown detector {name!r} (known: {', '.join(DETECTOR_NAMES)})")
            if not isinstance(options, Mapping):
                raise DetectorOptionError(f"detector {name!r}: options must be a table")
            det = cls(options)
            built[name] = det
            literals = det.str_list(options, "allow")
            if literals:
                allow[name] = frozenset(s.casefold() for s in literals)
        ordered = [built[n] for n in DETECTOR_NAMES if n in built]
        self.names: tuple[str, ...] = tuple(d.name for d in ordered)
        self._allow = allow
        self._digit = tuple(d for d in ordered if d.name in _NEEDS_DIGIT)
        self._prefixed = tuple(d for d in ordered if d.name in _NEEDS_PREFIX)
        self._email = built.get("email")
        self._ip = built.get("ip_address")
        self._non_ascii = built.get("invisible_text")
        self._always = tuple(d for d in ordered if d.name in ("generic_secret", "prompt_injection"))

    def scan(self, text: str) -> list[Finding]:
        """All findings of the configured detectors, sorted by (start, end, detector)."""
        if not text:
            return []
        run: list[Detector] = list(self._always)
        if self._email is not None and "@" in text:
            run.append(self._email)
        if self._prefixed and (
            any(p in text for p in _PREFIXES) if len(text) < _SHORT else _PREFIX_RE2.search(text) is not None
        ):
            run.extend(self._prefixed)
        if self._non_ascii is not None and not text.isascii():
            run.append(self._non_ascii)
        findings: list[Finding] = []
        for det in run:
            self._collect(det, det.find(text), text, findings)
        has_digit = any(d in text for d in _DIGITS)
        windows = self._windows(text) if has_digit and (self._digit or self._ip is not None) else None
        if windows is not None:
            for det in self._digit:
                if windows[det.name]:
                    self._collect(det, det.find_in(text, windows[det.name]), text, findings)
        if self._ip is not None and (has_digit or ":" in text):
            ip_windows = windows["ip_address"] if windows is not None else []
            self._collect(self._ip, self._ip.find_in(text, ip_windows), text, findings)
        if len(findings) > 1:
            findings = _drop_shadowed(findings)
            findings.sort(key=lambda f: (f.start, f.end, f.detector))
        return findings

    def _collect(self, det: Detector, hits: Iterator[Hit], text: str, out: list[Finding]) -> None:
        literals = self._allow.get(det.name)
        seen: set[tuple[int, int]] = set()
        for start, end, message in hits:
            if (start, end) in seen or (literals is not None and text[start:end].casefold() in literals):
                continue
            seen.add((start, end))
            out.append(Finding(det.name, start, end, message))

    def _windows(self, text: str) -> dict[str, list[tuple[int, int]]]:
        """Per digit detector, the spans of ``text`` where its matches can start."""
        windows: dict[str, list[tuple[int, int]]] = {
            "credit_card": [],
            "us_ssn": [],
            "phone": [],
            "iban": [],
            "ip_address": [],
        }
        n = len(text)
        minimum = self._MIN_DIGITS
        windows["iban"].append((0, n))
        card, ssn, phone, ip = (windows[k] for k in ("credit_card", "us_ssn", "phone", "ip_address"))
        min_card, min_ssn, min_phone = minimum["credit_card"], minimum["us_ssn"], minimum["phone"]
        for m in _CLUSTER.finditer(text):
            start, end = m.span()
            group = m.group()
            digits = len(group.translate(_NOT_DIGITS))
            hi = min(n, end + 2)
            if digits >= min_card:
                card.append((start, hi))
            if digits >= min_ssn:
                ssn.append((start, hi))
            if digits >= min_phone:
                phone.append((start - 1 if start and text[start - 1] in "+(" else start, hi))
            if digits >= 4 and group.count(".") >= 3:
                ip.append((start, hi))
        return windows


def _drop_shadowed(findings: list[Finding]) -> list[Finding]:
    """Drop findings that overlap a more specific one of another detector.

    generic_secret yields to a specific credential detector, and phone to a card number,
    SSN, IBAN or IP address.
    """
    specific = [(f.start, f.end) for f in findings if f.detector in _SPECIFIC_SECRETS]
    numbers = [(f.start, f.end) for f in findings if f.detector in _NUMBERS]
    if not specific and not numbers:
        return findings
    kept = []
    for f in findings:
        spans = specific if f.detector == "generic_secret" else numbers if f.detector == "phone" else None
        if spans and any(s < f.end and f.start < e for s, e in spans):
            continue
        kept.append(f)
    return kept
