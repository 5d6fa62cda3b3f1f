"""The bench tools: the A/B tool must run the code it names (a wrong tree voids every comparison),
wrk's report must be read right, and a run must leave nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import cpu_ab  # noqa: E402
import run  # noqa: E402


def test_tree_spec_runs_that_checkout_even_from_this_one(tmp_path: Path) -> None:
    # A stand-in checkout whose aigov_cli says where it was imported from.
    pkg = tmp_path / "aigov_cli"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text("print(__file__)\n")
    cmd, env = cpu_ab.command(f"tree:{tmp_path}", str(tmp_path / "home"), env=dict(os.environ))
    assert env["AIGOV_HOME"] == str(tmp_path / "home")
    # The daemon is started from this checkout's directory, as bench/run.py's Proc does: `python -m`
    # would put it ahead of PYTHONPATH and run this checkout's code instead.
    launcher = cmd[: cmd.index("serve")]
    out = subprocess.run(launcher, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    assert Path(out.strip()).resolve() == (pkg / "__main__.py").resolve()


def test_serve_spec_sets_the_variables_it_names(tmp_path: Path) -> None:
    cmd, env = cpu_ab.command("serve:AIGOV_LOG_BATCH_SIZE=400:AIGOV_LOG_LEVEL=debug", str(tmp_path), env={})
    assert cmd[-3:] == ["serve", "--port", "{port}"]
    assert (env["AIGOV_LOG_BATCH_SIZE"], env["AIGOV_LOG_LEVEL"]) == ("400", "debug")


@pytest.mark.parametrize("spec", ["tree:/nonexistent", "serve:NOEQUALS", "nginx", "bare:x"])
def test_malformed_specs_are_refused(spec: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        cpu_ab.command(spec, str(tmp_path), env={})


# wrk 4.1's report, as `wrk --latency` prints it (units vary per line).
WRK_REPORT = """Running 8s test @ http://127.0.0.1:44535/v1/check
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.79ms  740.00us  19.50ms   80.12%
    Req/Sec    11.52k   258.93    12.88k    80.00%
  Latency Distribution
     50%  847.00us
     75%    2.47ms
     90%    3.36ms
     99%    1.02s
  91723 requests in 8.00s, 30.22MB read
  Non-2xx or 3xx responses: 17
Requests/sec:  11465.56
Transfer/sec:      3.78MB
"""


def test_wrk_report_gives_rate_percentiles_in_ms_and_counts() -> None:
    res = run.parse_wrk(WRK_REPORT)
    assert res["rps"] == 11465.56
    assert (res["p50_ms"], res["p75_ms"], res["p90_ms"]) == pytest.approx((0.847, 2.47, 3.36))
    assert res["p99_ms"] == pytest.approx(1020.0)
    assert (res["requests"], res["non2xx"]) == (91723, 17)


def test_wrk_report_without_a_rate_is_an_error_that_shows_it() -> None:
    with pytest.raises(RuntimeError, match="unable to connect"):
        run.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_a_stopped_baseline_server_leaves_no_files() -> None:
    p = run.start_bare()
    assert p.scratch is not None and (p.scratch / "bare.py").is_file()
    p.stop()
    assert p.p.returncode in (0, -15)
    assert not p.scratch.exists()
    assert not Path(p.log.name).exists()
