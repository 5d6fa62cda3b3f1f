"""Streaming export of the decision log as JSON Lines or CSV: one page in memory at a time."""

from __future__ import annotations

import csv
import enum
import json
from typing import IO

from aigov_cli.logs.query import Filter, public
from daemon.storage.interface import DecisionReader

CSV_COLUMNS = (
    "id", "time", "request_id", "key_id", "model", "operation", "direction", "decision", "rules", "reasons",
    "input_length", "input_fingerprint", "latency_ms", "policy_name", "policy_version", "rate_limit", "metadata",
    "kind", "chain", "seq", "prev_hash", "hash",
)
_JSON_CELLS = ("rules", "reasons", "metadata")


class ExportFormat(enum.Enum):
    """The formats of ``aigov logs export``."""

    JSONL = "jsonl"
    CSV = "csv"


def export(
    reader: DecisionReader, flt: Filter, fmt: ExportFormat, out: IO[str], show_input: bool = False
) -> int:
    """Write every matching record to ``out``; returns how many were written."""
    n = 0
    match fmt:
        case ExportFormat.JSONL:
            for row in reader.iter_decisions(flt):
                out.write(json.dumps(public(row, show_input), ensure_ascii=False, separators=(",", ":")) + "\n")
                n += 1
        case ExportFormat.CSV:
            fp = CSV_COLUMNS.index("input_fingerprint") + 1
            cols = (*CSV_COLUMNS[:fp], "input", *CSV_COLUMNS[fp:]) if show_input else CSV_COLUMNS
            w = csv.writer(out, lineterminator="\n")
            w.writerow(cols)
            for row in reader.iter_decisions(flt):
                d = public(row, show_input)
                # rules and reasons stay JSON inside their cells; CSV has no lists.
                w.writerow([json.dumps(d.get(c), ensure_ascii=False) if c in _JSON_CELLS and d.get(c) is not None
                            else d.get(c) for c in cols])
                n += 1
    return n
