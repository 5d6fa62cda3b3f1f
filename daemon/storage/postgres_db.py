"""The PostgreSQL store: the URL, connecting (one clear line when it fails), a private event loop for
blocking callers, and the numbered migrations.

``database_url = "postgresql://USER[:PASSWORD]@HOST:PORT/DB"``. One extension: ``?schema=NAME`` keeps
aigov's tables in a schema of their own (created on first use), so that several deployments, or
test runs, can share one database; without it the tables live in ``public``.

The migrations have the version numbers of the SQLite ones (:mod:`daemon.storage.sqlite_db`) for the
same logical change; version 3 also adds what only PostgreSQL needs: the key change feed's sequence,
transaction ids and triggers (see :mod:`daemon.storage.postgres_keys`). They are applied under an
advisory lock, so that ten daemons starting at once migrate once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import socket
import threading
import time
import zlib
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from daemon.errors import ConfigError, StorageError
from daemon.storage.sqlite_db import Migration

if TYPE_CHECKING:
    from typing import TypeAlias

    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

    # A connection of its own or one lent by a pool.
    Conn: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]

T = TypeVar("T")

CONNECT_TIMEOUT = 5.0
# statement_timeout (ms) of the daemon's connections: a statement that hangs fails and is retried
# instead of holding a chain's lock or the key feed; the CLI reads whole logs, so it gets longer.
DAEMON_STATEMENT_TIMEOUT_MS = 30_000
CLI_STATEMENT_TIMEOUT_MS = 600_000
# A transaction left open by a process that hangs must not hold a chain's head for ever.
IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000
# pg_advisory_lock(MIGRATION_LOCK, crc32(schema)): one migration at a time per schema.
MIGRATION_LOCK = 0x616967  # "aig"
KEY_CHANNEL = "aigov_keys"  # NOTIFY channel of key changes; the payload is the schema
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")


def _import_asyncpg() -> Any:
    try:
        import asyncpg
    except ImportError:
        raise ConfigError("database_url names PostgreSQL, but its driver is not installed: "
                          "pip install 'aigov[postgres]'") from None
    return asyncpg


@dataclass(frozen=True)
class PgTarget:
    """Where a PostgreSQL store is: the URL split into what asyncpg takes and what messages show."""

    dsn: str  # the URL as asyncpg takes it (without ``schema=``)
    schema: str
    host: str
    port: int
    database: str
    user: str
    masked: str  # the URL with its password masked

    @classmethod
    def parse(cls, url: str) -> PgTarget:
        """Split a ``postgresql://`` URL; ConfigError (password masked) when it cannot be one."""
        from daemon.config import mask_url, postgresql_url_problem

        masked = mask_url(url)
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ConfigError(f"database_url {masked}: not a postgresql:// URL")
        if why := postgresql_url_problem(url):  # the port's number among what it checks
            raise ConfigError(f"database_url {masked}: {why}")
        port = parts.port or 5432
        query = parse_qsl(parts.query, keep_blank_values=True)
        schema = next((v for k, v in query if k == "schema"), "public")
        if not _SCHEMA_NAME.match(schema):
            raise ConfigError(f"database_url {masked}: schema must be a plain identifier (letters, digits, _), "
                              f"got {schema!r}")
        rest = urlencode([(k, v) for k, v in query if k != "schema"])
        dsn = urlunsplit((parts.scheme, parts.netloc, parts.path, rest, ""))
        database = unquote(parts.path.lstrip("/"))
        # A unix socket's directory comes as ?host=/PATH (the URL's host part stays empty).
        host = parts.hostname or next((v for k, v in query if k == "host" and v), "")
        return cls(dsn=dsn, schema=schema, host=host, port=port, database=database,
                   user=unquote(parts.username or ""), masked=mask_url(url))

    def describe(self) -> str:
        """``PostgreSQL at HOST:PORT, database DB`` (for messages; never the password)."""
        return f"PostgreSQL at {self.host}:{self.port}, database {self.database}"

    def location(self) -> str:
        """The URL without its password (for ``aigov db status`` and findings)."""
        return self.masked

    def where(self) -> dict[str, str | int]:
        """Host, port, database, schema and user, each by name (``aigov db status``; never the password)."""
        return {"host": self.host, "port": self.port, "database": self.database, "schema": self.schema,
                "user": self.user}


