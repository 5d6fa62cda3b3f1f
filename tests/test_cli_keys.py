"""``aigov keys`` and ``aigov init``: what they say they did is what they did."""

from __future__ import annotations

import json
from pathlib import Path

from tests.daemon_proc import cli, create_key


def test_update_confirms_every_field_it_changed(home: Path) -> None:
    (home / "policy.toml").write_text("[policies.default]\n[policies.strict]\n")
    key = create_key(home, "before")
    r = cli(home, "keys", "update", key["key_id"], "--name", "after", "--rate-limit", "5/1m", "--policy", "strict",
            "--expires-in", "30d")
    assert r.returncode == 0, r.stderr
    shown = json.loads(cli(home, "keys", "show", key["key_id"], "--json").stdout)
    assert r.stdout == (f"updated {key['key_id']}: rate limit 5/1m, policy strict, name 'after', "
                        f"expires {shown['expires_at']}\n")
    r = cli(home, "keys", "update", key["key_id"], "--name", "again")
    assert r.stdout == f"updated {key['key_id']}: name 'again'\n"  # only what changed


def test_revoking_a_revoked_key_says_so(home: Path) -> None:
    key = create_key(home, "gone")
    first = cli(home, "keys", "revoke", key["key_id"])
    assert first.returncode == 0 and first.stdout.startswith(f"revoked {key['key_id']} (gone) at ")
    at = first.stdout.rstrip().rsplit(" at ", 1)[1]
    again = cli(home, "keys", "revoke", key["key_id"])
    assert again.returncode == 0
    assert again.stdout == f"{key['key_id']} (gone) was already revoked at {at}; nothing changed\n"


def test_init_says_whether_the_database_exists(home: Path) -> None:
    r = cli(home, "init")
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == f"database {home / 'aigov.db'} (created on first use)"
    create_key(home, "makes-the-database")
    r = cli(home, "init")
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == f"database {home / 'aigov.db'} (exists)"
