"""Both stores for the shared behaviour tests: the ``backend`` fixture runs a test on SQLite and on PostgreSQL.

PostgreSQL tests use the server in ``AIGOV_TEST_POSTGRES_URL`` (``.ci/run`` sets it); each test gets a
schema of its own (``database_url`` with ``?schema=``), dropped afterwards. Without the variable they
skip with one line saying why.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from daemon.config import Config, load_config
from daemon.storage.interface import DecisionReader, DecisionStore
from daemon.storage.records import VALUE_FIELDS, Fingerprinter, RecordBuilder

T = TypeVar("T")

PG_URL = os.environ.get("AIGOV_TEST_POSTGRES_URL", "")
NO_POSTGRES = ("AIGOV_TEST_POSTGRES_URL is not set (e.g. postgresql://postgres@127.0.0.1:5432/test): "
               "no PostgreSQL to test against")
# An unconditional skip chosen once here rather than a skipif: pytest -ra folds these into one line.
needs_postgres = pytest.mark.skip(reason=NO_POSTGRES) if not PG_URL else pytest.mark.postgres
BACKENDS = ["sqlite", pytest.param("postgresql", marks=needs_postgres)]
RUN = uuid.uuid4().hex[:8]  # this test run's schemas all start with aigov_t_RUN_
BUILDER = RecordBuilder(Fingerprinter(b"k" * 32))


def run_sync(fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a loop of its own, in a thread (callable from async tests too)."""
    box: dict[str, Any] = {}

    def go() -> None:
        try:
            box["v"] = asyncio.run(fn())
        except BaseException as e:  # handed to the caller
            box["e"] = e

    t = threading.Thread(target=go)
    t.start()
    t.join()
    if "e" in box:
        raise box["e"]
    return box["v"]  # type: ignore[no-any-return]


def new_schema() -> str:
    """A schema name of this test run, used by one test."""
    return f"aigov_t_{RUN}_{uuid.uuid4().hex[:8]}"


def schema_url(schema: str, base: str = "") -> str:
    """``base`` (default: the test server) with ``?schema=``."""
    base = base or PG_URL
    return f"{base}{'&' if '?' in base else '?'}schema={schema}"


def drop_schema(schema: str, base: str = "") -> None:
    """Drop a test schema and everything in it."""
    import asyncpg

    async def go() -> None:
        conn = await asyncpg.connect(base or PG_URL)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    run_sync(go)


def pg_sql(url: str, statement: str, *params: Any, before: Sequence[str] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the schema of ``url`` (placeholders ``?``), after the ``before`` ones, and
    return its rows."""
    from daemon.storage.postgres_db import PgTarget, connect

    n = 0

    def dollar(_: Any) -> str:
        nonlocal n
        n += 1
        return f"${n}"

    import re

    sql = re.sub(r"\?", dollar, statement)

    async def go() -> list[tuple[Any, ...]]:
        conn = await connect(PgTarget.parse(url))
        try:
            for b in before:
                await conn.execute(b)
            return [tuple(r) for r in await conn.fetch(sql, *params)]
        finally:
            await conn.close()

    return run_sync(go)


@dataclass
class Backend:
    """One store for a test: its name, the home, and what a test needs to set it up, read it and tamper with it."""

    name: str
    home: Path
    url: str = ""

    @property
    def db_file(self) -> Path:
        """The SQLite file (SQLite only)."""
        return self.home / "aigov.db"

    def env(self) -> dict[str, str]:
        """The environment that points aigov at this store."""
        env = {"AIGOV_HOME": str(self.home), "AIGOV_BCRYPT_COST": "10"}
        if self.url:
            env["AIGOV_DATABASE_URL"] = self.url
        return env

    def config(self, **overrides: Any) -> Config:
        """The configuration of this home and store."""
        return load_config(overrides, env=self.env())

    def decision_store(self, chain: str = "test/w0", builder: RecordBuilder = BUILDER) -> DecisionStore:
        """A writer of ``chain`` (not opened)."""
        from daemon import storage

        return storage.decision_store(self.config(), chain, builder)

    def reader(self, migrate: bool = True) -> DecisionReader:
        """The decision log's reader."""
        from daemon import storage

        return storage.decision_reader(self.config(), migrate=migrate)

    def sql(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        """One statement on the store, as an intruder with write access would run it (placeholders ``?``)."""
        if self.url:
            return pg_sql(self.url, statement, *params)
        import sqlite3

        conn = sqlite3.connect(self.db_file, isolation_level=None)
        try:
            return conn.execute(statement, params).fetchall()
        finally:
            conn.close()

    def append_values(self, values: Sequence[tuple[Any, ...]], chain: str = "test/w0") -> None:
        """Append record values (VALUE_FIELDS order) to ``chain`` in one transaction."""
        if self.url:
            from daemon.storage.postgres_db import PgTarget, open_migrated
            from daemon.storage.postgres_decisions import append_chained

            async def go() -> None:
                conn = await open_migrated(PgTarget.parse(self.url))
                try:
                    async with conn.transaction():
                        await append_chained(conn, chain, values)
                finally:
                    await conn.close()

            run_sync(go)
            return
        from daemon.storage.sqlite_decisions import SqliteDecisionStore

        store = SqliteDecisionStore(self.db_file, chain, BUILDER, checkpoints=False)
        store.open_sync()
        try:
            store.append_values(values)
        finally:
            store.close_sync()

    def write_decisions(self, recs: Iterable[dict[str, Any]], chain: str = "test/w0", batch: int = 5000) -> None:
        """Append record dicts (see tests/audit_homes.py) to one chain, in batches."""
        buf: list[tuple[Any, ...]] = []
        for r in recs:
            buf.append(tuple(r[f] for f in VALUE_FIELDS))
            if len(buf) >= batch:
                self.append_values(buf, chain)
                buf = []
        if buf:
            self.append_values(buf, chain)


def make_backend(name: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Backend, Callable[[], None]]:
    """A backend for ``home`` (the environment points at it), and what cleans it up."""
    if name == "sqlite":
        monkeypatch.delenv("AIGOV_DATABASE_URL", raising=False)
        return Backend("sqlite", home), lambda: None
    schema = new_schema()
    url = schema_url(schema)
    monkeypatch.setenv("AIGOV_DATABASE_URL", url)
    return Backend("postgresql", home, url), lambda: drop_schema(schema)
