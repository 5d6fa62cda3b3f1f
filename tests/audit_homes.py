"""Helpers to build aigov homes with decisions in them, for the audit and logs tests."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from daemon.storage.records import VALUE_FIELDS, Fingerprinter, RecordBuilder
from daemon.storage.sqlite_decisions import SqliteDecisionStore


def record(i: int, t: float | None = None, **over: Any) -> dict[str, Any]:
    """A plausible decision record (without id and hashes)."""
    block = i % 4 == 0
    rec: dict[str, Any] = {
        "time": time.time() if t is None else t,
        "request_id": f"req-{i:07d}",
        "key_id": "aaaaaaaaaaaa" if i % 2 else "bbbbbbbbbbbb",
        "model": "gpt-4o" if i % 3 else "claude-3",
        "operation": "chat",
        "direction": "input",
        "decision": "block" if block else "allow",
        "rules": json.dumps(["pii.credit_card"] if block else []),
        "reasons": json.dumps([{"rule": "pii.credit_card", "detector": "credit_card", "action": "block",
                                "message": "credit card number", "start": 3, "end": 19}] if block else []),
        "input_length": 20,
        "input_fingerprint": hashlib.sha256(str(i).encode()).hexdigest(),
        "input": f"my [credit_card] {i}" if block else f"hello {i}",
        "latency_ms": float(i % 100) / 10,
        "policy_name": "default",
        "policy_version": "abc123",
        "rate_limit": "ok",
        "metadata": None,
        "kind": "decision",
    }
    rec.update(over)
    return rec


def records(n: int, start: int = 0, t0: float | None = None, step: float = 1.0) -> Iterator[dict[str, Any]]:
    """``n`` records, one ``step`` seconds apart, ending about now."""
    t0 = time.time() - n * step if t0 is None else t0
    for i in range(start, start + n):
        yield record(i, t0 + (i - start) * step)


def write_decisions(db: Path, recs: Iterator[dict[str, Any]] | list[dict[str, Any]], batch: int = 5000) -> None:
    """Append records to one writer's hash chain in batches."""
    store = SqliteDecisionStore(db, "test/w0", RecordBuilder(Fingerprinter(b"t" * 32)))
    store.open_sync()
    try:
        buf: list[tuple[Any, ...]] = []
        for r in recs:
            buf.append(tuple(r[f] for f in VALUE_FIELDS))
            if len(buf) >= batch:
                store.append_values(buf)
                buf = []
        if buf:
            store.append_values(buf)
    finally:
        store.close_sync()
