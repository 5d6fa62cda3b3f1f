"""``aigov logs stats``: counts by decision, rule, key and model, and latency percentiles."""

from __future__ import annotations

from typing import Any

from aigov_cli.logs.query import Filter
from daemon.storage.interface import DecisionReader

TOP = 20


def stats(reader: DecisionReader, flt: Filter) -> dict[str, Any]:
    """Totals, top counts and latency percentiles of the matching decisions (computed by the store)."""
    return reader.stats(flt, TOP)
