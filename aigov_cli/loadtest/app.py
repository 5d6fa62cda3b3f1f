"""What ``aigov loadtest`` does once its flags are parsed: validate, run, report, choose the exit code."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aigov_cli.loadtest.corpus import default_corpus, load_corpus
from aigov_cli.loadtest.keys import KeyAdmin, default_key_admin
from aigov_cli.loadtest.progress import RichProgress, StderrWarnings
from aigov_cli.loadtest.report import build_document, render_summary, to_json, write_csv
from aigov_cli.loadtest.runner import Observer, RunError, RunOptions, run_loadtest
from aigov_cli.loadtest.scenarios import MAX_DURATION_S, MAX_RATE, MAX_REQUESTS, MODE_DEFAULTS, Mode
from aigov_cli.loadtest.target import parse_target
from aigov_cli.loadtest.thresholds import parse_threshold
from aigov_cli.loadtest.units import UsageError, parse_duration

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
T = TypeVar("T")


@dataclass(frozen=True)
class CommandArgs:
    """The raw flag values of ``aigov loadtest``."""

    mode: Mode = Mode.normal
    url: str | None = None
    key: str | None = None
    rate: float | None = None
    duration: str | None = None
    thresholds: tuple[str, ...] = ()
    out: Path | None = None
    json: bool = False
    csv: Path | None = None
    body_file: Path | None = None
    quiet: bool = False
    workers: int = 1
    connections: int | None = None
    max_requests: int | None = None
    interval: str | None = None
    timeout: str = "10s"
    burst_size: int = 100
    burst_every: str = "5s"
    probe_limit: int = 25
    stage_duration: str = "5s"
    step: float = 1.5
    allow_remote: bool = False
    ca_file: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def default_url() -> str:
    """The running daemon's URL (from its pid file), else the configured one, else ``http://127.0.0.1:8080``.

    ``aigov serve --port N`` or ``--detach`` on another port is found without ``--url``, as
    ``aigov status`` and ``aigov audit`` find it.
    """
    host, port = DEFAULT_HOST, DEFAULT_PORT
    try:
        from daemon.config import load_config
        from daemon.pidfile import daemon_running

        cfg = load_config()
        info = daemon_running(cfg.paths.pid_file)
        if info and info.get("url"):
            return str(info["url"])
        host, port = str(cfg.host), int(cfg.port)
    except Exception:  # no config module yet, or an unreadable config: use the defaults
        pass
    if host in ("0.0.0.0", "", "::"):
        host = DEFAULT_HOST
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _own_cert() -> str | None:
    """This home's ``tls_cert``: the daemon found without ``--url`` is trusted by its own certificate."""
    try:
        from daemon.config import load_config

        cfg = load_config()
    except Exception:  # an unreadable config: default_url() fell back too
        return None
    return cfg.tls_cert if cfg.tls else None


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("aigov")
    except Exception:
        try:
            import daemon

            return str(getattr(daemon, "__version__", ""))
        except ImportError:
            return ""


