"""CPU time per request of two servers side by side: an A/B that machine drift cannot skew.

`make bench` alternates the daemon and the baseline, as the throughput goal prescribes; on a
shared machine the two halves of one round can run at speeds 20 % apart, so a change worth a
few per cent cannot be seen there. Here both servers run at the same time, both pinned to
core 0, each saturated by its own wrk on core 1 for the same seconds, and each one's CPU time
(user + system, every thread, from /proc) is divided by the requests it answered. Whatever
slows the core slows both alike: the ratio repeats to about 1-2 % (a checkout against a copy
of itself gave 0.98-1.00 in four rounds, while the absolute figures moved by 30 %).

    python bench/cpu_ab.py A B [--rounds 4] [--seconds 5] [--json]

A and B are each one of:

    serve              `aigov serve` from this checkout
    serve:VAR=VALUE    the same with environment variables set (serve:AIGOV_LOG_BATCH_SIZE=400)
    tree:PATH          another checkout's daemon (PYTHONPATH=PATH python -P -m aigov_cli serve);
                       make one with `git worktree add /tmp/base HEAD~1`
    bare               the bare aiohttp baseline of bench/run.py

The ratio printed is B's CPU per request over A's: below 1.0 means B is cheaper, and B's
throughput on a core of its own would be about 1/ratio times A's. Two servers on one core
share its caches, so the absolute µs are higher than either alone, and the baseline suffers
more from that than the daemon does: quote `make bench` for the goal, this for a change.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (bench/run.py: key, wrk script, pinning, the baseline)


def command(spec: str, home: str, *, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The command line (with ``{port}``) and environment for one server spec; ValueError if malformed."""
    env = dict(env, AIGOV_HOME=home)
    kind, _, rest = spec.partition(":")
    if kind == "serve":
        for assignment in filter(None, rest.split(":")):
            name, sep, value = assignment.partition("=")
            if not sep:
                raise ValueError(f"{spec}: expected serve:VAR=VALUE")
            env[name] = value
        return [run.AIGOV, "serve", "--port", "{port}"], env
    if kind == "tree":
        if not (Path(rest) / "aigov_cli").is_dir():
            raise ValueError(f"{spec}: {rest} is not an aigov checkout")
        env["PYTHONPATH"] = rest
        # -P: without it, `python -m` puts the working directory (this checkout) ahead of PYTHONPATH.
        return [sys.executable, "-P", "-m", "aigov_cli", "serve", "--port", "{port}"], env
    if kind == "bare" and not rest:
        return [sys.executable, str(run.bare_script(Path(home))), "{port}"], env
    raise ValueError(f"unknown server {spec!r} (serve, serve:VAR=VALUE, tree:PATH, bare)")


def main() -> None:
    """Parse arguments, run the rounds, print per round and the median ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="the reference server (serve, serve:VAR=VALUE, tree:PATH, bare)")
    parser.add_argument("b", help="the server compared with it")
    parser.add_argument("--rounds", type=int, default=4, help="rounds, each with fresh servers (default 4)")
    parser.add_argument("--seconds", type=int, default=5, help="seconds of load per round (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args()
    if args.a == args.b:
        parser.error("A and B are the same server; to see the noise, compare serve with tree:PATH of a copy")
    for spec in (args.a, args.b):
        try:
            with tempfile.TemporaryDirectory() as scratch:
                command(spec, scratch, env={})
        except ValueError as e:
            parser.error(str(e))
    if args.rounds < 1 or args.seconds < 1:
        parser.error("--rounds and --seconds must be at least 1")
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    run.RESULTS.mkdir(parents=True, exist_ok=True)
    home, _, token, _ = run.make_home()
    script = run.lua(token)
    servers: dict[str, run.Server] = {
        spec: functools.partial(command, spec, env=dict(os.environ)) for spec in (args.a, args.b)
    }
    rounds: list[dict[str, Any]] = []
    try:
        for i in range(args.rounds):
            r = run.side_by_side(home, servers, script, args.seconds)
            ratio = r[args.b]["cpu_us_per_request"] / r[args.a]["cpu_us_per_request"]
            rounds.append({"servers": r, "ratio": ratio})
            if not args.json:
                print(f"round {i + 1}: " + "   ".join(
                    f"{spec}: {v['rps']:.0f} req/s, {v['cpu_us_per_request']:.1f} µs/req "
                    f"(main thread {v['main_thread_us_per_request']:.1f})" for spec, v in r.items()
                ) + f"   B/A {ratio:.3f}", flush=True)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    median = statistics.median(r["ratio"] for r in rounds)
    if args.json:
        print(json.dumps({"a": args.a, "b": args.b, "seconds": args.seconds, "rounds": rounds,
                          "ratio_median": median}, indent=2))
    else:
        print(f"CPU per request, {args.b} / {args.a}: median {median:.3f} over {len(rounds)} rounds")


if __name__ == "__main__":
    main()
