"""Live progress with rich: elapsed/remaining, achieved vs target rate, percentiles, errors, queue depth."""

from __future__ import annotations

import sys
import time
from typing import Any

from aigov_cli.loadtest.runner import LiveState
from aigov_cli.loadtest.units import format_ms


class RichProgress:
    """A rich ``Live`` panel refreshed a few times per second; warnings go to stderr."""

    def __init__(self, console: Any) -> None:
        from rich.live import Live

        self.console = console
        self._state: LiveState | None = None
        self._last = 0.0
        self.live = Live(self._render(), console=console, refresh_per_second=4, transient=False)
        self.warnings: list[str] = []

    def __enter__(self) -> RichProgress:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._state is not None:
            self.live.update(self._render())
        self.live.__exit__(None, None, None)

    def update(self, state: LiveState) -> None:
        """Redraw at most every 200 ms."""
        self._state = state
        now = time.monotonic()
        if now - self._last >= 0.2:
            self._last = now
            self.live.update(self._render())

    def warn(self, message: str) -> None:
        """Print a warning above the live panel."""
        self.warnings.append(message)
        self.live.console.print(f"[yellow]warning:[/yellow] {message}")

    def _render(self) -> Any:
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        s = self._state
        t = Table.grid(padding=(0, 2))
        if s is None:
            t.add_row("starting…")
            return t
        elapsed = s.elapsed()
        remaining = max(0.0, s.planned_s - elapsed)
        ps = s.hist.percentiles((50.0, 95.0, 99.0))
        bar = ProgressBar(total=max(s.planned_s, 1e-9), completed=min(elapsed, s.planned_s), width=30)
        t.add_row(f"[bold]{s.label}[/bold]", bar, f"{elapsed:5.1f}s elapsed, {remaining:5.1f}s left")
        t.add_row("rate", f"{s.achieved_rate():8.1f}/s", f"target {s.target_rate:g}/s")
        t.add_row(
            "latency",
            f"p50 {format_ms(_ms(ps[50.0]))}",
            f"p95 {format_ms(_ms(ps[95.0]))}  p99 {format_ms(_ms(ps[99.0]))}",
        )
        m = s.main
        t.add_row("requests", f"{m.sent} sent", f"ok {m.ok}  429s {m.rate_limited}  errors {m.errors}  "
                  f"in flight {m.sent - m.completed - m.abandoned}  late {s.late}")
        if s.probe.sent:
            p = s.probe
            t.add_row("probes", f"{p.sent} sent", f"ok {p.ok}  429s {p.rate_limited}  errors {p.errors}  "
                      "(rate-limit probe keys, not counted above)")
        q = "-" if s.queue_depth is None else f"{s.queue_depth:g}"
        t.add_row("daemon", f"queue {q}", "")
        return t


def _ms(us: int | None) -> float | None:
    return None if us is None else us / 1000


class StderrWarnings:
    """No live display (``--quiet``, ``--json`` or not a terminal): warnings go to stderr."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.warnings: list[str] = []

    def update(self, state: LiveState) -> None:
        """No display."""

    def warn(self, message: str) -> None:
        """Print a warning on stderr unless quiet."""
        self.warnings.append(message)
        if not self.quiet:
            print(f"warning: {message}", file=sys.stderr)
