"""A private PostgreSQL cluster for the tests that break things (stop the server, refuse a password):
``initdb`` + ``pg_ctl`` on a free port, never the shared server."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.daemon_proc import free_port

PASSWORD = "s3cret-Pass"  # of the private cluster's postgres user; the tests check it is never printed


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


BINDIR = _bindir()
needs_initdb = pytest.mark.skipif(BINDIR is None, reason="initdb/pg_ctl not found (Debian: postgresql)")


def _as_postgres() -> list[str]:
    """Run the server's tools as the postgres user when we are root (they refuse to run as root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"]
    return []


class Cluster:
    """One initdb'd cluster with password (scram) authentication, started and stopped on demand."""

    def __init__(self) -> None:
        assert BINDIR is not None
        self.dir = Path(tempfile.mkdtemp(prefix="aigov-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        pwfile = self.dir / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        self._run(str(BINDIR / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "scram-sha-256",
                  f"--pwfile={pwfile}", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8")
        pwfile.unlink()

    def _run(self, *cmd: str) -> None:
        r = subprocess.run([*_as_postgres(), *cmd], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:2])} failed: {r.stdout[-500:]} {r.stderr[-500:]}")

    def url(self, password: str = PASSWORD, database: str = "postgres") -> str:
        """A URL to this cluster."""
        return f"postgresql://postgres:{password}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off -c max_connections=60"
        self._run(str(BINDIR / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-o", opts, "-w",
                  "-t", "60", "start")

    def stop(self) -> None:
        """Stop the server at once (connections are cut, as in a crash of the network)."""
        self._run(str(BINDIR / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        """Stop (if running) and remove everything."""
        subprocess.run([*_as_postgres(), str(BINDIR / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)
