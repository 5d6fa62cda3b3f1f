"""Decision records and their hash chains, the same for every store.

A request hands the log an :class:`Entry` (cheap to build on the event loop). The writer turns it
into a record (:class:`RecordBuilder`: the input's keyed fingerprint, the input as ``log_inputs``
keeps it, JSON of rules, reasons and metadata) and links it into its own chain
(:func:`link`): ``hash = sha256(prev_hash + canonical(record))``, where the canonical form is the
record's chained fields as a compact JSON array, unambiguous whatever the text holds.

Each writer process keeps its own chain, named by the record's ``chain`` field, numbered by
``seq`` from 1; the first record's ``prev_hash`` is :data:`GENESIS`. A store keeps each chain's
head (last ``seq`` and hash) in a ``chains`` table updated in the same transaction, so a writer
never searches for its tail and a deleted tail shows. Pruning appends a ``checkpoint`` record that
names the first kept ``seq`` and the hash of the last pruned record, so what remains still
verifies (:class:`ChainVerifier`).

Two record formats exist. Format 2 (written now) chains :data:`CHAINED_FIELDS`. Format 1 was
written before chains had names (one chain, now called ``legacy``; ``seq`` equals ``id``) and
chained :data:`V1_FIELDS`; such records still verify. The input fingerprint of format-1 records is
a plain SHA-256 (format 2: HMAC-SHA-256 under the deployment's secret).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from daemon.errors import ConfigError
from daemon.fastjson import dumps as _json
from daemon.fastjson import quote as _quote
from daemon.policy.engine import redact
from daemon.policy.model import Reason
from daemon.storage.interface import ChainReport

GENESIS = "0" * 64
FORMAT = 2
LEGACY_CHAIN = "legacy"

V1_FIELDS = (
    "id", "time", "request_id", "key_id", "model", "operation", "decision", "rules", "reasons",
    "input_length", "input_fingerprint", "input", "latency_ms", "policy_name", "policy_version", "kind",
)
# The fields a record's values come in, from the builder, without the chain position.
VALUE_FIELDS = (
    "time", "request_id", "key_id", "model", "operation", "direction", "decision", "rules", "reasons",
    "input_length", "input_fingerprint", "input", "latency_ms", "policy_name", "policy_version", "rate_limit",
    "metadata", "kind",
)
CHAINED_FIELDS = ("format", "chain", "seq", *VALUE_FIELDS)
STORED_FIELDS = (*CHAINED_FIELDS, "prev_hash", "hash")  # every column but the store's own ``id``
ROW_FIELDS = ("id", *STORED_FIELDS)  # what a reader returns


class Entry(NamedTuple):
    """What a request hands the log."""

    time: float
    request_id: str
    key_id: str
    model: str
    operation: str
    direction: str
    decision: str
    rules: tuple[str, ...]
    reasons: tuple[Reason, ...]
    input_text: str
    latency_ms: float
    policy_name: str
    policy_version: str
    rate_limit: str  # "ok", or "unavailable" when the limiter could not be asked and the request went through
    metadata: Mapping[str, Any] | None


# --- the input fingerprint ------------------------------------------------------------------


SECRET_BYTES = 32


def load_or_create_secret(path: Path) -> bytes:
    """The deployment's fingerprint secret from ``path``, created (mode 0600) on first use.

    Never logged. Equal inputs get equal fingerprints within a deployment (the daemons that share
    this file), and without the file a fingerprint cannot be brute-forced back into a short input.
    """
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        secret = secrets.token_bytes(SECRET_BYTES)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it a moment ago: use that one
            return load_or_create_secret(path)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(secret.hex() + "\n")
        return secret
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the fingerprint secret {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) < 16:
        raise ConfigError(f"the fingerprint secret {path} is not 16 or more bytes of hex; remove it to make a new one")
    return secret


class Fingerprinter:
    """HMAC-SHA-256 (RFC 2104) of an input under the deployment's secret, as hex."""

    def __init__(self, secret: bytes) -> None:
        # HMAC by hand over hashlib states keyed once: each input costs two C-level copies and
        # updates, 2x a plain SHA-256, where hmac.new(...).copy() or hmac.digest() cost 4x (they
        # build Python objects or re-key per call); this runs once per record in the writer.
        key = hashlib.sha256(secret).digest() if len(secret) > 64 else secret
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def __call__(self, text: str) -> str:
        inner = self._inner.copy()
        inner.update(text.encode("utf-8", "surrogatepass"))
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


