"""Checks of the database: it can be read, at this aigov's schema, and every decision-log hash chain holds."""

from __future__ import annotations

from aigov_cli.audit.model import AuditContext, Finding, Severity


def check_schema(ctx: AuditContext) -> list[Finding]:
    """The database schema must be the version this aigov writes."""
    from daemon.storage.sqlite_db import SCHEMA_VERSION

    if not ctx.db_exists():
        return [Finding("AG602", "no database yet", Severity.INFO, f"{ctx.db_location} does not exist",
                        "Nothing to do: it is created by `aigov serve` or `aigov keys create`.")]
    reader = ctx.reader()
    if reader is None:
        return [Finding("AG601", "database cannot be read", Severity.CRITICAL, ctx.db_error or ctx.db_location,
                        "Restore the database from a backup.", location=ctx.db_location)]
    try:
        version, pending = reader.schema_version(), reader.pending_migrations()
    except Exception as e:  # a file that opens but whose tables cannot be read
        return [Finding("AG601", "database cannot be read", Severity.CRITICAL, f"{ctx.db_location}: {e}",
                        "Restore the database from a backup.", location=ctx.db_location)]
    if version > SCHEMA_VERSION:
        return [Finding("AG603", "database schema is newer than this aigov", Severity.HIGH,
                        f"schema version {version}, this aigov understands {SCHEMA_VERSION}",
                        "Upgrade aigov to the version that wrote this database.", location=ctx.db_location)]
    if pending:
        return [Finding("AG603", "database schema is out of date", Severity.MEDIUM,
                        f"schema version {version}, current is {SCHEMA_VERSION} (pending: "
                        f"{', '.join(map(str, pending))}); the key and decision-log checks need the current schema",
                        "Run `aigov db upgrade` (or start `aigov serve`): it applies the pending migrations.",
                        location=ctx.db_location)]
    return []


def check_decision_chain(ctx: AuditContext) -> list[Finding]:
    """Every decision record must match its hash and link to its predecessor, in every writer's chain."""
    reader = ctx.current()
    if reader is None:
        return []
    try:
        reports = reader.verify_chains()
    except Exception as e:  # a store that cannot be read to the end is as suspect as a broken chain
        return [Finding("AG501", "decision log cannot be verified", Severity.CRITICAL, f"{type(e).__name__}: {e}",
                        "Restore the database from a backup and investigate who changed it.",
                        location=ctx.db_location)]
    return [Finding(
        "AG501", "decision log hash chain is broken", Severity.CRITICAL,
        f"chain {r.chain}: " + (f"first bad record: id {r.first_bad_id} ({r.problem})" if r.first_bad_id is not None
                                else str(r.problem)) + f"; {r.records} record(s) read",
        "Treat the log as tampered with: keep a copy for investigation, restore from a backup, find who had "
        "write access to the database.",
        location=ctx.db_location,
    ) for r in reports if not r.ok]
