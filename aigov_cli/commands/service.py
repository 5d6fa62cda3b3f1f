"""``aigov service install | uninstall``: run the daemon under systemd."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from aigov_cli.output import config as load_cfg
from aigov_cli.output import print_json

app = typer.Typer(help="Run the daemon as a systemd service (Type=notify, sandboxed, SIGHUP reloads the policy).",
                  no_args_is_help=True)

UserOpt = Annotated[bool, typer.Option("--user", help="A user unit (~/.config/systemd/user) instead of a system one.")]
UnitDirOpt = Annotated[Path | None, typer.Option(
    "--unit-dir", help="Put the unit in DIR instead of systemd's directory (for packaging).", metavar="DIR",
    file_okay=False, show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


def register(root: typer.Typer) -> None:
    """Add ``aigov service`` to the root app."""
    root.add_typer(app, name="service")


def _systemctl(user: bool, *args: str) -> str:
    return " ".join(["systemctl", *(["--user"] if user else []), *args])


@app.command("install")
def install(
    user: UserOpt = False,
    run_as: Annotated[str | None, typer.Option(
        "--run-as", help="System units: the user the daemon runs as. [default: the user who ran sudo, or you]",
        metavar="USER", show_default=False)] = None,
    print_only: Annotated[bool, typer.Option("--print", help="Print the unit; write nothing.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace a different existing unit.")] = False,
    unit_dir: UnitDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write aigov.service for this home's configuration (then: systemctl daemon-reload; enable --now)."""
    from aigov_cli.systemd import UNIT_NAME, render_unit, unit_spec
    from aigov_cli.systemd import unit_dir as default_dir
    from daemon.errors import ConfigError

    cfg = load_cfg()
    spec = unit_spec(cfg, user, run_as)
    text = render_unit(spec)
    if print_only:
        typer.echo(text, nl=False)
        return
    path = (unit_dir or default_dir(user)) / UNIT_NAME
    if user:
        cfg.paths.ensure()  # ReadWritePaths must exist when the service starts
    try:
        old = path.read_text(encoding="utf-8") if path.exists() else None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    if old is not None and old != text and not force:
        raise ConfigError(f"{path} exists and differs; --force replaces it (--print shows the new unit)")
    changed = old != text
    if changed:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            path.chmod(0o644)  # systemd reads it; it holds no secret
        except OSError as e:
            hint = "" if user else " (system units need root: sudo aigov service install, or --user)"
            raise ConfigError(f"cannot write {path}: {e.strerror}{hint}") from None
    commands = [_systemctl(user, "daemon-reload"), _systemctl(user, "enable", "--now", "aigov"),
                f"journalctl {'--user-unit' if user else '-u'} aigov -f"]
    out: dict[str, Any] = {
        "unit_file": str(path), "scope": "user" if user else "system", "written": changed,
        "exec_start": list(spec.command), "home": str(spec.home) if spec.home else None,
        "run_as": spec.run_as, "next": commands,
    }
    if as_json:
        print_json(out)
        return
    typer.echo(f"{'wrote' if changed else 'unchanged'} {path}")
    typer.echo(f"  runs   {' '.join(spec.command)}" + (f" as {spec.run_as}" if spec.run_as else ""))
    typer.echo(f"  home   {spec.home or 'the user directories of platformdirs'}")
    typer.echo("  next   " + "\n         ".join(commands))


@app.command("uninstall")
def uninstall(user: UserOpt = False, unit_dir: UnitDirOpt = None, as_json: JsonOpt = False) -> None:
    """Remove aigov.service (stop it first: systemctl disable --now aigov)."""
    from aigov_cli.systemd import UNIT_NAME
    from aigov_cli.systemd import unit_dir as default_dir
    from daemon.errors import ConfigError

    path = (unit_dir or default_dir(user)) / UNIT_NAME
    existed = path.exists()
    if existed:
        try:
            path.unlink()
        except OSError as e:
            raise ConfigError(f"cannot remove {path}: {e.strerror}") from None
    commands = [_systemctl(user, "daemon-reload")] if existed else []
    if as_json:
        print_json({"unit_file": str(path), "removed": existed, "next": commands})
        return
    if existed:
        typer.echo(f"removed {path}")
        typer.echo(f"  next   {commands[0]}")
    else:
        typer.echo(f"no unit at {path}: nothing to remove")
