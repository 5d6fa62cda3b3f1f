"""``aigov db``: the store's schema and contents (``status``), its migrations (``upgrade``), moving to PostgreSQL
(``copy``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from aigov_cli.output import config as load_cfg

app = typer.Typer(help="The database of keys and decisions: status, schema migrations, copying to PostgreSQL.",
                 no_args_is_help=True)


def register(root: typer.Typer) -> None:
    """Add ``aigov db`` to the root app."""
    root.add_typer(app, name="db")


@app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Show the backend, where it is, the schema version, pending migrations and row counts (migrates nothing)."""
    from aigov_cli.output import print_json
    from daemon.storage import decision_reader

    cfg = load_cfg()
    with decision_reader(cfg, migrate=False) as reader:
        out: dict[str, Any] = {
            "backend": reader.backend,
            "location": reader.location(),
            "database": reader.where(),
            "schema_version": reader.schema_version(),
            "current_version": reader.current_version,
            "pending_migrations": reader.pending_migrations(),
        }
        out["rows"] = reader.counts() if not out["pending_migrations"] else None
    if as_json:
        print_json(out)
        return
    typer.echo(f"backend   {out['backend']} ({out['location']})")
    if out["backend"] == "postgresql":  # the URL may leave them to defaults: say what was looked at
        typer.echo("database  " + ", ".join(f"{k} {v}" for k, v in out["database"].items() if v != ""))
    pending = out["pending_migrations"]
    typer.echo(f"schema    version {out['schema_version']} of {out['current_version']}"
               + (f"; pending: {', '.join(map(str, pending))} (run `aigov db upgrade`)" if pending else ", current"))
    if out["rows"] is not None:
        typer.echo("rows      " + ", ".join(f"{table} {n}" for table, n in out["rows"].items()))


@app.command("upgrade")
def upgrade(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Apply pending schema migrations (each in its own transaction; safe to run from several places at once)."""
    from aigov_cli.output import print_json
    from daemon.storage import decision_reader

    cfg = load_cfg()
    with decision_reader(cfg, migrate=False) as reader:
        applied = reader.upgrade()
        version = reader.schema_version()
    if as_json:
        print_json({"applied": applied, "schema_version": version})
    elif applied:
        typer.echo(f"applied migration(s) {', '.join(map(str, applied))}; schema version {version}")
    else:
        typer.echo(f"nothing to do; schema version {version} is current")


@app.command("copy")
def copy(
    to: Annotated[str, typer.Option("--to", help="The PostgreSQL store to fill: postgresql://USER[:PW]@HOST:PORT/DB.",
                                    metavar="URL", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Copy keys and decisions from the SQLite store into an empty PostgreSQL store (chains verified on arrival)."""
    import asyncio

    from aigov_cli.output import print_json
    from daemon.config import mask_url, postgresql_url_problem
    from daemon.errors import ConfigError
    from daemon.pidfile import daemon_running
    from daemon.storage.pg_copy import copy_sqlite_to_postgres

    cfg = load_cfg()
    if cfg.backend != "sqlite":
        raise ConfigError("aigov db copy copies from the SQLite store, but database_url names "
                          f"{mask_url(cfg.database_url)}; run it where database_url is empty or sqlite:///...")
    if not to.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"--to must be a postgresql://USER[:PASSWORD]@HOST:PORT/DB URL, got {mask_url(to)!r}")
    if why := postgresql_url_problem(to):
        raise ConfigError(f"--to {mask_url(to)}: {why}")
    running = daemon_running(cfg.paths.pid_file)
    # What a daemon writes after the copy's moment would be left behind in SQLite, unseen; one that
    # says it uses another store (started with another database_url) is no risk to this copy.
    if running is not None and running.get("db", str(cfg.db_file)) == str(cfg.db_file):
        raise ConfigError(f"the daemon (pid {running.get('pid') or '?'}) is running on {cfg.db_file}: stop it first "
                          "(aigov stop), so that no decision it writes is left behind by the copy")
    report = asyncio.run(copy_sqlite_to_postgres(cfg.db_file, to))
    if as_json:
        print_json({"from": str(cfg.db_file), "to": mask_url(to), **report.as_dict()})
        return
    typer.echo(f"copied {report.keys} key(s), {report.tombstones} deleted key(s) and {report.decisions} decision(s) "
               f"in {report.chains} chain(s) from {cfg.db_file} to {mask_url(to)}; every chain verifies there")
    typer.echo(f"next: set database_url = \"{mask_url(to)}\" (with its password) in {cfg.paths.config_file}, "
               "and give every daemon the same fingerprint secret file")
