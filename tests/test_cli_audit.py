"""``aigov audit``: one deliberately broken home per check, the finding it must produce; SARIF; live probes."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from aigov_cli.audit import checks_runtime, probes
from aigov_cli.audit.model import AuditContext, Severity
from daemon.storage.records import load_or_create_secret
from tests.audit_homes import records, write_decisions
from tests.backends import Backend
from tests.daemon_proc import cli, running_daemon


def audit_cli(home: Path, *args: str, **env: str) -> tuple[int, dict[str, Any]]:
    """Run the real ``aigov audit --json --skip-deps`` and parse it."""
    r = cli(home, "audit", "--json", "--skip-deps", *args, **env)
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, json.loads(r.stdout)


def audit(home: Path, *args: str, **env: str) -> tuple[int, dict[str, Any]]:
    """What ``aigov audit --json --skip-deps [--fail-on X]`` reports, run in-process (no daemon, fast)."""
    from aigov_cli.audit.render import to_json
    from aigov_cli.audit.runner import run_audit
    from daemon.config import load_config

    assert not args or args[0] == "--fail-on"
    threshold = Severity(args[1] if args else "high")
    cfg = load_config(env={"AIGOV_HOME": str(home), "AIGOV_BCRYPT_COST": env.get("AIGOV_BCRYPT_COST", "10")})
    report = run_audit(AuditContext(cfg, run_deps=False))
    return int(report.failed(threshold)), json.loads(json.dumps(to_json(report, threshold)))


def mk_key(home: Path, name: str, *extra: str, **env: str) -> dict[str, Any]:
    """``aigov keys create --json`` with extra environment (e.g. AIGOV_BCRYPT_COST)."""
    r = cli(home, "keys", "create", "--name", name, "--json", *extra, **env)
    assert r.returncode == 0, r.stderr
    data: dict[str, Any] = json.loads(r.stdout)
    return data


def ids(report: dict[str, Any]) -> set[str]:
    """The finding ids of a report."""
    return {f["id"] for f in report["findings"]}


def finding(report: dict[str, Any], fid: str) -> dict[str, Any]:
    """The first finding with this id."""
    found = [f for f in report["findings"] if f["id"] == fid]
    assert found, f"{fid} not in {sorted(ids(report))}"
    return found[0]


@pytest.fixture(scope="module")
def good_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once: init, one expiring key at bcrypt cost 12, twenty chained decisions."""
    home = tmp_path_factory.mktemp("audit") / "home"
    home.mkdir(mode=0o700)
    assert cli(home, "init").returncode == 0
    mk_key(home, "app", "--expires-in", "30d", AIGOV_BCRYPT_COST="12")
    write_decisions(home / "aigov.db", list(records(20)))
    load_or_create_secret(home / "fingerprint.key")  # what the first `aigov serve` makes
    return home


@pytest.fixture
def good(home: Path, good_template: Path) -> Path:
    """A home with nothing to find (a copy of the template, modes kept)."""
    shutil.copytree(good_template, home, dirs_exist_ok=True)
    return home


def db(home: Path) -> sqlite3.Connection:
    """A writable connection for tampering."""
    return sqlite3.connect(home / "aigov.db", isolation_level=None)


def test_good_home_has_no_findings_but_info(good: Path) -> None:
    code, rep = audit_cli(good, "--fail-on", "low", AIGOV_BCRYPT_COST="12")
    assert {f["severity"] for f in rep["findings"]} <= {"info"}, rep["findings"]
    assert "AG701" in ids(rep)  # daemon not running
    assert code == 0
    # Checks that could not run say so (no daemon to probe, --skip-deps); every other one passed.
    skipped = {c["function"]: c["reason"] for c in rep["checks"] if c["status"] == "skipped"}
    assert skipped == {"check_live_probes": "no daemon runs (start one, or give --url)",
                       "check_dependencies": "--skip-deps given"}
    assert {c["status"] for c in rep["checks"]} == {"pass", "skipped"}
    assert len(rep["checks"]) >= 15


def test_empty_home_works_and_writes_nothing(tmp_path: Path) -> None:
    home = tmp_path / "nothing-here"
    code, rep = audit_cli(home, "--fail-on", "low")
    assert code == 0
    assert {"AG701", "AG602"} <= ids(rep)
    assert not home.exists()


