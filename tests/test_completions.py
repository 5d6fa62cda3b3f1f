"""The checked-in shell completions are what the Typer app generates now, and the bash one works."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from aigov_cli import completions

DIR = Path(__file__).resolve().parent.parent / "completions"


@pytest.mark.parametrize("name", sorted(completions.FILES.values()))
def test_checked_in_completions_are_current(name: str) -> None:
    want = completions.generate()[name]
    have = (DIR / name).read_text(encoding="utf-8") if (DIR / name).exists() else ""
    assert have == want, f"completions/{name} is stale: run `python -m aigov_cli.completions`"


def test_every_command_and_option_is_in_every_script() -> None:
    tree = completions.build_tree()
    scripts = completions.generate()
    nodes = completions._nodes(tree)
    assert {"logs", "audit", "dashboard", "keys"} <= set(tree.children)
    assert {"export", "stats", "prune"} <= set(tree.children["logs"].children)
    for n in nodes:
        for o in n.options:
            for text in scripts.values():
                assert o.names[-1].lstrip("-") in text


def test_choices_come_from_the_app() -> None:
    audit = completions.build_tree().children["audit"]
    fail_on = [o for o in audit.options if "--fail-on" in o.names][0]
    assert fail_on.choices == ("low", "medium", "high", "critical")
    sarif = [o for o in audit.options if "--sarif" in o.names][0]
    assert sarif.path and sarif.takes_value


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize(("words", "want"), [
    ("aigov ''", "audit dashboard db init keys"),
    ("aigov lo", "loadtest logs"),
    ("aigov logs --since 1h ''", "export prune stats"),
    ("aigov --home /tmp/x keys cr", "create"),
    ("aigov audit --fail-on ''", "low medium high critical"),
    ("aigov logs export --format c", "csv"),
    ("aigov keys create --na", "--name"),
])
def test_bash_completion_works(words: str, want: str) -> None:
    script = (f"source {DIR / 'aigov.bash'}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); "
              "_aigov; echo \"${COMPREPLY[*]}\"")
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(want)


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_script_syntax(shell: str) -> None:
    exe = shutil.which(shell)
    if exe is None:
        pytest.skip(f"{shell} is not installed")
    r = subprocess.run([exe, "-n", str(DIR / f"aigov.{shell}")], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr


_ZSH_MOCKS = ('compdef() { :; }; _describe() { local n=${@[-1]}; print -r -- "${(j: :)${(@)${(@P)n}%%:*}}"; }; '
              'compadd() { print -r -- "${(j: :)${(@P)2}}"; }; _files() { print FILES; }; ')


@pytest.mark.skipif(shutil.which("zsh") is None, reason="needs zsh")
@pytest.mark.parametrize(("words", "want"), [
    ("aigov --home /x logs ''", "export prune stats"),
    ("aigov audit --fail-on ''", "low medium high critical"),
    ("aigov keys create --n", "--name --rate-limit"),
    ("aigov audit --sarif ''", "FILES"),
])
def test_zsh_completion_works(words: str, want: str) -> None:
    n = len(words.split())
    script = f"{_ZSH_MOCKS} source {DIR / 'aigov.zsh'}; words=({words}); CURRENT={n}; _aigov"
    out = subprocess.run(["zsh", "-f", "-c", script], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(want)


@pytest.mark.skipif(shutil.which("fish") is None, reason="needs fish")
def test_fish_completion_works() -> None:
    script = f"source {DIR / 'aigov.fish'}; complete -C 'aigov logs '; complete -C 'aigov audit --fail-on '"
    out = subprocess.run(["fish", "-c", script], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    got = {line.split("\t")[0] for line in out.stdout.splitlines()}
    assert {"export", "stats", "prune", "low", "critical"} <= got
