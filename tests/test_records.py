"""Decision records as values: the JSON of their fields, checkpoints, and the fingerprint.

The chain itself (linking, verifying, tampering) is tested through the stores in test_decisionlog.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from daemon.errors import ConfigError
from daemon.policy.model import Reason
from daemon.storage.interface import ChainReport
from daemon.storage.records import (
    GENESIS,
    ROW_FIELDS,
    SECRET_BYTES,
    VALUE_FIELDS,
    ChainVerifier,
    Checkpoint,
    Entry,
    Fingerprinter,
    RecordBuilder,
    checkpoint_values,
    link,
    load_or_create_secret,
    metadata_json,
    parse_checkpoint,
    reasons_json,
)

H = "ab" * 32


@pytest.mark.parametrize("reasons", [
    (),
    (Reason("pii.email", "email", "redact", "email address", 3, 20),),
    (Reason("policy.model", "model", "block", 'model "x\\y" is not allowed'),  # no span: null
     Reason("custom.word", "literal", "monitor", "naïve \u2028 line", 0, 0)),
])
def test_reasons_json_is_the_wire_form(reasons: tuple[Reason, ...]) -> None:
    text = reasons_json(reasons)
    assert json.loads(text) == [r.as_dict() for r in reasons]
    assert text == json.dumps([r.as_dict() for r in reasons], ensure_ascii=False, separators=(",", ":"))


def test_metadata_json_is_compact_and_sorted() -> None:
    assert metadata_json(None) is None and metadata_json({}) is None
    assert metadata_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'


def test_checkpoint_values_name_what_was_pruned() -> None:
    values = checkpoint_values(2000.0, "host/abc/w0", 21, H, 20)
    assert values == (
        2000.0, "checkpoint-host/abc/w0-21", None, None, None, None, "checkpoint", "[]",
        f'{{"first_kept_seq": 21, "pruned_last_hash": "{H}", "pruned_records": 20}}',
        None, None, None, None, None, None, None, None, "checkpoint",
    )
    assert parse_checkpoint({"reasons": values[8]}) == Checkpoint(21, H)


@pytest.mark.parametrize(("reasons", "want"), [
    (json.dumps({"first_kept_seq": 7, "pruned_last_hash": H}), Checkpoint(7, H)),
    # format 1 (the legacy chain) named the first kept record by id, which is its seq there
    (json.dumps({"first_kept_id": 9, "pruned_last_hash": H, "pruned_records": 8}), Checkpoint(9, H)),
    (json.dumps({"first_kept_seq": "12", "pruned_last_hash": H}), Checkpoint(12, H)),
    (json.dumps({"pruned_last_hash": H}), None),
    (json.dumps({"first_kept_seq": 3}), None),
    (json.dumps({"first_kept_seq": "three", "pruned_last_hash": H}), None),
    (json.dumps([1, 2]), None),
    ("not json", None),
])
def test_parse_checkpoint(reasons: str, want: Checkpoint | None) -> None:
    assert parse_checkpoint({"reasons": reasons}) == want


@pytest.mark.parametrize("secret", [b"k" * 16, b"k" * 64, b"k" * 65 + b"long keys are hashed first"])
@pytest.mark.parametrize("text", ["", "hello", "naïve \ud800 lone surrogate"])
def test_the_fingerprint_is_hmac_sha256(secret: bytes, text: str) -> None:
    want = hmac.new(secret, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    fp = Fingerprinter(secret)
    assert fp(text) == want
    assert fp(text) == want  # the keyed states are copied, never consumed
    assert fp(text + "!") != want


def test_genesis_is_64_zeros() -> None:
    # Every deployed chain's first record links to it: it can never change.
    assert GENESIS == "0" * 64


# --- the fingerprint secret's file -------------------------------------------------------------


def test_the_secret_file_is_made_once_private_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "new" / "deeper" / "fingerprint.secret"
    secret = load_or_create_secret(path)
    assert len(secret) == SECRET_BYTES
    assert path.read_text(encoding="ascii") == secret.hex() + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_or_create_secret(path) == secret
    assert load_or_create_secret(path) != load_or_create_secret(tmp_path / "other.secret")


@pytest.mark.parametrize("content", ["00" * 15, "not hex at all", ""])
def test_a_bad_secret_file_is_one_clear_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "fingerprint.secret"
    path.write_text(content)
    with pytest.raises(ConfigError) as e:
        load_or_create_secret(path)
    assert str(e.value) == f"the fingerprint secret {path} is not 16 or more bytes of hex; remove it to make a new one"


def test_sixteen_bytes_of_hex_with_spaces_around_are_enough(tmp_path: Path) -> None:
    path = tmp_path / "fingerprint.secret"
    path.write_text("  " + "0f" * 16 + "\n\n")
    assert load_or_create_secret(path) == bytes([15] * 16)


def test_an_unreadable_secret_file_says_why(tmp_path: Path) -> None:
    path = tmp_path / "fingerprint.secret"
    path.mkdir()  # a directory where the file should be
    with pytest.raises(ConfigError) as e:
        load_or_create_secret(path)
    assert str(e.value) == f"cannot read the fingerprint secret {path}: Is a directory"
    binary = tmp_path / "binary.secret"
    binary.write_bytes(b"\xff" * 40)
    with pytest.raises(ConfigError) as e:
        load_or_create_secret(binary)
    assert str(e.value).startswith(f"cannot read the fingerprint secret {binary}: ")


@pytest.mark.parametrize("rules", [(), ("pii.email",), ("pii.email", "secrets.github_token", "custom-1_x")])
def test_rules_are_stored_as_a_json_list(rules: tuple[str, ...]) -> None:
    values = RecordBuilder(Fingerprinter(b"k" * 32)).values(
        Entry(1.0, "r", "k", "m", "chat", "input", "allow", rules, (), "hi", 0.5, "default", "v", "ok", None))
    stored = dict(zip(VALUE_FIELDS, values, strict=True))
    assert stored["rules"] == json.dumps(list(rules), separators=(",", ":"))
    assert stored["reasons"] == "[]" and stored["metadata"] is None and stored["kind"] == "decision"


@pytest.mark.parametrize(("mode", "stored"), [
    ("redacted", "mail [REDACTED:email] or call [REDACTED:custom.phone] now"),
    ("full", "mail bob@example.com or call 555-0100 now"),
    ("none", None),
])
def test_record_values_of_an_entry(mode: str, stored: str | None) -> None:
    text = "mail bob@example.com or call 555-0100 now"
    reasons = (Reason("pii.email", "email", "redact", "email address", 5, 20),
               Reason("custom.phone", "pattern", "monitor", "a phone number", 29, 37),
               Reason("policy.note", "model", "monitor", "no span"))
    fingerprint = Fingerprinter(b"k" * 32)
    e = Entry(12.5, "req-1", "key1", "gpt-4o", "chat", "output", "allow", ("pii.email", "custom.phone"), reasons,
              text, 1.23456, "default", "v7", "unavailable", {"z": 1, "a": "é"})
    values = dict(zip(VALUE_FIELDS, RecordBuilder(fingerprint, log_inputs=mode).values(e), strict=True))
    assert values == {
        "time": 12.5, "request_id": "req-1", "key_id": "key1", "model": "gpt-4o", "operation": "chat",
        "direction": "output", "decision": "allow", "rules": '["pii.email","custom.phone"]',
        "reasons": reasons_json(reasons), "input_length": len(text), "input_fingerprint": fingerprint(text),
        "input": stored, "latency_ms": 1.235, "policy_name": "default", "policy_version": "v7",
        "rate_limit": "unavailable", "metadata": '{"a":"é","z":1}', "kind": "decision",
    }
    assert json.loads(values["reasons"])[2]["start"] is None


# --- the verifier's verdicts, word for word (what `aigov audit` shows) ------------------------------


def _linked(values: list[tuple[Any, ...]], head_seq: int = 0, head_hash: str = GENESIS) -> list[dict[str, Any]]:
    """``values`` linked into chain ``c`` after its head, as a reader returns them (ids 100 + seq - 1)."""
    return [dict(zip(ROW_FIELDS, [99 + row[2], *row], strict=True))
            for row in link(values, "c", head_seq, head_hash)]


def _chain(n: int) -> list[dict[str, Any]]:
    """``n`` linked records of chain ``c`` (ids 100, 101, ...)."""
    builder = RecordBuilder(Fingerprinter(b"k" * 32))
    return _linked([builder.values(Entry(float(i), f"r{i}", "k", "m", "chat", "input", "allow", (), (),
                                         f"text {i}", 0.5, "default", "v", "ok", None)) for i in range(n)])


def _verdict(rows: list[dict[str, Any]], head: tuple[int, str] | None) -> tuple[bool, int | None, str | None]:
    report = _report(rows, head)
    assert report.chain == "c" and report.records == len(rows)
    return report.ok, report.first_bad_id, report.problem


def _report(rows: list[dict[str, Any]], head: tuple[int, str] | None) -> ChainReport:
    v = ChainVerifier("c", head)
    for row in rows:
        v.add(row)
    return v.report()


def test_a_whole_chain_verifies() -> None:
    rows = _chain(6)
    assert _verdict(rows, (6, rows[-1]["hash"])) == (True, None, None)
    assert _report([], None) == ChainReport("c", True, 0)


def _pruned(last_pruned_hash: str | None) -> list[dict[str, Any]]:
    """A chain of 8 records and a checkpoint saying 1..3 were pruned, with 1..3 deleted."""
    rows = _chain(8)
    cp = checkpoint_values(9.0, "c", 4, last_pruned_hash or rows[2]["hash"], 3)
    return (rows + _linked([cp], 8, rows[-1]["hash"]))[3:]


def test_a_pruned_chain_links_to_its_checkpoint() -> None:
    rows = _pruned(None)
    assert _verdict(rows, (9, rows[-1]["hash"])) == (True, None, None)
    rows = _pruned("f" * 64)
    assert _verdict(rows, (9, rows[-1]["hash"])) == (
        False, 103, "it does not link to the checkpoint of the records pruned before it")


@pytest.mark.parametrize(("tamper", "bad_id", "problem"), [
    (lambda r: r[:2] + r[5:], 105, "records 3..5 of the chain are missing (deleted)"),
    (lambda r: r[:4] + r[3:4] + r[4:], 103, "a record was inserted or reordered"),  # seq 4 again
    (lambda r: r[:3] + [dict(r[3], prev_hash="f" * 64)] + r[4:], 103,
     "link to the previous record is broken (a record was replaced or inserted)"),
    (lambda r: r[:4] + [dict(r[4], model="other")] + r[5:], 104,
     "record content does not match its hash (it was edited)"),
    (lambda r: [dict(r[0], prev_hash="f" * 64)] + r[1:], 100, "bad genesis link"),
    (lambda r: r[2:], 102, "records before it were deleted without a checkpoint"),
])
def test_each_kind_of_tampering_is_named(tamper: Any, bad_id: int, problem: str) -> None:
    rows = _chain(8)
    assert _verdict(tamper(rows), (8, rows[-1]["hash"])) == (False, bad_id, problem)


def test_a_deleted_tail_and_a_replaced_head_are_named() -> None:
    rows = _chain(8)
    assert _verdict(rows[:5], (8, rows[-1]["hash"])) == (
        False, None, "its newest 3 record(s) were deleted (the chain's head is seq 8)")
    assert _verdict(rows, (8, "e" * 64)) == (False, None, "its last record is not the head the chains table names")
    assert _verdict(rows, None) == (
        False, 100, "the chain is not registered (its records were inserted from outside)")
    assert _verdict([], None) == (True, None, None)