@pytest.mark.parametrize(("target", "mode", "fid", "severity"), [
    ("aigov.db", 0o644, "AG102", "high"),
    ("config.toml", 0o666, "AG103", "high"),
    ("policy.toml", 0o644, "AG104", "low"),
    ("fingerprint.key", 0o640, "AG107", "high"),
    (".", 0o755, "AG101", "medium"),
])
def test_loose_file_modes(good: Path, target: str, mode: int, fid: str, severity: str) -> None:
    os.chmod(good / target, mode)
    code, rep = audit(good, "--fail-on", "low", AIGOV_BCRYPT_COST="12")
    f = finding(rep, fid)
    assert f["severity"] == severity
    assert f"{mode:04o}" in f["evidence"]
    assert "chmod" in f["remediation"]
    assert code == 1


def test_edited_decision_is_critical_and_named(good: Path) -> None:
    with db(good) as c:
        c.execute("UPDATE decisions SET model = 'tampered' WHERE id = 8")
    code, rep = audit(good, AIGOV_BCRYPT_COST="12")
    f = finding(rep, "AG501")
    assert f["severity"] == "critical"
    assert "id 8" in f["evidence"] and "edited" in f["evidence"]
    assert code == 1


def test_deleted_decision_is_critical_and_named(good: Path) -> None:
    with db(good) as c:
        c.execute("DELETE FROM decisions WHERE id = 5")
    code, rep = audit(good, AIGOV_BCRYPT_COST="12")
    f = finding(rep, "AG501")
    assert f["severity"] == "critical" and "id 6" in f["evidence"]
    assert code == 1


def test_deleted_first_decision_is_found(good: Path) -> None:
    with db(good) as c:
        c.execute("DELETE FROM decisions WHERE id = 1")
    _, rep = audit(good, AIGOV_BCRYPT_COST="12")
    assert "id 2" in finding(rep, "AG501")["evidence"]


def test_inserted_decision_is_critical(good: Path) -> None:
    from daemon.storage.records import ROW_FIELDS, STORED_FIELDS, record_hash

    with db(good) as c:
        # Make room at seq 5 and insert a forged record that links correctly to record 4.
        c.execute("UPDATE decisions SET seq = seq + 1000 WHERE seq >= 5")
        c.execute("UPDATE decisions SET seq = seq - 999 WHERE seq >= 1005")
        c.execute("UPDATE chains SET head_seq = head_seq + 1")
        prev = c.execute("SELECT hash FROM decisions WHERE seq = 4").fetchone()[0]
        forged = dict(zip(ROW_FIELDS, c.execute(f"SELECT {', '.join(ROW_FIELDS)} FROM decisions WHERE seq = 6")
                          .fetchone(), strict=True))
        forged.update(seq=5, request_id="forged", decision="allow", prev_hash=prev)
        forged["hash"] = record_hash(forged)
        marks = ", ".join("?" for _ in STORED_FIELDS)
        c.execute(f"INSERT INTO decisions ({', '.join(STORED_FIELDS)}) VALUES ({marks})",
                  tuple(forged[k] for k in STORED_FIELDS))
        next_id = c.execute("SELECT id FROM decisions WHERE seq = 6").fetchone()[0]
    code, rep = audit(good, AIGOV_BCRYPT_COST="12")
    f = finding(rep, "AG501")
    assert f["severity"] == "critical" and f"id {next_id}" in f["evidence"]
    assert code == 1


