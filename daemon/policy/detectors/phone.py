"""``phone``: telephone numbers, validated with the ``phonenumbers`` library.

A cheap regular expression finds phone-shaped spans (an optional ``+`` country code, an
optional area code in parentheses, digit groups separated by single spaces, dots or dashes).
Shapes that are something else are dropped before the library is asked: dates
(``2024-01-15``, ``15.01.2024``), SSN-shaped ``123-45-6789``, dotted quads (IPv4), and bare
digit runs other than 10-11 digits that begin like a phone number (a leading trunk ``0``, a
NANP area code, or an 11-digit ``1...`` mobile). Each remaining span is checked by
``phonenumbers.PhoneNumberMatcher`` at leniency ``VALID``: international numbers (``+...``)
for any country; national numbers only for the configured regions, and only for the regions
whose number plan the digits can fit (a precheck against the library's metadata, because the
matcher costs about 0.1 ms per call). If a span does not validate, it is retried without its
first group when that group is followed by a space and the rest is grouped with other
separators (a zip code or house number in front of ``440-600-5124``). At most
``MAX_MATCHER_CALLS`` (64) distinct spans are sent to the matcher per scan, so a megabyte of
phone-shaped digits costs milliseconds, not seconds; numbers beyond that budget go unreported.
The matcher's answers are kept in a process-wide cache of :data:`CACHE_SIZE` spans: the same
numbers come back request after request (a support line in a prompt template, a retried
prompt), and a cached answer costs a dictionary lookup instead of 40-60 µs. A cached span still
counts against the budget, so what a scan reports never depends on what earlier scans saw.

Options:
- ``allow``: literal numbers never reported.
- ``regions``: ISO region codes for national-format numbers; default
  ``["US", "GB", "IN", "IL", "JP", "CN", "BR", "AU", "FR"]``. ``DE`` is left out of the
  default because its variable-length plan accepts dates and other digit groups as valid.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping

import phonenumbers
from phonenumbers import Leniency, PhoneMetadata, PhoneNumberMatcher

from ._base import Detector, Hit

DEFAULT_REGIONS = ("US", "GB", "IN", "IL", "JP", "CN", "BR", "AU", "FR")

_TAIL = r"\d{1,12}(?:[ .\-]\d{1,10}){0,6}(?![\w@]|[.\-/:]\d)"
_CANDIDATE = re.compile(
    r"\+(?<![\w+\-./:@]\+)\d{1,3}[ .\-]?(?:\(\d{1,5}\)[ .\-]?)?"
    + _TAIL
    + r"|\((?<![\w+\-./:@]\()\d{1,5}\)[ .\-]?"
    + _TAIL
    + r"|\d(?<![\w+\-./:@]\d)(?<!\d[.,]\d)(?:\d{0,11}(?:[ .\-]\d{1,10}){0,6}(?![\w@]|[.\-/:]\d))"
)
MAX_MATCHER_CALLS = 64
CACHE_SIZE = 4096  # spans of at most a few dozen characters: well under 1 MB
# Regions where a national number is always written with its trunk 0 (CN, IN and BR mobiles are not).
_TRUNK_ZERO_WRITTEN = frozenset(
    {"GB", "IL", "JP", "AU", "FR", "DE", "NL", "AT", "CH", "BE", "NZ", "IE", "ZA"}
)
_NUMBER_TYPES = (
    "fixed_line",
    "mobile",
    "toll_free",
    "premium_rate",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
)
_NON_DIGIT = re.compile(r"\D")
_GROUP_SEP = re.compile(r"[ .\-]")
_DATE = re.compile(r"\d{4}([-./])\d{1,2}\1\d{1,2}|\d{1,2}([-./])\d{1,2}\2\d{2,4}")
_SSN_SHAPE = re.compile(r"\d{3}([- .])\d{2}\1\d{4}")
_IPV4_SHAPE = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")


class PhoneDetector(Detector):
    """Telephone numbers (international anywhere, national for the configured regions)."""

    name = "phone"
    option_names = frozenset({"regions"})

    def __init__(self, options: Mapping[str, object]) -> None:
        """Read and check ``regions``."""
        super().__init__(options)
        regions = tuple(r.upper() for r in self.str_list(options, "regions", DEFAULT_REGIONS))
        supported = phonenumbers.SUPPORTED_REGIONS
        for region in regions:
            if region not in supported:
                raise self.error("regions", f"contains unknown region {region!r}")
        plans: list[tuple[str, str, re.Pattern[str]]] = []
        for region in regions:
            md = PhoneMetadata.metadata_for_region(region)
            if md is None:
                continue
            descs = (getattr(md, attr, None) for attr in _NUMBER_TYPES)
            patterns = [
                d.national_number_pattern for d in descs if d is not None and d.national_number_pattern
            ]
            if patterns:
                plans.append(
                    (region, md.national_prefix or "", re.compile("|".join(f"(?:{p})" for p in patterns)))
                )
        self._plans = tuple(plans)

    def find(self, text: str) -> Iterator[Hit]:
        """Yield validated phone numbers."""
        return self.find_in(text, [(0, len(text))])

    def find_in(self, text: str, windows: list[tuple[int, int]]) -> Iterator[Hit]:
        """Yield validated phone numbers inside ``windows``."""
        budget = _Budget()
        for lo, hi in windows:
            yield from self._scan(text, lo, hi, budget)

    def _scan(self, text: str, lo: int, hi: int, budget: _Budget) -> Iterator[Hit]:
        for m in _CANDIDATE.finditer(text, lo, hi):
            span = m.group()
            offset = m.start()
            for _ in range(3):
                hit = self._check(span, budget)
                if hit is not None:
                    yield offset + hit[0], offset + hit[1], "phone number"
                    break
                sep = _GROUP_SEP.search(span)
                if sep is None or sep.group() != " " or span.startswith("+") or " " in span[sep.end() :]:
                    break
                offset += sep.end()
                span = span[sep.end() :]

    def _check(self, span: str, budget: _Budget) -> tuple[int, int] | None:
        digits = _NON_DIGIT.sub("", span)
        if not 7 <= len(digits) <= 15:
            return None
        if _DATE.fullmatch(span) or _SSN_SHAPE.fullmatch(span) or _IPV4_SHAPE.fullmatch(span):
            return None
        if span.startswith("+"):
            return budget.match(span, "US")
        if span.isdigit() and not _bare_plausible(digits):
            return None
        for region, prefix, plan in self._plans:
            if prefix == "0" and digits[0] != "0" and region in _TRUNK_ZERO_WRITTEN:
                continue
            nsn = digits[len(prefix) :] if prefix and digits.startswith(prefix) else digits
            if plan.fullmatch(nsn) or plan.fullmatch(digits):
                hit = budget.match(span, region)
                if hit is not None:
                    return hit
        return None


def _bare_plausible(digits: str) -> bool:
    n = len(digits)
    if digits[0] == "0":
        return n in (10, 11)
    if n == 10:
        return digits[0] != "1"
    return n == 11 and digits[0] == "1"


class _Budget:
    """Per-scan cap on the distinct (span, region) pairs asked of the matcher."""

    __slots__ = ("asked",)

    def __init__(self) -> None:
        self.asked: set[tuple[str, str]] = set()

    def match(self, span: str, region: str) -> tuple[int, int] | None:
        key = (span, region)
        if key not in self.asked:
            if len(self.asked) >= MAX_MATCHER_CALLS:
                return None
            self.asked.add(key)
        return _first_number(span, region)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _first_number(span: str, region: str) -> tuple[int, int] | None:
    """Where in ``span`` the first valid number for ``region`` lies (40-60 µs uncached)."""
    for match in PhoneNumberMatcher(span, region, leniency=Leniency.VALID):
        return match.start, match.end
    return None
