"""Instructions per /v1/check request, counted by valgrind's callgrind: a repeatable A/B measure.

Wall-clock throughput on a shared machine swings by +-25 % between runs; instruction counts of the
same requests through the same code repeat to about 1 %. This starts the real daemon (or the bare
aiohttp baseline of bench/run.py) under callgrind with instrumentation off, warms it up, counts
exactly N requests (instrumentation switched on and off around them with callgrind_control) and
reports instructions per request for each thread that ran any: the event loop and the decision writer.

    python bench/instructions.py [--requests 2000] [--bare] [--json]

User-space instructions only: system calls, cache misses and waits for the GIL are not in them, so
a change that saves instructions may still not show up in req/s. Needs valgrind (apt-get install valgrind).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (bench/run.py: the baseline script, the key and the request body)

CLIENT_THREADS = 4


def send(port: int, n: int, token: str) -> int:
    """Send ``n`` checks over CLIENT_THREADS keep-alive connections; return how many were not 200."""
    bad = [0]
    lock = threading.Lock()

    def worker(count: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        for _ in range(count):
            conn.request("POST", "/v1/check", run.BODY,
                         {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                with lock:
                    bad[0] += 1
        conn.close()

    share = [n // CLIENT_THREADS + (1 if i < n % CLIENT_THREADS else 0) for i in range(CLIENT_THREADS)]
    threads = [threading.Thread(target=worker, args=(c,)) for c in share]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return bad[0]


def control(pid: int, *args: str) -> None:
    """callgrind_control on the daemon."""
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def measure(requests: int, bare: bool) -> dict[str, object]:
    """Count the instructions of ``requests`` checks; per thread, per request."""
    home, env, token, _ = run.make_home()
    out = Path(tempfile.mkdtemp(prefix="aigov-callgrind-"))
    port = run.free_port()
    if bare:
        target = [sys.executable, str(run.bare_script(out)), str(port)]
    else:
        target = [sys.executable, run.AIGOV, "serve", "--port", str(port)]
    log = open(out / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
         f"--callgrind-out-file={out / 'cg.out'}", *target],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        run.wait_http(f"http://127.0.0.1:{port}/healthz", timeout=300)
        send(port, 400, token)  # warm: the key's bcrypt, first-use imports, caches
        control(proc.pid, "-i", "on")
        t0 = time.monotonic()
        failed = send(port, requests, token)
        elapsed = time.monotonic() - t0
        control(proc.pid, "-i", "off")
        control(proc.pid, "-d")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(300)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    threads: dict[str, int] = {}
    for f in out.glob("cg.out*"):
        m = re.search(r"^totals:\s+(\d+)", f.read_text(errors="replace"), re.M)
        tid = f.name.rsplit("-", 1)[-1] if "-" in f.name else "all"
        if m and int(m.group(1)) > 0:
            threads[tid] = threads.get(tid, 0) + int(m.group(1))
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)
    per = sorted(((n // requests, tid) for tid, n in threads.items()), reverse=True)
    return {
        "target": "bare aiohttp" if bare else "aigov serve",
        "requests": requests,
        "non_200": failed,
        "seconds_under_valgrind": round(elapsed, 1),
        "instructions_per_request": sum(n for n, _ in per),
        # Thread 1 is the event loop; the decision writer is the other busy one.
        "per_thread": {f"thread-{tid}": n for n, tid in per if n >= 100},
    }


def main() -> None:
    """Parse arguments, measure, print."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=2000, help="requests counted (default 2000)")
    p.add_argument("--bare", action="store_true", help="measure the bare aiohttp baseline instead")
    p.add_argument("--json", action="store_true", help="print JSON only")
    args = p.parse_args()
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    if args.requests < 1:
        sys.exit("--requests must be at least 1")
    run.RESULTS.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    res = measure(args.requests, args.bare)
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(f"{res['target']}: {res['instructions_per_request']:,} instructions per request "
          f"({res['requests']} requests, {res['non_200']} not 200)")
    for name, n in res["per_thread"].items():  # type: ignore[attr-defined]
        print(f"  {name}: {n:,}")


if __name__ == "__main__":
    main()