def test_pruned_log_still_verifies(good: Path) -> None:
    with db(good) as c:
        c.execute("UPDATE decisions SET time = time - 86400 * 40 WHERE id <= 10")
    r = cli(good, "logs", "prune", "--older-than", "30d", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["deleted"] == 10
    code, rep = audit(good, AIGOV_BCRYPT_COST="12")
    assert "AG501" not in ids(rep)
    assert code == 0


def test_missing_fingerprint_secret(good: Path) -> None:
    (good / "fingerprint.key").unlink()
    _, rep = audit(good, AIGOV_BCRYPT_COST="12")
    f = finding(rep, "AG107")
    assert f["severity"] == "medium" and "does not exist" in f["evidence"] and "Restore" in f["remediation"]


def test_monitor_mode_policy(good: Path) -> None:
    p = good / "policy.toml"
    p.write_text(p.read_text().replace('mode = "enforce"', 'mode = "monitor"'))
    code, rep = audit(good, AIGOV_BCRYPT_COST="12")
    assert finding(rep, "AG401")["severity"] == "high"
    assert code == 1


def test_detector_switched_off(good: Path) -> None:
    p = good / "policy.toml"
    text = p.read_text()
    block = ('[[policies.default.rules]]\nid = "secrets.jwt"\ndetector = "jwt"\naction = "block"\n'
             'applies_to = ["input", "output"]\n')
    assert block in text
    p.write_text(text.replace(block, ""))
    code, rep = audit(good, AIGOV_BCRYPT_COST="12")
    f = finding(rep, "AG402")
    assert "jwt" in f["evidence"] and f["severity"] == "medium"
    assert code == 0  # medium is below the default --fail-on high


def test_invalid_policy(good: Path) -> None:
    (good / "policy.toml").write_text("[policies.default]\nmode = 'sometimes'\n")
    _, rep = audit(good, AIGOV_BCRYPT_COST="12")
    assert "sometimes" in finding(rep, "AG404")["evidence"]


def test_log_inputs_full_and_public_bind(good: Path) -> None:
    cfg = good / "config.toml"
    cfg.write_text(cfg.read_text().replace('log_inputs = "redacted"', 'log_inputs = "full"')
                   .replace('host = "127.0.0.1"', 'host = "0.0.0.0"'))
    _, rep = audit(good, AIGOV_BCRYPT_COST="12")
    assert finding(rep, "AG403")["severity"] == "high"
    bind = finding(rep, "AG201")
    assert bind["severity"] == "medium" and "0.0.0.0" in bind["evidence"] and "tls_cert" in bind["remediation"]


def test_low_bcrypt_cost_in_config_and_hashes(good: Path) -> None:
    mk_key(good, "weak", "--expires-in", "30d")  # AIGOV_BCRYPT_COST=10 from the fixture
    _, rep = audit(good)
    titles = [f["title"] for f in rep["findings"] if f["id"] == "AG301"]
    assert len(titles) == 2 and any("hashed" in t for t in titles)


def test_key_that_never_expires(good: Path) -> None:
    k = mk_key(good, "forever", AIGOV_BCRYPT_COST="12")
    _, rep = audit(good, AIGOV_BCRYPT_COST="12")
    f = finding(rep, "AG302")
    assert k["key_id"] in f["evidence"]
    assert finding(rep, "AG302")["severity"] == "medium"


def test_old_and_unused_keys(good: Path) -> None:
    k = mk_key(good, "old", "--expires-in", "300d", AIGOV_BCRYPT_COST="12")
    with db(good) as c:
        c.execute("UPDATE api_keys SET created_at = ?, last_used_at = NULL WHERE key_id = ?",
                  (time.time() - 100 * 86400, k["key_id"]))
    _, rep = audit(good, AIGOV_BCRYPT_COST="12")
    assert k["key_id"] in finding(rep, "AG303")["evidence"]
    unused = finding(rep, "AG304")
    assert k["key_id"] in unused["evidence"] and "never used" in unused["evidence"]
    assert unused["severity"] == "low"


def test_revoked_keys_are_not_reported(good: Path) -> None:
    k = mk_key(good, "gone", AIGOV_BCRYPT_COST="12")
    assert cli(good, "keys", "revoke", k["key_id"]).returncode == 0
    _, rep = audit(good, AIGOV_BCRYPT_COST="12")
    assert "AG302" not in ids(rep)


def test_old_schema_version(good: Path) -> None:
    with db(good) as c:
        c.execute("DELETE FROM schema_migrations WHERE version = 3")
    _, rep = audit(good, AIGOV_BCRYPT_COST="12")
    f = finding(rep, "AG603")
    assert "schema version 2" in f["evidence"] and f["severity"] == "medium"
    assert "aigov db upgrade" in f["remediation"]
    with db(good) as c:  # the audit reports; it does not migrate
        assert c.execute("SELECT MAX(version) FROM schema_migrations").fetchone() == (2,)


def test_corrupt_database(good: Path) -> None:
    for suffix in ("-wal", "-shm"):
        (good / f"aigov.db{suffix}").unlink(missing_ok=True)
    (good / "aigov.db").write_bytes(b"this is not a database at all" * 100)
    code, rep = audit(good, AIGOV_BCRYPT_COST="12")
    assert finding(rep, "AG601")["severity"] == "critical"
    assert code == 1


def test_fail_on_thresholds_and_usage_error(good: Path) -> None:
    mk_key(good, "forever", AIGOV_BCRYPT_COST="12")  # one medium finding
    assert audit(good, "--fail-on", "high", AIGOV_BCRYPT_COST="12")[0] == 0
    assert audit(good, "--fail-on", "medium", AIGOV_BCRYPT_COST="12")[0] == 1
    r = cli(good, "audit", "--fail-on", "sometimes")
    assert r.returncode == 2


def test_text_output_grouped_with_summary(good: Path) -> None:
    os.chmod(good / "aigov.db", 0o644)
    mk_key(good, "forever", AIGOV_BCRYPT_COST="12")
    r = cli(good, "audit", "--skip-deps", AIGOV_BCRYPT_COST="12")
    assert r.returncode == 1
    out = r.stdout
    assert out.index("HIGH (") < out.index("MEDIUM (") < out.index("INFO (")
    last = out.strip().splitlines()[-1]
    assert "finding(s)" in last and "1 high" in last and "1 medium" in last


def test_sarif_structure(good: Path, tmp_path: Path) -> None:
    os.chmod(good / "aigov.db", 0o644)
    with db(good) as c:
        c.execute("UPDATE decisions SET model = 'x' WHERE id = 3")
    mk_key(good, "forever", AIGOV_BCRYPT_COST="12")
    out = tmp_path / "audit.sarif"
    r = cli(good, "audit", "--skip-deps", "--sarif", str(out), AIGOV_BCRYPT_COST="12")
    assert r.returncode == 1
    sarif = json.loads(out.read_text())
    assert sarif["version"] == "2.1.0" and "sarif" in sarif["$schema"]
    run = sarif["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "aigov audit"
    rule_ids = [rule["id"] for rule in driver["rules"]]
    assert len(rule_ids) == len(set(rule_ids))
    levels = {res["ruleId"]: res["level"] for res in run["results"]}
    assert levels["AG501"] == "error" and levels["AG102"] == "error"
    assert levels["AG302"] == "warning" and levels["AG701"] == "note"
    for res in run["results"]:
        assert driver["rules"][res["ruleIndex"]]["id"] == res["ruleId"]
        assert res["message"]["text"]
        for loc in res.get("locations", []):
            assert loc["physicalLocation"]["artifactLocation"]["uri"].startswith("file://")
    for rule in driver["rules"]:
        assert rule["shortDescription"]["text"] and rule["help"]["text"]
        assert float(rule["properties"]["security-severity"]) >= 0


# Dependencies: pip-audit through a fake runner (no network in tests).

def _ctx(home: Path) -> AuditContext:
    from daemon.config import load_config

    return AuditContext(load_config())


class _Proc:
    def __init__(self, stdout: str, returncode: int = 0, stderr: str = "") -> None:
        self.stdout, self.returncode, self.stderr = stdout, returncode, stderr


def test_dependency_vulnerability_is_reported(home: Path) -> None:
    data = {"dependencies": [
        {"name": "aiohttp", "version": "3.8.0", "vulns": [
            {"id": "PYSEC-2023-1", "fix_versions": ["3.8.5"], "aliases": ["CVE-2023-1"], "description": "bad"}]},
        {"name": "rich", "version": "13.0", "vulns": []},
    ]}
    seen: list[list[str]] = []

    def run(cmd: Any, timeout: float) -> Any:
        seen.append(list(cmd))
        return _Proc(json.dumps(data), 1)

    out = checks_runtime.check_dependencies(_ctx(home), command=["pip-audit"], run=run)
    assert [f.id for f in out] == ["AG901"]
    assert out[0].severity is Severity.HIGH and "3.8.5" in out[0].remediation and "CVE-2023-1" in out[0].evidence
    assert seen[0][:3] == ["pip-audit", "--format", "json"]


def _dependency_check(home: Path, **kw: Any) -> dict[str, Any]:
    """The --json form of the dependency check alone, with ``kw`` passed to it."""
    from aigov_cli.audit.render import to_json
    from aigov_cli.audit.runner import run_audit

    def check(ctx: AuditContext) -> list[Any]:
        """Known vulnerabilities of the installed packages."""
        return checks_runtime.check_dependencies(ctx, **kw)

    doc = to_json(run_audit(_ctx(home), [("dependency vulnerabilities", check)]), Severity.HIGH)
    return doc


def test_dependency_check_without_pip_audit_is_skipped_with_the_command_that_runs_it(home: Path) -> None:
    doc = _dependency_check(home, find=lambda: None)
    # It did not run: skipped (it was "pass" in --json), with how to make it run (not "network access").
    assert [(c["status"], c.get("reason")) for c in doc["checks"]] == [("skipped", "pip-audit is not installed")]
    (f,) = doc["findings"]
    assert (f["id"], f["severity"]) == ("AG902", "info") and doc["failed"] is False
    assert "pip install 'aigov[audit]'" in f["remediation"] and "network" not in f["remediation"]


def test_the_table_shows_texts_as_written(home: Path) -> None:
    # rich markup took "[audit]" in the remediation for a style tag and printed `pip install 'aigov'`.
    r = cli(home, "audit", COLUMNS="200", timeout=120)
    assert r.returncode in (0, 1), r.stderr
    if "AG902" in r.stdout:  # pip-audit is not installed here
        assert "'aigov[audit]'" in r.stdout and "'aigov'" not in r.stdout
        assert "skipped: dependency vulnerabilities (pip-audit is not installed)" in r.stdout


def test_dependency_check_offline_is_skipped(home: Path) -> None:
    doc = _dependency_check(home, command=["pip-audit"],
                            run=lambda cmd, t: _Proc("", 1, "ConnectionError: no network"))
    assert [(c["status"], c.get("reason")) for c in doc["checks"]] == [("skipped", "pip-audit failed")]
    (f,) = doc["findings"]
    assert f["id"] == "AG903" and "no network" in f["evidence"]


def test_the_audit_extra_brings_pip_audit() -> None:
    import tomllib

    extras = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert any(req.startswith("pip-audit") for req in extras["audit"])


# Live probes: a fake daemon that gets everything wrong, then the real one.

def test_probes_report_a_daemon_that_lets_everything_through() -> None:
    seen: list[bytes] = []

    def send(method: str, path: str, body: bytes | None, headers: dict[str, str]) -> probes.Resp:
        if path == "/metrics":  # a careless exporter: labels made of what it saw
            return probes.Resp(200, {}, b"\n".join(seen))
        seen.append((body or b"")[:200] + headers.get("Authorization", "").encode())
        return probes.Resp(200, {}, seen[-1])

    revoked: list[str] = []
    s = probes.ProbeSession(send, max_body=1000, make_probe_key=lambda: ("probekeyid00", "aigov_probe_token"),
                            pickup_timeout=0.1)
    found = {f.id for f in probes.run_probes(s, revoked.append)}
    assert {"AG801", "AG802", "AG803", "AG804", "AG805", "AG806", "AG807", "AG809"} <= found
    assert revoked == ["probekeyid00"]


def test_probe_key_is_removed_when_a_probe_crashes() -> None:
    calls = {"n": 0}

    def send(method: str, path: str, body: bytes | None, headers: dict[str, str]) -> probes.Resp:
        calls["n"] += 1
        if "Authorization" in headers and "probe" in headers["Authorization"]:
            raise OSError("connection reset by peer")
        return probes.Resp(401, {"cache-control": "no-store"}, b'{"error": {"code": "unauthorized"}}')

    revoked: list[str] = []
    s = probes.ProbeSession(send, max_body=10, make_probe_key=lambda: ("probekeyid00", "aigov_probe_token"))
    with pytest.raises(OSError):
        probes.run_probes(s, revoked.append)
    assert revoked == ["probekeyid00"]


@pytest.mark.e2e
def test_live_probes_against_the_real_daemon(good: Path) -> None:
    with running_daemon(good, AIGOV_BCRYPT_COST="12", AIGOV_LOG_FLUSH_INTERVAL="0.1") as d:
        code, rep = audit_cli(good, "--fail-on", "low", AIGOV_BCRYPT_COST="12")
        assert not {i for i in ids(rep) if i.startswith("AG8") or i == "AG701"}, rep["findings"]
        probe_check = [c for c in rep["checks"] if c["name"] == "live probes"][0]
        assert probe_check["status"] == "pass"
        assert code == 0, rep["findings"]
        # --url names the same daemon explicitly: same result.
        code, rep = audit_cli(good, "--url", d.url, "--fail-on", "low", AIGOV_BCRYPT_COST="12")
        assert code == 0, rep["findings"]
        for _ in range(8):  # ten audits in all, run in-process (the CLI's own path, without its start-up)
            from aigov_cli.audit.runner import run_audit
            from daemon.config import load_config

            cfg = load_config(env={"AIGOV_HOME": str(good), "AIGOV_BCRYPT_COST": "12"})
            run_audit(AuditContext(cfg, url=d.url, url_given=True, run_deps=False))
        # The probe keys are deleted, not left revoked: no leftovers after ten audits.
        keys = json.loads(cli(good, "keys", "list", "--all", "--json").stdout)
        assert [k["name"] for k in keys if k["name"].startswith("aigov-audit-probe")] == []
        # Their checks are in the log, marked, and left out of `aigov logs` and `logs stats` by default.
        deadline = time.monotonic() + 10
        while True:
            probed = logs_json(good, "--include-probes", "--model", "aigov-audit")
            if len(probed) >= 10 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(probed) >= 10 and all(r["metadata"] == {"source": "audit"} for r in probed)
        assert logs_json(good, "--model", "aigov-audit") == []
        stats = json.loads(cli(good, "logs", "stats", "--json").stdout)
        assert "aigov-audit" not in stats["by_model"]
        with_probes = json.loads(cli(good, "logs", "stats", "--json", "--include-probes").stdout)
        assert with_probes["by_model"]["aigov-audit"] >= 10


def logs_json(home: Path, *args: str) -> list[dict[str, Any]]:
    """``aigov logs --json --limit 0`` and its records."""
    r = cli(home, "logs", "--json", "--limit", "0", *args)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_unreachable_url_is_a_finding(good: Path) -> None:
    from tests.daemon_proc import free_port

    _, rep = audit_cli(good, "--url", f"http://127.0.0.1:{free_port()}", AIGOV_BCRYPT_COST="12")
    assert finding(rep, "AG702")["severity"] == "medium"


def test_bad_url_is_a_usage_error(good: Path) -> None:
    r = cli(good, "audit", "--skip-deps", "--url", "ftp://x")
    assert r.returncode == 2 and "--url" in r.stderr


# --- the same checks on each store (the tests above build SQLite homes) ---------------------------


@pytest.mark.parametrize(("tamper", "named"), [
    ("UPDATE decisions SET model = 'tampered' WHERE id = 8", "id 8"),
    ("DELETE FROM decisions WHERE id = 5", "id 6"),
    ("DELETE FROM decisions WHERE seq > 18", "newest 2 record(s) were deleted"),
])
def test_a_broken_chain_is_critical_and_named_on_each_store(backend: Backend, tamper: str, named: str) -> None:
    backend.write_decisions(records(20))
    code, rep = audit_cli(backend.home, "--fail-on", "high")
    assert "AG501" not in ids(rep) and code == 0, rep["findings"]
    backend.sql(tamper)
    code, rep = audit_cli(backend.home, "--fail-on", "high")
    f = finding(rep, "AG501")
    assert f["severity"] == "critical" and named in f["evidence"] and "test/w0" in f["evidence"], f
    assert code == 1


def test_an_old_schema_is_reported_not_migrated_on_each_store(backend: Backend) -> None:
    backend.write_decisions(records(3))
    backend.sql("DELETE FROM schema_migrations WHERE version = 3")
    code, rep = audit_cli(backend.home, "--fail-on", "high")
    f = finding(rep, "AG603")
    assert "pending: 3" in f["evidence"] and "aigov db upgrade" in f["remediation"]
    assert backend.sql("SELECT count(*) FROM schema_migrations WHERE version = 3") == [(0,)]
