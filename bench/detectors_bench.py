"""Accuracy and speed of aigov's built-in detectors.

Prints per-detector precision/recall on tests/detectors/corpus.jsonl and on the Presidio
cases (``--presidio PATH``; a finding outside a case's ``scope`` is not a false positive
there), then the median time of a full scan (all detectors) on realistic text of 1 KB to
1 MB and on adversarial inputs, with the cost per byte so linearity is visible.
``--json`` emits one JSON document instead.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from daemon.policy.detectors import DETECTOR_NAMES, Scanner  # noqa: E402

PARAGRAPH = (
    "Hi team, following up on Tuesday's review of the Q3 roadmap. Revenue grew 12% to $4.5M across "
    "3 regions, and the migration of the billing service to the new cluster (v2.1) is on track for "
    "2024-10-15. Could you summarise the key risks, list the open action items with owners, and draft "
    "a short note for the leadership meeting? Keep it under 200 words, use plain English, and mention "
    "that the on-call rotation changes from 4 to 6 engineers next month. Thanks! "
)
ADVERSARIAL = {
    "digits": "1234567890",
    "ignore_previous": "ignore previous ",
    "base64": "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODkrLw",
    "dash_ones": "1-",
    "at_signs": "a@",
    "dotted_numbers": "1.2.",
    "hex_colons": "a:",
    "card_like": "4111 1111 1111 111",
}


def _score(path: Path, use_scope: bool) -> dict[str, dict[str, float]]:
    scanner = Scanner({name: {} for name in DETECTOR_NAMES})
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        case = json.loads(line)
        expect = set(case["expect"])
        scope = set(case.get("scope", DETECTOR_NAMES)) | expect if use_scope else set(DETECTOR_NAMES)
        got = {f.detector for f in scanner.scan(case["text"])}
        for d in got & expect:
            tp[d] += 1
        for d in (got - expect) & scope:
            fp[d] += 1
        for d in expect - got:
            fn[d] += 1
    table: dict[str, dict[str, float]] = {}
    for d in DETECTOR_NAMES:
        if tp[d] + fp[d] + fn[d] == 0:
            continue
        table[d] = {
            "tp": tp[d],
            "fp": fp[d],
            "fn": fn[d],
            "precision": tp[d] / (tp[d] + fp[d]) if tp[d] + fp[d] else 1.0,
            "recall": tp[d] / (tp[d] + fn[d]) if tp[d] + fn[d] else 1.0,
        }
    return table


def _median_us(scanner: Scanner, text: str, budget_s: float = 0.4) -> float:
    scanner.scan(text)
    samples: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(samples) < 5 or (time.perf_counter() < deadline and len(samples) < 2000):
        t0 = time.perf_counter()
        scanner.scan(text)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


def _repeat(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def _number(i: int) -> str:
    return f"+1 415 {200 + i // 10_000} {i % 10_000:04d}"


def _two_new_numbers(i: int) -> str:
    """1 KB of prose with an email address and the numbers ``i`` and ``i + 1``."""
    text = (
        f"{PARAGRAPH[:400]} Reach me at jane.doe@example.com or {_number(i)}. "
        f"{PARAGRAPH[:400]} Or call {_number(i + 1)} after five. "
    )
    return _repeat(text + PARAGRAPH, 1_000)


def _median_us_each(scanner: Scanner, texts: list[str]) -> float:
    """The median time of one scan of each text, each scanned once."""
    samples = []
    for text in texts:
        t0 = time.perf_counter()
        scanner.scan(text)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


def _timings() -> list[dict[str, object]]:
    scanner = Scanner({name: {} for name in DETECTOR_NAMES})
    rows: list[dict[str, object]] = []
    short = "What is the capital of France?"
    rows.append(
        {"input": "short benign prompt", "bytes": len(short), "median_us": _median_us(scanner, short)}
    )
    for size in (1_000, 10_000, 100_000, 1_000_000):
        text = _repeat(PARAGRAPH, size)
        rows.append(
            {"input": f"realistic {size // 1000} KB", "bytes": size, "median_us": _median_us(scanner, text)}
        )
    typographic = _repeat(PARAGRAPH.replace("Tuesday's", "Tuesday’s").replace(", and the", " — and the"), 1_000)
    rows.append(
        {
            "input": "realistic 1 KB, curly quote + dash",
            "bytes": len(typographic),
            "median_us": _median_us(scanner, typographic),
        }
    )
    pii = _repeat(PARAGRAPH[:400] + "Reach me at jane.doe@example.com or +1 415 555 0132. ", 1_000)
    rows.append(
        {
            "input": "1 KB, email + phone seen before",
            "bytes": len(pii),
            "median_us": _median_us(scanner, pii),
        }
    )
    # The phone detector caches the library's answer per number; here every text holds two numbers
    # that no scan has seen, so each costs the full validation.
    fresh = [_two_new_numbers(i) for i in range(0, 4000, 2)]
    assert all(sum(f.detector == "phone" for f in scanner.scan(t)) == 2 for t in fresh[:20])
    rows.append(
        {
            "input": "1 KB, email + 2 phones never seen",
            "bytes": len(fresh[0]),
            "median_us": _median_us_each(scanner, fresh),
        }
    )
    for name, unit in ADVERSARIAL.items():
        for size in (100_000, 500_000):
            text = _repeat(unit, size)
            rows.append(
                {
                    "input": f"adversarial {name} {size // 1000} KB",
                    "bytes": size,
                    "median_us": _median_us(scanner, text, 1.0),
                }
            )
    for row in rows:
        row["ns_per_byte"] = float(row["median_us"]) * 1000 / int(row["bytes"])  # type: ignore[arg-type]
    return rows


def main() -> int:
    """Run the benchmark and print the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--presidio", type=Path, default=ROOT.parent / "shared" / "benchmarks" / "presidio-cases.jsonl"
    )
    parser.add_argument("--corpus", type=Path, default=ROOT / "tests" / "detectors" / "corpus.jsonl")
    parser.add_argument("--json", action="store_true", help="emit one JSON document")
    parser.add_argument("--no-timing", action="store_true", help="accuracy only")
    args = parser.parse_args()
    report: dict[str, object] = {"corpus": _score(args.corpus, use_scope=False)}
    if args.presidio.exists():
        report["presidio"] = _score(args.presidio, use_scope=True)
    else:
        print(f"warning: {args.presidio} not found; skipping the Presidio cases", file=sys.stderr)
    if not args.no_timing:
        report["timing"] = _timings()
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return 0
    for key in ("corpus", "presidio"):
        table = report.get(key)
        if not isinstance(table, dict):
            continue
        print(f"\n== accuracy: {key} ==")
        print(f"{'detector':<18}{'tp':>5}{'fp':>5}{'fn':>5}{'precision':>11}{'recall':>8}")
        for d, row in table.items():
            print(
                f"{d:<18}{row['tp']:>5}{row['fp']:>5}{row['fn']:>5}{row['precision']:>11.3f}{row['recall']:>8.3f}"
            )
    timing = report.get("timing")
    if isinstance(timing, list):
        print("\n== speed: all detectors, median per scan ==")
        print(f"{'input':<36}{'bytes':>10}{'median µs':>12}{'ns/byte':>10}")
        for row in timing:
            print(f"{row['input']:<36}{row['bytes']:>10}{row['median_us']:>12.1f}{row['ns_per_byte']:>10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
