"""``ip_address``: IPv4 and IPv6 addresses, validated with :mod:`ipaddress`.

IPv4 is four dotted decimal octets (0-255, no leading zeros). It is not reported when it is
glued to letters, digits or dots (``v1.2.3.4``, ``1.2.3.4.5``: OIDs, longer version numbers)
or when the word before it is a version word (``version 1.2.3.4``, ``ver``, ``v``,
``release``, ``build``, ``firmware``): a four-part version number is a valid address but not
personal data. A CIDR suffix is allowed after the address but not included in the finding.

IPv6 is any form :class:`ipaddress.IPv6Address` accepts (compressed, embedded IPv4, with a
``%zone``); it must not be glued to letters, digits or colons, so ``std::cout`` and MAC
addresses never match. The unspecified address ``::`` is not reported (it names no host and
is mostly punctuation in code). An IPv4 address inside an IPv6 one is reported once, as the
IPv6 address.

Options:
- ``allow``: literal addresses never reported.
- ``include_private`` (bool, default ``true``): report every valid address, including private,
  loopback, link-local and reserved ones (they still reveal network layout). With ``false``
  only globally routable addresses are reported.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping

from ._base import Detector, Hit

_V4 = re.compile(r"\d(?<![\w.]\d)\d{0,2}\.(?:\d{1,3}\.){2}\d{1,3}(?![\w]|\.\d)")
_V6 = re.compile(
    r"(?<![\w:.%])[0-9A-Fa-f:]{2,39}(?:(?<=:)\d{1,3}(?:\.\d{1,3}){3})?(?:%[0-9A-Za-z_.\-]{1,15})?(?![\w:]|\.\d)"
)
_HEX = frozenset("0123456789abcdefABCDEF")
_RUN_END = re.compile(r"[^0-9A-Fa-f:]")
_VERSION_WORD = re.compile(r"(?i)(?:\b(?:version|ver|v|release|build|firmware|rev)\.?\s{0,3}|\bv)$")


class IpAddressDetector(Detector):
    """IPv4 and IPv6 addresses."""

    name = "ip_address"
    option_names = frozenset({"include_private"})

    def __init__(self, options: Mapping[str, object]) -> None:
        """Read ``include_private``."""
        super().__init__(options)
        self._include_private = self.boolean(options, "include_private", True)

    def _wanted(self, addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return self._include_private or addr.is_global

    def find(self, text: str) -> Iterator[Hit]:
        """Yield IPv6 addresses, then IPv4 addresses not inside them."""
        return self.find_in(text, [(0, len(text))])

    def find_in(self, text: str, windows: list[tuple[int, int]]) -> Iterator[Hit]:
        """Yield IPv6 addresses (whole text), then IPv4 addresses starting inside ``windows``."""
        v6_spans: list[tuple[int, int]] = []
        pos = 0
        while (colon := text.find(":", pos)) >= 0:
            # An IPv6 candidate starts at most 4 hex digits before its first colon.
            start = colon
            while start > 0 and colon - start < 4 and text[start - 1] in _HEX:
                start -= 1
            m = _V6.match(text, start)
            if m is None:
                # No candidate can start inside this hex-and-colon run: skip past it.
                run_end = _RUN_END.search(text, colon)
                pos = run_end.start() if run_end is not None else len(text)
                continue
            pos = max(m.end(), colon + 1)
            raw = m.group()
            if raw.count(":") < 2:
                continue
            try:
                addr6 = ipaddress.IPv6Address(raw.split("%", 1)[0])
            except ValueError:
                continue
            if int(addr6) == 0:
                continue
            v6_spans.append((m.start(), m.end()))
            if self._wanted(addr6):
                yield m.start(), m.end(), "IPv6 address"
        if "." not in text:
            return
        for lo, hi in windows:
            for m in _V4.finditer(text, lo, hi):
                if any(s <= m.start() and m.end() <= e for s, e in v6_spans):
                    continue
                try:
                    addr4 = ipaddress.IPv4Address(m.group())
                except ValueError:
                    continue
                if _VERSION_WORD.search(text, max(0, m.start() - 12), m.start()):
                    continue
                if self._wanted(addr4):
                    yield m.start(), m.end(), "IPv4 address"
