"""Shared output helpers: JSON on stdout, one-line errors on stderr, times, config access."""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Iterable, Sequence
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
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def console() -> Console:
    """A rich console on stdout (colour follows NO_COLOR and the terminal)."""
    from rich.console import Console

    return Console(highlight=False)


def err_console() -> Console:
    """A rich console on stderr."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


Column = tuple[str, Callable[[Any], str], dict[str, Any]]
"""A table column: its header, its cell for a row, and rich's options for it (no_wrap, overflow...)."""


def print_table(c: Console, columns: Sequence[Column], rows: Iterable[Any],
                style: Callable[[Any], str | None] | None = None) -> None:
    """A listing without an outer box (a rule under the header), so that narrow terminals keep
    their width for the cells; ``columns`` says what is shown and ``style`` colours a row."""
    from rich import box
    from rich.table import Table

    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for header, _, options in columns:
        t.add_column(header, **options)
    for row in rows:
        t.add_row(*(cell(row) for _, cell, _ in columns), style=style(row) if style else None)
    c.print(t)


def config(**overrides: Any) -> Config:
    """The configuration with command-line overrides applied (None means not given)."""
    from daemon.config import load_config

    return load_config(overrides)
