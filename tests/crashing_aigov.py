"""Test-only ``aigov``: its policy engine raises on an input holding ``crash-me``, and the first write
of a decision whose input holds ``writer-fails`` fails like a full disk.

Run as ``python tests/crashing_aigov.py serve ...`` by test_sentry.py to provoke an internal error
inside a real daemon. The hook lives only here: nothing in aigov itself can be made to crash from
the network on purpose.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from daemon.decisionlog import Entry, SqliteDecisionStore
from daemon.policy.engine import CompiledPolicy
from daemon.policy.model import Decision

CRASH_MARKER = "crash-me"
WRITER_MARKER = "writer-fails"
_evaluate = CompiledPolicy.evaluate
_write_batches = SqliteDecisionStore.write_batches
_failed: set[str] = set()


def _crashing_evaluate(self: CompiledPolicy, model: str, operation: str, text: str) -> Decision:
    prompt_in_locals = text  # what a real bug's frame would hold: the prompt itself
    if CRASH_MARKER in prompt_in_locals:
        raise RuntimeError("test-only crash inside policy evaluation")
    return _evaluate(self, model, operation, text)


def _failing_write_batches(self: SqliteDecisionStore, batches: Sequence[Sequence[Entry]]) -> int:
    for batch in batches:
        for entry in batch:
            if WRITER_MARKER in entry.input_text and entry.request_id not in _failed:
                _failed.add(entry.request_id)  # once: the writer's retry then succeeds
                raise sqlite3.OperationalError("database or disk is full")
    return _write_batches(self, batches)


if __name__ == "__main__":
    CompiledPolicy.evaluate = _crashing_evaluate  # type: ignore[method-assign]
    SqliteDecisionStore.write_batches = _failing_write_batches  # type: ignore[method-assign]
    from aigov_cli.main import main

    main()
