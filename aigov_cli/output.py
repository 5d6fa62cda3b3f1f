"""Shared output helpers: JSON on stdout, one-line errors on stderr, times, config access."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from daemon.config import Config


def print_json(data: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def error_lines(message: str) -> str:
    """``aigov: error: MESSAGE`` for stderr; a message of several errors gets the prefix on each line."""
    lines = [line for line in message.splitlines() if line.strip()] or ["unknown error"]
    return "".join(f"aigov: error: {line.removeprefix('aigov: error: ')}\n" for line in lines)


def iso(ts: float | None) -> str | None:
    """A UNIX time as ISO 8601 UTC (``2026-11-27T05:00:00Z``), or None."""
    if ts is None:
        return None
    try:
        return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):  # a stored time no calendar date can show
        return f"{ts:.0f} (UNIX time, beyond year 9999)"


def printable(text: str) -> str:
    """``text`` for a terminal: every character that is not printable (newlines, escape sequences,
    bidi and zero-width controls) written as Python writes it (``\\n``, ``\\x1b``, ``\\u202e``), so that
    what a client sent (a model name, metadata, a key name) cannot forge table rows or drive the
    operator's terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def console() -> Console:
    """A rich console on stdout (colour follows NO_COLOR and the terminal)."""
    from rich.console import Console

    return Console(highlight=False)


def err_console() -> Console:
    """A rich console on stderr."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


@dataclass(frozen=True)
class Column:
    """A table column: its header, its cell for a row, and how it may give way to a narrow terminal.

    ``kind="id"``: an identifier (key id, policy, model, rule id...) is never split across lines; a
    cell may hold several, one per line. ``kind="text"`` (names, stored inputs) folds between words.
    ``drop`` > 0 marks a column that is left out when the table does not fit, highest ``drop``
    first (``--wide`` keeps every column); 0 means always shown.
    """

    header: str
    cell: Callable[[Any], str]
    kind: str = "id"
    drop: int = 0
    justify: str = "left"
    min_width: int = 8
    lines: bool = False  # the cell holds several values, one per line

    def text(self, row: Any) -> str:
        """The cell as shown: each value made printable (see :func:`printable`)."""
        raw = self.cell(row)
        return "\n".join(printable(v) for v in raw.split("\n")) if self.lines else printable(raw)


_GAP = 3  # between two columns: a space of padding on each side of the (blank) rule


_TEXT_WIDTH = 20  # what a text column asks for when the table is fitted; it gets whatever is left over


def _needs(col: Column, cells: list[str]) -> int:
    """The width a column needs: its longest line for identifiers, a readable share for text."""
    from rich.cells import cell_len

    head = cell_len(col.header)
    longest = max((cell_len(line) for c in cells for line in c.splitlines()), default=0)
    if col.kind == "id":
        return max(head, longest)
    return max(head, min(longest, max(col.min_width, _TEXT_WIDTH)))


def fit_columns(columns: Sequence[Column], rows: Sequence[Any], width: int) -> list[Column]:
    """The columns that fit ``width``: droppable ones left out, highest ``drop`` first, until the rest fit;
    then any of those that still fits is taken back, the most wanted (lowest ``drop``) first."""
    needs = {id(col): _needs(col, [col.text(r) for r in rows]) for col in columns}

    def total(cols: list[Column]) -> int:
        return sum(needs[id(col)] for col in cols) + _GAP * (len(cols) - 1)

    shown = list(columns)
    dropped: list[Column] = []
    while total(shown) > width and any(col.drop > 0 for col in shown):
        worst = max((col for col in shown if col.drop > 0), key=lambda col: col.drop)
        shown.remove(worst)
        dropped.append(worst)
    for col in sorted(dropped, key=lambda col: col.drop):
        candidate = [c for c in columns if c is col or any(c is s for s in shown)]
        if total(candidate) <= width:
            shown = candidate
    return shown


def print_table(c: Console, columns: Sequence[Column], rows: Sequence[Any],
                style: Callable[[Any], str | None] | None = None, wide: bool = False) -> None:
    """A listing without an outer box (a rule under the header), fitted to the terminal.

    Columns that do not fit are left out (see :class:`Column`); with ``wide`` every column is
    shown and lines are as long as they need to be.
    """
    from rich import box
    from rich.table import Table
    from rich.text import Text

    shown = list(columns) if wide else fit_columns(columns, rows, c.width)
    if wide:
        need = sum(_needs(col, [col.text(r) for r in rows]) for col in shown) + _GAP * (len(shown) - 1)
        c.width = max(c.width, need)
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for col in shown:
        if col.kind == "id":  # whole, or, when even the kept columns cannot fit, cut with an ellipsis
            t.add_column(col.header, no_wrap=True, overflow="ellipsis", justify=col.justify)  # type: ignore[arg-type]
        else:
            t.add_column(col.header, overflow="fold", min_width=col.min_width, justify=col.justify)  # type: ignore[arg-type]
    for row in rows:
        # Text, not str: a cell is shown as it is, never read as rich markup ("[/]" in a model name).
        t.add_row(*(Text(col.text(row)) for col in shown), style=style(row) if style else None)
    c.print(t)


def config(**overrides: Any) -> Config:
    """The configuration with command-line overrides applied (None means not given)."""
    from daemon.config import load_config

    return load_config(overrides)
