"""Shared fixtures: a throwaway AIGOV_HOME and a fast bcrypt cost for tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty aigov home; AIGOV_HOME points at it, bcrypt cost is the minimum (10) to keep tests fast."""
    h = tmp_path / "home"
    h.mkdir(mode=0o700)
    monkeypatch.setenv("AIGOV_HOME", str(h))
    monkeypatch.setenv("AIGOV_BCRYPT_COST", "10")
    for var in ("AIGOV_PORT", "AIGOV_HOST", "AIGOV_DB_PATH", "AIGOV_POLICY_FILE"):
        monkeypatch.delenv(var, raising=False)
    yield h
