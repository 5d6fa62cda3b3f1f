"""Storage: keys and the decision log, behind the interfaces of :mod:`daemon.storage.interface`.

The factory functions here pick the implementation from ``database_url``: empty or
``sqlite:///PATH`` is the embedded SQLite file (the default, nothing to install);
``postgresql://...`` is a PostgreSQL server shared by several daemons.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from daemon.config import Config
    from daemon.storage.interface import DecisionReader, DecisionStore, KeyStore
    from daemon.storage.postgres_db import PgTarget
    from daemon.storage.records import RecordBuilder


def _target(config: Config) -> PgTarget:
    from daemon.storage.postgres_db import PgTarget

    return PgTarget.parse(config.database_url)


def key_store(config: Config) -> KeyStore:
    """The configured key store (not yet opened)."""
    if config.backend == "postgresql":
        from daemon.storage.postgres_keys import PostgresKeyStore

        return PostgresKeyStore(_target(config))
    from daemon.storage.sqlite_keys import SqliteKeyStore

    return SqliteKeyStore(config.db_file)


async def open_key_store(config: Config) -> KeyStore:
    """The configured key store, connected and migrated; close it with ``await store.close()``."""
    store = key_store(config)
    await store.open()
    return store


def decision_store(config: Config, chain: str, builder: RecordBuilder, *, checkpoints: bool = True) -> DecisionStore:
    """The configured decision store for one writer (not yet opened)."""
    if config.backend == "postgresql":
        from daemon.storage.postgres_decisions import PostgresDecisionStore

        return PostgresDecisionStore(_target(config), chain, builder)
    from daemon.storage.sqlite_decisions import SqliteDecisionStore

    return SqliteDecisionStore(config.db_file, chain, builder, checkpoints=checkpoints)


def decision_reader(config: Config, *, migrate: bool = True) -> DecisionReader:
    """The configured decision log's reader (blocking; for the CLI). With ``migrate`` it applies
    pending migrations when it connects; without, it reads the schema as it is (audit, db status)."""
    if config.backend == "postgresql":
        from daemon.storage.postgres_decisions import PostgresDecisionReader

        return PostgresDecisionReader(_target(config), migrate=migrate)
    from daemon.storage.sqlite_decisions import SqliteDecisionReader

    return SqliteDecisionReader(config.db_file, migrate=migrate)


def chain_name(worker: int = 0) -> str:
    """The hash chain a writer appends to: this host's worker slot, stable across restarts."""
    return f"{socket.gethostname()}/w{worker}"
