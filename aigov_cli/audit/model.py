"""What a check produces: :class:`Finding` with a :class:`Severity`, and the context checks read."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daemon.config import Config
    from daemon.storage.interface import DecisionReader, KeyRecord


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
    """Everything a check reads: the configuration, the keys and decision log it names, the daemon's URL."""

    config: Config
    url: str | None = None
    url_given: bool = False
    run_deps: bool = True
    daemon_info: dict[str, Any] | None = None
    _keys: list[KeyRecord] | None = field(default=None, repr=False)
    _reader: DecisionReader | None = field(default=None, repr=False)
    _error: str | None = field(default=None, repr=False)

    @property
    def db_path(self) -> Path:
        """The SQLite database file (for the embedded store)."""
        return self.config.db_file

    @property
    def db_location(self) -> str:
        """Where keys and decisions live, as findings name it (a URL without its password)."""
        from daemon.config import mask_url

        return mask_url(self.config.database_url) if self.config.backend == "postgresql" else str(self.db_path)

    def db_exists(self) -> bool:
        """Whether there is a database to read (an SQLite file that does not exist yet is none)."""
        return self.config.backend == "postgresql" or self.db_path.exists()

    def reader(self) -> DecisionReader | None:
        """The decision log's reader, without migrating (None when there is no database, or it cannot
        be read: :attr:`db_error` says why)."""
        if self._reader is None and self.db_exists() and self._error is None:
            from daemon.errors import AigovError
            from daemon.storage import decision_reader

            try:
                reader = decision_reader(self.config, migrate=False)
                reader.schema_version()  # connects: errors show here, once
            except AigovError as e:
                self._error = str(e)
                return None
            self._reader = reader
        return self._reader

    def current(self) -> DecisionReader | None:
        """The reader when the schema is the one this aigov writes (the checks of keys and chains need it)."""
        reader = self.reader()
        return reader if reader is not None and not reader.pending_migrations() else None

    def keys(self) -> list[KeyRecord]:
        """Every stored key ([] without a current, readable database)."""
        if self._keys is None:
            self._keys = []
            if self.current() is not None:
                import asyncio

                from daemon.errors import AigovError
                from daemon.keyadmin import with_store

                try:
                    self._keys = asyncio.run(with_store(self.config, lambda store: store.list_all()))
                except AigovError as e:
                    self._error = str(e)
        return self._keys

    @property
    def db_error(self) -> str | None:
        """Why the database could not be read."""
        return self._error

    def close(self) -> None:
        """Close the decision log's reader."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None
