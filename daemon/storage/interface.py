"""The storage interfaces: keys, the decision log's write side and its read side.

Narrow on purpose, so that the embedded SQLite store and the PostgreSQL one stand side by side and
the rest of aigov sees only these. A factory (:mod:`daemon.storage`) picks the implementation from
``database_url``.

- :class:`KeyStore` (async): the CLI's key administration, and the daemon's change feed
  (:meth:`KeyStore.changed_since`, :meth:`KeyStore.wait_for_changes`) that brings every change to
  every running daemon within a second.
- :class:`DecisionStore` (async): appends batches of decisions to one writer's hash chain, one
  transaction per batch. Each writer process has its own chain, so writers never wait on a shared
  chain head.
- :class:`DecisionReader` (blocking, for the synchronous CLI): ``aigov logs`` and ``aigov audit``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from daemon.units import format_duration

if TYPE_CHECKING:
    from daemon.storage.records import Entry


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One API key as stored (hashes included; never print them)."""

    key_id: str
    name: str
    secret_hash: bytes
    prev_secret_hash: bytes | None
    prev_expires_at: float | None
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    rotated_at: float | None
    last_used_at: float | None
    rate_limit: int
    rate_window: float
    policy: str
    seq: int

    def status(self, now: float | None = None) -> str:
        """``active``, ``revoked`` or ``expired``."""
        now = time.time() if now is None else now
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"

    def public(self, now: float | None = None) -> dict[str, Any]:
        """The key as shown to users: no hashes."""
        d = asdict(self)
        for secret in ("secret_hash", "prev_secret_hash", "seq"):
            d.pop(secret)
        d["status"] = self.status(now)
        d["rate_limit"] = f"{self.rate_limit}/{format_duration(self.rate_window)}"
        d["grace_until"] = d.pop("prev_expires_at")
        return d


UPDATABLE_KEY_FIELDS = frozenset(("name", "rate_limit", "rate_window", "policy", "expires_at"))


class KeyStore(abc.ABC):
    """Where keys live. Every change gives the key a new change number (``seq``) so that a daemon
    picks up exactly the keys changed since its last look."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect (and migrate); called once before anything else."""

    @abc.abstractmethod
    async def create(
        self, name: str, secret_hash: bytes, rate_limit: int, rate_window: float,
        expires_at: float | None, policy: str, key_id: str | None = None,
    ) -> KeyRecord:
        """Store a new key and return it."""

    @abc.abstractmethod
    async def get(self, key_id: str) -> KeyRecord | None:
        """The key with this id, or None."""

    @abc.abstractmethod
    async def list_all(self) -> list[KeyRecord]:
        """Every key, oldest first."""

    @abc.abstractmethod
    async def revoke(self, key_id: str, at: float) -> KeyRecord:
        """Mark a key revoked (idempotent); NotFoundError if there is none."""

    @abc.abstractmethod
    async def rotate(self, key_id: str, secret_hash: bytes, grace_until: float | None, at: float) -> KeyRecord:
        """Replace a key's secret; the old one stays valid until ``grace_until`` (None: not at all)."""

    @abc.abstractmethod
    async def update(self, key_id: str, **fields: Any) -> KeyRecord:
        """Change any of :data:`UPDATABLE_KEY_FIELDS`; NotFoundError if there is no such key."""

    @abc.abstractmethod
    async def delete(self, key_id: str) -> None:
        """Remove a key for good (temporary keys of audits and load tests); NotFoundError if there is none.

        A running daemon learns of it like of a revocation: the store keeps a revoked tombstone in
        the change feed, so the key stops working everywhere within a second."""

    @abc.abstractmethod
    async def changed_since(self, seq: int) -> list[KeyRecord]:
        """Keys changed after change number ``seq``, in change order (deleted keys as revoked tombstones)."""

    @abc.abstractmethod
    async def touch(self, last_used: Mapping[str, float]) -> None:
        """Record last-use times in one write (never per request)."""

    async def wait_for_changes(self, timeout: float) -> None:
        """Return when the store has heard of a change, or after ``timeout`` seconds.

        The default polls (it just waits); a store with notifications returns early."""
        await asyncio.sleep(timeout)

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections."""


class DecisionStore(abc.ABC):
    """The write side of the decision log for one writer: its own hash chain, named :attr:`chain`."""

    chain: str

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect (and migrate); called once before the first write."""

    @abc.abstractmethod
    async def write(self, batch: Sequence[Entry]) -> None:
        """Append ``batch`` to this writer's chain in one transaction; raises on failure (nothing written)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections (after the last write)."""

    async def ping(self) -> None:  # noqa: B027
        """Raise if the database cannot be reached now (for ``/readyz``)."""


