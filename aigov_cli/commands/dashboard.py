"""``aigov dashboard``: export the Grafana dashboard, print a Prometheus scrape configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Grafana dashboard and Prometheus configuration for the daemon's metrics.",
                  no_args_is_help=True)


def register(root: typer.Typer) -> None:
    """Add ``aigov dashboard`` to the root app."""
    root.add_typer(app, name="dashboard")


@app.command("export")
def export(
    out: Annotated[Path | None, typer.Option("--out", help="Write to FILE. [default: stdout]", metavar="FILE",
                                             dir_okay=False, show_default=False)] = None,
    title: Annotated[str, typer.Option("--title", help="The dashboard's title.")] = "aigov",
) -> None:
    """Write an importable Grafana dashboard (JSON) of the daemon's metrics."""
    import json

    from aigov_cli.dashboard.grafana import dashboard
    from daemon.errors import ConfigError

    text = json.dumps(dashboard(title), indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"--out: cannot write {out}: {e.strerror}") from None
    typer.echo(f"wrote {out}: import it in Grafana (Dashboards > New > Import) and pick the Prometheus source",
               err=True)


@app.command("prometheus-config")
def prometheus_config(
    job: Annotated[str, typer.Option("--job", help="The job name.")] = "aigov",
    interval: Annotated[str, typer.Option("--interval", help="The scrape interval (a Prometheus duration).")] = "15s",
    full: Annotated[bool, typer.Option("--full", help="Print a whole prometheus.yml instead of one scrape job.")]
    = False,
) -> None:
    """Print a Prometheus scrape job for the local daemon (to add under scrape_configs), or a whole file."""
    from aigov_cli.dashboard.prometheus import check_interval, full_config, job_text
    from aigov_cli.output import config as load_cfg
    from daemon.errors import ConfigError
    from daemon.server import daemon_running

    if not check_interval(interval):
        raise ConfigError(f"--interval: {interval!r} is not a Prometheus duration (e.g. 15s, 1m, 1m30s)")
    if not job.strip():
        raise ConfigError("--job: the job name is empty")
    cfg = load_cfg()
    info = daemon_running(cfg.paths.pid_file)
    url = str((info or {}).get("url") or cfg.url)
    typer.echo((full_config if full else job_text)(url, job, interval), nl=False)