# --- from entry to record -------------------------------------------------------------------


def _rules_json(rules: tuple[str, ...]) -> str:
    # Rule ids are validated identifiers ([a-z0-9._-]): nothing to escape.
    return '["' + '","'.join(rules) + '"]' if rules else "[]"


def _int_or_null(v: int | None) -> str:
    return "null" if v is None else str(v)


def reasons_json(reasons: Sequence[Reason]) -> str:
    """The same JSON as ``dumps([r.as_dict() ...])``, built without dicts: this runs once per record."""
    if not reasons:  # most records: nothing fired
        return "[]"
    body = ",".join(
        f'{{"rule":{_quote(r.rule)},"detector":{_quote(r.detector)},"action":"{r.action}",'
        f'"message":{_quote(r.message)},"start":{_int_or_null(r.start)},"end":{_int_or_null(r.end)}}}'
        for r in reasons
    )
    return f"[{body}]"


def metadata_json(metadata: Mapping[str, Any] | None) -> str | None:
    """Metadata as stored: compact JSON with sorted keys (None when there is none)."""
    if not metadata:
        return None
    return json.dumps(metadata, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


_CUSTOM = frozenset(("literal", "pattern"))


def stored_input(text: str, reasons: Sequence[Reason], mode: str) -> str | None:
    """The input as ``log_inputs`` says: none, redacted (every finding's span masked) or full."""
    if mode == "none":
        return None
    if mode == "full" or not reasons:
        return text
    # Labelled like redacted_text in the answer: the detector, or the rule id for custom rules.
    spans = [
        (r.start, r.end, r.rule if r.detector in _CUSTOM else r.detector)
        for r in reasons
        if r.start is not None and r.end is not None
    ]
    return redact(text, spans)


class RecordBuilder:
    """Turns entries into record values (:data:`VALUE_FIELDS` order); runs in the writer, off the loop."""

    def __init__(self, fingerprint: Fingerprinter, log_inputs: str = "redacted") -> None:
        self.fingerprint = fingerprint
        self.log_inputs = log_inputs

    def values(self, e: Entry) -> tuple[Any, ...]:
        """The record values of one entry."""
        text = e.input_text
        return (
            e.time, e.request_id, e.key_id, e.model, e.operation, e.direction, e.decision,
            _rules_json(e.rules), reasons_json(e.reasons), len(text), self.fingerprint(text),
            stored_input(text, e.reasons, self.log_inputs), round(e.latency_ms, 3), e.policy_name,
            e.policy_version, e.rate_limit, metadata_json(e.metadata), "decision",
        )


def checkpoint_values(
    now: float, chain: str, first_kept_seq: int, pruned_last_hash: str, pruned: int
) -> tuple[Any, ...]:
    """The values of a checkpoint record: the records of ``chain`` before ``first_kept_seq`` were pruned."""
    info = {"first_kept_seq": first_kept_seq, "pruned_last_hash": pruned_last_hash, "pruned_records": pruned}
    return (
        now, f"checkpoint-{chain}-{first_kept_seq}", None, None, None, None, "checkpoint", "[]",
        json.dumps(info, sort_keys=True), None, None, None, None, None, None, None, None, "checkpoint",
    )


# --- the chain --------------------------------------------------------------------------------


def _hash(prev_hash: str, canon: str) -> str:
    return hashlib.sha256((prev_hash + canon).encode("utf-8", "surrogatepass")).hexdigest()


def link(
    values: Iterable[tuple[Any, ...]], chain: str, head_seq: int, head_hash: str
) -> Iterator[list[Any]]:
    """Stored rows (:data:`STORED_FIELDS` order) for ``values`` appended after the chain's head.

    Lazy: a store consumes it in chunks, so that the thread doing it lets the event loop have the
    GIL between chunks. The caller updates the chain's head to the last row's seq and hash.
    """
    seq, prev = head_seq, head_hash
    for v in values:
        seq += 1
        row = [FORMAT, chain, seq, *v]
        h = _hash(prev, _json(row))
        row.append(prev)
        row.append(h)
        yield row
        prev = h


def record_hash(row: Mapping[str, Any]) -> str:
    """The hash a stored record should carry, given its ``prev_hash`` (either format)."""
    fields = V1_FIELDS if row["format"] == 1 else CHAINED_FIELDS
    return _hash(row["prev_hash"], _json([row[k] for k in fields]))


class Checkpoint(NamedTuple):
    """What a checkpoint record says about the records pruned before it."""

    first_kept_seq: int
    pruned_last_hash: str


def parse_checkpoint(row: Mapping[str, Any]) -> Checkpoint | None:
    """The checkpoint a record carries (format 1 said ``first_kept_id``: for the legacy chain, seq = id)."""
    try:
        info = json.loads(row["reasons"])
        first = info["first_kept_seq"] if "first_kept_seq" in info else info["first_kept_id"]
        return Checkpoint(int(first), str(info["pruned_last_hash"]))
    except (ValueError, KeyError, TypeError):
        return None


class ChainVerifier:
    """Verifies one chain from its records in ``seq`` order, then against the stored head.

    Feed every record of the chain to :meth:`add`, then call :meth:`report`. A chain verifies when:
    its first record is seq 1 after :data:`GENESIS`, or lies at or before the first kept seq of one
    of its checkpoints (a prune deleted what came before, possibly in several steps), linking to that
    checkpoint's last pruned hash when it is exactly the first kept one; every record follows the
    previous one (seq + 1, prev_hash = the previous hash); every hash matches the record's content;
    and the last record is the head the ``chains`` table names (no tail deleted). The first problem
    in chain order is the one reported.
    """

    def __init__(self, chain: str, head: tuple[int, str] | None) -> None:
        self.chain = chain
        self.head = head
        self.records = 0
        self.checkpoints: dict[int, str] = {}  # first kept seq -> hash of the last pruned record
        self.first: tuple[int, int, str] | None = None  # (id, seq, prev_hash) of the first record
        self.prev: tuple[int, str] | None = None  # (seq, hash) of the last record read
        self.bad: tuple[int, str] | None = None  # (id, why) of the first broken record after the first

    def add(self, row: Mapping[str, Any]) -> None:
        """Check one record (the chain's records in seq order)."""
        self.records += 1
        if row["kind"] == "checkpoint" and (cp := parse_checkpoint(row)) is not None:
            self.checkpoints[cp.first_kept_seq] = cp.pruned_last_hash
        if self.bad is not None:
            return
        seq, rid = row["seq"], row["id"]
        if self.prev is None:
            self.first = (rid, seq, row["prev_hash"])
        else:
            prev_seq, prev_hash = self.prev
            if seq != prev_seq + 1:
                self.bad = (rid, f"records {prev_seq + 1}..{seq - 1} of the chain are missing (deleted)"
                            if seq > prev_seq + 1 else "a record was inserted or reordered")
                return
            if row["prev_hash"] != prev_hash:
                self.bad = (rid, "link to the previous record is broken (a record was replaced or inserted)")
                return
        if record_hash(row) != row["hash"]:
            self.bad = (rid, "record content does not match its hash (it was edited)")
            return
        self.prev = (seq, row["hash"])

    def _first_problem(self) -> str | None:
        if self.first is None:
            return None
        _, seq, prev_hash = self.first
        if seq == 1:
            return None if prev_hash == GENESIS else "bad genesis link"
        if not any(first >= seq for first in self.checkpoints):
            return "records before it were deleted without a checkpoint"
        if seq in self.checkpoints and prev_hash != self.checkpoints[seq]:
            return "it does not link to the checkpoint of the records pruned before it"
        return None

    def report(self) -> ChainReport:
        """The verdict, once every record was added."""
        if self.head is None:
            if self.first is not None:
                return ChainReport(self.chain, False, self.records, self.first[0],
                                   "the chain is not registered (its records were inserted from outside)")
            return ChainReport(self.chain, True, 0)
        if self.first is not None and (why := self._first_problem()) is not None:
            return ChainReport(self.chain, False, self.records, self.first[0], why)
        if self.bad is not None:
            return ChainReport(self.chain, False, self.records, self.bad[0], self.bad[1])
        head_seq, head_hash = self.head
        last_seq = self.prev[0] if self.prev else 0
        if last_seq < head_seq:
            return ChainReport(self.chain, False, self.records, None,
                               f"its newest {head_seq - last_seq} record(s) were deleted "
                               f"(the chain's head is seq {head_seq})")
        if self.prev is not None and (last_seq != head_seq or self.prev[1] != head_hash):
            return ChainReport(self.chain, False, self.records, None,
                               "its last record is not the head the chains table names")
        return ChainReport(self.chain, True, self.records)
