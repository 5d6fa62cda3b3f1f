"""Shared output helpers: JSON on stdout, one-line errors on stderr, times, config access."""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from daemon.config import Config


def print_json(data: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


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


def config(**overrides: Any) -> Config:
    """The configuration with command-line overrides applied (None means not given)."""
    from daemon.config import load_config

    return load_config(overrides)
