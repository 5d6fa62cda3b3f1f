"""``us_ssn``: US Social Security numbers that satisfy the SSA validity rules.

Formats: ``123-45-6789``, ``123 45 6789`` and ``123.45.6789`` (one separator, used twice).
Rules: area not 000, 666 or 900-999; group not 00; serial not 0000. Known void and
advertising numbers are rejected (078-05-1120 "Woolworth", 219-09-9999, 457-55-5462), and so
are the universal placeholders 123-45-6789 and numbers made of one repeated digit
(111-11-1111): they appear in documentation far more often than as anyone's SSN.

A bare 9-digit run (``123456789``) is reported only when an SSN context word ("ssn",
"social security", "SS#", "tax id") appears within 40 characters before it: most bare
9-digit numbers are order ids, zip+4 codes or phone fragments, so without context the
detector leans towards precision.

Options: ``allow`` only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ._base import Detector, Hit

_SSN = re.compile(r"(\d(?<![\w.+\-/]\d)\d\d)([- .])(\d{2})\2(\d{4})(?![\w\-/]|\.\d)")
_BARE = re.compile(r"\d(?<![\w.+\-/]\d)\d{8}(?![\w\-/]|\.\d)")
_CONTEXT = re.compile(r"(?i)\b(?:ssn|ss#|ss no|social security|social sec|tax ?id|taxpayer id|itin)\b")

_VOID = frozenset({"078051120", "219099999", "457555462", "123456789"})


def ssn_valid(digits: str) -> bool:
    """True when a 9-digit string obeys the SSA area/group/serial rules and is not a known void number."""
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    if area == "000" or area == "666" or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return digits not in _VOID and len(set(digits)) > 1


class UsSsnDetector(Detector):
    """US Social Security numbers."""

    name = "us_ssn"

    def find(self, text: str) -> Iterator[Hit]:
        """Yield SSNs in separated form, and bare 9-digit ones after an SSN context word."""
        return self.find_in(text, [(0, len(text))])

    def find_in(self, text: str, windows: list[tuple[int, int]]) -> Iterator[Hit]:
        """Yield SSNs inside ``windows``."""
        for lo, hi in windows:
            for m in _SSN.finditer(text, lo, hi):
                if ssn_valid(m.group(1) + m.group(3) + m.group(4)):
                    yield m.start(), m.end(), "US social security number"
            for m in _BARE.finditer(text, lo, hi):
                if ssn_valid(m.group()) and _CONTEXT.search(text, max(0, m.start() - 40), m.start()):
                    yield m.start(), m.end(), "US social security number (with SSN context)"
