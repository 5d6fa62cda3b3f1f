"""Shared fixtures: a throwaway AIGOV_HOME, a fast bcrypt cost, and each store (``backend``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backends import BACKENDS, Backend, make_backend


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty aigov home; AIGOV_HOME points at it, bcrypt cost is the minimum (10) to keep tests fast."""
    h = tmp_path / "home"
    h.mkdir(mode=0o700)
    monkeypatch.setenv("AIGOV_HOME", str(h))
    monkeypatch.setenv("AIGOV_BCRYPT_COST", "10")
    for var in ("AIGOV_PORT", "AIGOV_HOST", "AIGOV_DB_PATH", "AIGOV_POLICY_FILE", "AIGOV_DATABASE_URL"):
        monkeypatch.delenv(var, raising=False)
    yield h


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    """The home's store, once SQLite and once PostgreSQL (a schema of its own, dropped afterwards).

    AIGOV_DATABASE_URL points at it, so the CLI and daemons the test starts use it too."""
    b, cleanup = make_backend(request.param, home, monkeypatch)
    try:
        yield b
    finally:
        cleanup()
