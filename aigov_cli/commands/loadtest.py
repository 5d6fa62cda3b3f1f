"""``aigov loadtest``: prove the daemon meets its service levels (thin command over aigov_cli.loadtest)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from aigov_cli.loadtest.scenarios import Mode


def loadtest(
    mode: Annotated[Mode, typer.Option("--mode", help="normal | burst | stress | soak.")] = Mode.normal,
    url: Annotated[str | None, typer.Option("--url", help="Daemon URL (default: the local daemon).")] = None,
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            envvar="AIGOV_LOADTEST_KEY",
            help="API token; without it temporary keys are created in the home and deleted at the end.",
        ),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(
            "--rate", help="Arrival rate, req/s (normal 200, burst baseline 20, stress start 100, soak 100)."
        ),
    ] = None,
    duration: Annotated[
        str | None,
        typer.Option(
            "--duration", help="Run length: 30s, 10m (normal 30s, burst 20s, stress max 60s, soak 10m)."
        ),
    ] = None,
    threshold: Annotated[
        list[str] | None,
        typer.Option(
            "--threshold",
            help="k6-style pass criterion, repeatable: 'p95<500ms', 'error_rate<1%', "
            "'rate_limit_accuracy==100%', 'queue_depth<500'.",
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the JSON result to FILE.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the JSON result only.")] = False,
    csv: Annotated[Path | None, typer.Option("--csv", help="Write the per-interval history to FILE.")] = None,
    body_file: Annotated[
        Path | None,
        typer.Option("--body-file", help="JSONL corpus: request objects, or strings used as input_text."),
    ] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No live progress, and the summary only when a threshold fails (the exit code says so).",
    )] = False,
    workers: Annotated[int, typer.Option("--workers", help="Generator processes.")] = 1,
    connections: Annotated[
        int | None,
        typer.Option("--connections", help="Maximum open connections (default: sized for the mode)."),
    ] = None,
    max_requests: Annotated[int | None, typer.Option("--max-requests", help="Stop after N requests.")] = None,
    interval: Annotated[
        str | None, typer.Option("--interval", help="History interval (1s; soak 10s).")
    ] = None,
    timeout: Annotated[str, typer.Option("--timeout", help="Per-request timeout.")] = "10s",
    burst_size: Annotated[
        int, typer.Option("--burst-size", help="burst: simultaneous requests per burst.")
    ] = 100,
    burst_every: Annotated[str, typer.Option("--burst-every", help="burst: time between bursts.")] = "5s",
    probe_limit: Annotated[
        int,
        typer.Option("--probe-limit", help="burst: limit L of each rate-limit probe key (sent 2L at once)."),
    ] = 25,
    stage_duration: Annotated[
        str, typer.Option("--stage-duration", help="stress: length of a stage.")
    ] = "5s",
    step: Annotated[float, typer.Option("--step", help="stress: rate multiplier per stage.")] = 1.5,
    allow_remote: Annotated[
        bool,
        typer.Option("--allow-remote", help="Allow a non-loopback --url (only against systems you own)."),
    ] = False,
    ca_file: Annotated[
        Path | None,
        typer.Option("--ca-file", help="Verify an https:// --url with the CA certificate(s) in this PEM file.",
                     metavar="FILE", dir_okay=False, show_default=False),
    ] = None,
) -> None:
    """Measure latency, errors, rate-limit accuracy and queue depth against the SLA."""
    from aigov_cli.loadtest.app import CommandArgs, RunError, UsageError, execute

    args = CommandArgs(
        mode=mode,
        url=url,
        key=key,
        rate=rate,
        duration=duration,
        thresholds=tuple(threshold or ()),
        out=out,
        json=json_output,
        csv=csv,
        body_file=body_file,
        quiet=quiet,
        workers=workers,
        connections=connections,
        max_requests=max_requests,
        interval=interval,
        timeout=timeout,
        burst_size=burst_size,
        burst_every=burst_every,
        probe_limit=probe_limit,
        stage_duration=stage_duration,
        step=step,
        allow_remote=allow_remote,
        ca_file=ca_file,
    )
    from daemon.errors import ConfigError

    try:
        code = execute(args)
    except (UsageError, RunError) as exc:
        raise ConfigError(str(exc)) from None
    except KeyboardInterrupt:
        from aigov_cli.output import error_lines

        sys.stderr.write(error_lines("interrupted before the run started"))
        raise typer.Exit(1) from None
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise ConfigError(f"{where}{exc.strerror or exc}") from None
    raise typer.Exit(code)