def build_options(args: CommandArgs) -> RunOptions:
    """Validate the flags into run options; raises :class:`UsageError`."""
    d = MODE_DEFAULTS[args.mode]
    rate = d.rate if args.rate is None else args.rate
    if not 0 < rate <= MAX_RATE:
        raise UsageError(f"--rate must be more than 0 and at most {MAX_RATE:g} requests per second, not {rate:g}")
    duration = d.duration_s if args.duration is None else parse_duration(args.duration, what="--duration")
    if not 0 < duration <= MAX_DURATION_S:
        raise UsageError("--duration must be more than 0 and at most 24h")
    interval = d.interval_s if args.interval is None else parse_duration(args.interval, what="--interval")
    if not 0.1 <= interval <= 3600:
        raise UsageError("--interval must be between 100ms and 1h")
    timeout = parse_duration(args.timeout, what="--timeout")
    if not 0.05 <= timeout <= 600:
        raise UsageError("--timeout must be between 50ms and 10m")
    if not 1 <= args.workers <= max(1, (os.cpu_count() or 1) * 4):
        raise UsageError(f"--workers must be between 1 and {(os.cpu_count() or 1) * 4}")
    if args.connections is not None and not 1 <= args.connections <= 20_000:
        raise UsageError("--connections must be between 1 and 20000")
    max_requests = MAX_REQUESTS if args.max_requests is None else args.max_requests
    if not 1 <= max_requests <= MAX_REQUESTS:
        raise UsageError(f"--max-requests must be between 1 and {MAX_REQUESTS}")
    if not 0 <= args.burst_size <= 10_000:
        raise UsageError("--burst-size must be between 0 and 10000")
    if not 1 <= args.probe_limit <= 1000:
        raise UsageError("--probe-limit must be between 1 and 1000")
    burst_every = parse_duration(args.burst_every, what="--burst-every")
    if burst_every <= 0:
        raise UsageError("--burst-every must be positive")
    stage_s = parse_duration(args.stage_duration, what="--stage-duration")
    if not 0.1 <= stage_s <= MAX_DURATION_S:
        raise UsageError("--stage-duration must be between 100ms and 24h")
    if not 1.01 <= args.step <= 10:
        raise UsageError("--step must be between 1.01 and 10")
    thresholds = tuple(parse_threshold(t) for t in args.thresholds)
    target = parse_target(args.url or default_url(), allow_remote=args.allow_remote,
                          ca_file=str(args.ca_file) if args.ca_file is not None else None,
                          pinned_cert=_own_cert() if args.url is None else None)
    if args.key is not None and not args.key.strip():
        raise UsageError("--key is empty")
    corpus = load_corpus(args.body_file) if args.body_file is not None else default_corpus()
    if args.mode is Mode.stress and stage_s > duration:
        raise UsageError("--stage-duration is longer than --duration (the stress run's total)")
    return RunOptions(
        mode=args.mode,
        target=target,
        key=args.key,
        rate=rate,
        duration_s=duration,
        interval_s=interval,
        thresholds=thresholds,
        corpus=corpus,
        workers=args.workers,
        connections=args.connections,
        timeout_s=timeout,
        max_requests=max_requests,
        burst_size=args.burst_size,
        burst_every_s=burst_every,
        probe_limit=args.probe_limit,
        stage_s=stage_s,
        step=args.step,
    )


def _run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(factory())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(factory())


def execute(args: CommandArgs, admin: KeyAdmin | None = None) -> int:
    """Run ``aigov loadtest``; returns 0 (all thresholds hold) or 1. Raises UsageError/RunError."""
    opts = build_options(args)
    for path in (args.out, args.csv):
        if path is not None and path.parent and not path.parent.exists():
            raise UsageError(f"directory {path.parent} does not exist")
    from rich.console import Console

    console = Console(highlight=False, soft_wrap=False)
    live = console.is_terminal and not args.quiet and not args.json and sys.stdout.isatty()
    observer: Observer
    admin = admin if admin is not None else (default_key_admin() if opts.key is None else None)
    if live:
        progress = RichProgress(console)
        observer = progress
        with progress:
            data = _run(lambda: run_loadtest(opts, admin, observer))
        warnings = progress.warnings
    else:
        quiet_obs = StderrWarnings(quiet=args.quiet and not args.json)
        observer = quiet_obs
        data = _run(lambda: run_loadtest(opts, admin, observer))
        warnings = quiet_obs.warnings
    data.warnings[:0] = [w for w in warnings if not w.startswith("interrupted")]
    doc = build_document(data, version=_version())
    if args.out is not None:
        args.out.write_text(to_json(doc) + "\n", encoding="utf-8")
    if args.csv is not None:
        write_csv(doc, args.csv)
    if args.json:
        sys.stdout.write(to_json(doc) + "\n")
        sys.stdout.flush()
    elif not args.quiet or not doc["passed"]:
        render_summary(doc, console)
    return 0 if doc["passed"] else 1


__all__ = ["CommandArgs", "RunError", "UsageError", "build_options", "default_url", "execute"]
