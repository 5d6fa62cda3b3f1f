"""The pid file: one running daemon per home, and how clients find it.

The daemon holds an exclusive ``flock`` on the file for its whole life and writes its pid and URL
into it; a client (``aigov status``, ``stop``, ``loadtest``, ``audit``, the Python client) asks
:func:`daemon_running`, which tells a live daemon from a stale file by trying a shared lock. Kept
apart from the server so that those clients need not import the app.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from pathlib import Path
from typing import Any

from daemon.errors import ConfigError


def already_running(info: dict[str, Any]) -> ConfigError:
    """The error for a second daemon on a home whose pid file is held."""
    return ConfigError(
        f"aigov is already running for this home (pid {info.get('pid', '?')}, {info.get('url', '?')}); "
        "stop it with `aigov stop` or use another --home"
    )


class PidFile:
    """The pid file, held under an exclusive flock for the daemon's whole life."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        """Take the lock; ConfigError when another daemon holds it."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise already_running(read_pidfile(self.path) or {}) from None
            raise
        self.fd = fd

    def write(self, info: dict[str, Any]) -> None:
        """Record the running daemon's pid and address."""
        assert self.fd is not None
        data = json.dumps(info).encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def release(self) -> None:
        """Remove the file and drop the lock."""
        if self.fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self.fd)
            self.fd = None


def read_pidfile(path: Path) -> dict[str, Any] | None:
    """The recorded daemon info, or None when there is no readable pid file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def daemon_running(path: Path) -> dict[str, Any] | None:
    """The info of a live daemon holding the pid file's lock, else None (a stale file is ignored)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return read_pidfile(path) or {"pid": None}
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
