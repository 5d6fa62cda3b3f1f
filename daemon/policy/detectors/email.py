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

_LOCAL = re.compile(r"[A-Za-z0-9._%+\-]{1,64}$")
_DOMAIN = re.compile(
    r"((?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.){1,8}(?:[A-Za-z]{2,24}|xn--[A-Za-z0-9]{1,59}))"
    r"(?![A-Za-z0-9\-@]|\.[A-Za-z0-9])"
)
_BEFORE_LOCAL = frozenset("@%+-_.")
# An "@" worth a closer look: a local-part character before it, a domain label and a dot after it.
_AT = re.compile(r"@(?<=[A-Za-z0-9._%+\-]@)(?=[A-Za-z0-9\-]{1,63}\.)")


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
        for m in _AT.finditer(text):
            at = m.start()
            nxt = text.find("@", at + 1, at + 260)
            hit = self._address(text, at, nxt if nxt >= 0 else min(len(text), at + 260))
            if hit is not None:
                yield hit

    def _address(self, text: str, at: int, limit: int) -> Hit | None:
        local_m = _LOCAL.search(text, max(0, at - 64), at)
        domain_m = _DOMAIN.match(text, at + 1, limit)
        if local_m is None or domain_m is None:
            return None
        start = local_m.start()
        local = local_m.group()
        if start > 0 and (text[start - 1].isalnum() or text[start - 1] in _BEFORE_LOCAL):
            return None
        if local[0] == "." or local[-1] == "." or ".." in local:
            return None
        domain = domain_m.group(1).lower()
        if any(domain == d or domain.endswith("." + d) for d in self._domains):
            return None
        return start, domain_m.end(), "e-mail address"
