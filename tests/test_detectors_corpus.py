"""Precision and recall of the detectors on the labelled corpus in tests/detectors/corpus.jsonl."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from daemon.policy.detectors import DETECTOR_NAMES, Scanner

CORPUS = Path(__file__).parent / "detectors" / "corpus.jsonl"


def _score() -> tuple[Counter[str], Counter[str], Counter[str]]:
    scanner = Scanner({name: {} for name in DETECTOR_NAMES})
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for line in CORPUS.read_text(encoding="utf-8").splitlines():
        case = json.loads(line)
        expect = set(case["expect"])
        got = {f.detector for f in scanner.scan(case["text"])}
        for d in got & expect:
            tp[d] += 1
        for d in got - expect:
            fp[d] += 1
        for d in expect - got:
            fn[d] += 1
    return tp, fp, fn


TP, FP, FN = _score()


def test_corpus_size_and_coverage() -> None:
    lines = CORPUS.read_text(encoding="utf-8").splitlines()
    assert len(lines) >= 300
    positives = Counter(d for line in lines for d in json.loads(line)["expect"])
    assert set(positives) == set(DETECTOR_NAMES)


@pytest.mark.parametrize("detector", DETECTOR_NAMES)
def test_precision_and_recall(detector: str) -> None:
    tp, fp, fn = TP[detector], FP[detector], FN[detector]
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    assert precision >= 0.98, (detector, tp, fp)
    assert recall >= 0.95, (detector, tp, fn)
