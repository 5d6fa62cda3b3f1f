"""Folding text for phrase matching: homoglyphs to Latin, invisible characters removed, offsets kept."""

from __future__ import annotations

import bisect
import re
import unicodedata

_MANUAL = {
    # Cyrillic look-alikes
    "а": "a",
    "в": "b",
    "е": "e",
    "ё": "e",
    "к": "k",
    "м": "m",
    "н": "h",
    "о": "o",
    "р": "p",
    "с": "c",
    "т": "t",
    "у": "y",
    "х": "x",
    "і": "i",
    "ї": "i",
    "ј": "j",
    "ѕ": "s",
    "ԁ": "d",
    "ԛ": "q",
    "ԝ": "w",
    "һ": "h",
    "ӏ": "l",
    "ɡ": "g",
    "ո": "n",
    "ս": "u",
    "ց": "g",
    "օ": "o",
    "ք": "p",
    "А": "a",
    "В": "b",
    "Е": "e",
    "К": "k",
    "М": "m",
    "Н": "h",
    "О": "o",
    "Р": "p",
    "С": "c",
    "Т": "t",
    "У": "y",
    "Х": "x",
    "І": "i",
    "Ј": "j",
    "Ѕ": "s",
    "Ԁ": "d",
    "Ԛ": "q",
    "Ԝ": "w",
    "Һ": "h",
    "Ӏ": "l",
    # Greek look-alikes
    "α": "a",
    "β": "b",
    "ε": "e",
    "η": "n",
    "ι": "i",
    "κ": "k",
    "ν": "v",
    "ο": "o",
    "ρ": "p",
    "τ": "t",
    "υ": "u",
    "χ": "x",
    "γ": "y",
    "ω": "w",
    "Α": "a",
    "Β": "b",
    "Ε": "e",
    "Ζ": "z",
    "Η": "h",
    "Ι": "i",
    "Κ": "k",
    "Μ": "m",
    "Ν": "n",
    "Ο": "o",
    "Ρ": "p",
    "Τ": "t",
    "Υ": "y",
    "Χ": "x",
    # other Latin-ish letters
    "ı": "i",
    "ȷ": "j",
    "ɩ": "i",
    "ℓ": "l",
    "ſ": "s",
}


def _build_table() -> dict[int, str]:
    table: dict[int, str] = {}
    ranges = [
        (0xC0, 0x250),
        (0x1E00, 0x1F00),
        (0x2100, 0x2150),
        (0x2460, 0x2500),
        (0xFF21, 0xFF5B),
        (0x1D400, 0x1D800),
        (0x1F130, 0x1F18A),
    ]
    for lo, hi in ranges:
        for cp in range(lo, hi):
            ch = chr(cp)
            folded = unicodedata.normalize("NFKC", ch).casefold()
            if len(folded) != 1 or not ("a" <= folded <= "z"):
                decomposed = unicodedata.normalize("NFKD", ch)
                folded = decomposed[:1].casefold()
                # len() first: "a" <= "ss" <= "z" holds for strings, and ß must not become two letters.
                if len(folded) != 1 or not ("a" <= folded <= "z") or any(
                    not unicodedata.combining(c) for c in decomposed[1:]
                ):
                    continue
            table[cp] = folded
    for src, dst in _MANUAL.items():
        table[ord(src)] = dst
    return table


FOLD_TABLE = _build_table()
# Characters that are deleted before matching: zero-width and format characters, combining
# marks, variation selectors and tags. An attacker puts them inside words to break them up.
_IGNORABLE_RANGES = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x0300, 0x036F),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x2069),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xE0000, 0xE007F),
)
IGNORABLE = re.compile("[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in _IGNORABLE_RANGES) + "]+")


def re2_class(ranges: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> str:
    """An RE2 character class (``[\\x{..}-\\x{..}...]``) of the given code point ranges."""
    return "[" + "".join(f"\\x{{{lo:x}}}-\\x{{{hi:x}}}" for lo, hi in ranges) + "]"


def _changed_ranges() -> list[tuple[int, int]]:
    points = sorted(set(FOLD_TABLE) | {cp for lo, hi in _IGNORABLE_RANGES for cp in range(lo, hi + 1)})
    ranges: list[tuple[int, int]] = []
    for cp in points:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    return ranges


# Every character folding changes (maps or deletes), as an RE2 class: text without any of
# them folds to itself.
CHANGED_CLASS = re2_class(_changed_ranges())


class Folded:
    """Text folded for matching, with a map from folded offsets back to the original text."""

    __slots__ = ("text", "_norm_starts", "_orig_starts")

    def __init__(self, original: str) -> None:
        """Fold ``original``: homoglyphs become Latin letters (one for one), ignorables are deleted."""
        self._norm_starts: list[int] = []
        self._orig_starts: list[int] = []
        if original.isascii():
            self.text = original
            return
        mapped = original.translate(FOLD_TABLE)
        if IGNORABLE.search(mapped) is None:
            self.text = mapped
            return
        pieces: list[str] = []
        norm = 0
        pos = 0
        for m in IGNORABLE.finditer(mapped):
            if m.start() > pos:
                self._norm_starts.append(norm)
                self._orig_starts.append(pos)
                pieces.append(mapped[pos : m.start()])
                norm += m.start() - pos
            pos = m.end()
        if pos < len(mapped):
            self._norm_starts.append(norm)
            self._orig_starts.append(pos)
            pieces.append(mapped[pos:])
        self.text = "".join(pieces)

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """Map a span of the folded text back to the original text."""
        if not self._norm_starts:
            return start, end
        return self._to_original(start), self._to_original(end - 1) + 1

    def _to_original(self, pos: int) -> int:
        i = bisect.bisect_right(self._norm_starts, pos) - 1
        return self._orig_starts[i] + pos - self._norm_starts[i]
