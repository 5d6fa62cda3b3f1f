"""``iban``: International Bank Account Numbers, checked against the IBAN registry and mod-97.

An IBAN is a country code, two check digits and a BBAN. It is reported when the country is
in the SWIFT IBAN registry, the length is that country's length, the BBAN follows the
country's structure (digits, letters or alphanumerics in the registered positions) and the
whole number passes the ISO 7064 mod-97 check. It may be written electronically
(``DE89370400440532013000``) or in print form with single spaces or dashes
(``DE89 3704 0044 0532 0130 00``). Letters must all be upper case or all lower case (mixed
case is almost always something else). The number must not be glued to letters or digits.

Options: ``allow`` only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ._base import Detector, Hit

# IBAN registry: country -> BBAN structure (n digits, a upper-case letters, c alphanumerics).
_REGISTRY: dict[str, str] = {
    "AD": "4!n4!n12!c",
    "AE": "3!n16!n",
    "AL": "8!n16!c",
    "AT": "5!n11!n",
    "AZ": "4!a20!c",
    "BA": "3!n3!n8!n2!n",
    "BE": "3!n7!n2!n",
    "BG": "4!a4!n2!n8!c",
    "BH": "4!a14!c",
    "BI": "5!n5!n11!n2!n",
    "BR": "8!n5!n10!n1!a1!c",
    "BY": "4!c4!n16!c",
    "CH": "5!n12!c",
    "CR": "4!n14!n",
    "CY": "3!n5!n16!c",
    "CZ": "4!n6!n10!n",
    "DE": "8!n10!n",
    "DJ": "5!n5!n11!n2!n",
    "DK": "4!n9!n1!n",
    "DO": "4!c20!n",
    "EE": "2!n2!n11!n1!n",
    "EG": "4!n4!n17!n",
    "ES": "4!n4!n1!n1!n10!n",
    "FI": "3!n11!n",
    "FK": "2!a12!n",
    "FO": "4!n9!n1!n",
    "FR": "5!n5!n11!c2!n",
    "GB": "4!a6!n8!n",
    "GE": "2!a16!n",
    "GI": "4!a15!c",
    "GL": "4!n9!n1!n",
    "GR": "3!n4!n16!c",
    "GT": "4!c20!c",
    "HN": "4!a20!n",
    "HR": "7!n10!n",
    "HU": "3!n4!n1!n15!n1!n",
    "IE": "4!a6!n8!n",
    "IL": "3!n3!n13!n",
    "IQ": "4!a3!n12!n",
    "IS": "4!n2!n6!n10!n",
    "IT": "1!a5!n5!n12!c",
    "JO": "4!a4!n18!c",
    "KW": "4!a22!c",
    "KZ": "3!n13!c",
    "LB": "4!n20!c",
    "LC": "4!a24!c",
    "LI": "5!n12!c",
    "LT": "5!n11!n",
    "LU": "3!n13!c",
    "LV": "4!a13!c",
    "LY": "3!n3!n15!n",
    "MC": "5!n5!n11!c2!n",
    "MD": "2!c18!c",
    "ME": "3!n13!n2!n",
    "MK": "3!n10!c2!n",
    "MN": "4!n12!n",
    "MR": "5!n5!n11!n2!n",
    "MT": "4!a5!n18!c",
    "MU": "4!a2!n2!n12!n3!n3!a",
    "NI": "4!a20!n",
    "NL": "4!a10!n",
    "NO": "4!n6!n1!n",
    "OM": "3!n16!c",
    "PK": "4!a16!c",
    "PL": "8!n16!n",
    "PS": "4!a21!c",
    "PT": "4!n4!n11!n2!n",
    "QA": "4!a21!c",
    "RO": "4!a16!c",
    "RS": "3!n13!n2!n",
    "RU": "9!n5!n15!c",
    "SA": "2!n18!c",
    "SC": "4!a2!n2!n16!n3!a",
    "SD": "2!n12!n",
    "SE": "3!n16!n1!n",
    "SI": "5!n8!n2!n",
    "SK": "4!n6!n10!n",
    "SM": "1!a5!n5!n12!c",
    "SO": "4!n3!n12!n",
    "ST": "4!n4!n11!n2!n",
    "SV": "4!a20!n",
    "TL": "3!n14!n2!n",
    "TN": "2!n3!n13!n2!n",
    "TR": "5!n1!n16!c",
    "UA": "6!n19!c",
    "VA": "3!n15!n",
    "VG": "4!a16!n",
    "XK": "4!n10!n2!n",
    "YE": "4!a4!n18!c",
}

_CLASS = {"n": "[0-9]", "a": "[A-Z]", "c": "[0-9A-Z]"}


def _bban_regex(spec: str) -> re.Pattern[str]:
    parts = re.findall(r"(\d+)!([nac])", spec)
    return re.compile("".join(f"{_CLASS[kind]}{{{count}}}" for count, kind in parts))


_BBAN: dict[str, tuple[int, re.Pattern[str]]] = {}
for _cc, _spec in _REGISTRY.items():
    _rx = _bban_regex(_spec)
    _BBAN[_cc] = (4 + sum(int(c) for c in re.findall(r"(\d+)!", _spec)), _rx)

# Found by its check digits (digits are rarer than letters, so the scan is fast); the
# country code is the two letters before them.
_CANDIDATE = re.compile(
    r"[0-9](?<=[A-Za-z]{2}[0-9])(?<![0-9A-Za-z][A-Za-z]{2}[0-9])[0-9](?:[ -]?[0-9A-Za-z]){8,30}"
)


def iban_valid(iban: str) -> bool:
    """True for an upper-case IBAN without separators that passes registry and mod-97 checks."""
    entry = _BBAN.get(iban[:2])
    if entry is None or len(iban) != entry[0] or not entry[1].fullmatch(iban, 4):
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


class IbanDetector(Detector):
    """IBANs valid per the registry and mod-97."""

    name = "iban"

    def find(self, text: str) -> Iterator[Hit]:
        """Yield IBANs."""
        return self.find_in(text, [(0, len(text))])

    def find_in(self, text: str, windows: list[tuple[int, int]]) -> Iterator[Hit]:
        """Yield IBANs whose check digits start inside ``windows``."""
        for lo, hi in windows:
            yield from self._scan(text, lo, hi)

    def _scan(self, text: str, lo: int, hi: int) -> Iterator[Hit]:
        pos = lo
        stop = min(len(text), hi + 80)
        while (m := _CANDIDATE.search(text, pos, stop)) is not None and m.start() < hi:
            pos = m.start() + 1
            start = m.start() - 2
            hit = self._check(text, start, text[start : m.end()])
            if hit is not None:
                pos = hit
                yield start, hit, "IBAN (mod-97 valid)"

    @staticmethod
    def _check(text: str, start: int, raw: str) -> int | None:
        """The end offset of a valid IBAN starting at ``start``, else ``None``."""
        entry = _BBAN.get(raw[:2].upper())
        if entry is None:
            return None
        length = entry[0]
        count = 0
        end = 0
        for i, ch in enumerate(raw):
            if ch.isalnum():
                count += 1
                if count == length:
                    end = i + 1
                    break
        if not end:
            return None
        stop = start + end
        if stop < len(text) and text[stop].isalnum():
            return None
        span = raw[:end]
        if len({ch for ch in span if not ch.isalnum()}) > 1:
            return None
        iban = span.replace(" ", "").replace("-", "")
        if not (iban.isupper() or iban.islower()) or not iban_valid(iban.upper()):
            return None
        return stop