@dataclass(frozen=True)
class DecisionFilter:
    """What ``aigov logs`` selects; every field is optional. Globs use ``*`` and ``?``."""

    since: float | None = None
    until: float | None = None
    key: str | None = None
    decision: str | None = None
    rule: str | None = None
    model: str | None = None
    checkpoints: bool = False
    request_id: str | None = None
    direction: str | None = None
    include_probes: bool = False


@dataclass(frozen=True)
class ChainReport:
    """The result of verifying one writer's hash chain."""

    chain: str
    ok: bool
    records: int
    first_bad_id: int | None = None
    problem: str | None = None


class DecisionReader(abc.ABC):
    """The read side of the decision log (blocking; for the CLI). Rows are dicts of the record's fields
    with ``rules`` and ``reasons`` as JSON text, ``metadata`` as JSON text or None."""

    backend: str
    current_version: int  # the schema version this aigov writes (both stores number their migrations alike)

    @abc.abstractmethod
    def max_id(self) -> int:
        """The highest record id (0 when the log is empty)."""

    @abc.abstractmethod
    def iter_decisions(self, flt: DecisionFilter, after_id: int = 0, page: int = 1000) -> Iterator[dict[str, Any]]:
        """Matching records with id above ``after_id``, in id order, read in pages (constant memory)."""

    @abc.abstractmethod
    def latest(self, flt: DecisionFilter, limit: int, upto: int | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` matching records (with id <= ``upto``), oldest first."""

    def snapshot(self) -> contextlib.AbstractContextManager[None]:
        """Reads inside the ``with`` see the log as of one moment (``aigov logs --follow`` lists, then follows)."""
        return contextlib.nullcontext()

    def follow_start(self, upto: int) -> object:
        """A cursor for :meth:`follow_next` just after the records with id <= ``upto`` (opaque).

        The default follows ids, right where ids are handed out in commit order (SQLite: one writer
        at a time); a store whose writers commit out of id order follows something else."""
        return upto

    def follow_next(self, flt: DecisionFilter, cursor: object) -> tuple[list[dict[str, Any]], object]:
        """Matching records written since ``cursor``, in id order, and the cursor after them."""
        assert isinstance(cursor, int)
        rows = list(self.iter_decisions(flt, after_id=cursor))
        return rows, (rows[-1]["id"] if rows else cursor)

    @abc.abstractmethod
    def stats(self, flt: DecisionFilter, top: int) -> dict[str, Any]:
        """total, first, last, by_decision, by_rule, by_key, by_model (``top`` each), latency_ms percentiles."""

    @abc.abstractmethod
    def verify_chains(self) -> list[ChainReport]:
        """Verify every writer's chain; one report per chain."""

    @abc.abstractmethod
    def prune(self, before: float) -> int:
        """Delete decisions older than ``before``, keeping every chain verifiable; returns how many."""

    @abc.abstractmethod
    def schema_version(self) -> int:
        """The highest applied migration."""

    @abc.abstractmethod
    def pending_migrations(self) -> list[int]:
        """The migrations this aigov has that the database lacks."""

    @abc.abstractmethod
    def upgrade(self) -> list[int]:
        """Apply the pending migrations (``aigov db upgrade``); returns those applied."""

    @abc.abstractmethod
    def counts(self) -> dict[str, int]:
        """Rows per table (for ``aigov db status``)."""

    @abc.abstractmethod
    def location(self) -> str:
        """Where the store is, for people: a file path, or a URL without its password."""

    @abc.abstractmethod
    def where(self) -> dict[str, str | int]:
        """Where the store is, part by part: ``path``, or ``host``, ``port``, ``database``, ``schema``
        and ``user`` (never the password)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection."""

    def __enter__(self) -> DecisionReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
