"""End-to-end helpers: the real ``aigov`` command and a real ``aigov serve`` subprocess on a free port."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

AIGOV = shutil.which("aigov", path=os.path.dirname(sys.executable)) or "aigov"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(home: Path, **extra: str) -> dict[str, str]:
    """The environment for running aigov under ``home``."""
    env = dict(os.environ, AIGOV_HOME=str(home), NO_COLOR="1", COLUMNS="200")
    env.update(extra)
    return env


def cli(
    home: Path, *args: str, input: str | None = None, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the real ``aigov`` command under ``home``."""
    return subprocess.run(
        [AIGOV, *args], capture_output=True, text=True, env=env_for(home, **env), input=input, timeout=timeout
    )


def create_key(home: Path, name: str = "test", *extra: str) -> dict[str, Any]:
    """``aigov keys create --json`` and its parsed output (with ``token``)."""
    r = cli(home, "keys", "create", "--name", name, "--json", *extra)
    assert r.returncode == 0, r.stderr
    data: dict[str, Any] = json.loads(r.stdout)
    return data


@dataclass
class Response:
    """A plain HTTP response."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


def until(condition: Callable[[], bool], limit: float = 30.0, failure: Callable[[], str] | None = None,
          step: float = 0.05) -> float:
    """Check ``condition()`` every ``step`` seconds until it holds; the seconds it took. After ``limit``
    seconds the test fails, with ``failure()`` when given."""
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > limit:
            raise AssertionError(failure() if failure else f"not within {limit} s")
        time.sleep(step)
    return time.monotonic() - t0


@dataclass
class DaemonProc:
    """A running ``aigov serve`` subprocess."""

    home: Path
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    extra: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: dict[str, str] | None = None, timeout: float = 10) -> Response:
        """One HTTP request on a fresh connection."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            c.request(method, path, body=body.encode() if isinstance(body, str) else body, headers=headers or {})
            r = c.getresponse()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            c.close()

    def check(self, token: str | None, payload: Any, ctype: str = "application/json") -> Response:
        """POST /v1/check."""
        h = {"Content-Type": ctype}
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        body = payload if isinstance(payload, bytes | str) else json.dumps(payload)
        return self.request("POST", "/v1/check", body, h)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send ``sig`` and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def output(self) -> str:
        """What the daemon printed so far."""
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def running_daemon(
    home: Path, *extra: str, wait: float = 20, port: int | None = None, **env: str
) -> Iterator[DaemonProc]:
    """Start ``aigov serve`` under ``home`` on ``port`` (default: a free one), wait for /healthz,
    stop it (SIGTERM) after."""
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = home / f"serve-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [AIGOV, "serve", "--host", "127.0.0.1", "--port", str(port), *extra],
            stdout=out, stderr=subprocess.STDOUT, env=env_for(home, **env), start_new_session=True,
        )
    d = DaemonProc(home, port, proc, log, list(extra))
    try:
        deadline = time.time() + wait
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"aigov serve exited {proc.returncode}: {d.output()[-500:]}")
            try:
                if d.request("GET", "/healthz", timeout=1).status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise RuntimeError(f"aigov serve did not answer within {wait}s: {d.output()[-500:]}")
            time.sleep(0.05)
        yield d
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
