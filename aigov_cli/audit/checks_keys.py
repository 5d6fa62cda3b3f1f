"""Checks of the API keys: expiry, rotation age, disuse."""

from __future__ import annotations

import time
from collections.abc import Sequence

from aigov_cli.audit.model import AuditContext, Finding, Severity

DAY = 86400.0
ROTATE_AFTER_DAYS = 90
UNUSED_AFTER_DAYS = 30
_PROBE_PREFIX = "aigov-audit-probe"


_KeyRow = tuple[str, str, float, float | None, float | None, float | None]


def _active_keys(ctx: AuditContext, now: float) -> list[_KeyRow]:
    return [(k.key_id, k.name, k.created_at, k.expires_at, k.rotated_at, k.last_used_at)
            for k in ctx.keys() if k.status(now) == "active" and not k.name.startswith(_PROBE_PREFIX)]


def _listing(items: Sequence[str]) -> str:
    return ", ".join(items[:10]) + (f" and {len(items) - 10} more" if len(items) > 10 else "")


def check_keys_never_expire(ctx: AuditContext, now: float | None = None) -> list[Finding]:
    """Active keys without an expiry date."""
    now = time.time() if now is None else now
    never = [f"{k} ({n})" for k, n, _c, exp, _r, _u in _active_keys(ctx, now) if exp is None]
    if not never:
        return []
    return [Finding(
        "AG302", "API keys that never expire", Severity.MEDIUM,
        f"{len(never)} active key(s) without expiry: {_listing(never)}",
        "Create keys with --expires-in (e.g. 90d) or set one: `aigov keys update KEY_ID --expires-in 90d`.",
        location=ctx.db_location,
    )]


def check_keys_rotation(ctx: AuditContext, now: float | None = None) -> list[Finding]:
    """Active keys whose secret is older than 90 days."""
    now = time.time() if now is None else now
    old = []
    for k, n, created, _e, rotated, _u in _active_keys(ctx, now):
        since = rotated or created
        if now - since > ROTATE_AFTER_DAYS * DAY:
            old.append(f"{k} ({n}, {int((now - since) // DAY)} days)")
    if not old:
        return []
    return [Finding(
        "AG303", f"API keys not rotated for more than {ROTATE_AFTER_DAYS} days", Severity.MEDIUM,
        f"{len(old)} key(s): {_listing(old)}",
        "Rotate them: `aigov keys rotate KEY_ID --grace 1h`, then update the clients.",
        location=ctx.db_location,
    )]


def check_keys_unused(ctx: AuditContext, now: float | None = None) -> list[Finding]:
    """Active keys not used for 30 days (or never used, and older than 30 days)."""
    now = time.time() if now is None else now
    idle = []
    for k, n, created, _e, _r, used in _active_keys(ctx, now):
        last = used if used is not None else created
        if now - last > UNUSED_AFTER_DAYS * DAY:
            what = f"last used {int((now - last) // DAY)} days ago" if used else "never used"
            idle.append(f"{k} ({n}, {what})")
    if not idle:
        return []
    return [Finding(
        "AG304", f"API keys unused for more than {UNUSED_AFTER_DAYS} days", Severity.LOW,
        f"{len(idle)} key(s): {_listing(idle)}",
        "Revoke keys nobody uses: `aigov keys revoke KEY_ID`.",
        location=ctx.db_location,
    )]
