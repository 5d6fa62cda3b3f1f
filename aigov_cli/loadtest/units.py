"""Parsing of durations, rates and other small units used by the load tester."""

from __future__ import annotations

import re

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m|h)?\s*$")
_DURATION_FACTORS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class UsageError(ValueError):
    """A user-supplied value is invalid; the CLI maps it to exit status 2."""


def parse_duration(text: str, *, what: str = "duration") -> float:
    """Parse ``500ms``, ``30s``, ``10m``, ``1h`` (bare numbers are seconds) into seconds."""
    m = _DURATION_RE.match(text)
    if not m:
        raise UsageError(f"invalid {what} {text!r}: use a number with a unit, like 500ms, 30s, 10m or 1h")
    return float(m.group(1)) * _DURATION_FACTORS[m.group(2)]


def format_duration(seconds: float) -> str:
    """Render seconds compactly: ``1.5s``, ``250ms``, ``10m``."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    if seconds >= 1:
        return f"{seconds:g}s"
    return f"{seconds * 1000:g}ms"


def format_ms(value_ms: float | None) -> str:
    """Render a latency in milliseconds with sensible precision."""
    if value_ms is None:
        return "-"
    if value_ms >= 1000:
        return f"{value_ms / 1000:.2f}s"
    if value_ms >= 100:
        return f"{value_ms:.0f}ms"
    if value_ms >= 10:
        return f"{value_ms:.1f}ms"
    return f"{value_ms:.2f}ms"


def format_bytes(n: float | None) -> str:
    """Render a byte count with binary units."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}GiB"  # pragma: no cover
