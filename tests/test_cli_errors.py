"""One error format everywhere: ``aigov: error: <what>`` with the accepted values, one line, exit 2."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cli_run import command, run_main
from tests.daemon_proc import AIGOV, cli, env_for


def one_line(err: str) -> str:
    """The single error line (without its newline); fails unless stderr is exactly one aigov error line."""
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith("aigov: error: ") and not err.startswith("aigov: error: aigov: error"), err
    assert "Traceback" not in err and "Usage:" not in err and "Value error" not in err, err
    return err[len("aigov: error: "):-1]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["keys", "create", "--name", "x", "--rate-limit", "100/xyz"],
         "--rate-limit: '100/xyz' is not a rate limit: the period after '/' must be a duration like 60s, 10m, 1h "
         "(use N/PERIOD, e.g. 100/60s or 1000/1h)"),
        (["loadtest", "--rate", "0"], "--rate must be more than 0 and at most 200000 requests per second, not 0"),
        (["loadtest", "--mode", "bogus"], "--mode: 'bogus' is not one of normal, burst, stress, soak"),
        (["logs", "--decision", "maybe"], "--decision: 'maybe' is not one of allow, block"),
        (["logs", "export", "--format", "xml"], "--format: 'xml' is not one of jsonl, csv"),
        (["audit", "--fail-on", "x"], "--fail-on: 'x' is not one of low, medium, high, critical"),
        (["logs", "--limit", "-1"], "--limit: '-1' is out of range (must be at least 0)"),
        (["logs", "--limit", "ten"], "--limit: 'ten' is not a whole number"),
        (["loadtest", "--rate", "fast"], "--rate: 'fast' is not a number"),
        (["keys", "create"], "keys create: --name is required"),
        (["keys", "show"], "keys show: KEY_ID is required"),
        (["keys", "create", "--name"], "--name needs a value"),
        (["keys", "list", "--bogus"], "keys list: no such option --bogus (it takes --all, --help, --json, --wide)"),
        (["keys", "list", "--al"], "keys list: no such option --al (did you mean --all or --help?)"),
        (["--bogus"], "no such option --bogus (it takes --help, --home, --version)"),
        (["keys", "nope"],
         "keys: no such command 'nope' (commands: create, list, show, revoke, delete, rotate, update)"),
        (["keys", "show", "a", "b"], "keys show: unexpected argument 'b' (see aigov keys show --help)"),
    ],
)
def test_usage_and_option_errors_are_one_line(home: Path, args: list[str], expected: str) -> None:
    code, out, err = run_main(args)
    assert (code, out) == (2, "")
    assert one_line(err) == expected


def test_an_unknown_command_lists_the_commands(home: Path) -> None:
    code, _, err = run_main(["nope"])
    line = one_line(err)
    assert code == 2 and line.startswith("no such command 'nope' (commands: init, serve, stop, status, ")
    names = line.split("(commands: ", 1)[1].rstrip(")").split(", ")
    assert {"keys", "policy", "logs", "loadtest", "audit", "dashboard"} <= set(names)


def test_the_real_command_prints_the_same_line(home: Path) -> None:
    r = cli(home, "loadtest", "--mode", "bogus")
    assert r.returncode == 2 and r.stdout == ""
    assert one_line(r.stderr) == "--mode: 'bogus' is not one of normal, burst, stress, soak"
    r = cli(home, "loadtest", "--url", "http://127.0.0.1:9", "--duration", "1s")
    assert r.returncode == 2 and one_line(r.stderr).startswith("no aigov daemon answers at http://127.0.0.1:9")


def _typed_options() -> list[tuple[tuple[str, ...], str, tuple[str, ...]]]:
    """(command path, option, accepted choices) of every option whose value has a type or a set of choices."""
    out: list[tuple[tuple[str, ...], str, tuple[str, ...]]] = []

    def walk(cmd: Any, path: tuple[str, ...]) -> None:
        for p in cmd.params:
            opts = [o for o in p.opts if o.startswith("--")]
            if not opts or getattr(p, "is_flag", False):
                continue
            desc = p.type_descriptor
            if desc.is_choice:
                out.append((path, opts[0], tuple(str(getattr(c, "value", c)) for c in desc.choices)))
            elif desc.annotation in (int, float):
                out.append((path, opts[0], ()))
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(sub, (*path, name))

    walk(command(), ())
    return out


TYPED = _typed_options()


def test_the_typed_sweep_covers_the_commands() -> None:
    assert {" ".join(p) for p, _, _ in TYPED} >= {"logs", "logs export", "audit", "loadtest", "stop",
                                                  "policy reload", "serve"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(TYPED), st.text(st.characters(blacklist_categories=("Cs", "Nd"), blacklist_characters="\x00"),
                                       min_size=1, max_size=12))
def test_every_typed_option_refuses_a_bad_value_in_one_line(
    home: Path, option: tuple[tuple[str, ...], str, tuple[str, ...]], value: str
) -> None:
    path, name, choices = option
    if value.strip().casefold() in {c.casefold() for c in choices} or value.strip().lower() in {
            "inf", "-inf", "+inf", "nan", "infinity", "-infinity", "+infinity", "-nan", "+nan"}:
        return  # accepted
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(home)
        code, out, err = run_main([*path, f"{name}={value}"])
    assert (code, out) == (2, ""), err
    line = one_line(err)
    assert line.startswith(f"{name}: "), line
    if choices:
        assert line.endswith(" is not one of " + ", ".join(choices))


@pytest.mark.parametrize("path", sorted({p for p, _, _ in TYPED} | {("keys", "create"), ("policy", "test")}))
def test_every_command_names_its_options_for_an_unknown_one(home: Path, path: tuple[str, ...]) -> None:
    code, _, err = run_main([*path, "--no-such-option-here"])
    line = one_line(err)
    where = " ".join(path) + ": " if path else ""
    assert code == 2 and line.startswith(f"{where}no such option --no-such-option-here (it takes --"), line
    assert "--help" in line


def _occupied_port() -> tuple[socket.socket, int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s, int(s.getsockname()[1])


@pytest.mark.e2e
@pytest.mark.parametrize("detach", [False, True])
def test_an_occupied_port_is_said_once(home: Path, detach: bool) -> None:
    s, port = _occupied_port()
    with s:
        args = [AIGOV, "serve", "--port", str(port), *(["--detach"] if detach else [])]
        r = subprocess.run(args, capture_output=True, text=True, env=env_for(home), timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    prefix = "the daemon exited at start: " if detach else ""
    assert one_line(r.stderr) == f"{prefix}cannot listen on 127.0.0.1:{port}: address already in use"


def test_an_unexpected_error_is_one_line_with_its_traceback_on_request(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer

    from aigov_cli.main import run

    class Failing:
        def __init__(self, exc: BaseException) -> None:
            self.exc = exc

        def main(self, *args: Any, **kwargs: Any) -> None:
            raise self.exc

    monkeypatch.delenv("AIGOV_TRACEBACK", raising=False)
    for exc, code, line in ((OverflowError("too big"), 1, "aigov: error: unexpected OverflowError: too big (a bug in "
                                                          "aigov; AIGOV_TRACEBACK=1 shows where)\n"),
                            (typer.Abort(), 1, "aigov: error: aborted\n")):
        with pytest.raises(SystemExit) as exit_:
            run(Failing(exc), [])
        assert exit_.value.code == code and capsys.readouterr().err == line
    monkeypatch.setenv("AIGOV_TRACEBACK", "1")
    with pytest.raises(OverflowError):
        run(Failing(OverflowError("too big")), [])


def test_closed_standard_input_is_said_in_one_line(home: Path) -> None:
    r = subprocess.run([AIGOV, "policy", "test", "--input", "-"], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, env=env_for(home), timeout=60, preexec_fn=lambda: os.close(0))
    assert r.returncode == 2
    assert r.stderr == "aigov: error: --input -: there is no standard input to read (it is closed)\n"
