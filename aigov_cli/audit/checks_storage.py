"""Checks of the database: the schema version and the decision-log hash chain."""

from __future__ import annotations

import sqlite3

from aigov_cli.audit.model import AuditContext, Finding, Severity


def check_schema(ctx: AuditContext) -> list[Finding]:
    """The database schema must be the version this aigov writes."""
    from daemon.storage.db import SCHEMA_VERSION

    conn = ctx.db()
    if conn is None:
        if ctx.db_path.exists():
            return [Finding("AG601", "database cannot be read", Severity.CRITICAL, ctx.db_error or str(ctx.db_path),
                            "Restore the database from a backup.", location=str(ctx.db_path))]
        return [Finding("AG602", "no database yet", Severity.INFO, f"{ctx.db_path} does not exist",
                        "Nothing to do: it is created by `aigov serve` or `aigov keys create`.")]
    try:
        if not ctx.has_table("schema_migrations"):
            version = 0
        else:
            version = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
    except sqlite3.Error as e:
        return [Finding("AG601", "database cannot be read", Severity.CRITICAL, f"{ctx.db_path}: {e}",
                        "Restore the database from a backup.", location=str(ctx.db_path))]
    if version == SCHEMA_VERSION:
        return []
    if version > SCHEMA_VERSION:
        return [Finding("AG603", "database schema is newer than this aigov", Severity.HIGH,
                        f"schema version {version}, this aigov understands {SCHEMA_VERSION}",
                        "Upgrade aigov to the version that wrote this database.", location=str(ctx.db_path))]
    return [Finding("AG603", "database schema is out of date", Severity.MEDIUM,
                    f"schema version {version}, current is {SCHEMA_VERSION}",
                    "Run `aigov serve` (or any `aigov keys` command) once: it applies the pending migrations.",
                    location=str(ctx.db_path))]


def check_decision_chain(ctx: AuditContext) -> list[Finding]:
    """Every decision record must match its hash and link to its predecessor (edit, delete, insert)."""
    from daemon.decisionlog import verify_chain

    conn = ctx.db()
    if conn is None or not ctx.has_table("decisions"):
        return []
    try:
        report = verify_chain(conn)
    except (sqlite3.Error, KeyError, TypeError, ValueError) as e:
        return [Finding("AG501", "decision log cannot be verified", Severity.CRITICAL, f"{type(e).__name__}: {e}",
                        "Restore the database from a backup and investigate who changed it.",
                        location=str(ctx.db_path))]
    if report.ok:
        return []
    return [Finding(
        "AG501", "decision log hash chain is broken", Severity.CRITICAL,
        f"first bad record: id {report.first_bad_id} ({report.problem}); {report.records} record(s) read",
        "Treat the log as tampered with: keep a copy for investigation, restore from a backup, find who had "
        "write access to the database.",
        location=str(ctx.db_path),
    )]