def quote_ident(name: str) -> str:
    """An SQL identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def describe_error(target: PgTarget, e: BaseException) -> StorageError:
    """One line for a failure to reach or use the database: what failed, where, never the password."""
    asyncpg = _import_asyncpg()
    where = target.describe()
    if isinstance(e, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
        return StorageError(f"cannot connect to {where}: authentication failed for user {target.user or '?'} "
                            "(check the user and password in database_url)")
    if isinstance(e, asyncpg.InvalidCatalogNameError):
        return StorageError(f"cannot connect to {where}: the database does not exist (create it first: "
                            f"createdb {target.database})")
    if isinstance(e, socket.gaierror):
        return StorageError(f"cannot connect to {where}: unknown host {target.host}")
    if isinstance(e, ConnectionRefusedError):
        return StorageError(f"cannot connect to {where}: connection refused (is PostgreSQL running there?)")
    if isinstance(e, TimeoutError | asyncio.TimeoutError):
        return StorageError(f"cannot reach {where}: no answer within {CONNECT_TIMEOUT:g} s")
    if isinstance(e, asyncpg.QueryCanceledError):
        return StorageError(f"{where}: a statement took longer than statement_timeout and was cancelled")
    if isinstance(e, asyncpg.InsufficientPrivilegeError):
        return StorageError(f"{where}: permission denied ({_first_line(e)})")
    if isinstance(e, asyncpg.PostgresError):
        return StorageError(f"{where}: {_first_line(e)}")
    if isinstance(e, asyncpg.InterfaceError | asyncpg.InternalClientError):
        return StorageError(f"{where}: {_first_line(e)}")
    if isinstance(e, OSError):
        return StorageError(f"cannot reach {where}: {e.strerror or _first_line(e)}")
    return StorageError(f"{where}: {type(e).__name__}: {_first_line(e)}")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def is_database_error(e: BaseException) -> bool:
    """Whether ``e`` comes from the database or the way to it (rather than from a bug in aigov)."""
    asyncpg = _import_asyncpg()
    # InternalClientError: a connection left mid-operation by an outage ("cannot switch to state 15;
    # another operation is in progress", seen when the server was stopped under load); the connection
    # is dropped and the next try opens a new one.
    return isinstance(e, asyncpg.PostgresError | asyncpg.InterfaceError | asyncpg.InternalClientError | OSError
                      | asyncio.TimeoutError)


async def connect(target: PgTarget, *, statement_timeout_ms: int = DAEMON_STATEMENT_TIMEOUT_MS,
                  application_name: str = "aigov", **settings: str) -> asyncpg.Connection:
    """One connection with aigov's session settings; StorageError (one line) when it cannot be made."""
    pg = _import_asyncpg()
    try:
        conn: asyncpg.Connection = await pg.connect(
            target.dsn, timeout=CONNECT_TIMEOUT,
            server_settings=server_settings(target, statement_timeout_ms, application_name, **settings))
    except (ValueError, pg.ClientConfigurationError) as e:
        raise ConfigError(f"database_url {target.masked}: {_first_line(e)}") from None
    except Exception as e:
        if is_database_error(e):
            raise describe_error(target, e) from None
        raise
    return conn


def server_settings(target: PgTarget, statement_timeout_ms: int, application_name: str = "aigov",
                    **extra: str) -> dict[str, str]:
    """The session settings of every connection: search_path, statement and idle-transaction timeouts."""
    return {
        "search_path": quote_ident(target.schema),
        "statement_timeout": str(statement_timeout_ms),
        "idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_TIMEOUT_MS),
        "application_name": application_name,
        **extra,
    }


