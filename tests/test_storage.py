"""Migrations on a fresh and an older database; the key store."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from daemon.errors import NotFoundError, StorageError
from daemon.storage import open_key_store
from daemon.storage import sqlite_db as dbmod
from tests.backends import Backend


def test_fresh_database_gets_every_migration(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    conn = dbmod.connect_sync(path)
    versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [m.version for m in dbmod.MIGRATIONS]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cols = {c[1] for c in conn.execute("PRAGMA table_info(decisions)")}
    assert {"request_id", "hash", "prev_hash", "kind", "chain", "seq", "input_fingerprint", "metadata"} <= cols
    assert "input_sha256" not in cols
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_older_database_is_upgraded_keeping_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    dbmod.migrate(conn, dbmod.MIGRATIONS[:1])
    conn.execute(
        "INSERT INTO decisions (time, request_id, decision, rules, reasons, prev_hash, hash) "
        "VALUES (1, 'r1', 'allow', '[]', '[]', 'p', 'h')"
    )
    assert dbmod.schema_version(conn) == 1
    conn.close()
    conn = dbmod.connect_sync(path)
    assert dbmod.schema_version(conn) == dbmod.SCHEMA_VERSION
    assert conn.execute("SELECT request_id, kind FROM decisions").fetchall() == [("r1", "decision")]
    assert dbmod.migrate(conn) == []  # idempotent


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    conn = dbmod.connect_sync(path)
    conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)")
    conn.close()
    with pytest.raises(StorageError, match="newer"):
        dbmod.connect_sync(path)


def test_corrupt_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.db"
    path.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StorageError, match="corrupt or not an SQLite"):
        dbmod.connect_sync(path)


async def test_keystore_lifecycle_and_change_feed(backend: Backend) -> None:
    store = await open_key_store(backend.config())
    try:
        a = await store.create("a", b"hash-a", 10, 60.0, None, "default")
        b = await store.create("b", b"hash-b", 5, 1.0, time.time() + 100, "strict")
        assert (await store.get(a.key_id)) == a
        assert [r.key_id for r in await store.changed_since(0)] == [a.key_id, b.key_id]
        assert (await store.list_all()) == [a, b]
        seq = max(a.seq, b.seq)
        assert await store.changed_since(seq) == []
        revoked = await store.revoke(a.key_id, 123.0)
        assert revoked.status() == "revoked" and revoked.seq > seq
        assert [r.key_id for r in await store.changed_since(seq)] == [a.key_id]
        rotated = await store.rotate(b.key_id, b"hash-b2", 999.0, 1.0)
        assert rotated.secret_hash == b"hash-b2" and rotated.prev_secret_hash == b"hash-b"
        await store.touch({b.key_id: 50.0})
        assert (await store.get(b.key_id)).last_used_at == 50.0  # type: ignore[union-attr]
        assert "secret_hash" not in rotated.public()
        with pytest.raises(NotFoundError):
            await store.revoke("zzzzzzzzzzzz", 1.0)
        seq = max(r.seq for r in await store.changed_since(0))
        await store.delete(a.key_id)
        assert await store.get(a.key_id) is None
        assert a.key_id not in [r.key_id for r in await store.list_all()]
        gone = await store.changed_since(seq)
        assert [(r.key_id, r.status()) for r in gone] == [(a.key_id, "revoked")]  # a tombstone in the feed
        assert gone[0].seq > seq and gone[0].secret_hash == b""
        newer = await store.update(b.key_id, name="b2")
        assert newer.seq > gone[0].seq  # change numbers keep growing past tombstones
        with pytest.raises(NotFoundError):
            await store.delete(a.key_id)
        with pytest.raises(NotFoundError):
            await store.update("zzzzzzzzzzzz", name="x")
        assert (await store.revoke(b.key_id, 7.0)).revoked_at == 7.0
        assert (await store.revoke(b.key_id, 9.0)).revoked_at == 7.0  # idempotent
        with pytest.raises(StorageError, match="revoked"):
            await store.rotate(b.key_id, b"hash-b3", None, 1.0)
        with pytest.raises(StorageError, match="exists already"):
            await store.create("c", b"h", 1, 1.0, None, "default", key_id=b.key_id)
    finally:
        await store.close()


@pytest.mark.parametrize("version", [0, *[m.version for m in dbmod.MIGRATIONS[:-1]]])
def test_a_database_at_every_earlier_version_migrates(tmp_path: Path, version: int) -> None:
    path = tmp_path / f"v{version}.db"
    conn = sqlite3.connect(path, isolation_level=None)
    dbmod.migrate(conn, [m for m in dbmod.MIGRATIONS if m.version <= version])
    assert dbmod.schema_version(conn) == version
    conn.close()
    conn = dbmod.connect_sync(path)
    assert dbmod.schema_version(conn) == dbmod.SCHEMA_VERSION
    assert dbmod.pending_versions(conn) == []
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"api_keys", "decisions", "chains", "key_tombstones", "schema_migrations"} <= tables
    conn.close()
