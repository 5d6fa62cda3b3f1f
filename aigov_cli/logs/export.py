"""Streaming export of the decision log as JSON Lines or CSV: one page in memory at a time."""

from __future__ import annotations

import csv
import enum
import json
import sqlite3
from typing import IO

from aigov_cli.logs.query import Filter, iter_decisions, public

CSV_COLUMNS = (
    "id", "time", "request_id", "key_id", "model", "operation", "decision", "rules", "reasons", "input_length",
    "input_sha256", "latency_ms", "policy_name", "policy_version", "kind", "prev_hash", "hash",
)


class ExportFormat(enum.Enum):
    """The formats of ``aigov logs export``."""

    JSONL = "jsonl"
    CSV = "csv"


def export(
    conn: sqlite3.Connection, flt: Filter, fmt: ExportFormat, out: IO[str], show_input: bool = False
) -> int:
    """Write every matching record to ``out``; returns how many were written."""
    n = 0
    match fmt:
        case ExportFormat.JSONL:
            for row in iter_decisions(conn, flt):
                out.write(json.dumps(public(row, show_input), ensure_ascii=False, separators=(",", ":")) + "\n")
                n += 1
        case ExportFormat.CSV:
            cols = (*CSV_COLUMNS[:11], "input", *CSV_COLUMNS[11:]) if show_input else CSV_COLUMNS
            w = csv.writer(out, lineterminator="\n")
            w.writerow(cols)
            for row in iter_decisions(conn, flt):
                d = public(row, show_input)
                # rules and reasons stay JSON inside their cells; CSV has no lists.
                w.writerow([json.dumps(d.get(c), ensure_ascii=False) if c in ("rules", "reasons") else d.get(c)
                            for c in cols])
                n += 1
    return n
