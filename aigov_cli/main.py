"""The root ``aigov`` command: global options, command registration, error -> exit code mapping.

Exit codes: 0 ok, 1 the check failed (SLA missed, audit finding, key not found),
2 usage or configuration error. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import os
import re
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
    """Commands that live in their own modules (loadtest, logs, audit, dashboard, db)."""
    try:
        from aigov_cli.commands.loadtest import loadtest
    except ImportError:
        pass
    else:
        app.command(
            "loadtest",
            help="Measure the daemon under load (normal, burst, stress, soak) against its SLA.",
        )(loadtest)
    for name in ("logs", "audit", "dashboard", "db", "service"):
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


def _click_exceptions() -> Any:
    """Click's exception classes: typer's own copy of click (0.2x), or the click package before it."""
    import importlib

    try:
        return importlib.import_module("typer._click.exceptions")
    except ImportError:
        return importlib.import_module("click.exceptions")


def run(command: Any, args: list[str]) -> None:
    """Run ``aigov ARGS``; every error becomes one line on stderr and exit 1 or 2 (SystemExit)."""
    from daemon.errors import AigovError, ConfigError, NotFoundError

    click = _click_exceptions()
    try:
        code = command.main(args, prog_name="aigov", standalone_mode=False)
    except ConfigError as e:
        _fail(str(e), 2)
    except NotFoundError as e:
        _fail(str(e), 1)
    except AigovError as e:
        _fail(str(e), 2)
    except click.NoArgsIsHelpError as e:  # `aigov keys`: the help, as before
        e.show()
        sys.exit(2)
    except click.UsageError as e:
        _fail(usage_message(e), 2)
    except click.ClickException as e:
        _fail(_sentence(e.format_message()), e.exit_code)
    except typer.Abort:  # click's Abort, which typer re-exports whichever click it carries
        _fail("aborted", 1)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except Exception as e:  # a bug: still one line, with what a report needs; the traceback on request
        if os.environ.get("AIGOV_TRACEBACK"):
            raise
        _fail(f"unexpected {type(e).__name__}: {e} (a bug in aigov; AIGOV_TRACEBACK=1 shows where)", 1)
    sys.exit(code if isinstance(code, int) else 0)


def usage_message(e: Any) -> str:
    """A click usage error as one line: what is wrong, with the values that would be accepted."""
    from aigov_cli.textin import param_label, shown

    click = _click_exceptions()
    ctx = e.ctx
    path = ctx.command_path.split()[1:] if ctx is not None else []
    where = " ".join(path) + ": " if path else ""
    if isinstance(e, click.NoSuchOption):
        if e.possibilities:
            hint = "did you mean " + " or ".join(sorted(e.possibilities)) + "?"
        else:
            hint = "it takes " + (", ".join(_options(ctx)) or "no options")
        return f"{where}no such option {e.option_name} ({hint})"
    if isinstance(e, click.BadOptionUsage) and "requires an argument" in e.message:
        return f"{e.option_name} needs a value"
    if isinstance(e, click.BadParameter) and e.param is not None:
        label = param_label(ctx, e.param)
        accepted = _choices(e.param)
        if isinstance(e, click.MissingParameter):
            what = f"{where}{label} is required"
            return what + (f" (one of: {', '.join(accepted)})" if accepted else "")
        detail = _bad_value(e, accepted, shown)
        return f"{label}: {detail}"
    message = e.format_message()
    if m := re.fullmatch(r"No such command '(.*)'\.(?: Did you mean .*)?", message, re.S):
        return f"{where}no such command {shown(m[1])} (commands: {', '.join(_commands(ctx))})"
    if message == "Missing command.":
        return f"{where}missing command (one of: {', '.join(_commands(ctx))})"
    if m := re.fullmatch(r"Got unexpected extra argument\(s\) \((.*)\)", message, re.S):
        return f"{where}unexpected argument {shown(m[1])} (see {ctx.command_path if ctx else 'aigov'} --help)"
    return _sentence(message)


def _bad_value(e: Any, accepted: list[str], shown: Any) -> str:
    """What is wrong with a value, from the validation error typer raised it for when there is one."""
    errors = getattr(e.__cause__, "errors", None)
    err = errors()[0] if callable(errors) and errors() else None
    if err is None:
        return _sentence(e.message)
    value, kind, limits = err.get("input"), err.get("type", ""), err.get("ctx") or {}
    given = shown(value) if isinstance(value, str) else repr(value)
    if accepted:
        return f"{given} is not one of {', '.join(accepted)}"
    bounds = {"greater_than_equal": ("at least", "ge"), "greater_than": ("more than", "gt"),
              "less_than_equal": ("at most", "le"), "less_than": ("less than", "lt")}
    if kind in bounds:
        words, key = bounds[kind]
        return f"{given} is out of range (must be {words} {limits.get(key)})"
    if kind.startswith("int_"):
        return f"{given} is not a whole number"
    if kind.startswith("float_") or kind == "finite_number":
        return f"{given} is not a number"
    if kind.startswith("bool_"):
        return f"{given} is not true or false"
    return _sentence(str(err.get("msg", e.message)).removeprefix("Value error, "))


def _sentence(message: str) -> str:
    """A library's message as aigov writes errors: one line, lower-case start, no final full stop."""
    line = " ".join(message.split())
    if line[:1].isupper() and not line[1:2].isupper():
        line = line[0].lower() + line[1:]
    return line.rstrip(".")


def _choices(param: Any) -> list[str]:
    desc = getattr(param, "type_descriptor", None)
    found = getattr(desc, "choices", None) if desc is not None else getattr(param.type, "choices", None)
    return [str(getattr(c, "value", c)) for c in found or ()]


def _options(ctx: Any) -> list[str]:
    names = [max(p.opts, key=len) for p in ctx.command.get_params(ctx) if getattr(p, "opts", None)
             and p.opts[0].startswith("-")]
    return sorted(names)


def _commands(ctx: Any) -> list[str]:
    return list(ctx.command.list_commands(ctx)) if ctx is not None and hasattr(ctx.command, "list_commands") else []


def main() -> None:
    """Entry point of the ``aigov`` console script."""
    os.umask(0o077)  # files holding secrets or decisions are never group/world readable
    run(build(), sys.argv[1:])


def _fail(message: str, code: int) -> None:
    from aigov_cli.output import error_lines

    sys.stderr.write(error_lines(message))
    sys.exit(code)
