"""Checks of what runs: the daemon itself, and known vulnerabilities of the installed packages."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Sequence

from aigov_cli.audit.model import AuditContext, CheckSkipped, Finding, Severity

PIP_AUDIT_TIMEOUT = 180.0
INSTALL = ("Install pip-audit in the environment aigov runs in: `pip install 'aigov[audit]'` (the audit extra "
           "brings it), then run `aigov audit` again.")
RETRY = ("pip-audit asks PyPI and OSV about every installed package: run `aigov audit` again where it can "
         "reach them, or run `pip-audit` yourself in this environment.")


def check_daemon_running(ctx: AuditContext) -> list[Finding]:
    """Whether a daemon runs for this home (live probes need one, or --url)."""
    if ctx.daemon_info:
        return []
    if ctx.url_given:
        return []
    return [Finding("AG701", "daemon is not running", Severity.INFO,
                    f"no live daemon holds {ctx.config.paths.pid_file}",
                    "Start it with `aigov serve --detach` (or give --url) to run the live probes too.")]


Runner = Callable[[Sequence[str], float], "subprocess.CompletedProcess[str]"]


def _run(cmd: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)


def pip_audit_command() -> list[str] | None:
    """How to run pip-audit against this environment, or None when it is not installed."""
    if importlib.util.find_spec("pip_audit") is not None:
        return [sys.executable, "-m", "pip_audit"]
    exe = shutil.which("pip-audit")
    if exe is None:
        return None
    # A pip-audit installed elsewhere (pipx) audits its own environment unless told where to look.
    return [exe, "--path", sysconfig.get_paths()["purelib"]]


def check_dependencies(
    ctx: AuditContext, command: list[str] | None = None, run: Runner = _run, find: Callable[[], list[str] | None]
    = pip_audit_command,
) -> list[Finding]:
    """Known vulnerabilities of the installed packages, through pip-audit when it is installed and online."""
    if not ctx.run_deps:
        raise CheckSkipped("--skip-deps given")
    cmd = command if command is not None else find()
    if cmd is None:
        raise CheckSkipped(
            "pip-audit is not installed",
            Finding("AG902", "dependency vulnerabilities not checked (pip-audit is not installed)",
                    Severity.INFO, "pip-audit was found neither as a module nor on PATH", INSTALL))
    try:
        proc = run([*cmd, "--format", "json", "--progress-spinner", "off"], PIP_AUDIT_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CheckSkipped(
            "pip-audit failed",
            Finding("AG903", "dependency vulnerabilities not checked (pip-audit failed)", Severity.INFO,
                    f"{type(e).__name__}: {e}", RETRY)) from None
    try:
        data = json.loads(proc.stdout)
        deps = data["dependencies"] if isinstance(data, dict) else data
    except (ValueError, KeyError, TypeError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CheckSkipped(
            "pip-audit failed",
            Finding("AG903", "dependency vulnerabilities not checked (pip-audit failed)", Severity.INFO,
                    f"exit {proc.returncode}: {tail[:300]}", RETRY)) from None
    out = []
    for dep in deps:
        for v in dep.get("vulns") or []:
            fixes = ", ".join(v.get("fix_versions") or []) or "none yet"
            aliases = ", ".join(v.get("aliases") or [])
            out.append(Finding(
                "AG901", f"{dep.get('name')} {dep.get('version')} has a known vulnerability ({v.get('id')})",
                Severity.HIGH,
                f"{v.get('id')}{' (' + aliases + ')' if aliases else ''}: "
                f"{(v.get('description') or '').strip().splitlines()[0][:200] if v.get('description') else ''}"
                f" fixed in: {fixes}",
                f"Upgrade {dep.get('name')} to a fixed version ({fixes}).",
            ))
    return out
