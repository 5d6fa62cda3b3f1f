"""systemd: the unit ``aigov service install`` writes, and the readiness notification ``aigov serve`` sends.

The unit is ``Type=notify``: ``aigov serve`` tells systemd it is ready once it listens (sd_notify
over ``$NOTIFY_SOCKET``), so ``systemctl start`` returns when the daemon answers, and a daemon that
cannot start fails the start. ``ExecReload`` sends SIGHUP (policy reload). The sandbox leaves the
daemon write access to its home only.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from daemon.config import Config
from daemon.errors import ConfigError

UNIT_NAME = "aigov.service"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
SYSTEM_HOME = Path("/var/lib/aigov")  # StateDirectory=aigov: systemd creates it, owned by User=, mode 0700


@dataclass(frozen=True)
class UnitSpec:
    """What a unit needs to know: the command, the home, who runs it."""

    exec_start: tuple[str, ...]
    user_scope: bool
    home: Path | None  # exported as AIGOV_HOME; None: the user's platformdirs directories
    writable: tuple[Path, ...]  # ReadWritePaths
    run_as: str | None = None  # User= (system units)
    state_directory: bool = False  # StateDirectory=aigov (the system default home)
    stop_timeout_s: int = 60
    bind_low_port: bool = False

    @property
    def command(self) -> tuple[str, ...]:
        """The unit's ExecStart, word by word."""
        return (*self.exec_start, "serve")


def _quote(arg: str) -> str:
    """One word of a unit file's command line or assignment, quoted when systemd would split or expand it."""
    escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    if escaped != arg or not arg or any(c.isspace() for c in arg):
        return f'"{escaped}"'
    return arg


def render_unit(spec: UnitSpec) -> str:
    """The text of ``aigov.service`` for ``spec``."""
    exec_start = " ".join(_quote(a) for a in spec.command)
    # A private /tmp would hide a home that lives under /tmp.
    in_tmp = any(p == t or t in p.parents for p in spec.writable for t in (Path("/tmp"), Path("/var/tmp")))
    service = [
        "Type=notify",
        "NotifyAccess=all",  # a worker process may be the one that reports readiness
        f"ExecStart={exec_start}",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartSec=2",
        f"TimeoutStopSec={spec.stop_timeout_s}",
        "LimitNOFILE=65536",
        "UMask=0077",
    ]
    if spec.run_as:
        service.append(f"User={spec.run_as}")
    if spec.home is not None:
        service.append(f"Environment={_quote(f'AIGOV_HOME={spec.home}')}")
    if spec.state_directory:
        service += ["StateDirectory=aigov", "StateDirectoryMode=0700"]
    service += [
        "",
        "# Sandbox: the daemon writes only to its home.",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        *(f"ReadWritePaths={_quote(str(p))}" for p in spec.writable),
        *(["# PrivateTmp is off: the home is under /tmp.", "PrivateTmp=no"] if in_tmp else ["PrivateTmp=yes"]),
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "RestrictSUIDSGID=yes",
        "RestrictRealtime=yes",
        "RestrictNamespaces=yes",
        "LockPersonality=yes",
        "SystemCallArchitectures=native",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    ]
    if not spec.user_scope:
        caps = "CAP_NET_BIND_SERVICE" if spec.bind_low_port else ""
        service.append(f"CapabilityBoundingSet={caps}")
        if caps:
            service.append(f"AmbientCapabilities={caps}")
    return "\n".join([
        "# Written by `aigov service install`; `aigov service uninstall` removes it.",
        "[Unit]",
        "Description=aigov governance checkpoint for calls to AI models",
        *([] if spec.user_scope else ["Wants=network-online.target", "After=network-online.target"]),
        "",
        "[Service]",
        *service,
        "",
        "[Install]",
        f"WantedBy={'default.target' if spec.user_scope else 'multi-user.target'}",
        "",
    ])


def aigov_command() -> tuple[str, ...]:
    """The absolute command that runs this aigov: the console script beside this interpreter."""
    script = Path(sys.executable).parent / "aigov"
    if script.is_file() and os.access(script, os.X_OK):
        return (str(script.absolute()),)
    found = shutil.which("aigov")
    if found:
        return (str(Path(found).absolute()),)
    return (str(Path(sys.executable).absolute()), "-m", "aigov_cli")


def unit_dir(user_scope: bool) -> Path:
    """Where systemd looks for units: /etc/systemd/system, or the user's ~/.config/systemd/user."""
    if not user_scope:
        return SYSTEM_UNIT_DIR
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def default_run_as() -> str:
    """The user a system unit runs as: the one who ran sudo, else the current user."""
    name = os.environ.get("SUDO_USER") or pwd.getpwuid(os.getuid()).pw_name
    return name


def unit_spec(config: Config, user_scope: bool, run_as: str | None = None) -> UnitSpec:
    """The unit for this configuration; ConfigError for a system unit that would run as root."""
    paths = config.paths
    stop = int(config.shutdown_timeout + max(30.0, config.shutdown_timeout) + 5)
    low = config.port != 0 and config.port < 1024
    dirs = tuple(dict.fromkeys(p for p in (paths.config_dir, paths.data_dir, paths.state_dir,
                                            config.db_file.parent)))
    if user_scope:
        return UnitSpec(aigov_command(), True, paths.home, dirs, stop_timeout_s=stop)
    who = run_as or default_run_as()
    if who == "root" or who == "0":
        raise ConfigError("refusing to run the daemon as root: pass --run-as USER (a user that owns its home)")
    try:
        pwd.getpwnam(who)
    except KeyError:
        raise ConfigError(f"--run-as: no such user {who!r} (create it first, e.g. useradd --system {who})") from None
    if paths.home is None:  # no explicit home: the system default, created by systemd for User=
        return UnitSpec(aigov_command(), False, SYSTEM_HOME, (), who, True, stop, low)
    return UnitSpec(aigov_command(), False, paths.home, dirs, who, False, stop, low)


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``READY=1``) to systemd when it started us with ``$NOTIFY_SOCKET``."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr or addr[0] not in "/@":
        return False
    target = "\0" + addr[1:] if addr[0] == "@" else addr  # "@": Linux abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(target)
            s.sendall(state.encode())
    except OSError:
        return False
    return True


__all__ = ["UNIT_NAME", "UnitSpec", "aigov_command", "notify", "render_unit", "unit_dir", "unit_spec"]
