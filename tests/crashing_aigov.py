"""Test-only ``aigov``: its policy engine raises on an input holding ``crash-me``, and the first write
of a decision whose input holds ``writer-fails`` fails like a full disk.

Run as ``python tests/crashing_aigov.py serve ...`` by test_sentry.py to provoke an internal error
inside a real daemon. The hook lives only here: nothing in aigov itself can be made to crash from
the network on purpose.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from daemon.policy.engine import CompiledPolicy
from daemon.policy.model import Decision
from daemon.storage.records import Entry
from daemon.storage.sqlite_decisions import SqliteDecisionStore

CRASH_MARKER = "crash-me"
WRITER_MARKER = "writer-fails"
_evaluate = CompiledPolicy.evaluate
_write_sync = SqliteDecisionStore.write_sync
_failed: set[str] = set()


def _crashing_evaluate(
    self: CompiledPolicy, model: str, operation: str, text: str, direction: str = "input"
) -> Decision:
    prompt_in_locals = text  # what a real bug's frame would hold: the prompt itself
    if CRASH_MARKER in prompt_in_locals:
        raise RuntimeError("test-only crash inside policy evaluation")
    return _evaluate(self, model, operation, text, direction)


def _failing_write_sync(self: SqliteDecisionStore, batch: Sequence[Entry]) -> None:
    for entry in batch:
        if WRITER_MARKER in entry.input_text and entry.request_id not in _failed:
            _failed.add(entry.request_id)  # once: the writer's retry then succeeds
            raise sqlite3.OperationalError("database or disk is full")
    _write_sync(self, batch)


if __name__ == "__main__":
    CompiledPolicy.evaluate = _crashing_evaluate  # type: ignore[method-assign]
    SqliteDecisionStore.write_sync = _failing_write_sync  # type: ignore[method-assign]
    from aigov_cli.main import main

    main()
