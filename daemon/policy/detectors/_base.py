"""Shared pieces of the detectors: the finding type, option validation and the detector base class."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class Finding:
    """One detector hit: character offsets into the scanned text (end exclusive) and a fixed message."""

    detector: str
    start: int
    end: int
    message: str


class DetectorOptionError(ValueError):
    """A policy names an unknown detector or gives one an unknown or ill-typed option."""


Hit = tuple[int, int, str]


class Detector(ABC):
    """A compiled detector; instances are immutable and shared by all threads."""

    name: ClassVar[str]
    option_names: ClassVar[frozenset[str]] = frozenset()
    # Literals one of which must occur in the text for any match (empty: no such literal).
    gate: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: Mapping[str, object]) -> None:
        """Validate ``options`` (the generic ``allow`` is handled by the scanner)."""
        for key in options:
            if key != "allow" and key not in self.option_names:
                known = ", ".join(sorted({"allow", *self.option_names}))
                raise DetectorOptionError(f"detector {self.name!r}: unknown option {key!r} (known: {known})")

    @abstractmethod
    def find(self, text: str) -> Iterator[Hit]:
        """Yield ``(start, end, message)`` for every match in ``text``."""

    def find_in(self, text: str, windows: list[tuple[int, int]]) -> Iterator[Hit]:
        """Like :meth:`find`, restricted to matches starting inside ``windows`` (digit detectors override)."""
        return self.find(text)

    def error(self, option: str, problem: str) -> DetectorOptionError:
        """An option error naming this detector and ``option``."""
        return DetectorOptionError(f"detector {self.name!r}: option {option!r} {problem}")

    def str_list(
        self, options: Mapping[str, object], key: str, default: tuple[str, ...] = ()
    ) -> tuple[str, ...]:
        """Option ``key`` as a tuple of strings."""
        value = options.get(key, default)
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise self.error(key, "must be a list of strings")
        if not all(isinstance(v, str) for v in value):
            raise self.error(key, "must be a list of strings")
        return tuple(str(v) for v in value)

    def boolean(self, options: Mapping[str, object], key: str, default: bool) -> bool:
        """Option ``key`` as a boolean."""
        value = options.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, "must be true or false")
        return value

    def number(self, options: Mapping[str, object], key: str, default: float, lo: float, hi: float) -> float:
        """Option ``key`` as a float within ``[lo, hi]``."""
        value = options.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, "must be a number")
        if not lo <= value <= hi:
            raise self.error(key, f"must be between {lo:g} and {hi:g}")
        return float(value)


def shannon_entropy(value: str) -> float:
    """Shannon entropy of ``value`` in bits per character."""
    n = len(value)
    if n == 0:
        return 0.0
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())


def luhn_ok(digits: str) -> bool:
    """True when the digit string passes the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0
