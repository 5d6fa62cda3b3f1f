"""What ``aigov logs`` shares: time options, the printed form of a record, following new records."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

from daemon.errors import ConfigError
from daemon.storage.interface import DecisionFilter, DecisionReader

DECISIONS = ("allow", "block")


def parse_time(option: str, text: str | None, now: float | None = None) -> float | None:
    """``--since``/``--until``: a duration ago (``1h``, ``7d``) or an ISO 8601 time/date (UTC unless stated)."""
    from daemon.units import parse_duration

    if text is None:
        return None
    now = time.time() if now is None else now
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{option}: {text!r} is neither a duration (30m, 1h, 7d) nor an ISO 8601 time") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp()


def iso_ms(ts: float | None) -> str | None:
    """A UNIX time as ISO 8601 UTC with milliseconds."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


Filter = DecisionFilter


def public(row: dict[str, Any], show_input: bool = False, hashes: bool = True) -> dict[str, Any]:
    """A row as printed: ISO time, rules and reasons parsed, the stored input only when asked."""
    d = dict(row)
    d["time"] = iso_ms(d["time"])
    for k in ("rules", "reasons", "metadata"):
        try:
            d[k] = json.loads(d[k]) if isinstance(d.get(k), str) else d.get(k)
        except ValueError:
            pass
    d.setdefault("direction", None)
    if d["direction"] is None and d.get("kind") == "decision":
        d["direction"] = "input"  # records from before directions were recorded checked inputs
    if not show_input:
        d.pop("input", None)
    if not hashes:
        for k in ("prev_hash", "hash", "format"):
            d.pop(k, None)
    return d


def follow(
    reader: DecisionReader, flt: Filter, emit: Callable[[dict[str, Any]], None], *, start_after: int | None = None,
    cursor: object = None, interval: float = 0.25, stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Call ``emit`` for each matching record written after ``cursor`` (from :meth:`DecisionReader.follow_start`),
    else after record id ``start_after`` (default: now), until ``stop()``."""
    if cursor is None:
        cursor = reader.follow_start(reader.max_id() if start_after is None else start_after)
    while not stop():
        rows, cursor = reader.follow_next(flt, cursor)
        for row in rows:
            emit(row)
        sleep(interval)
