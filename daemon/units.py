"""Parsing of human units: durations (``90d``, ``500ms``) and rates (``100/60s``)."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
# Beyond these, a value is a typo, and it would overflow what stores and dates can hold.
MAX_DURATION_DAYS = 36_500  # 100 years
MAX_RATE_LIMIT = 1_000_000_000  # requests in one window


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``30s``, ``1h30m``, ``90d``, ``500ms`` or ``0``, at most 100 years;
    ValueError if not one."""
    s = text.strip().lower()
    if not s:
        raise ValueError("empty duration")
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s):
        raise ValueError(f"invalid duration {text!r} (use e.g. 500ms, 30s, 10m, 1h, 90d)")
    if total > MAX_DURATION_DAYS * 86400.0:
        raise ValueError(f"duration {text!r} is longer than {MAX_DURATION_DAYS}d (100 years)")
    return total


def parse_rate(text: str) -> tuple[int, float]:
    """``N/PERIOD`` (``100/60s``, ``5/1m``, ``1000/h``) as (requests, window seconds)."""
    hint = "use N/PERIOD, e.g. 100/60s or 1000/1h"
    n, sep, period = text.strip().partition("/")
    if not sep or not n.strip().isdigit():
        raise ValueError(f"{text!r} is not a rate limit ({hint})")
    period = period.strip()
    if period and period[0].isalpha():
        period = "1" + period
    try:
        window = parse_duration(period)
    except ValueError:
        raise ValueError(f"{text!r} is not a rate limit: the period after '/' must be a duration "
                         f"like 60s, 10m, 1h ({hint})") from None
    limit = int(n)
    if limit < 1 or window <= 0:
        raise ValueError(f"{text!r} is not a rate limit: it needs at least 1 request per positive period ({hint})")
    if limit > MAX_RATE_LIMIT:
        raise ValueError(f"{text!r} is not a rate limit: at most {MAX_RATE_LIMIT:,} requests per period ({hint})")
    return limit, window


def format_duration(seconds: float) -> str:
    """A short human form of a duration: ``60s``, ``1h``, ``90d``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
