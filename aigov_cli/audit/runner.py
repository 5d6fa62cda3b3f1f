"""The list of checks and running them into an :class:`AuditReport`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from aigov_cli.audit import checks_config, checks_files, checks_keys, checks_runtime, checks_storage, probes
from aigov_cli.audit.model import AuditContext, CheckResult, CheckSkipped, Finding, Severity

Check = Callable[[AuditContext], list[Finding]]

CHECKS: Sequence[tuple[str, Check]] = (
    ("home directory mode", checks_files.check_home),
    ("database file mode", checks_files.check_database),
    ("config file mode", checks_files.check_config_file),
    ("policy file mode", checks_files.check_policy_file),
    ("pid and log file modes", checks_files.check_pid_and_log),
    ("fingerprint secret", checks_files.check_fingerprint_secret),
    ("bind address", checks_config.check_bind_address),
    ("TLS key", checks_config.check_tls_key),
    ("bcrypt cost", checks_config.check_bcrypt_cost),
    ("log_inputs", checks_config.check_log_inputs),
    ("policy mode and detectors", checks_config.check_policy),
    ("keys without expiry", checks_keys.check_keys_never_expire),
    ("key rotation age", checks_keys.check_keys_rotation),
    ("unused keys", checks_keys.check_keys_unused),
    ("schema version", checks_storage.check_schema),
    ("decision-log hash chain", checks_storage.check_decision_chain),
    ("daemon running", checks_runtime.check_daemon_running),
    ("live probes", probes.check_live_probes),
    ("dependency vulnerabilities", checks_runtime.check_dependencies),
)


@dataclass(frozen=True)
class AuditReport:
    """Every check's result, with the findings sorted worst first."""

    results: tuple[CheckResult, ...]
    started: float
    duration: float
    target: str

    @property
    def findings(self) -> list[Finding]:
        """All findings, worst first, then by id."""
        fs = [f for r in self.results for f in r.findings]
        return sorted(fs, key=lambda f: (-f.severity.rank, f.id))

    def counts(self) -> dict[str, int]:
        """Findings per severity, worst first."""
        c = {s.value: 0 for s in reversed(Severity)}
        for f in self.findings:
            c[f.severity.value] += 1
        return c

    def failed(self, threshold: Severity) -> bool:
        """True when a finding is at or above ``threshold``."""
        return any(f.severity.rank >= threshold.rank for f in self.findings)


def run_audit(ctx: AuditContext, checks: Sequence[tuple[str, Check]] = CHECKS) -> AuditReport:
    """Run each check; a check that crashes becomes a finding, never a traceback."""
    t0 = time.time()
    results = []
    for name, fn in checks:
        skipped: str | None = None
        try:
            found = fn(ctx)
        except CheckSkipped as s:  # could not run: say so, never report it as passed
            found, skipped = ([s.finding] if s.finding else []), s.reason
        except Exception as e:  # a broken check must not hide the others' findings
            from daemon.errors import ConfigError

            if isinstance(e, ConfigError):
                raise
            found = [Finding("AG000", f"check {name!r} could not run", Severity.MEDIUM, f"{type(e).__name__}: {e}",
                             "Report this as a bug in aigov.")]
        found = [replace(f, check=f.check or fn.__name__) for f in found]
        results.append(CheckResult(name, (fn.__doc__ or "").strip().splitlines()[0], fn.__name__, tuple(found),
                                   skipped))
    ctx.close()
    target = str(ctx.config.paths.home or ctx.config.paths.config_dir)
    return AuditReport(tuple(results), t0, time.time() - t0, target)
