"""The root ``aigov`` command: global options, command registration, error -> exit code mapping.

Exit codes: 0 ok, 1 the check failed (SLA missed, audit finding, key not found),
2 usage or configuration error. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from aigov_cli.commands import daemon_cmds, keys, policy

app = typer.Typer(
    name="aigov",
    help="aigov: a governance checkpoint for calls to AI models.\n\n"
    "Start with `aigov serve`, create a key with `aigov keys create --name demo`, then POST to /v1/check.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from daemon import __version__

        typer.echo(f"aigov {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    home: Annotated[
        Path | None,
        typer.Option("--home", help="Keep every file (config, database, policy, pid, log) under DIR. "
                     "Same as AIGOV_HOME.", metavar="DIR", show_default=False),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True)
    ] = False,
) -> None:
    """Global options."""
    if home is not None:
        os.environ["AIGOV_HOME"] = str(home.expanduser().absolute())


daemon_cmds.register(app)
app.add_typer(keys.app, name="keys")
app.add_typer(policy.app, name="policy")


def _register_optional() -> None:
    """Commands that live in their own modules (loadtest, logs, audit, dashboard)."""
    try:
        from aigov_cli.commands.loadtest import loadtest
    except ImportError:
        pass
    else:
        app.command(
            "loadtest",
            help="Measure the daemon under load (normal, burst, stress, soak) against its SLA.",
        )(loadtest)
    for name in ("logs", "audit", "dashboard"):
        try:
            mod = __import__(f"aigov_cli.commands.{name}", fromlist=["register"])
        except ImportError:
            continue
        mod.register(app)


_register_optional()


def build() -> Any:
    """The click command of the whole app, every parameter behind the UTF-8 boundary (:mod:`textin`)."""
    import typer.main

    from aigov_cli.textin import guard_params

    command = typer.main.get_command(app)
    guard_params(command)
    return command


def run(command: Any, args: list[str]) -> None:
    """Run ``aigov ARGS``; domain errors become one line on stderr and exit 1 or 2 (SystemExit)."""
    from daemon.errors import AigovError, ConfigError, NotFoundError

    try:
        command(args, prog_name="aigov")
    except ConfigError as e:
        _fail(str(e), 2)
    except NotFoundError as e:
        _fail(str(e), 1)
    except AigovError as e:
        _fail(str(e), 2)
    except KeyboardInterrupt:
        _fail("interrupted", 130)


def main() -> None:
    """Entry point of the ``aigov`` console script."""
    os.umask(0o077)  # files holding secrets or decisions are never group/world readable
    run(build(), sys.argv[1:])


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"aigov: error: {message}\n")
    sys.exit(code)
