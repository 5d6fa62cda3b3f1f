"""The README's Quick tour, run as a script in a fresh shell: every line does what its comment says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon_proc import free_port

README = Path(__file__).parent.parent / "README.md"


def quick_tour() -> list[str]:
    """The command lines of the README's Quick tour code block."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Quick tour\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"\n```\n(.*?)\n```\n", section, re.S)
    assert block, "the Quick tour has no code block"
    return [line for line in block[1].splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_readme_keeps_its_first_lines() -> None:
    head = README.read_text(encoding="utf-8").splitlines()[:5]
    assert head[0] == "# aigov" and head[3].startswith("make serve") and head[4].startswith("make test")


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_quick_tour_runs_verbatim_in_a_fresh_shell(tmp_path: Path) -> None:
    lines = quick_tour()
    assert lines[0].startswith("export PATH=") and lines[-1] == "aigov stop"
    # A fresh checkout's directory: .venv is the environment running these tests. A fresh user: a new
    # HOME (platformdirs' per-user directories under it), nothing of aigov's in the environment but
    # the port, since 8080 may be taken on this machine.
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / ".venv").symlink_to(Path(sys.prefix))
    home = tmp_path / "user"
    home.mkdir()
    env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", "AIGOV_PORT": str(free_port())}
    script = "".join(f"{line}\necho \"@@rc $?\"\n" for line in lines)
    try:
        r = subprocess.run(["bash", "-c", script], cwd=checkout, env=env, capture_output=True, text=True,
                           timeout=200)
    finally:  # never leave the tour's daemon running, whatever happened
        subprocess.run([str(checkout / ".venv" / "bin" / "aigov"), "stop"], env={**os.environ, **env},
                       capture_output=True, timeout=60)
    codes = [int(c) for c in re.findall(r"^@@rc (\d+)$", r.stdout, re.M)]
    expected = [1 if "exit 1" in line else 0 for line in lines]
    assert codes == expected, (r.stdout[-3000:], r.stderr[-3000:])
    assert "Traceback" not in r.stderr and "aigov: error" not in r.stderr, r.stderr
    assert "aigov started in the background" in r.stdout and "BLOCK" in r.stdout and "PASS" in r.stdout
    assert "aigov stopped" in r.stdout
    assert (home / ".config" / "aigov" / "config.toml").exists()  # the default home, not AIGOV_HOME
