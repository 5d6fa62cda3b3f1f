"""Compare `aigov loadtest` with wrk against the same target, each pinned to its own core.

Usage: .venv/bin/python bench/loadtest_vs_wrk.py [--target daemon|stub] [--duration 10] [--connections 64]

The target (a real `aigov serve`, or a minimal HTTP stub that measures the
generators themselves) runs on core 0; wrk and then `aigov loadtest` run on
core 1 with the same connection count and the same request body. The load
test is asked for more than wrk achieved, so both are capacity-bound, and its
throughput (answered requests per second) is compared with wrk's Requests/sec.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BODY = json.dumps(
    {
        "model": "gpt-4o",
        "operation": "chat",
        "input_text": "Summarise the attached meeting notes in three short bullet points. " * 4,
    }
)
AIGOV = shutil.which("aigov", path=os.path.dirname(sys.executable)) or "aigov"


def free_port() -> int:
    """A free local port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(core: int) -> list[str]:
    """A taskset prefix when there is a core to pin to."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > core:
        return ["taskset", "-c", str(core)]
    return []


def serve_stub(port: int) -> None:
    """A minimal keep-alive HTTP server answering every request with a small JSON 200."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    body = b'{"request_id":"x","allowed":true,"decision":"allow","reasons":[]}'
    resp = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-RateLimit-Limit: 100\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )

    class Stub(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            buf = self.buf + data
            while True:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                m = re.search(rb"(?i)content-length:\s*(\d+)", buf[:end])
                total = end + 4 + (int(m.group(1)) if m else 0)
                if len(buf) < total:
                    break
                close = b"connection: close" in buf[:end].lower()
                buf = buf[total:]
                self.t.write(resp)  # type: ignore[attr-defined]
                if close:
                    self.t.close()
                    return
            self.buf = buf

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Stub, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def wait_up(port: int, timeout: float = 20) -> None:
    """Wait until something listens on the port."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


def run_wrk(url: str, token: str, duration: int, connections: int) -> float:
    """wrk's Requests/sec for POST /v1/check."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(
            f'wrk.method = "POST"\nwrk.body = {json.dumps(BODY)}\n'
            f'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        )
        script = f.name
    cmd = [*pin(1), "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-s", script, url + "/v1/check"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    os.unlink(script)
    m = re.search(r"Requests/sec:\s*([\d.]+)", out)
    if not m:
        raise SystemExit(f"cannot read wrk output:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    if non2xx:
        print(f"  wrk saw {non2xx.group(1)} non-2xx responses", file=sys.stderr)
    return float(m.group(1))


def run_loadtest(
    url: str, token: str, rate: float, duration: int, connections: int, env: dict[str, str]
) -> dict:
    """`aigov loadtest` at ``rate`` with the same body; returns its JSON result."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        f.write(BODY + "\n")
        corpus = f.name
    cmd = [
        *pin(1),
        AIGOV,
        "loadtest",
        "--url",
        url,
        "--key",
        token,
        "--rate",
        f"{rate:.0f}",
        "--duration",
        f"{duration}s",
        "--connections",
        str(connections),
        "--body-file",
        corpus,
        "--timeout",
        "30s",
        "--json",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    os.unlink(corpus)
    if r.returncode not in (0, 1):
        raise SystemExit(f"aigov loadtest failed: {r.stderr}")
    doc: dict = json.loads(r.stdout)
    return doc


def main() -> None:
    """Run the comparison and print one line per tool plus the ratio."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", choices=("daemon", "stub"), default="daemon")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--serve-stub", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_stub:
        serve_stub(args.serve_stub)
        return
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    home = Path(tempfile.mkdtemp(prefix="aigov-bench-"))
    env = dict(os.environ, AIGOV_HOME=str(home), AIGOV_BCRYPT_COST="10", NO_COLOR="1")
    if args.target == "stub":
        cmd = [*pin(0), sys.executable, __file__, "--serve-stub", str(port)]
    else:
        cmd = [*pin(0), AIGOV, "serve", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        wait_up(port)
        token = "stub"
        if args.target == "daemon":
            os.environ.update(AIGOV_HOME=str(home), AIGOV_BCRYPT_COST="10")
            sys.path.insert(0, str(ROOT))
            from daemon.keyadmin import create_key

            _, token = create_key("bench", 1_000_000_000, 86400.0)
        wrk_rps = run_wrk(url, token, args.duration, args.connections)
        doc = run_loadtest(url, token, wrk_rps * 1.3, args.duration, args.connections, env)
        ours = float(doc["requests"]["throughput"])
        print(
            f"target: {args.target} (core 0); generators on core 1; {args.connections} connections, "
            f"{args.duration}s"
        )
        print(f"wrk            {wrk_rps:10.0f} req/s")
        print(
            f"aigov loadtest {ours:10.0f} req/s  (asked {wrk_rps * 1.3:.0f}/s, "
            f"generator CPU {doc['schedule']['generator_cpu_max']:.0%}, errors {doc['requests']['errors']})"
        )
        print(f"ratio          {ours / wrk_rps:10.2f}  (requirement: >= 0.60)")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
