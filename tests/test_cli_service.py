"""``aigov service install | uninstall``: the unit it writes, checked by ``systemd-analyze verify``."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from aigov_cli.systemd import UnitSpec, render_unit
from tests.daemon_proc import AIGOV, cli, running_daemon

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def _service_user() -> str:
    """An unprivileged account that exists here (systemd-analyze calls User=nobody unsafe)."""
    for name in ("daemon", "www-data", "postgres", "redis"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    pytest.skip("no unprivileged system account to run the unit as")



needs_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")


def verify(unit: Path, user: bool, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze [--user] verify UNIT``; a user manager needs a runtime directory."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime), SYSTEMD_LOG_LEVEL="notice")
    args = [str(SYSTEMD_ANALYZE), *(["--user"] if user else []), "verify", str(unit)]
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)


def unit_keys(text: str) -> dict[str, list[str]]:
    """Every ``Key=value`` of a unit, values in order."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out.setdefault(k, []).append(v)
    return out


@needs_analyze
@pytest.mark.parametrize("scope", ["system", "user"])
def test_installed_unit_passes_systemd_analyze_verify(home: Path, tmp_path: Path, scope: str) -> None:
    units = tmp_path / "units"
    args = ["service", "install", "--unit-dir", str(units), "--json"]
    args += ["--user"] if scope == "user" else ["--run-as", _service_user()]
    r = cli(home, *args)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    unit = Path(out["unit_file"])
    assert unit == units / "aigov.service" and out["written"] is True and out["scope"] == scope
    keys = unit_keys(unit.read_text())
    assert keys["ExecStart"] == [f"{AIGOV} serve"] and Path(AIGOV).is_absolute()
    assert out["exec_start"] == [AIGOV, "serve"]  # what --json says the unit runs is what it runs
    assert keys["Type"] == ["notify"] and keys["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict")):
        assert keys[key] == [value]
    assert keys["ReadWritePaths"] == [str(home)] and keys["Environment"] == [f"AIGOV_HOME={home}"]
    assert keys["PrivateTmp"] == (["no"] if str(home).startswith("/tmp/") else ["yes"])
    res = verify(unit, scope == "user", tmp_path)
    assert res.returncode == 0 and res.stderr.strip() == "", res.stderr


@needs_analyze
def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    # The check above can fail: a unit whose binary is missing, or with a key systemd does not know.
    spec = UnitSpec(("/nonexistent/aigov",), False, Path("/var/lib/aigov"), (Path("/var/lib/aigov"),), _service_user())
    unit = tmp_path / "aigov.service"
    unit.write_text(render_unit(spec))
    assert verify(unit, False, tmp_path).returncode != 0
    spec = UnitSpec((AIGOV,), False, Path("/var/lib/aigov"), (Path("/var/lib/aigov"),), _service_user())
    unit.write_text(render_unit(spec).replace("UMask=0077", "UMask=0077\nProtectSystem=sometimes"))
    assert "protect system value" in verify(unit, False, tmp_path).stderr


def test_system_unit_without_a_home_uses_the_state_directory(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIGOV_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    r = subprocess.run([AIGOV, "service", "install", "--print", "--run-as", "nobody"], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    keys = unit_keys(r.stdout)
    assert keys["StateDirectory"] == ["aigov"] and keys["Environment"] == ["AIGOV_HOME=/var/lib/aigov"]
    assert keys["User"] == ["nobody"] and "ReadWritePaths" not in keys and keys["CapabilityBoundingSet"] == [""]


def test_install_is_idempotent_refuses_to_clobber_and_uninstalls(home: Path, tmp_path: Path) -> None:
    units = tmp_path / "units"
    base = ["service", "install", "--user", "--unit-dir", str(units)]
    first = cli(home, *base)
    assert first.returncode == 0 and first.stdout.startswith("wrote ") and "systemctl --user enable --now aigov" in (
        first.stdout)
    assert cli(home, *base).stdout.startswith("unchanged ")
    unit = units / "aigov.service"
    assert oct(unit.stat().st_mode & 0o777) == "0o644"
    unit.write_text(unit.read_text() + "# edited by hand\n")
    clash = cli(home, *base)
    assert clash.returncode == 2 and "exists and differs; --force" in clash.stderr and "Traceback" not in clash.stderr
    assert "edited by hand" in unit.read_text()
    assert cli(home, *base, "--force").stdout.startswith("wrote ")
    gone = cli(home, "service", "uninstall", "--user", "--unit-dir", str(units), "--json")
    assert json.loads(gone.stdout)["removed"] is True and not unit.exists()
    again = cli(home, "service", "uninstall", "--user", "--unit-dir", str(units))
    assert again.returncode == 0 and "nothing to remove" in again.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--run-as", "root"), "refusing to run the daemon as root"),
        (("--run-as", "no-such-user-aigov"), "no such user 'no-such-user-aigov'"),
    ],
)
def test_bad_install_options_exit_2(home: Path, tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    r = cli(home, "service", "install", "--unit-dir", str(tmp_path), *args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_unwritable_unit_dir_is_one_line(home: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = cli(home, "service", "install", "--user", "--unit-dir", str(blocker / "sub"))
    assert r.returncode == 2 and r.stderr.startswith("aigov: error: cannot ") and "Traceback" not in r.stderr


def test_quoting_of_paths_with_spaces_and_percent() -> None:
    spec = UnitSpec(("/opt/my apps/aigov",), True, Path("/srv/ai gov/100%"), (Path("/srv/ai gov/100%"),))
    keys = unit_keys(render_unit(spec))
    assert keys["ExecStart"] == ['"/opt/my apps/aigov" serve']
    assert keys["Environment"] == ['"AIGOV_HOME=/srv/ai gov/100%%"']
    assert keys["ReadWritePaths"] == ['"/srv/ai gov/100%%"']


@pytest.mark.e2e
def test_serve_tells_systemd_it_is_ready(home: Path, tmp_path: Path) -> None:
    # What Type=notify relies on: READY=1 on $NOTIFY_SOCKET once the daemon listens.
    sock_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        sock.settimeout(20)
        with running_daemon(home, NOTIFY_SOCKET=str(sock_path)) as d:
            message = sock.recv(4096).decode()
            assert message.startswith("READY=1\n") and f"STATUS=listening on {d.url}" in message