class LoopThread:
    """An event loop in a thread of its own: asyncpg for callers that block (the CLI's reader), and
    for the decision writer, whose work then never runs on the daemon's event loop."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the thread's loop."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the thread's loop and wait for its result (blocking)."""
        return self.submit(coro).result()

    async def run_async(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the thread's loop; the caller's loop waits without blocking."""
        return await asyncio.wrap_future(self.submit(coro))

    def stop(self) -> None:
        """Stop the loop and join the thread (call after the last ``run``)."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
        self.loop.close()


# --- migrations -------------------------------------------------------------------------------

MIGRATIONS: Sequence[Migration] = (
    Migration(
        1,
        "keys and decisions",
        # double precision for every time and latency: a float comes back exactly as it was hashed.
        """
        CREATE TABLE api_keys (
            key_id           text PRIMARY KEY,
            name             text NOT NULL,
            secret_hash      bytea NOT NULL,
            prev_secret_hash bytea,
            prev_expires_at  double precision,
            created_at       double precision NOT NULL,
            expires_at       double precision,
            revoked_at       double precision,
            rotated_at       double precision,
            last_used_at     double precision,
            rate_limit       integer NOT NULL,
            rate_window      double precision NOT NULL,
            policy           text NOT NULL DEFAULT 'default',
            seq              bigint NOT NULL
        );
        CREATE INDEX api_keys_seq ON api_keys (seq);
        CREATE TABLE decisions (
            id             bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            time           double precision NOT NULL,
            request_id     text NOT NULL,
            key_id         text,
            model          text,
            operation      text,
            decision       text NOT NULL,
            rules          text NOT NULL,
            reasons        text NOT NULL,
            input_length   integer,
            input_sha256   text,
            input          text,
            latency_ms     double precision,
            policy_name    text,
            policy_version text,
            prev_hash      text NOT NULL,
            hash           text NOT NULL
        );
        CREATE INDEX decisions_time ON decisions (time);
        CREATE INDEX decisions_key_time ON decisions (key_id, time);
        """,
    ),
    Migration(
        2,
        "decision kinds (checkpoints) and request id index",
        """
        ALTER TABLE decisions ADD COLUMN kind text NOT NULL DEFAULT 'decision';
        CREATE INDEX decisions_request_id ON decisions (request_id);
        """,
    ),
    Migration(
        3,
        "per-writer hash chains, keyed input fingerprints, direction, rate-limit state, metadata, key deletion",
        # As in SQLite: records so far become the chain 'legacy' in format 1 (seq = id).
        #
        # PostgreSQL only: the key change feed. Several processes change keys at once here, and
        # transactions commit in any order, so SQLite's seq = MAX(seq) + 1 would hand out numbers that
        # become visible out of order. Every change (a trigger, so that even a change made by hand in
        # SQL reaches the daemons) takes its seq from a sequence and records its transaction id (xid),
        # and notifies the daemons; daemon/storage/postgres_keys.py explains how the xid lets a reader
        # pick up a change whose transaction took its seq first but committed last.
        """
        ALTER TABLE decisions RENAME COLUMN input_sha256 TO input_fingerprint;
        ALTER TABLE decisions ADD COLUMN format integer NOT NULL DEFAULT 1;
        ALTER TABLE decisions ADD COLUMN chain text NOT NULL DEFAULT 'legacy';
        ALTER TABLE decisions ADD COLUMN seq bigint;
        ALTER TABLE decisions ADD COLUMN direction text;
        ALTER TABLE decisions ADD COLUMN rate_limit text;
        ALTER TABLE decisions ADD COLUMN metadata text;
        UPDATE decisions SET seq = id;
        ALTER TABLE decisions ALTER COLUMN seq SET NOT NULL;
        CREATE UNIQUE INDEX decisions_chain_seq ON decisions (chain, seq);
        CREATE TABLE chains (
            chain      text PRIMARY KEY,
            head_seq   bigint NOT NULL,
            head_hash  text NOT NULL,
            created_at double precision NOT NULL
        );
        INSERT INTO chains (chain, head_seq, head_hash, created_at)
            SELECT 'legacy', id, hash, time FROM decisions ORDER BY id DESC LIMIT 1;
        CREATE TABLE key_tombstones (
            key_id     text PRIMARY KEY,
            deleted_at double precision NOT NULL,
            seq        bigint NOT NULL
        );
        CREATE INDEX key_tombstones_seq ON key_tombstones (seq);

        CREATE SEQUENCE key_changes AS bigint;
        SELECT setval('key_changes', COALESCE((SELECT max(seq) FROM api_keys), 0) + 1, false);
        ALTER TABLE api_keys ADD COLUMN xid bigint NOT NULL DEFAULT 0;
        ALTER TABLE key_tombstones ADD COLUMN xid bigint NOT NULL DEFAULT 0;
        CREATE INDEX api_keys_xid ON api_keys (xid);
        CREATE INDEX key_tombstones_xid ON key_tombstones (xid);
        CREATE FUNCTION key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.seq := nextval('key_changes');
            NEW.xid := pg_current_xact_id()::text::bigint;
            PERFORM pg_notify('aigov_keys', TG_TABLE_SCHEMA);
            RETURN NEW;
        END
        $$;
        CREATE TRIGGER api_keys_changed
            BEFORE INSERT OR UPDATE OF name, secret_hash, prev_secret_hash, prev_expires_at, expires_at,
                revoked_at, rotated_at, rate_limit, rate_window, policy
            ON api_keys FOR EACH ROW EXECUTE FUNCTION key_changed();
        CREATE TRIGGER key_tombstones_changed
            BEFORE INSERT OR UPDATE ON key_tombstones FOR EACH ROW EXECUTE FUNCTION key_changed();
        """,
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


async def applied_versions(conn: Conn) -> set[int]:
    """The migration versions recorded in the schema (none when it has no version table yet)."""
    if await conn.fetchval("SELECT to_regclass('schema_migrations') IS NULL"):
        return set()
    return {int(r[0]) for r in await conn.fetch("SELECT version FROM schema_migrations")}


def _check_not_newer(done: set[int], migrations: Sequence[Migration]) -> None:
    newest = migrations[-1].version if migrations else 0
    if done and max(done) > newest:
        raise StorageError(f"database schema version {max(done)} is newer than this aigov understands "
                           f"({newest}); upgrade aigov")


async def pending_versions(conn: Conn, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """The migrations this aigov has that the schema lacks."""
    done = await applied_versions(conn)
    return [m.version for m in migrations if m.version not in done]


async def migrate(conn: Conn, schema: str, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Apply the pending migrations, each in its own transaction, under the schema's advisory lock.

    Whoever takes the lock second finds the work done (the versions are read again under the lock),
    so any number of processes starting together migrate once. Returns the versions applied here.
    """
    done = await applied_versions(conn)
    _check_not_newer(done, migrations)
    if all(m.version in done for m in migrations):
        return []
    key = zlib.crc32(schema.encode()) - (1 << 31)  # the lock's second half is a signed int4
    await conn.execute("SELECT pg_advisory_lock($1, $2)", MIGRATION_LOCK, key)
    try:
        if schema != "public":
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                           "(version integer PRIMARY KEY, name text NOT NULL, applied_at double precision NOT NULL)")
        done = await applied_versions(conn)
        _check_not_newer(done, migrations)
        applied = []
        for m in migrations:
            if m.version in done:
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                                   m.version, m.name, time.time())
            applied.append(m.version)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1, $2)", MIGRATION_LOCK, key)


async def schema_version(conn: Conn) -> int:
    """The highest applied migration (0 for an empty schema)."""
    return max(await applied_versions(conn), default=0)


async def open_migrated(target: PgTarget, *, migrate_schema: bool = True,
                        statement_timeout_ms: int = DAEMON_STATEMENT_TIMEOUT_MS,
                        application_name: str = "aigov", **settings: str) -> asyncpg.Connection:
    """A connection to ``target``, its schema migrated first (unless told not to)."""
    conn = await connect(target, statement_timeout_ms=statement_timeout_ms, application_name=application_name,
                         **settings)
    if migrate_schema:
        try:
            await migrate(conn, target.schema)
        except StorageError:
            await conn.close()
            raise
        except Exception as e:
            await conn.close()
            if is_database_error(e):
                raise describe_error(target, e) from None
            raise
    return conn
