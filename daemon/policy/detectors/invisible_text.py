"""``invisible_text``: characters that render as nothing but can smuggle instructions or reorder text.

Reported (consecutive characters form one finding):
- zero-width characters: U+200B ZERO WIDTH SPACE, U+200C/U+200D ZWNJ/ZWJ, U+2060 WORD JOINER,
  U+2061-U+2064 invisible operators, U+FEFF (except as a byte-order mark at the very start);
- bidirectional controls: U+202A-U+202E embeddings/overrides and U+2066-U+2069 isolates
  ("Trojan Source"). U+200E/U+200F (LRM/RLM) are not reported: they are common in
  legitimate right-to-left text and cannot reorder it on their own;
- Unicode tag characters U+E0000-U+E007F ("ASCII smuggling");
- private-use characters (U+E000-U+F8FF and planes 15-16).

Not reported: emoji sequences (ZWJ between pictographs, e.g. family and profession emoji,
with variation selectors and skin-tone modifiers around them), flag tag sequences
(U+1F3F4 followed by tag letters and U+E007F CANCEL TAG, e.g. the flag of England), ZWJ/ZWNJ
between two letters of a non-Latin script (Persian, Indic), and combining accents.

Options: ``allow`` only.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

from ._base import Detector, Hit
from ._fold import re2_class

_RANGES = (
    (0x200B, 0x200D),
    (0x2060, 0x2064),
    (0xFEFF, 0xFEFF),
    (0x202A, 0x202E),
    (0x2066, 0x2069),
    (0xE0000, 0xE007F),
    (0xE000, 0xF8FF),
    (0xF0000, 0xFFFFD),
    (0x100000, 0x10FFFD),
)
_INVISIBLE = re.compile("[" + "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in _RANGES) + "]+")
# The characters this detector reports, as an RE2 class (a finding needs one of them).
GATE_CLASS = re2_class(_RANGES)
_FLAG_TAGS = re.compile("\U0001f3f4[\U000e0020-\U000e007e]{1,12}\U000e007f")
_EMOJI_NEAR = re.compile("[\ufe0f\U0001f3fb-\U0001f3ff]")


def _pictographic(ch: str) -> bool:
    cp = ord(ch)
    return (
        0x1F000 <= cp <= 0x1FAFF
        or 0x2600 <= cp <= 0x27BF
        or 0x2B00 <= cp <= 0x2BFF
        or 0x2190 <= cp <= 0x21FF
        or 0x2300 <= cp <= 0x23FF
        or cp in (0x00A9, 0x00AE, 0x203C, 0x2049, 0x2122, 0x2139, 0x3030, 0x303D)
    )


def _emoji_side(text: str, i: int, step: int) -> bool:
    """True when the nearest non-modifier character from ``i`` in direction ``step`` is a pictograph."""
    for _ in range(3):
        if not 0 <= i < len(text):
            return False
        ch = text[i]
        if _EMOJI_NEAR.match(ch):
            i += step
            continue
        return _pictographic(ch)
    return False


def _script_letter(ch: str) -> bool:
    return not ch.isascii() and (ch.isalpha() or unicodedata.category(ch) in ("Mn", "Mc"))


class InvisibleTextDetector(Detector):
    """Zero-width, bidi-control, tag and private-use characters."""

    name = "invisible_text"

    def find(self, text: str) -> Iterator[Hit]:
        """Yield runs of invisible characters that are not part of emoji or script shaping."""
        if text.isascii():
            return
        flags = [(m.start(), m.end()) for m in _FLAG_TAGS.finditer(text)] if "\U000e007f" in text else []
        for m in _INVISIBLE.finditer(text):
            start, end = m.start(), m.end()
            run = m.group()
            if any(s <= start and end <= e for s, e in flags):
                continue
            if run in ("\u200d", "\u200c") and self._joiner_ok(text, start):
                continue
            if start == 0 and run == "\ufeff":
                continue
            if run[0] == "\ufeff" and start == 0:
                start += 1
            yield start, end, _message(run)

    @staticmethod
    def _joiner_ok(text: str, i: int) -> bool:
        if text[i] == "\u200d" and _emoji_side(text, i - 1, -1) and _emoji_side(text, i + 1, 1):
            return True
        return 0 < i < len(text) - 1 and _script_letter(text[i - 1]) and _script_letter(text[i + 1])


def _message(run: str) -> str:
    cp = ord(run[0])
    if 0xE0000 <= cp <= 0xE007F:
        return "invisible Unicode tag characters"
    if 0x202A <= cp <= 0x202E or 0x2066 <= cp <= 0x2069:
        return "bidirectional control characters"
    if cp >= 0xE000 and cp != 0xFEFF:
        return "private-use characters"
    return "zero-width characters"
