"""``aigov policy``: check, test, show and reload the governance policy."""

from __future__ import annotations

import enum
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from aigov_cli.output import config as load_cfg
from aigov_cli.output import console, print_json

app = typer.Typer(help="Check, test, show and reload the governance policy.", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
DIRECTIONS = ("input", "output")  # daemon.policy.model.DIRECTIONS, without importing the engine at startup


class Direction(enum.Enum):
    """Which side of a model call a text is."""

    INPUT = "input"
    OUTPUT = "output"


def _load(file: Path | None) -> Any:
    from daemon.policy.loader import load_policy_file, parse_policy

    if file is None:
        return load_policy_file(load_cfg().policy_path)
    from daemon.errors import ConfigError

    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read {file}: {getattr(e, 'strerror', None) or e}") from None
    return parse_policy(text, str(file))


@app.command("check")
def check(
    file: Annotated[Path | None, typer.Argument(help="Policy file to check. [default: the configured one]",
                                                show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate a policy file; errors name the line and field. Exit 2 when invalid."""
    from daemon.policy.loader import PolicyError

    try:
        ps = _load(file)
    except PolicyError as e:
        if as_json:
            print_json({"valid": False, "error": e.errors[0], "errors": e.errors})
            raise typer.Exit(2) from None
        raise
    info = {"valid": True, "source": ps.source, "version": ps.version,
            "policies": {n: {"mode": p.mode.value, "rules": len(p.rules)} for n, p in ps.policies.items()}}
    if as_json:
        print_json(info)
        return
    typer.echo(f"{ps.source}: valid (version {ps.version})")
    for n, p in ps.policies.items():
        typer.echo(f"  {n}: {p.mode.value}, {len(p.rules)} rules")


@app.command("test")
def test(
    input_text: Annotated[str, typer.Option("--input", help="The text to check; '-' reads standard input.")],
    model: Annotated[str, typer.Option("--model", help="Model name.")] = "gpt-4o",
    operation: Annotated[str, typer.Option("--operation", help="Operation.")] = "chat",
    policy: Annotated[str, typer.Option("--policy", help="Named policy to apply.")] = "default",
    direction: Annotated[Direction, typer.Option(
        "--direction", help="input: a text sent to a model; output: a model's answer (rules' applies_to).",
    )] = Direction.INPUT,
    file: Annotated[Path | None, typer.Option("--file", help="Policy file. [default: the configured one]",
                                              show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Evaluate a text with the same engine as the daemon (no daemon needed). Exit 1 when blocked."""
    from daemon.errors import ConfigError

    if input_text == "-":
        from aigov_cli.textin import read_stdin

        input_text = read_stdin("--input -")
    ps = _load(file)
    pol = ps.get(policy)
    if pol is None:
        raise ConfigError(f"unknown policy {policy!r} (the file defines: {', '.join(ps.names)})")
    t0 = time.perf_counter()
    d = pol.evaluate(model, operation, input_text, direction.value)
    elapsed = (time.perf_counter() - t0) * 1e6
    out = {
        "allowed": d.allowed,
        "decision": d.decision,
        "direction": direction.value,
        "reasons": [r.as_dict() for r in d.reasons],
        "policy": {"name": d.policy_name, "version": d.policy_version},
        "redacted_text": d.redacted_text,
        "evaluation_us": round(elapsed, 1),
    }
    if as_json:
        print_json(out)
    else:
        c = console()
        side = ", checked as a model's answer" if direction is Direction.OUTPUT else ""
        c.print(f"[bold]{d.decision.upper()}[/] (policy {d.policy_name} {d.policy_version}, {elapsed:.0f} µs{side})",
                soft_wrap=True)
        # Plain echo, not rich: rich would wrap long texts and change what the user reads back.
        for r in d.reasons:
            where = f" at {r.start}..{r.end}" if r.start is not None else ""
            typer.echo(f"  {r.action:<8} {r.rule:<32} {r.message}{where}")
        if d.redacted_text is not None:
            typer.echo("redacted: " + d.redacted_text)
    if not d.allowed:
        raise typer.Exit(1)


@app.command("show")
def show(
    name: Annotated[str | None, typer.Argument(help="Show only this policy.", show_default=False)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the configured policies: mode, model/operation lists, limits and rules."""
    from daemon.errors import NotFoundError

    ps = _load(None)
    names = [name] if name else ps.names
    out: dict[str, Any] = {"source": ps.source, "version": ps.version, "policies": {}}
    for n in names:
        p = ps.get(n)
        if p is None:
            raise NotFoundError(f"no policy named {n!r} (defined: {', '.join(ps.names)})")
        out["policies"][n] = {
            "mode": p.mode.value,
            "models": {"allow": list(p.models.allow), "deny": list(p.models.deny)},
            "operations": {"allow": list(p.operations.allow), "deny": list(p.operations.deny)},
            "max_input_chars": p.max_input_chars,
            "rules": [
                {"id": r.id, "kind": r.kind, "action": r.action.value,
                 # like options: shown when it says something (a rule checks both directions by default)
                 **({"applies_to": [d for d in DIRECTIONS if d in r.applies_to]}
                    if len(r.applies_to) < len(DIRECTIONS) else {}),
                 **({"detector": r.detector} if r.detector else {}),
                 **({"literal": r.literal} if r.literal is not None else {}),
                 **({"pattern": r.pattern} if r.pattern is not None else {}),
                 **({"options": r.options} if r.options else {})}
                for r in p.rules
            ],
        }
    if as_json:
        print_json(out)
        return
    c = console()
    c.print(f"{ps.source} (version {ps.version})", markup=False, soft_wrap=True)
    for n, p in out["policies"].items():
        c.print(f"\n[bold]{n}[/]: {p['mode']}, max_input_chars {p['max_input_chars']}")
        c.print(f"  models allow {p['models']['allow']} deny {p['models']['deny']}", markup=False, soft_wrap=True)
        c.print(f"  operations allow {p['operations']['allow']} deny {p['operations']['deny']}", markup=False,
                soft_wrap=True)
        for r in p["rules"]:
            what = r.get("detector") or r.get("literal") or r.get("pattern")
            opts = "".join(f" {k}={v!r}" for k, v in r.get("options", {}).items())
            only = f" ({r['applies_to'][0]} only)" if "applies_to" in r else ""
            c.print(f"  {r['action']:<8} {r['id']:<32} {r['kind']}: {what}{opts}{only}", markup=False,
                    soft_wrap=True)


@app.command("reload")
def reload(
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the daemon to confirm "
                                           "(0: do not wait).")] = 10.0,
) -> None:
    """Validate the policy file, then make the running daemon load it (SIGHUP); the old one stays if invalid."""
    import os
    import signal

    from aigov_cli.commands.daemon_cmds import _get_json
    from daemon.errors import AigovError, ConfigError
    from daemon.pidfile import daemon_running
    from daemon.policy.loader import PolicyError

    if not timeout >= 0:  # also NaN
        raise ConfigError(f"--timeout must be 0 (do not wait) or more seconds, not {timeout:g}")
    cfg = load_cfg()
    info = daemon_running(cfg.paths.pid_file)
    pid = int(info["pid"]) if info and info.get("pid") else None
    try:
        ps = _load(None)
    except PolicyError:
        if pid is not None:
            # The daemon validates the file too, keeps its policy and logs why: its log
            # then records every rejected reload, not only those sent by a bare SIGHUP.
            os.kill(pid, signal.SIGHUP)
        raise  # exit 2 with the error; the running policy is unchanged
    if pid is None or info is None:
        raise AigovError("aigov is not running; the new policy applies when it starts")
    os.kill(pid, signal.SIGHUP)
    if timeout == 0:
        typer.echo(f"policy reload sent to the daemon (pid {pid}): version {ps.version} ({', '.join(ps.names)}); "
                   "not waiting for it (--timeout 0)")
        return
    workers = len(info.get("workers") or [pid])
    deadline = time.monotonic() + timeout
    while True:  # at least one look, however short the timeout
        if workers > 1:  # every worker says which policy it runs on the board they share
            from daemon.workers import WorkerBoard

            versions = [s.get("policy_version") for s in WorkerBoard.for_config(cfg).states()]
            done = len(versions) >= workers and all(v == ps.version for v in versions)
        else:
            ready = _get_json(f"{info['url']}/readyz", timeout=max(0.1, min(2.0, deadline - time.monotonic())))
            done = ready is not None and ready.get("policy_version") == ps.version
        if done:
            typer.echo(f"policy reloaded: version {ps.version} ({', '.join(ps.names)})"
                       + (f" in all {workers} workers" if workers > 1 else ""))
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
    raise AigovError(f"the daemon did not confirm policy version {ps.version} within {timeout:g} s; see its log")
