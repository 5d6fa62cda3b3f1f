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
    datasource_uid: Annotated[str | None, typer.Option(
        "--datasource-uid", help="Bind the panels to this Grafana datasource uid (for file provisioning) "
        "instead of asking for the source at import.", metavar="UID", show_default=False)] = None,
) -> None:
    """Write an importable Grafana dashboard (JSON) of the daemon's metrics."""
    import json
    import re

    from aigov_cli.dashboard.grafana import bind_datasource, dashboard
    from daemon.errors import ConfigError

    board = dashboard(title)
    if datasource_uid is not None:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", datasource_uid):
            raise ConfigError("--datasource-uid must be 1 to 40 letters, digits, '-' or '_'")
        board = bind_datasource(board, datasource_uid)
    text = json.dumps(board, indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"--out: cannot write {out}: {e.strerror}") from None
    how = ("provision it with a Grafana dashboards provider" if datasource_uid is not None
           else "import it in Grafana (Dashboards > New > Import) and pick the Prometheus source")
    typer.echo(f"wrote {out}: {how}", err=True)


@app.command("prometheus-config")
def prometheus_config(
    job: Annotated[str, typer.Option("--job", help="The job name.")] = "aigov",
    interval: Annotated[str, typer.Option("--interval", help="The scrape interval (a Prometheus duration).")] = "15s",
    url: Annotated[str | None, typer.Option(
        "--url", help="Scrape the daemon at this URL (e.g. http://aigov:8080 in a compose network). "
        "[default: the daemon of this home]", show_default=False)] = None,
    full: Annotated[bool, typer.Option("--full", help="Print a whole prometheus.yml instead of one scrape job.")]
    = False,
) -> None:
    """Print a Prometheus scrape job for the local daemon (to add under scrape_configs), or a whole file."""
    import re

    from aigov_cli.dashboard.prometheus import check_interval, full_config, job_text
    from aigov_cli.output import config as load_cfg
    from daemon.errors import ConfigError
    from daemon.pidfile import daemon_running

    if not check_interval(interval):
        raise ConfigError(f"--interval: {interval!r} is not a Prometheus duration (e.g. 15s, 1m, 1m30s)")
    if not job.strip():
        raise ConfigError("--job: the job name is empty")
    if url is not None:
        if not re.fullmatch(r"https?://[^\s/'\"]+/?", url):
            raise ConfigError(f"--url must be http://HOST:PORT or https://HOST:PORT, not {url!r}")
    else:
        cfg = load_cfg()
        info = daemon_running(cfg.paths.pid_file)
        url = str((info or {}).get("url") or cfg.url)
    typer.echo((full_config if full else job_text)(url, job, interval), nl=False)
