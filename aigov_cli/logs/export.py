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
# A spreadsheet runs a cell that starts with one of these as a formula; a client chooses the model,
# operation and input, so such text cells get a leading apostrophe, which spreadsheets show as text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(column: str, value: object) -> object:
    """A record's value as a CSV cell: lists and objects as JSON, text never read as a formula."""
    if column in _JSON_CELLS and value is not None:
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


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
                w.writerow([_csv_cell(c, d.get(c)) for c in cols])
                n += 1
    return n
