"""``jwt``: JSON Web Tokens (JWS compact form).

Three base64url parts separated by dots; the header and the payload must each decode to a
JSON object, and the header must name an ``alg``. The signature may be empty (``alg: none``).
The parts are bounded (header 2 KB, payload 16 KB encoded) so a huge base64 blob costs one
linear pass.

Options: ``allow`` only.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator

from ._base import Detector, Hit

_JWT = re.compile(
    r"(eyJ(?<![A-Za-z0-9_\-.]eyJ)[A-Za-z0-9_\-]{6,2000})\.(ey[A-Za-z0-9_\-]{4,16000})\.([A-Za-z0-9_\-]{0,2000})"
    r"(?![A-Za-z0-9_\-.])"
)


def _decode_object(part: str) -> dict[str, object] | None:
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    return value if isinstance(value, dict) else None


class JwtDetector(Detector):
    """JWTs whose header and payload decode to JSON objects."""

    name = "jwt"
    gate = ("eyJ",)

    def find(self, text: str) -> Iterator[Hit]:
        """Yield JWTs."""
        if "eyJ" not in text:
            return
        for m in _JWT.finditer(text):
            header = _decode_object(m.group(1))
            if header is None or "alg" not in header or _decode_object(m.group(2)) is None:
                continue
            yield m.start(), m.end(), "JSON Web Token"
