"""``aigov logs stats``: counts by decision, rule, key and model, and latency percentiles, computed in SQL."""

from __future__ import annotations

import math
import sqlite3
from typing import Any

from aigov_cli.logs.query import Filter

PERCENTILES = (50, 90, 95, 99)
TOP = 20


def _counts(conn: sqlite3.Connection, expr: str, where: str, params: list[Any], source: str = "decisions",
            limit: int | None = TOP) -> dict[str, int]:
    lim = f" LIMIT {int(limit)}" if limit else ""
    rows = conn.execute(
        f"SELECT {expr} AS k, COUNT(*) AS n FROM {source} WHERE {where} GROUP BY k ORDER BY n DESC, k{lim}", params
    ).fetchall()
    return {str(k) if k is not None else "-": int(n) for k, n in rows}


def stats(conn: sqlite3.Connection, flt: Filter) -> dict[str, Any]:
    """Totals, top counts and latency percentiles of the matching decisions."""
    where, params = flt.where()
    total, first, last = conn.execute(f"SELECT COUNT(*), MIN(time), MAX(time) FROM decisions WHERE {where}",
                                      params).fetchone()
    out: dict[str, Any] = {
        "total": int(total),
        "first": first,
        "last": last,
        "by_decision": _counts(conn, "decision", where, params, limit=None),
        "by_rule": _counts(conn, "json_each.value", where, params, "decisions, json_each(decisions.rules)"),
        "by_key": _counts(conn, "key_id", where, params),
        "by_model": _counts(conn, "model", where, params),
        "latency_ms": latency_percentiles(conn, where, params),
    }
    return out


def latency_percentiles(conn: sqlite3.Connection, where: str, params: list[Any]) -> dict[str, float | None]:
    """Nearest-rank percentiles of latency_ms from one sorted pass (SQLite sorts; Python holds one row)."""
    n = conn.execute(f"SELECT COUNT(latency_ms) FROM decisions WHERE {where}", params).fetchone()[0]
    out: dict[str, float | None] = {f"p{p}": None for p in PERCENTILES}
    out["max"] = None
    out["mean"] = None
    if not n:
        return out
    rank = {p: max(1, math.ceil(p / 100 * n)) for p in PERCENTILES}
    cur = conn.execute(
        f"SELECT latency_ms FROM decisions WHERE {where} AND latency_ms IS NOT NULL ORDER BY latency_ms", params
    )
    total = 0.0
    value = 0.0
    for i, (value,) in enumerate(cur, 1):
        total += value
        for p, r in rank.items():
            if r == i:
                out[f"p{p}"] = round(value, 3)
    out["max"] = round(value, 3)
    out["mean"] = round(total / n, 3)
    return out
