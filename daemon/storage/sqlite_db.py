"""The embedded store: opening the SQLite database and applying the numbered migrations.

The CLI and the daemon use the same file at once: WAL mode lets readers go on
while one writer writes, and the busy timeout makes a second writer wait for
the lock instead of failing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import aiosqlite

from daemon.errors import StorageError

BUSY_TIMEOUT_MS = 5000

log = logging.getLogger("aigov.storage")


class Migration(NamedTuple):
    """One schema step, applied in a transaction and recorded in ``schema_migrations``."""

    version: int
    name: str
    sql: str


MIGRATIONS: Sequence[Migration] = (
    Migration(
        1,
        "keys and decisions",
        """
        CREATE TABLE api_keys (
            key_id           TEXT PRIMARY KEY,
            name             TEXT NOT NULL,
            secret_hash      BLOB NOT NULL,
            prev_secret_hash BLOB,
            prev_expires_at  REAL,
            created_at       REAL NOT NULL,
            expires_at       REAL,
            revoked_at       REAL,
            rotated_at       REAL,
            last_used_at     REAL,
            rate_limit       INTEGER NOT NULL,
            rate_window      REAL NOT NULL,
            policy           TEXT NOT NULL DEFAULT 'default',
            seq              INTEGER NOT NULL
        );
        CREATE INDEX api_keys_seq ON api_keys (seq);
        CREATE TABLE decisions (
            id             INTEGER PRIMARY KEY,
            time           REAL NOT NULL,
            request_id     TEXT NOT NULL,
            key_id         TEXT,
            model          TEXT,
            operation      TEXT,
            decision       TEXT NOT NULL,
            rules          TEXT NOT NULL,
            reasons        TEXT NOT NULL,
            input_length   INTEGER,
            input_sha256   TEXT,
            input          TEXT,
            latency_ms     REAL,
            policy_name    TEXT,
            policy_version TEXT,
            prev_hash      TEXT NOT NULL,
            hash           TEXT NOT NULL
        );
        CREATE INDEX decisions_time ON decisions (time);
        CREATE INDEX decisions_key_time ON decisions (key_id, time);
        """,
    ),
    Migration(
        2,
        "decision kinds (checkpoints) and request id index",
        """
        ALTER TABLE decisions ADD COLUMN kind TEXT NOT NULL DEFAULT 'decision';
        CREATE INDEX decisions_request_id ON decisions (request_id);
        """,
    ),
    Migration(
        3,
        "per-writer hash chains, keyed input fingerprints, direction, rate-limit state, metadata, key deletion",
        # Records written so far become the chain 'legacy' in format 1 (seq = id, which they chained);
        # input_sha256 keeps its values under its new name, since the chain hashes values by position.
        """
        ALTER TABLE decisions RENAME COLUMN input_sha256 TO input_fingerprint;
        ALTER TABLE decisions ADD COLUMN format INTEGER NOT NULL DEFAULT 1;
        ALTER TABLE decisions ADD COLUMN chain TEXT NOT NULL DEFAULT 'legacy';
        ALTER TABLE decisions ADD COLUMN seq INTEGER;
        ALTER TABLE decisions ADD COLUMN direction TEXT;
        ALTER TABLE decisions ADD COLUMN rate_limit TEXT;
        ALTER TABLE decisions ADD COLUMN metadata TEXT;
        UPDATE decisions SET seq = id;
        CREATE UNIQUE INDEX decisions_chain_seq ON decisions (chain, seq);
        CREATE TABLE chains (
            chain      TEXT PRIMARY KEY,
            head_seq   INTEGER NOT NULL,
            head_hash  TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        INSERT INTO chains (chain, head_seq, head_hash, created_at)
            SELECT 'legacy', id, hash, time FROM decisions ORDER BY id DESC LIMIT 1;
        CREATE TABLE key_tombstones (
            key_id     TEXT PRIMARY KEY,
            deleted_at REAL NOT NULL,
            seq        INTEGER NOT NULL
        );
        CREATE INDEX key_tombstones_seq ON key_tombstones (seq);
        """,
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def ensure_file(path: Path) -> None:
    """Create the database file (mode 0600) and its directory (0700) if missing."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)


def _describe(path: Path, e: sqlite3.Error) -> StorageError:
    msg = str(e)
    if "not a database" in msg or "malformed" in msg:
        return StorageError(f"database {path} is corrupt or not an SQLite file ({msg})")
    if "unable to open" in msg or "readonly" in msg or "permission" in msg.lower():
        return StorageError(f"cannot open database {path}: {msg}")
    return StorageError(f"database {path}: {msg}")


def configure(conn: sqlite3.Connection) -> None:
    """Per-connection settings: WAL, busy timeout, sane sync level."""
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")


def applied_versions(conn: sqlite3.Connection) -> set[int]:
    """The migration versions recorded in the database."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    return {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}


def pending_versions(conn: sqlite3.Connection) -> list[int]:
    """The migrations this aigov has that the database lacks."""
    done = applied_versions(conn)
    return [m.version for m in MIGRATIONS if m.version not in done]


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Apply the pending migrations in order, each in its own transaction; return those applied."""
    done = applied_versions(conn)
    if not migrations:
        return []
    newer = [v for v in done if v > migrations[-1].version]
    if newer:
        raise StorageError(
            f"database schema version {max(newer)} is newer than this aigov understands "
            f"({migrations[-1].version}); upgrade aigov"
        )
    applied = []
    for m in migrations:
        if m.version in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have applied it while we waited for the lock.
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (m.version,)).fetchone():
                conn.execute("ROLLBACK")
                continue
            for stmt in m.sql.split(";"):
                if stmt.strip():
                    conn.execute(stmt)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (m.version, m.name, time.time()),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(m.version)
    return applied


