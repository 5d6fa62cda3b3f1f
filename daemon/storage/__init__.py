"""Storage: keys and the decision log, behind the interfaces of :mod:`daemon.storage.interface`.

The factory functions here pick the implementation from ``database_url``: empty or
``sqlite:///PATH`` is the embedded SQLite file (the default, nothing to install);
``postgresql://...`` is a PostgreSQL server shared by several daemons.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from daemon.errors import ConfigError

if TYPE_CHECKING:
    from daemon.config import Config
    from daemon.storage.interface import DecisionReader, DecisionStore, KeyStore
    from daemon.storage.records import RecordBuilder


def _postgres_missing(config: Config) -> ConfigError:
    from daemon.config import mask_url

    return ConfigError(f"database_url {mask_url(config.database_url)}: PostgreSQL is not supported by this "
                       "build of aigov; use an SQLite database (leave database_url empty)")


def key_store(config: Config) -> KeyStore:
    """The configured key store (not yet opened)."""
    if config.backend == "postgresql":
        raise _postgres_missing(config)
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
        raise _postgres_missing(config)
    from daemon.storage.sqlite_decisions import SqliteDecisionStore

    return SqliteDecisionStore(config.db_file, chain, builder, checkpoints=checkpoints)


def decision_reader(config: Config, *, migrate: bool = True) -> DecisionReader:
    """The configured decision log's reader (blocking; for the CLI). With ``migrate`` it applies
    pending migrations when it connects; without, it reads the schema as it is (audit, db status)."""
    if config.backend == "postgresql":
        raise _postgres_missing(config)
    from daemon.storage.sqlite_decisions import SqliteDecisionReader

    return SqliteDecisionReader(config.db_file, migrate=migrate)


def chain_name(worker: int = 0) -> str:
    """The hash chain a writer appends to: this host's worker slot, stable across restarts."""
    return f"{socket.gethostname()}/w{worker}"
