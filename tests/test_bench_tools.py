"""The A/B tool of bench/ must run the code it names: a wrong tree makes every comparison void."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import cpu_ab  # noqa: E402


def test_tree_spec_runs_that_checkout_even_from_this_one(tmp_path: Path) -> None:
    # A stand-in checkout whose aigov_cli says where it was imported from.
    pkg = tmp_path / "aigov_cli"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text("print(__file__)\n")
    cmd, env = cpu_ab.command(f"tree:{tmp_path}", str(tmp_path / "home"), env=dict(os.environ))
    assert env["AIGOV_HOME"] == str(tmp_path / "home")
    # The daemon is started from this checkout's directory, as bench/run.py's Proc does: `python -m`
    # would put it ahead of PYTHONPATH and run this checkout's code instead.
    launcher = cmd[: cmd.index("serve")]
    out = subprocess.run(launcher, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    assert Path(out.strip()).resolve() == (pkg / "__main__.py").resolve()


def test_serve_spec_sets_the_variables_it_names(tmp_path: Path) -> None:
    cmd, env = cpu_ab.command("serve:AIGOV_LOG_BATCH_SIZE=400:AIGOV_LOG_LEVEL=debug", str(tmp_path), env={})
    assert cmd[-3:] == ["serve", "--port", "{port}"]
    assert (env["AIGOV_LOG_BATCH_SIZE"], env["AIGOV_LOG_LEVEL"]) == ("400", "debug")


@pytest.mark.parametrize("spec", ["tree:/nonexistent", "serve:NOEQUALS", "nginx", "bare:x"])
def test_malformed_specs_are_refused(spec: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        cpu_ab.command(spec, str(tmp_path), env={})
