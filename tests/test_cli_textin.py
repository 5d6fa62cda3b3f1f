"""Text that is not valid UTF-8, in any argument of any command or on stdin: one line, exit 2, no traceback."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cli_run import run_main
from tests.daemon_proc import cli

REDACTING = '[policies.default]\n[[policies.default.rules]]\nid = "pii.email"\ndetector = "email"\naction = "redact"\n'


def _one_error_line(stderr: str) -> str:
    assert stderr.count("\n") == 1 and stderr.startswith("aigov: error: "), stderr
    assert "Traceback" not in stderr
    return stderr


@pytest.mark.parametrize(
    ("args", "label"),
    [
        (("keys", "create", "--name", os.fsdecode(b"bad\xff")), "--name: 'bad\\xff'"),
        (("logs", "--model", os.fsdecode(b"x\xff")), "--model: 'x\\xff'"),
        (("keys", "show", os.fsdecode(b"\xc3(")), "KEY_ID: '\\xc3('"),
        (("policy", "test", "--input", os.fsdecode(b"a\xed\xa0\x80b")), "--input: 'a\\xed\\xa0\\x80b'"),
    ],
)
def test_the_reported_commands_name_the_option(home: Path, args: tuple[str, ...], label: str) -> None:
    (home / "policy.toml").write_text(REDACTING)
    r = cli(home, *args)
    assert r.returncode == 2 and r.stdout == ""
    assert _one_error_line(r.stderr) == f"aigov: error: {label} is not valid UTF-8\n"


def test_stdin_that_is_not_utf8(home: Path) -> None:
    import subprocess

    from tests.daemon_proc import AIGOV, env_for

    (home / "policy.toml").write_text(REDACTING)
    r = subprocess.run([AIGOV, "policy", "test", "--input", "-"], input=b"bad \xff utf8 a@b.example",
                       capture_output=True, env=env_for(home), timeout=60)
    assert r.returncode == 2 and r.stdout == b""
    assert _one_error_line(r.stderr.decode()) == \
        "aigov: error: --input -: standard input is not valid UTF-8 (byte 0xff at offset 4)\n"
    # Valid UTF-8 (and CRLF line ends, read as the text stream read them) still works.
    r = subprocess.run([AIGOV, "policy", "test", "--input", "-"], input="pär a@b.example\r\n".encode(),
                       capture_output=True, env=env_for(home), timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().endswith("redacted: pär [REDACTED:email]\n\n")


def _text_params() -> list[tuple[tuple[str, ...], str, bool]]:
    """(command path, option or argument name, is an option) of every parameter that takes free text."""
    import typer.main

    from aigov_cli.main import app

    out: list[tuple[tuple[str, ...], str, bool]] = []

    def walk(cmd: Any, path: tuple[str, ...]) -> None:
        for p in cmd.params:
            if getattr(p, "is_flag", False) or getattr(p, "count", False):
                continue
            desc = p.type_descriptor
            if desc.is_choice or desc.annotation in (int, float):
                continue  # typed values: the type's own error comes first (tests/test_cli_errors.py)
            opts = [o for o in p.opts if o.startswith("--")]
            out.append((path, opts[0] if opts else p.name, bool(opts)))
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return out


TEXT_PARAMS = _text_params()
ARGV_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")  # what argv can hold
BAD = st.sampled_from([b"\xff", b"\x80", b"\xc3", b"\xed\xa0\x80", b"\xf5\x80\x80\x80", b"\xe2\x82"])


def test_the_sweep_covers_every_command() -> None:
    commands = {" ".join(path) for path, _, _ in TEXT_PARAMS}
    assert {"", "keys create", "keys update", "keys show", "policy test", "policy check", "logs", "logs export",
            "loadtest", "audit", "dashboard export", "serve"} <= commands
    assert len(TEXT_PARAMS) >= 35


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(TEXT_PARAMS), st.text(ARGV_CHARS, max_size=8), BAD, st.text(ARGV_CHARS, max_size=8))
def test_every_text_parameter_refuses_text_that_is_not_utf8(
    home: Path, param: tuple[tuple[str, ...], str, bool], before: str, bad: bytes, after: str
) -> None:
    path, name, is_option = param
    value = os.fsdecode(before.encode() + bad + after.encode())
    argv = [*path, f"{name}={value}"] if is_option else [*path, "--", value]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(home)  # were the boundary broken, a command taking the value as a file name writes here
        code, out, err = run_main(argv)
    assert code == 2 and out == ""
    label = name if is_option else name.upper()
    assert _one_error_line(err).startswith(f"aigov: error: {label}: '"), err
    assert err.endswith("' is not valid UTF-8\n")
