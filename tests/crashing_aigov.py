"""Test-only ``aigov``: its policy engine raises on an input holding ``crash-me``.

Run as ``python tests/crashing_aigov.py serve ...`` by test_sentry.py to provoke an internal error
inside a real daemon. The hook lives only here: nothing in aigov itself can be made to crash from
the network on purpose.
"""

from __future__ import annotations

from daemon.policy.engine import CompiledPolicy
from daemon.policy.model import Decision

CRASH_MARKER = "crash-me"
_evaluate = CompiledPolicy.evaluate


def _crashing_evaluate(self: CompiledPolicy, model: str, operation: str, text: str) -> Decision:
    prompt_in_locals = text  # what a real bug's frame would hold: the prompt itself
    if CRASH_MARKER in prompt_in_locals:
        raise RuntimeError("test-only crash inside policy evaluation")
    return _evaluate(self, model, operation, text)


if __name__ == "__main__":
    CompiledPolicy.evaluate = _crashing_evaluate  # type: ignore[method-assign]
    from aigov_cli.main import main

    main()
