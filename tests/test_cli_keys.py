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


def test_names_that_tables_could_not_show_are_refused_by_create_and_update(home: Path) -> None:
    key = create_key(home, "fine")
    length, controls = "be 1 to 128 characters", "not hold control characters"
    for name, why in (("", length), ("x" * 129, length), ("a\nb", f"{controls} (found U+000A)"),
                      ("red\x1b[31m", f"{controls} (found U+001B)"), ("tab\there", f"{controls} (found U+0009)")):
        for args in (["keys", "create", "--name", name], ["keys", "update", key["key_id"], "--name", name]):
            r = cli(home, *args)
            assert r.returncode == 2 and r.stderr == f"aigov: error: --name must {why}\n"
    listed = json.loads(cli(home, "keys", "list", "--all", "--json").stdout)
    assert [(k["key_id"], k["name"]) for k in listed] == [(key["key_id"], "fine")]


def test_values_out_of_range_are_refused_before_anything_is_written(home: Path) -> None:
    key = create_key(home, "fine")
    longer = "duration '{}' is longer than 36500d"
    for args, message in (
        (["keys", "create", "--name", "n", "--expires-in", "99999999d"], "--expires-in: " + longer.format("99999999d")),
        (["keys", "create", "--name", "n", "--rate-limit", "99999999999999999999999/1s"], "at most 1,000,000,000"),
        (["keys", "update", key["key_id"], "--expires-in", "36501d"], "--expires-in: " + longer.format("36501d")),
        (["keys", "rotate", key["key_id"], "--grace", "99999999d"], "--grace: " + longer.format("99999999d")),
    ):
        r = cli(home, *args)
        assert r.returncode == 2 and r.stderr.startswith("aigov: error: ") and message in r.stderr, r.stderr
        assert len(r.stderr.splitlines()) == 1
    r = cli(home, "keys", "list", "--all", "--json")
    assert r.returncode == 0 and [k["name"] for k in json.loads(r.stdout)] == ["fine"]
    assert cli(home, "keys", "update", key["key_id"], "--expires-in", "36500d").returncode == 0  # 100 years is fine
    assert cli(home, "keys", "list").returncode == 0


def test_rotate_with_no_grace_as_the_help_says(home: Path) -> None:
    key = create_key(home, "rot")
    r = cli(home, "keys", "rotate", key["key_id"], "--grace", "0")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"Rotated {key['key_id']}; the old token no longer works.\n")
    r = cli(home, "keys", "rotate", key["key_id"], "--grace", "1h")
    assert r.stdout.startswith(f"Rotated {key['key_id']}; the old token stays valid until 20")
