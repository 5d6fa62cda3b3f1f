"""``aigov db copy --to postgresql://...``: move an SQLite store's keys and decisions into PostgreSQL.

Everything goes in one PostgreSQL transaction: keys (bcrypt hashes as they are, so no key is
re-issued), tombstones of deleted keys, the chains' heads and every decision record with its id,
chain, seq and hashes. Before the transaction commits, every chain is verified again where it
arrived; a copy that does not verify, or an interruption, leaves the target as it was. The target
must be empty (a second copy is refused, not merged). The SQLite file is read in one read
transaction: a daemon still writing to it does not make the copy inconsistent, but what it writes
after the copy began is not in the copy (so ``aigov db copy`` refuses while the home's daemon runs).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.errors import StorageError
from daemon.storage.postgres_db import PgTarget, describe_error, is_database_error, open_migrated
from daemon.storage.postgres_decisions import verify_chains
from daemon.storage.records import ROW_FIELDS
from daemon.storage.sqlite_db import connect_sync, pending_versions

PAGE = 10_000
_KEY_COLUMNS = ("key_id", "name", "secret_hash", "prev_secret_hash", "prev_expires_at", "created_at", "expires_at",
                "revoked_at", "rotated_at", "last_used_at", "rate_limit", "rate_window", "policy", "seq")


@dataclass(frozen=True)
class CopyReport:
    """What was copied."""

    keys: int
    tombstones: int
    decisions: int
    chains: int

    def as_dict(self) -> dict[str, int]:
        """For ``--json``."""
        return {"keys": self.keys, "deleted_keys": self.tombstones, "decisions": self.decisions,
                "chains": self.chains}


def _no_nul(table: str, row: Sequence[Any], ident: Any) -> None:
    for v in row:
        if isinstance(v, str) and "\x00" in v:
            raise StorageError(f"{table} {ident} holds a NUL character, which PostgreSQL text cannot store; "
                               "nothing was copied")


async def copy_sqlite_to_postgres(source: Path, url: str) -> CopyReport:
    """Copy the SQLite store at ``source`` into the empty PostgreSQL store at ``url``; StorageError if refused."""
    target = PgTarget.parse(url)
    if not source.exists():
        raise StorageError(f"there is no SQLite database at {source} to copy")
    src = connect_sync(source, create=False, migrate_schema=False)
    try:
        pending = pending_versions(src)
        if pending:
            raise StorageError(f"the SQLite database {source} lacks migrations {', '.join(map(str, pending))}; "
                               "run `aigov db upgrade` on it first")
        src.execute("BEGIN")  # one read transaction: one consistent moment of the file
        conn = await open_migrated(target, application_name="aigov db copy")
        try:
            return await _copy(src, conn, target)
        except StorageError:
            raise
        except Exception as e:
            if is_database_error(e):
                raise describe_error(target, e) from None
            raise
        finally:
            await conn.close()
    finally:
        src.close()


async def _copy(src: sqlite3.Connection, conn: Any, target: PgTarget) -> CopyReport:
    held = {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}"))
            for t in ("api_keys", "key_tombstones", "decisions", "chains")}
    if any(held.values()):
        raise StorageError(f"{target.describe()}, schema {target.schema} already holds {held['api_keys']} key(s) "
                           f"and {held['decisions']} decision(s): aigov db copy only fills an empty store "
                           "(nothing was copied)")
    async with conn.transaction():
        await conn.execute("SET LOCAL statement_timeout = 0")
        # Keys keep everything but their change number: the target's triggers give them new ones.
        keys = src.execute(f"SELECT {', '.join(_KEY_COLUMNS)} FROM api_keys ORDER BY seq").fetchall()
        for k in keys:
            _no_nul("key", k, k[0])
        await conn.copy_records_to_table("api_keys", records=keys, columns=_KEY_COLUMNS)
        stones = src.execute("SELECT key_id, deleted_at, seq FROM key_tombstones ORDER BY seq").fetchall()
        await conn.copy_records_to_table("key_tombstones", records=stones, columns=("key_id", "deleted_at", "seq"))
        chains = src.execute("SELECT chain, head_seq, head_hash, created_at FROM chains").fetchall()
        await conn.copy_records_to_table("chains", records=chains,
                                         columns=("chain", "head_seq", "head_hash", "created_at"))
        decisions = 0
        last = 0
        cur_sql = f"SELECT {', '.join(ROW_FIELDS)} FROM decisions WHERE id > ? ORDER BY id LIMIT {PAGE}"
        while rows := src.execute(cur_sql, (last,)).fetchall():
            for r in rows:
                _no_nul("decision record id", r, r[0])
            await conn.copy_records_to_table("decisions", records=rows, columns=ROW_FIELDS)
            decisions += len(rows)
            last = rows[-1][0]
        if decisions:  # ids were copied as they were: new ones continue after them
            await conn.execute("SELECT setval(pg_get_serial_sequence('decisions', 'id'), $1)", last)
        bad = [r for r in await verify_chains(conn) if not r.ok]
        if bad:
            r = bad[0]
            where = f"first bad record id {r.first_bad_id}: " if r.first_bad_id is not None else ""
            raise StorageError(f"chain {r.chain} does not verify after the copy ({where}{r.problem}); nothing was "
                               "copied. Run `aigov audit` on the SQLite store: it was broken before the copy")
    return CopyReport(len(keys), len(stones), decisions, len(chains))
