"""Filtered, paged reads of the ``decisions`` table over a read-only connection."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.errors import ConfigError

PAGE = 1000
COLUMNS = (
    "id", "time", "request_id", "key_id", "model", "operation", "decision", "rules", "reasons", "input_length",
    "input_sha256", "input", "latency_ms", "policy_name", "policy_version", "kind", "prev_hash", "hash",
)
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


@dataclass(frozen=True)
class Filter:
    """What ``aigov logs`` selects; every field is optional."""

    since: float | None = None
    until: float | None = None
    key: str | None = None
    decision: str | None = None
    rule: str | None = None
    model: str | None = None
    checkpoints: bool = False
    request_id: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition and its parameters."""
        conds: list[str] = []
        params: list[Any] = []
        if not self.checkpoints:
            conds.append("kind = 'decision'")
        if self.since is not None:
            conds.append("time >= ?")
            params.append(self.since)
        if self.until is not None:
            conds.append("time < ?")
            params.append(self.until)
        if self.key is not None:
            conds.append("key_id = ?")
            params.append(self.key)
        if self.decision is not None:
            conds.append("decision = ?")
            params.append(self.decision)
        if self.rule is not None:
            conds.append("EXISTS (SELECT 1 FROM json_each(decisions.rules) WHERE json_each.value GLOB ?)")
            params.append(self.rule)
        if self.model is not None:
            conds.append("model GLOB ?")
            params.append(self.model)
        if self.request_id is not None:  # the X-Request-Id of an answer; indexed
            conds.append("request_id = ?")
            params.append(self.request_id)
        return (" AND ".join(conds) or "1"), params


def connect_ro(path: Path) -> sqlite3.Connection | None:
    """A read-only connection, or None when there is no database (or no decisions table) yet."""
    from daemon.storage.db import BUSY_TIMEOUT_MS

    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        has = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'decisions'").fetchone()
    except sqlite3.Error as e:
        from daemon.errors import StorageError

        raise StorageError(f"cannot read database {path}: {e}") from None
    if not has:
        conn.close()
        return None
    return conn


def _columns(conn: sqlite3.Connection) -> tuple[str, ...]:
    have = {r[1] for r in conn.execute("PRAGMA table_info(decisions)")}
    return tuple(c for c in COLUMNS if c in have)


def _row(cols: tuple[str, ...], r: tuple[Any, ...]) -> dict[str, Any]:
    d = dict(zip(cols, r, strict=True))
    d.setdefault("kind", "decision")
    return d


def iter_decisions(
    conn: sqlite3.Connection, flt: Filter, after_id: int = 0, page: int = PAGE
) -> Iterator[dict[str, Any]]:
    """Matching rows in id order, read in pages of ``page`` rows (constant memory)."""
    cols = _columns(conn)
    where, params = flt.where()
    sql = f"SELECT {', '.join(cols)} FROM decisions WHERE id > ? AND {where} ORDER BY id LIMIT ?"
    last = after_id
    while True:
        rows = conn.execute(sql, (last, *params, page)).fetchall()
        for r in rows:
            yield _row(cols, r)
        if len(rows) < page:
            return
        last = rows[-1][0]


def latest(conn: sqlite3.Connection, flt: Filter, limit: int, upto: int | None = None) -> list[dict[str, Any]]:
    """The newest ``limit`` matching rows (with id <= ``upto``), oldest first."""
    cols = _columns(conn)
    where, params = flt.where()
    top = max_id(conn) if upto is None else upto
    rows = conn.execute(
        f"SELECT {', '.join(cols)} FROM decisions WHERE id <= ? AND {where} ORDER BY id DESC LIMIT ?",
        (top, *params, limit),
    ).fetchall()
    return [_row(cols, r) for r in reversed(rows)]


def max_id(conn: sqlite3.Connection) -> int:
    """The highest record id (0 when empty)."""
    return int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM decisions").fetchone()[0])


def public(row: dict[str, Any], show_input: bool = False, hashes: bool = True) -> dict[str, Any]:
    """A row as printed: ISO time, rules and reasons parsed, the stored input only when asked."""
    d = dict(row)
    d["time"] = iso_ms(d["time"])
    for k in ("rules", "reasons"):
        try:
            d[k] = json.loads(d[k]) if isinstance(d[k], str) else d[k]
        except ValueError:
            pass
    if not show_input:
        d.pop("input", None)
    if not hashes:
        d.pop("prev_hash", None)
        d.pop("hash", None)
    return d


def follow(
    path: Path, flt: Filter, emit: Callable[[dict[str, Any]], None], *, start_after: int | None = None,
    interval: float = 0.25, stop: Callable[[], bool] = lambda: False, sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Call ``emit`` for each matching row written after ``start_after`` (default: now), until ``stop()``."""
    conn = None
    last = start_after
    try:
        while not stop():
            if conn is None:
                conn = connect_ro(path)
                if conn is not None and last is None:
                    last = max_id(conn)
            if conn is not None:
                for row in iter_decisions(conn, flt, after_id=last or 0):
                    emit(row)
                    last = row["id"]
                # Rows may have been pruned below `last`; ids only grow, so nothing is missed.
            sleep(interval)
    finally:
        if conn is not None:
            conn.close()
