"""Human tables in an 80- or 120-column terminal (or a pipe): identifiers are never split, lines never overflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.audit_homes import record, write_decisions
from tests.daemon_proc import cli, create_key

RID = "01M8EG25TAZD2P7P5NKA39YNAQ"  # real request ids: ULIDs, 26 characters, the first 10 the time
RID2 = "01M8EG25TZYK487SW3TE3JYWSQ"
RULES = ["pii.credit_card", "manipulation.prompt_injection"]


def lines_of(text: str, columns: int) -> list[str]:
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= columns, text
    return lines


def whole(lines: list[str], word: str) -> bool:
    """Whether ``word`` is on one line, not folded over two."""
    return any(word in line for line in lines)


@pytest.mark.parametrize("columns", [80, 120])
def test_keys_list_never_splits_key_ids_or_policies(home: Path, columns: int) -> None:
    (home / "policy.toml").write_text("[policies.default]\n[policies.eu-west-strict]\n")
    short = create_key(home, "demo")
    long = create_key(home, "a much longer key name for the production cluster", "--expires-in", "30d",
                      "--policy", "eu-west-strict")
    assert cli(home, "keys", "revoke", short["key_id"]).returncode == 0
    r = cli(home, "keys", "list", "--all", COLUMNS=str(columns))
    assert r.returncode == 0, r.stderr
    lines = lines_of(r.stdout, columns)
    for key, policy, status in ((short, "default", "revoked"), (long, "eu-west-strict", "active")):
        row = next(line for line in lines if key["key_id"] in line)  # whole, on one line
        assert status in row and "100/1m" in row and policy in row.split()  # `default` was `defaul`/`t`
    assert ("created" in lines[0]) is (columns >= 120)
    for header, value in (("expires", long["expires_at"][:10]), ("created", long["created_at"][:10])):
        assert (header in lines[0]) is whole(lines, value)  # a column is whole or left out
    wide = cli(home, "keys", "list", "--all", "--wide", COLUMNS=str(columns))
    assert all(h in wide.stdout.splitlines()[0] for h in ("created", "expires", "last used"))


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("show_input", [False, True])
def test_logs_table_never_splits_identifiers(home: Path, columns: int, show_input: bool) -> None:
    write_decisions(home / "aigov.db", [
        record(1, request_id=RID, decision="block", rules=json.dumps(RULES), input="my card is [REDACTED]",
               model="gpt-4o-mini-2024-07-18", operation="chat.completions"),
        record(2, request_id=RID2, model="gpt-4o-mini-2024-07-18", operation="chat.completions"),
    ])
    r = cli(home, "logs", *(["--show-input"] if show_input else []), COLUMNS=str(columns))
    assert r.returncode == 0, r.stderr
    lines = lines_of(r.stdout, columns)
    for rule in RULES:
        assert whole(lines, rule), rule  # one rule per line, never folded mid-word
    # The request id is shortened to its random tail (the time column has its head): not whole, not split.
    row = next(line for line in lines if "…" + RID[-8:] in line)
    assert "block" in row and RID not in r.stdout and whole(lines, "…" + RID2[-8:])
    head = lines[0].split()
    if columns >= 120:
        assert "gpt-4o-mini-2024-07-18" in row  # the model, whole
        if not show_input:  # the stored input takes the key's and latency's room
            assert "aaaaaaaaaaaa" in row and "latency" in head and "ms" in row
    for shown, value in (("key", "aaaaaaaaaaaa"), ("model", "gpt-4o-mini-2024-07-18"),
                         ("operation", "chat.completions")):
        assert (shown in head) is whole(lines, value)  # a column is whole or left out, never squeezed
    if show_input:
        assert "input" in head and "my card" in r.stdout
    # --wide: every column and whole request ids.
    wide = cli(home, "logs", "--wide", COLUMNS=str(columns))
    assert RID in wide.stdout and RID2 in wide.stdout
    assert all(h in wide.stdout.splitlines()[0].split() for h in ("key", "model", "operation", "latency"))


def test_audit_table_folds_paths_instead_of_cutting_them(tmp_path: Path) -> None:
    home = tmp_path / "a-rather-long-directory-name" / "for-the-aigov-home-of-this-test"
    assert cli(home, "init").returncode == 0
    r = cli(home, "audit", COLUMNS="80", timeout=120)
    assert r.returncode in (0, 1), r.stderr
    assert "AG701" in r.stdout  # no daemon: the finding names the pid file's path
    assert "…" not in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) <= 80