def connect_sync(path: Path, *, create: bool = True, migrate_schema: bool = True) -> sqlite3.Connection:
    """A configured (and migrated) blocking connection; StorageError with a clear message on failure."""
    if create:
        ensure_file(path)
    elif not path.exists():
        raise StorageError(f"database {path} does not exist")
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        configure(conn)
        if migrate_schema:
            migrate(conn)
    except sqlite3.Error as e:
        raise _describe(path, e) from None
    return conn


async def connect(path: Path) -> aiosqlite.Connection:
    """An aiosqlite connection to the migrated database; migrations run off the event loop."""

    def prepare() -> None:
        connect_sync(path).close()

    await asyncio.to_thread(prepare)
    try:
        db = await aiosqlite.connect(path, isolation_level=None)
        for pragma in (f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}", "PRAGMA synchronous = NORMAL"):
            await db.execute(pragma)
    except sqlite3.Error as e:
        raise _describe(path, e) from None
    return db


def schema_version(conn: sqlite3.Connection) -> int:
    """The highest applied migration version (0 for an empty database)."""
    return max(applied_versions(conn), default=0)


class WalCheckpointer:
    """Copies the write-ahead log into the database file, mostly from a thread of its own.

    SQLite checkpoints inside the commit that crosses ``wal_autocheckpoint``: for the decision
    writer that was a 50 ms stop every ~3 s at 12k records/s (a 40 MB log), during which ~600
    records piled up in the queue. With the writer's own checkpoints off, this thread runs a
    PASSIVE checkpoint shortly after commits; it copies the bulk of the log without blocking
    the writer. It cannot finish, though, while the writer keeps appending, and an unfinished
    log is never restarted, so it would grow for as long as the load lasts. So after each
    background checkpoint (repeated until one pass is quick, so that little is left) the writer,
    between two transactions, checkpoints the few frames appended in the meantime
    (:meth:`committed`): that one completes, and the next commit starts the log from the
    beginning. A checkpoint that a reader holds back (a CLI reading, say) copies what it may and
    the next one goes on; errors are logged and retried, and never fail a write.
    """

    MAX_PASSES = 5
    QUICK_PASS_SECONDS = 0.005

    def __init__(self, path: Path, interval: float = 0.5) -> None:
        """Checkpoint ``path`` at most every ``interval`` seconds while commits come in."""
        self.path = path
        self.interval = interval
        self.checkpoints = 0  # background ones
        self.catch_ups = 0  # the writer's short ones
        self.failures = 0
        self._catch_up = False
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the checkpoint thread."""
        self._thread = threading.Thread(target=self._run, name="aigov-checkpoint", daemon=True)
        self._thread.start()

    def committed(self, conn: sqlite3.Connection) -> None:
        """Called by the writer after each commit, outside any transaction, on its own connection."""
        if self._catch_up:
            self._catch_up = False
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self.catch_ups += 1
            except sqlite3.Error as e:
                log.warning("WAL catch-up checkpoint failed (%s); the next background one retries", e)
                self.failures += 1  # after the log line: whoever sees the count finds the line too
        if not self._dirty.is_set():
            self._dirty.set()

    def stop(self) -> None:
        """Stop the thread after its current checkpoint (the last connection's close checkpoints)."""
        self._stop.set()
        self._dirty.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _copy_most(self, conn: sqlite3.Connection) -> None:
        """PASSIVE checkpoints until one is quick: little was appended during it, so little is left."""
        for _ in range(self.MAX_PASSES):
            started = time.monotonic()
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
            if time.monotonic() - started < self.QUICK_PASS_SECONDS:
                return

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                self._dirty.wait()
                if self._stop.wait(self.interval):  # let a few commits gather
                    return
                self._dirty.clear()
                try:
                    if conn is None:
                        conn = connect_sync(self.path, create=False, migrate_schema=False)
                    self._copy_most(conn)
                    self._catch_up = True
                except (sqlite3.Error, StorageError) as e:
                    log.warning("WAL checkpoint failed (%s); retrying after the next commit", e)
                    self.failures += 1
        finally:
            if conn is not None:
                conn.close()
