"""``aigov init``, ``serve``, ``stop`` and ``status``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Annotated, Any

import typer

from aigov_cli.output import config as load_cfg
from aigov_cli.output import print_json


def register(app: typer.Typer) -> None:
    """Add the daemon commands to the root app."""
    app.command("init")(init)
    app.command("serve")(serve)
    app.command("stop")(stop)
    app.command("status")(status)


def _write_private(path: Any, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def init(
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Write a commented default config.toml and policy.toml (never overwrites without --force)."""
    from daemon.config import default_config_text
    from daemon.policy.loader import default_policy_text

    cfg = load_cfg()
    cfg.paths.ensure()
    for path, text in ((cfg.paths.config_file, default_config_text()), (cfg.policy_path, default_policy_text())):
        if path.exists() and not force:
            typer.echo(f"kept     {path} (exists; --force overwrites)")
            continue
        _write_private(path, text)
        typer.echo(f"wrote    {path}")
    typer.echo(f"database {cfg.db_file} ({'exists' if cfg.db_file.exists() else 'created on first use'})")


def _setup_logging(level: str) -> None:
    import logging

    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )


def serve(
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on. [default: 127.0.0.1]",
                                             show_default=False)] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port to listen on (0: any free port). [default: 8080]",
                                             show_default=False)] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Run in the background; log to the home's aigov.log.")
    ] = False,
    workers: Annotated[str | None, typer.Option(
        "--workers", metavar="N|auto",
        help="Processes on the one port (0 or auto: one per core). More than 1 needs rate_limit_url on Redis, "
        "so that limits stay exact across them. [default: 1]", show_default=False)] = None,
) -> None:
    """Run the daemon in the foreground (log lines on stderr) until SIGTERM or Ctrl-C."""
    import asyncio

    from daemon.pidfile import already_running, daemon_running
    from daemon.server import serve as run
    from daemon.server import serve_workers
    from daemon.workers import check_workers, worker_count

    cfg = load_cfg(host=host, port=port, workers=workers)
    n = worker_count(cfg)
    check_workers(cfg, n)
    running = daemon_running(cfg.paths.pid_file)
    if running:  # checked here too so that --detach fails before it spawns anything
        raise already_running(running)
    if detach:
        _detach(cfg, host, port, workers)
        return
    _setup_logging(cfg.log_level)

    def ready(url: str) -> None:
        from aigov_cli.systemd import notify

        notify(f"READY=1\nSTATUS=listening on {url}")  # Type=notify units: systemctl start returns now
        sys.stderr.write(
            f"aigov is ready at {url}\n"
            f"  create a key:  aigov keys create --name demo\n"
            f"  send a check:  curl -H 'Authorization: Bearer <token>' -H 'Content-Type: application/json' "
            f"-d '{{\"model\":\"gpt-4o\",\"operation\":\"chat\",\"input_text\":\"hello\"}}' {url}/v1/check\n"
        )
        sys.stderr.flush()

    if n > 1:
        serve_workers(cfg, n, ready)
        return
    try:
        import uvloop
    except ImportError:
        asyncio.run(run(cfg, ready))
    else:
        uvloop.run(run(cfg, ready))


def _detach(cfg: Any, host: str | None, port: int | None, workers: str | None) -> None:
    """Start ``aigov serve`` as a background process and wait until it answers."""
    from daemon.errors import ConfigError
    from daemon.pidfile import daemon_running

    cfg.paths.ensure()
    args = [sys.executable, *_same_package_flags(), "-m", "aigov_cli", "serve"]
    if host is not None:
        args += ["--host", host]
    if port is not None:
        args += ["--port", str(port)]
    if workers is not None:
        args += ["--workers", workers]
    logf = os.open(cfg.paths.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True)
    os.close(logf)
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            tail = cfg.paths.log_file.read_text(errors="replace").strip().splitlines()[-1:]
            last = tail[0].removeprefix("aigov: error: ") if tail else f"nothing in {cfg.paths.log_file}"
            raise ConfigError(f"the daemon exited at start: {last}")
        info = daemon_running(cfg.paths.pid_file)
        if info and info.get("url") and _get_json(f"{info['url']}/healthz") is not None:
            typer.echo(f"aigov started in the background: pid {info['pid']}, {info['url']}")
            typer.echo(f"  log: {cfg.paths.log_file}   stop: aigov stop")
            return
        time.sleep(0.1)
    raise ConfigError(f"the daemon did not become ready within 30 s; see {cfg.paths.log_file}")


