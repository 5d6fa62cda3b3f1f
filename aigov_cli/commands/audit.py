"""``aigov audit``: a read-only security audit of this deployment (files, config, keys, policy, log, daemon)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from aigov_cli.output import config as load_cfg


def register(app: typer.Typer) -> None:
    """Add ``aigov audit`` to the root app."""
    app.command("audit")(audit)


class FailOn(enum.Enum):
    """The ``--fail-on`` threshold."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


def audit(
    url: Annotated[str | None, typer.Option("--url", help="Probe the daemon at this URL. "
                                            "[default: the running daemon of this home]", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    sarif: Annotated[Path | None, typer.Option("--sarif", help="Also write the findings as SARIF 2.1.0 to FILE.",
                                               metavar="FILE", dir_okay=False)] = None,
    fail_on: Annotated[FailOn, typer.Option("--fail-on", help="Exit 1 when a finding is at or above this severity.",
                                            case_sensitive=False)] = FailOn.HIGH,
    skip_deps: Annotated[bool, typer.Option("--skip-deps", help="Do not run pip-audit on the installed packages.")]
    = False,
) -> None:
    """Audit this deployment: file modes, bind address, keys, policy, the decision-log chain, live probes.

    Read-only, except a temporary probe key (deleted afterwards). Exit 1 when a finding is at or above --fail-on.
    """
    import json

    from aigov_cli.audit.model import AuditContext, Severity
    from aigov_cli.audit.render import render_text, to_json, to_sarif
    from aigov_cli.audit.runner import run_audit
    from aigov_cli.output import console, print_json
    from daemon.errors import ConfigError
    from daemon.pidfile import daemon_running

    threshold = Severity(fail_on.value)
    cfg = load_cfg()
    info = daemon_running(cfg.paths.pid_file)
    target = url.rstrip("/") if url else (info or {}).get("url")
    ctx = AuditContext(cfg, url=target, url_given=url is not None, run_deps=not skip_deps, daemon_info=info)
    report = run_audit(ctx)
    if sarif is not None:
        import os

        try:
            fd = os.open(sarif, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        except OSError as e:
            raise ConfigError(f"--sarif: cannot write {sarif}: {e.strerror}") from None
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(to_sarif(report), f, indent=2)
            f.write("\n")
    if as_json:
        print_json(to_json(report, threshold))
    else:
        render_text(report, console())
    if report.failed(threshold):
        raise typer.Exit(1)
