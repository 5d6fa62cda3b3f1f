"""``email``: e-mail addresses with a sane local part and a domain that ends in a real-looking TLD.

The local part is 1-64 characters of letters, digits and ``._%+-`` (no leading, trailing or
doubled dot); the domain has 1-8 dot-separated labels of letters, digits and inner hyphens,
ending in an alphabetic TLD of 2-24 letters or a punycode TLD (``xn--...``).

Options:
- ``allow``: literal addresses never reported (case-insensitive).
- ``allow_domains``: domains whose addresses (and those of their subdomains) are never reported,
  e.g. ``["example.com"]`` also covers ``mail.example.com``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from ._base import Detector, Hit

_EMAIL = re.compile(
    r"(?<![\w.%+\-@])([A-Za-z0-9_%+\-](?:[A-Za-z0-9._%+\-]{0,62}[A-Za-z0-9_%+\-])?)"
    r"@((?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.){1,8}(?:[A-Za-z]{2,24}|xn--[A-Za-z0-9]{1,59}))"
    r"(?![A-Za-z0-9\-@]|\.[A-Za-z0-9])"
)


class EmailDetector(Detector):
    """E-mail addresses."""

    name = "email"
    option_names = frozenset({"allow_domains"})

    def __init__(self, options: Mapping[str, object]) -> None:
        """Read ``allow_domains``."""
        super().__init__(options)
        domains = self.str_list(options, "allow_domains")
        self._domains = tuple(d.strip(".").lower() for d in domains if d.strip("."))

    def find(self, text: str) -> Iterator[Hit]:
        """Yield e-mail addresses outside the allowed domains."""
        for m in _EMAIL.finditer(text):
            if ".." in m.group(1):
                continue
            domain = m.group(2).lower()
            if any(domain == d or domain.endswith("." + d) for d in self._domains):
                continue
            yield m.start(), m.end(), "e-mail address"
