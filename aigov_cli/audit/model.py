"""What a check produces: :class:`Finding` with a :class:`Severity`, and the context checks read."""

from __future__ import annotations

import enum
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daemon.config import Config


class Severity(enum.Enum):
    """How bad a finding is; ``info`` findings never fail an audit."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 (info) .. 4 (critical), for comparisons."""
        return _RANK[self]

    @property
    def sarif_level(self) -> str:
        """The SARIF result level: error, warning or note."""
        match self:
            case Severity.CRITICAL | Severity.HIGH:
                return "error"
            case Severity.MEDIUM:
                return "warning"
            case Severity.LOW | Severity.INFO:
                return "note"

    @property
    def security_score(self) -> str:
        """The CVSS-like ``security-severity`` GitHub code scanning reads from SARIF rules."""
        return {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "0.0"}[self.value]


_RANK = {s: i for i, s in enumerate(Severity)}


@dataclass(frozen=True)
class Finding:
    """One problem found by a check, like a trivy or bandit finding."""

    id: str
    title: str
    severity: Severity
    evidence: str
    remediation: str
    check: str = ""
    location: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "id": self.id, "title": self.title, "severity": self.severity.value, "evidence": self.evidence,
            "remediation": self.remediation, "check": self.check, "location": self.location,
        }


class CheckSkipped(Exception):
    """Raised by a check that could not run: its status is ``skipped``, not ``pass``.

    ``finding`` (info) tells the reader how to make it run; ``reason`` is the one-line why.
    """

    def __init__(self, reason: str, finding: Finding | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.finding = finding


@dataclass(frozen=True)
class CheckResult:
    """What running one check gave: its findings, or why it was skipped."""

    name: str
    description: str
    function: str = ""
    findings: tuple[Finding, ...] = ()
    skipped: str | None = None

    @property
    def status(self) -> str:
        """``pass``, ``fail`` or ``skipped``."""
        if self.skipped is not None:
            return "skipped"
        return "fail" if any(f.severity is not Severity.INFO for f in self.findings) else "pass"


@dataclass
class AuditContext:
    """Everything a check reads: the configuration, a read-only database connection, the daemon's URL."""

    config: Config
    url: str | None = None
    url_given: bool = False
    run_deps: bool = True
    daemon_info: dict[str, Any] | None = None
    _conn: sqlite3.Connection | None = field(default=None, repr=False)
    _conn_error: str | None = field(default=None, repr=False)

    @property
    def db_path(self) -> Path:
        """The database file."""
        return self.config.db_file

    def db(self) -> sqlite3.Connection | None:
        """A read-only connection to the database (None when it does not exist or cannot be opened)."""
        if self._conn is not None or self._conn_error is not None:
            return self._conn
        path = self.db_path
        if not path.exists():
            self._conn_error = f"{path} does not exist"
            return None
        try:
            conn = sqlite3.connect(path.absolute().as_uri() + "?mode=ro", uri=True)
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as e:
            self._conn_error = f"cannot read {path}: {e}"
            return None
        self._conn = conn
        return conn

    @property
    def db_error(self) -> str | None:
        """Why :meth:`db` returned None."""
        return self._conn_error

    def has_table(self, name: str) -> bool:
        """Whether the database has this table."""
        conn = self.db()
        if conn is None:
            return False
        row = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
        return row is not None

    def close(self) -> None:
        """Close the database connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
