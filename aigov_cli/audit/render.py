"""Renderers of an :class:`AuditReport`: a rich table, a JSON document, SARIF 2.1.0."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigov_cli.audit.model import Finding, Severity
from aigov_cli.audit.runner import AuditReport

if TYPE_CHECKING:
    from rich.console import Console

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFO_URI = "https://github.com/aigov/aigov#aigov-audit"
_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def summary_line(report: AuditReport) -> str:
    """One line: how many findings of each severity, and how many checks ran."""
    c = report.counts()
    parts = ", ".join(f"{n} {sev}" for sev, n in c.items() if n)
    failed = sum(1 for r in report.results if r.status == "fail")
    skipped = sum(1 for r in report.results if r.status == "skipped")
    return (f"{len(report.findings)} finding(s){': ' + parts if parts else ''} "
            f"({len(report.results)} checks, {failed} failed, {skipped} skipped, {report.duration:.1f} s)")


def render_text(report: AuditReport, console: Console) -> None:
    """A table per severity, worst first, then the one-line summary."""
    from rich.table import Table
    from rich.text import Text

    console.print(f"aigov audit of {report.target}", markup=False)
    findings = report.findings
    for sev in reversed(Severity):
        group = [f for f in findings if f.severity is sev]
        if not group:
            continue
        t = Table(title=f"{sev.value.upper()} ({len(group)})", title_justify="left", title_style=_STYLE[sev.value],
                  show_lines=True, expand=True)
        t.add_column("id", no_wrap=True)
        # Paths and commands in the text fold rather than end in an ellipsis: they are meant to be copied.
        t.add_column("finding", ratio=2, overflow="fold")
        t.add_column("evidence", ratio=3, overflow="fold")
        t.add_column("remediation", ratio=3, overflow="fold")
        for f in group:
            # Text, not markup: a remediation like `pip install 'aigov[audit]'` is shown as written.
            t.add_row(Text(f.id), Text(f.title), Text(f.evidence), Text(f.remediation))
        console.print(t)
    if not findings:
        console.print("No findings.")
    for r in report.results:
        if r.skipped is not None:
            console.print(f"skipped: {r.name} ({r.skipped})", markup=False, soft_wrap=True)
    console.print(summary_line(report), markup=False)


def to_json(report: AuditReport, fail_on: Severity) -> dict[str, Any]:
    """The ``--json`` document."""
    return {
        "target": report.target,
        "started_at": _iso(report.started),
        "duration_seconds": round(report.duration, 3),
        "fail_on": fail_on.value,
        "failed": report.failed(fail_on),
        "summary": report.counts(),
        "findings": [f.as_dict() for f in report.findings],
        "checks": [{"name": r.name, "function": r.function,
                    "description": r.description, "status": r.status, "findings": len(r.findings),
                    **({"reason": r.skipped} if r.skipped is not None else {})}
                   for r in report.results],
    }


def _rule(f: Finding) -> dict[str, Any]:
    return {
        "id": f.id,
        "name": f.check or f.id,
        "shortDescription": {"text": f.title},
        "help": {"text": f.remediation},
        "defaultConfiguration": {"level": f.severity.sarif_level},
        "properties": {"security-severity": f.severity.security_score, "tags": ["security", "aigov"]},
    }


def _location(f: Finding) -> list[dict[str, Any]]:
    if not f.location:
        return []
    uri = Path(f.location).absolute().as_uri() if f.location.startswith("/") else f.location
    return [{"physicalLocation": {"artifactLocation": {"uri": uri}}}]


def to_sarif(report: AuditReport) -> dict[str, Any]:
    """The report as a SARIF 2.1.0 log (critical/high -> error, medium -> warning, low/info -> note)."""
    from daemon import __version__

    rules: dict[str, dict[str, Any]] = {}
    for f in report.findings:
        rules.setdefault(f.id, _rule(f))
    index = {rid: i for i, rid in enumerate(rules)}
    results = []
    for f in report.findings:
        res: dict[str, Any] = {
            "ruleId": f.id,
            "ruleIndex": index[f.id],
            "level": f.severity.sarif_level,
            "message": {"text": f"{f.title}: {f.evidence}. Fix: {f.remediation}"},
            "properties": {"severity": f.severity.value, "check": f.check},
        }
        loc = _location(f)
        if loc:
            res["locations"] = loc
        results.append(res)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "aigov audit", "version": __version__, "informationUri": INFO_URI,
                                "rules": list(rules.values())}},
            "invocations": [{"executionSuccessful": True, "startTimeUtc": _iso(report.started),
                             "endTimeUtc": _iso(report.started + report.duration)}],
            "results": results,
        }],
    }