def _same_package_flags() -> list[str]:
    """Interpreter flags that make ``python -m aigov_cli`` import the aigov this process runs.

    ``-m`` puts the working directory first on the path, so started from a directory holding
    another ``aigov_cli`` (a checkout of another version, say) the daemon would run that code.
    ``-P`` leaves it out, unless this process itself was imported from there.
    """
    from pathlib import Path

    import aigov_cli

    here = Path(aigov_cli.__file__).resolve().parent.parent
    try:
        from_cwd = here == Path.cwd().resolve()
    except OSError:  # the working directory was removed
        from_cwd = False
    return [] if from_cwd else ["-P"]


def _get_json(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """GET a JSON document from this home's daemon; None when it does not answer with JSON.

    An https URL is verified against the configured ``tls_cert`` (pinned, see daemon.tls): this
    home's daemon is reached at the address in its pid file, which its certificate may not name.
    """
    import urllib.error
    import urllib.request

    from daemon.errors import ConfigError
    from daemon.tls import local_client_context

    try:
        context = local_client_context(load_cfg()) if url.startswith("https:") else None
    except ConfigError:
        return None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as r:
            data = json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            data = json.loads(e.read())
        except ValueError:
            return None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def stop(
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the daemon to exit.")] = 60.0,
) -> None:
    """Stop the running daemon (SIGTERM) and wait until it has flushed and exited."""
    import signal

    from daemon.errors import AigovError
    from daemon.pidfile import daemon_running

    cfg = load_cfg()
    info = daemon_running(cfg.paths.pid_file)
    if not info or not info.get("pid"):
        typer.echo("aigov is not running")
        return
    pid = int(info["pid"])
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        typer.echo("aigov is not running")
        return
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not daemon_running(cfg.paths.pid_file):
            typer.echo(f"aigov stopped (pid {pid})")
            return
        time.sleep(0.05)
    raise AigovError(f"the daemon (pid {pid}) did not exit within {timeout:g} s")


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Show whether the daemon runs: pid, url, uptime, keys, decision-log queue depth. Exit 1 if not running."""
    from daemon.pidfile import daemon_running

    cfg = load_cfg()
    info = daemon_running(cfg.paths.pid_file)
    out: dict[str, Any] = {"running": bool(info), "home": str(cfg.paths.home or cfg.paths.config_dir),
                           "db": cfg.database}
    if info:
        # A supervisor lists the workers that listen, possibly none for a moment; a lone daemon, itself.
        out.update(pid=info.get("pid"), url=info.get("url"), workers=info.get("workers", [info.get("pid")]))
        ready = _get_json(f"{info.get('url')}/readyz") if info.get("url") else None
        if ready:
            out.update(
                uptime_seconds=ready.get("uptime_seconds"), active_keys=ready.get("active_keys"),
                queue_depth=ready.get("queue_depth"), ready=ready.get("ready"),
                policy_version=ready.get("policy_version"), version=ready.get("version"),
                decision_log_healthy=ready.get("decision_log_healthy"), problems=ready.get("problems", []),
                degraded=ready.get("degraded", []),
            )
        else:
            out["ready"] = False
    if as_json:
        print_json(out)
    elif info:
        typer.echo(f"aigov is running: pid {out['pid']}, {out['url']}")
        if out["workers"] != [out["pid"]]:
            n = len(out["workers"])
            typer.echo(f"  {n} worker{'' if n == 1 else 's'} listening: pids {', '.join(map(str, out['workers']))}"
                       if n else "  no worker listening now (starting or restarting)")
        if "uptime_seconds" in out:
            typer.echo(
                f"  uptime {out['uptime_seconds']:.0f}s, {out['active_keys']} active keys, "
                f"decision-log queue {out['queue_depth']}, policy {out['policy_version']}"
            )
            for problem in out["problems"]:
                typer.echo(f"  not ready: {problem}")
            for problem in out["degraded"]:
                typer.echo(f"  degraded: {problem}")
        else:
            typer.echo("  (not answering /readyz)")
    else:
        typer.echo("aigov is not running")
    if not info:
        raise typer.Exit(1)
