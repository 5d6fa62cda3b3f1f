"""``private_key``: PEM-armoured private keys.

Reported: ``-----BEGIN [RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP ]PRIVATE KEY[ BLOCK]-----``
followed (after optional ``Proc-Type``/``DEK-Info``-style header lines) by at least 40
characters of base64 key material. The finding spans the header to the matching ``END`` line
(or to the end of the key material when the footer is missing or truncated). Public keys,
certificates and bare headers with no key material (documentation, ``...`` placeholders) are
not reported.

Options: ``allow`` only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ._base import Detector, Hit

_BEGIN = re.compile(
    r"-----BEGIN ((?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?)-----"
    r"(?:[ \t]*\r?\n(?:[A-Za-z][A-Za-z\-]{0,30}:[^\n]{0,200}\n){0,4}[ \t]*\r?\n?)?"
    r"[ \t]*([A-Za-z0-9+/=]{40,})"
)
_MAX_KEY_CHARS = 20_000


class PrivateKeyDetector(Detector):
    """PEM private key blocks with key material."""

    name = "private_key"
    gate = ("PRIVATE KEY",)

    def find(self, text: str) -> Iterator[Hit]:
        """Yield private key blocks."""
        if "PRIVATE KEY" not in text:
            return
        for m in _BEGIN.finditer(text):
            footer = f"-----END {m.group(1)}-----"
            end = text.find(footer, m.end(), m.end() + _MAX_KEY_CHARS)
            stop = end + len(footer) if end >= 0 else m.end(2)
            yield m.start(), stop, "private key (PEM)"
