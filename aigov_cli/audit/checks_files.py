"""Checks of the files on disk: modes of the home, database, config, policy, pid and log files."""

from __future__ import annotations

import stat
from pathlib import Path

from aigov_cli.audit.model import AuditContext, Finding, Severity


def _mode_finding(fid: str, what: str, path: Path, readable_sev: Severity, want: int) -> list[Finding]:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return []
    except OSError as e:
        return [Finding(fid, f"{what} cannot be inspected", Severity.MEDIUM, f"{path}: {e.strerror}",
                        f"Make {path} accessible to the user that runs aigov.", location=str(path))]
    if stat.S_ISLNK(st.st_mode):
        return [Finding(fid, f"{what} is a symbolic link", Severity.MEDIUM,
                        f"{path} -> {path.resolve()}",
                        "Replace the link by the file itself, or point aigov at the target directly.",
                        location=str(path))]
    mode = stat.S_IMODE(st.st_mode)
    loose = mode & 0o077
    if not loose:
        return []
    writable = bool(mode & 0o022)
    sev = Severity.HIGH if writable else readable_sev
    who = " and ".join(w for w, bits in (("group", 0o070), ("others", 0o007)) if mode & bits)
    access = "write" if writable else "read"
    return [Finding(
        fid, f"{what} is accessible to {who}", sev,
        f"{path} has mode {mode:04o} ({who} may {access} it)",
        f"chmod {want:o} {path}", location=str(path),
    )]


def check_home(ctx: AuditContext) -> list[Finding]:
    """The aigov home (or config/data/state directories) must be mode 0700."""
    p = ctx.config.paths
    out: list[Finding] = []
    for d in dict.fromkeys((p.config_dir, p.data_dir, p.state_dir, ctx.config.db_file.parent)):
        out += _mode_finding("AG101", "aigov directory", d, Severity.MEDIUM, 0o700)
    return out


def check_database(ctx: AuditContext) -> list[Finding]:
    """The database (key hashes, decisions) and its WAL files must be mode 0600."""
    db = ctx.config.db_file
    out: list[Finding] = []
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        out += _mode_finding("AG102", "database file", path, Severity.HIGH, 0o600)
    return out


def check_config_file(ctx: AuditContext) -> list[Finding]:
    """config.toml must not be readable or writable by others."""
    return _mode_finding("AG103", "config file", ctx.config.paths.config_file, Severity.LOW, 0o600)


def check_policy_file(ctx: AuditContext) -> list[Finding]:
    """policy.toml must not be readable or writable by others."""
    return _mode_finding("AG104", "policy file", ctx.config.policy_path, Severity.LOW, 0o600)


def check_pid_and_log(ctx: AuditContext) -> list[Finding]:
    """The pid file and the daemon log must be mode 0600."""
    p = ctx.config.paths
    return (_mode_finding("AG105", "pid file", p.pid_file, Severity.LOW, 0o600)
            + _mode_finding("AG106", "daemon log", p.log_file, Severity.MEDIUM, 0o600))


def check_fingerprint_secret(ctx: AuditContext) -> list[Finding]:
    """The secret keying the decision log's input fingerprints must exist (once there is a log) and be 0600.

    Whoever reads it can brute-force a short input (a card number, a password) back from its
    fingerprint in the log or an export; without it, the fingerprints written so far can no longer be
    matched against new ones.
    """
    path = ctx.config.fingerprint_path
    if not path.exists() and not path.is_symlink():
        if not ctx.db_exists():
            return []
        return [Finding(
            "AG107", "fingerprint secret is missing", Severity.MEDIUM, f"{path} does not exist",
            "Restore it from the backup of this home (the next `aigov serve` would make a new one, and the "
            "fingerprints logged so far could no longer be matched with new ones).", location=str(path),
        )]
    return _mode_finding("AG107", "fingerprint secret", path, Severity.HIGH, 0o600)
