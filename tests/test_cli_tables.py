"""Human tables stay readable in an 80-column terminal (or a pipe): what one copies is never cut."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.daemon_proc import cli, create_key


@pytest.mark.parametrize("columns", [80, 140])
def test_keys_list_shows_whole_key_ids(home: Path, columns: int) -> None:
    short = create_key(home, "demo")
    long = create_key(home, "a much longer key name for the production cluster", "--expires-in", "30d")
    r = cli(home, "keys", "list", COLUMNS=str(columns))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns
    for key in (short, long):
        row = next(line for line in lines if key["key_id"] in line)  # whole, on one line
        assert "active" in row and "100/1m" in row and "default" in row
    long_row = next(line for line in lines if long["key_id"] in line)
    assert long_row.split()[-2].count("-") == 2  # the expiry day, not cut
    assert ("created" in lines[0]) is (columns >= 100)


def test_audit_table_folds_paths_instead_of_cutting_them(tmp_path: Path) -> None:
    home = tmp_path / "a-rather-long-directory-name" / "for-the-aigov-home-of-this-test"
    assert cli(home, "init").returncode == 0
    r = cli(home, "audit", COLUMNS="80", timeout=120)
    assert r.returncode in (0, 1), r.stderr
    assert "AG701" in r.stdout  # no daemon: the finding names the pid file's path
    assert "…" not in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) <= 80
