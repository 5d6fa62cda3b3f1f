"""Running ``aigov`` in the test process, as main() runs it, for tests that make many invocations."""

from __future__ import annotations

import contextlib
import io
from functools import cache
from typing import Any


@cache
def command() -> Any:
    """The app's click command, built once (building it takes ~50 ms)."""
    from aigov_cli.main import build

    return build()


def run_main(argv: list[str]) -> tuple[int, str, str]:
    """``aigov ARGV`` through the entry point's error handling: (exit code, stdout, stderr)."""
    from aigov_cli.main import run

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            run(command(), argv)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue(), err.getvalue()
