"""``credit_card``: payment card numbers, Luhn-checked and matched against known issuer ranges.

Accepted shapes: 13-19 bare digits, or the usual print groupings (4-4-4-4[-1..3], 4-4-4-1..3,
4-6-4/5 for Amex and Diners, 4-5-6 for UATP) separated consistently by one space or dash. The
number must not be glued to other digits (or to a decimal point), must pass the Luhn check, and
its prefix and length must belong to a known issuer (Visa, Mastercard incl. 2-series, Amex,
Discover, Diners, JCB, UnionPay, Maestro, Mir, RuPay, Troy, UATP). 13-digit values that read
as epoch-millisecond timestamps between 2001 and 2040 are rejected.

Options: ``allow`` only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ._base import Detector, Hit, luhn_ok

_CARD = re.compile(
    r"\d(?<!\d\d)(?<!\d[.,]\d)"
    r"(?:\d{3}([ -]?)\d{4}\1\d{4}\1\d{4}(?:\1\d{1,3})?"
    r"|\d{3}([ -]?)\d{4}\2\d{4}\2\d{1,3}"
    r"|\d{3}([ -]?)\d{6}\3\d{4,5}"
    r"|\d{3}([ -]?)\d{5}\4\d{6}"
    r"|\d{12,18})"
    r"(?!\d)(?![.,]\d)"
)

# (lowest prefix, highest prefix, allowed lengths); prefixes compared on their own length.
_ISSUERS: tuple[tuple[str, str, frozenset[int]], ...] = (
    ("4", "4", frozenset({13, 16, 19})),  # Visa
    ("51", "55", frozenset({16})),  # Mastercard
    ("2221", "2720", frozenset({16})),  # Mastercard 2-series
    ("34", "34", frozenset({15})),  # Amex
    ("37", "37", frozenset({15})),
    ("6011", "6011", frozenset(range(16, 20))),  # Discover
    ("644", "649", frozenset(range(16, 20))),
    ("65", "65", frozenset(range(16, 20))),
    ("300", "305", frozenset(range(14, 20))),  # Diners
    ("3095", "3095", frozenset(range(14, 20))),
    ("36", "36", frozenset(range(14, 20))),
    ("38", "39", frozenset(range(14, 20))),
    ("3528", "3589", frozenset(range(16, 20))),  # JCB
    ("62", "62", frozenset(range(16, 20))),  # UnionPay
    ("81", "81", frozenset(range(16, 20))),
    ("50", "50", frozenset(range(12, 20))),  # Maestro, Dankort, Verve
    ("56", "69", frozenset(range(12, 20))),  # Maestro, RuPay, InstaPayment ...
    ("2200", "2204", frozenset(range(16, 20))),  # Mir
    ("9792", "9792", frozenset({16})),  # Troy
    ("1", "1", frozenset({15})),  # UATP / AirPlus
)

_MS_2001 = 978_307_200_000
_MS_2040 = 2_208_988_800_000


def issuer_ok(digits: str) -> bool:
    """True when the prefix and length of ``digits`` belong to a known card issuer."""
    n = len(digits)
    for lo, hi, lengths in _ISSUERS:
        if n in lengths and lo <= digits[: len(lo)] <= hi:
            return True
    return False


def is_card_number(digits: str) -> bool:
    """True for a plausible card number: issuer range, Luhn, and not an epoch-ms timestamp."""
    if not 13 <= len(digits) <= 19 or not issuer_ok(digits) or not luhn_ok(digits):
        return False
    if len(digits) == 13 and _MS_2001 <= int(digits) <= _MS_2040:
        return False
    return len(set(digits)) > 1


class CreditCardDetector(Detector):
    """Luhn-valid card numbers in known issuer ranges."""

    name = "credit_card"

    def find(self, text: str) -> Iterator[Hit]:
        """Yield card numbers."""
        return self.find_in(text, [(0, len(text))])

    def find_in(self, text: str, windows: list[tuple[int, int]]) -> Iterator[Hit]:
        """Yield card numbers inside ``windows``."""
        for lo, hi in windows:
            for m in _CARD.finditer(text, lo, hi):
                digits = m.group().replace(" ", "").replace("-", "")
                if is_card_number(digits):
                    yield m.start(), m.end(), "credit card number (Luhn-valid)"
