"""The mutation score per module after ``mutmut run`` (``make mutate`` prints it), and the survivors.

Usage: ``python tests/mutation_report.py PATTERN ...`` with the mutant-name patterns the run
used; reads ``mutmut results --all true`` in the current directory. The score counts a mutant
as detected when a test failed (killed) or the tests ran past their time limit (timeout: the
mutant made the code loop); it is detected / (every mutant that was run).
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

_LINE = re.compile(r"^\s+(\S+): (.+)$")
_DETECTED = ("killed", "timeout")


def module_of(mutant: str) -> str:
    """``daemon.tokens.x_parse_token__mutmut_9`` -> ``daemon.tokens``."""
    return re.split(r"\.x[_ǁ]", mutant, maxsplit=1)[0]


def _natural(name: str) -> list[int | str]:
    """Sort key putting ``..._mutmut_9`` before ``..._mutmut_10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def main(patterns: list[str]) -> int:
    """Print one line per module and the survivors; exit 1 when there are no results."""
    mutmut = Path(sys.executable).with_name("mutmut")
    out = subprocess.run([str(mutmut), "results", "--all", "true"], capture_output=True, text=True, check=True)
    status: dict[str, str] = {}
    for line in out.stdout.splitlines():
        m = _LINE.match(line)
        if m and any(fnmatch.fnmatchcase(m[1], p) for p in patterns):
            status[m[1]] = m[2]
    if not status:
        print("mutation report: no results (run `make mutate` first)", file=sys.stderr)
        return 1
    by_module: dict[str, Counter[str]] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    for name, st in status.items():
        by_module[module_of(name)][st] += 1
        if st not in _DETECTED and st != "not checked":
            survivors[module_of(name)].append(f"{name} ({st})")
    print(f"{'module':45} {'mutants':>7} {'killed':>6} {'timeout':>7} {'survived':>8} {'no tests':>8} {'score':>6}")
    for module in sorted(by_module):
        c = by_module[module]
        run = sum(c.values()) - c["not checked"]
        score = f"{100 * sum(c[s] for s in _DETECTED) / run:.1f}%" if run else "-"
        print(f"{module:45} {run:7} {c['killed']:6} {c['timeout']:7} {c['survived']:8} {c['no tests']:8} {score:>6}")
    for module in sorted(survivors):
        print(f"\nnot detected in {module}:")
        for line in sorted(survivors[module], key=_natural):
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
