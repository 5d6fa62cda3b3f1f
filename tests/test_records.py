"""Decision records as values: the JSON of their fields, checkpoints, and the fingerprint.

The chain itself (linking, verifying, tampering) is tested through the stores in test_decisionlog.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from daemon.policy.model import Reason
from daemon.storage.records import (
    GENESIS,
    Checkpoint,
    Fingerprinter,
    checkpoint_values,
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
