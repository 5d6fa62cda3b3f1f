"""aigov's built-in content detectors and the :class:`Scanner` that runs them.

A :class:`Scanner` is compiled once per policy from ``{detector name: options}`` and then
scans every request. It is immutable and thread-safe. One RE2 ``Set`` pass over the text
(about 1 µs plus 2 ns per byte) evaluates a cheap necessary condition for every configured
detector at once (an ``@`` between address characters, a vendor prefix, a secret name
followed by an assignment, a prompt-injection phrase, seven digits in one number-shaped run,
a dotted quad, two colons of an IPv6 address, an IBAN-shaped head...), and only the detectors
whose condition holds run. So benign text costs about one linear pass, and a short prompt a
couple of microseconds. Every pattern is linear in the input (bounded repetitions, no nested
unbounded quantifiers; the prefilter and the phrase patterns of ``prompt_injection`` run on RE2).

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
from ._fold import CHANGED_CLASS
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
from .generic_secret import GATE as GENERIC_SECRET_GATE
from .generic_secret import GenericSecretDetector
from .iban import IbanDetector
from .invisible_text import GATE_CLASS as INVISIBLE_CLASS
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

# Prefilter conditions (RE2 syntax, run on the UTF-8 text) that are not a detector's own gate.
# Each is a necessary condition for a finding, so a detector whose condition fails is skipped.
_DIGIT_RUN = r"[0-9](?:[ ().\-/:]*[0-9]){6}"  # a number-shaped run with 7+ digits (card, SSN, phone)
_IPV4 = r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]"
_IPV6 = r":[0-9A-Fa-f]{0,4}:"
_IBAN = r"[A-Za-z]{2}[0-9]{2}(?:[ \-]?[0-9A-Za-z]){8}"
_EMAIL = r"[A-Za-z0-9._%+\-]@[A-Za-z0-9\-]{1,63}\."
# Runs of digits and the separators numbers are written with: a number-shaped run starts at a
# digit and has at least 7 characters (the regex ``[0-9][0-9 ().\-/:]{6,}``). The card, SSN,
# phone and IPv4 patterns only run inside runs with enough digits for them. Runs are found
# with ``bytes.translate`` and ``bytes.find``, which beat a regex scan by ~10x on prose.
_SEPARATORS = b" ().-/:"
_RUN_CHARS = b"0123456789" + _SEPARATORS
_RUN_TABLE = bytes(ord("#") if b in _RUN_CHARS else ord(" ") for b in range(256))
_MIN_RUN = b"#######"
_FIRST_DIGIT = re.compile(rb"[0-9]")
_DATE_RUN = re.compile(
    rb"(?:[0-9]{4}([-./])[0-9]{1,2}\1[0-9]{1,2}|[0-9]{1,2}([-./])[0-9]{1,2}\2[0-9]{2,4})[ ().\-/:]*"
)
_WINDOWED = ("phone", "credit_card", "us_ssn")
_SPECIFIC_SECRETS = frozenset(GROUPS["secrets"]) - {"generic_secret"}
# A phone-shaped run inside one of these is part of that number, not a phone number.
_NUMBERS = frozenset({"credit_card", "us_ssn", "iban", "ip_address"})


class _Prefilter:
    """One RE2 Set over the text: which of the named necessary conditions hold."""

    __slots__ = ("_keys", "_nothing", "_set")

    def __init__(self, conditions: Mapping[str, str]) -> None:
        """Compile ``{key: RE2 pattern}`` into one Set."""
        options = re2.Options()
        options.max_mem = 32 << 20
        options.log_errors = False
        self._set = re2.Set.SearchSet(options)
        keys: list[str] = []
        for key, pattern in conditions.items():
            self._set.Add(pattern.encode("utf-8"))
            keys.append(key)
        # The empty pattern always matches: if it is missing, the DFA failed (out of memory)
        # and the result says nothing, so the caller runs every detector.
        self._set.Add(b"")
        keys.append("")
        self._set.Compile()
        self._keys = tuple(keys)
        self._nothing = [len(keys) - 1]

    def hold(self, data: bytes) -> frozenset[str] | None:
        """The keys whose condition matches somewhere in ``data``; ``None`` when unknown."""
        matched = self._set.Match(data)
        if matched == self._nothing:
            return _NOTHING
        if not matched or len(self._keys) - 1 not in matched:
            return None
        keys = self._keys
        return frozenset([keys[i] for i in matched])


_NOTHING: frozenset[str] = frozenset()


class Scanner:
    """Compiled once per policy (at load time), used for every request. Thread-safe, immutable."""

    __slots__ = (
        "_allow",
        "_generic",
        "_iban",
        "_ip",
        "_keyed",
        "_plain",
        "_prefilter",
        "_prompt",
        "_windowed",
        "names",
    )
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
        conditions: dict[str, str] = {}
        for det in ordered:
            if det.gate:
                conditions[det.name] = "|".join(re2.escape(g) for g in det.gate)
        if "email" in built:
            conditions["email"] = _EMAIL
        self._generic = built.get("generic_secret")
        if self._generic is not None:
            conditions["generic_secret"] = GENERIC_SECRET_GATE
        prompt = built.get("prompt_injection")
        self._prompt = prompt if isinstance(prompt, PromptInjectionDetector) else None
        if self._prompt is not None:
            conditions["prompt_injection"] = self._prompt.gate_pattern
        if "invisible_text" in built:
            conditions["invisible_text"] = INVISIBLE_CLASS
        # Detectors run on the whole text when their condition holds.
        self._keyed = {name: built[name] for name in conditions}
        self._plain = tuple(self._keyed.values())
        if self._prompt is not None:
            conditions["folds"] = CHANGED_CLASS
        # The number detectors: their conditions decide which windows of the text they scan.
        self._windowed = tuple(built[n] for n in _WINDOWED if n in built)
        self._ip = built.get("ip_address")
        if self._windowed:
            conditions["digits"] = _DIGIT_RUN
        if self._ip is not None:
            conditions["ipv4"] = _IPV4
            conditions["ipv6"] = _IPV6
        self._iban = built.get("iban")
        if self._iban is not None:
            conditions["iban"] = _IBAN
        self._prefilter = _Prefilter(conditions)

    def scan(self, text: str) -> list[Finding]:
        """All findings of the configured detectors, sorted by (start, end, detector)."""
        if not text:
            return []
        is_ascii = text.isascii()
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: no prefilter, run everything
            data = b""
        hold = self._prefilter.hold(data) if data else None
        run: list[Detector]
        if hold is None:
            run = list(self._plain)
        else:
            keyed = self._keyed
            run = [keyed[k] for k in hold if k in keyed]
            if not is_ascii:
                # prompt_injection matches the folded text: the prefilter speaks for it only
                # when folding leaves the text unchanged. str.lower() turns U+0130 into two
                # characters, which shifts generic_secret's offsets in a way the prefilter
                # does not model.
                if self._prompt is not None and "prompt_injection" not in hold and "folds" in hold:
                    run.append(self._prompt)
                if self._generic is not None and "generic_secret" not in hold and "\u0130" in text:
                    run.append(self._generic)
        findings: list[Finding] = []
        for det in run:
            self._collect(det, det.find(text), text, findings)
        if hold is None or hold:
            self._numbers(text, data if is_ascii else b"", hold, findings)
        if len(findings) > 1:
            findings = _drop_shadowed(findings)
            findings.sort(key=lambda f: (f.start, f.end, f.detector))
        return findings

    def _numbers(self, text: str, data: bytes, hold: frozenset[str] | None, out: list[Finding]) -> None:
        """Run the number detectors (card, SSN, phone, IBAN, IP address) the prefilter lets through."""
        ip = self._ip
        windows: dict[str, list[tuple[int, int]]] | None = None
        if (self._windowed and (hold is None or "digits" in hold)) or (
            ip is not None and (hold is None or "ipv4" in hold)
        ):
            windows = self._windows(text, data)
            for det in self._windowed:
                if windows[det.name]:
                    self._collect(det, det.find_in(text, windows[det.name]), text, out)
        if self._iban is not None and (hold is None or "iban" in hold):
            self._collect(self._iban, self._iban.find_in(text, [(0, len(text))]), text, out)
        ip_windows = windows["ip_address"] if windows is not None else []
        if ip is not None and (hold is None or "ipv6" in hold or ip_windows):
            self._collect(ip, ip.find_in(text, ip_windows), text, out)

    def _collect(self, det: Detector, hits: Iterator[Hit], text: str, out: list[Finding]) -> None:
        literals = self._allow.get(det.name)
        seen: set[tuple[int, int]] = set()
        for start, end, message in hits:
            if (start, end) in seen or (literals is not None and text[start:end].casefold() in literals):
                continue
            seen.add((start, end))
            out.append(Finding(det.name, start, end, message))

    def _windows(self, text: str, data: bytes) -> dict[str, list[tuple[int, int]]]:
        """Per number detector, the spans of ``text`` where its matches can start.

        ``data`` is the text as ASCII bytes when it is ASCII (else empty); non-ASCII characters
        become ``?`` so byte offsets stay character offsets.
        """
        if not data:
            data = text.encode("ascii", "replace")
        card: list[tuple[int, int]] = []
        ssn: list[tuple[int, int]] = []
        phone: list[tuple[int, int]] = []
        ip: list[tuple[int, int]] = []
        n = len(text)
        minimum = self._MIN_DIGITS
        min_card, min_ssn, min_phone = minimum["credit_card"], minimum["us_ssn"], minimum["phone"]
        skel = data.translate(_RUN_TABLE)
        pos = 0
        while (run := skel.find(_MIN_RUN, pos)) >= 0:
            # ``run`` starts a maximal run of number characters (``pos`` ends the previous one).
            end = skel.find(b" ", run)
            if end < 0:
                end = n
            pos = end
            if 48 <= data[run] <= 57:  # the run starts with a digit (the usual case)
                start = run
            else:
                first = _FIRST_DIGIT.search(data, run, end)
                if first is None or end - first.start() < 7:
                    continue
                start = first.start()
            group = data[start:end]
            digits = len(group.translate(None, _SEPARATORS))
            hi = min(n, end + 2)
            if digits >= min_card:
                card.append((start, hi))
            if digits >= min_ssn:
                ssn.append((start, hi))
            if digits >= min_phone:
                lo = start - 1 if start and text[start - 1] in "+(" else start
                # A run that is just a date (2024-10-15, 15.01.2024) holds no phone candidate but
                # the date itself, which phone rejects; so it is skipped unless a "+" or "(" in
                # front, or a non-ASCII digit glued behind, could make a longer candidate.
                if lo != start or not _DATE_RUN.fullmatch(group) or (end < n and text[end].isdecimal()):
                    phone.append((lo, hi))
            if digits >= 4 and group.count(b".") >= 3:
                ip.append((start, hi))
        return {"credit_card": card, "us_ssn": ssn, "phone": phone, "ip_address": ip}


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
