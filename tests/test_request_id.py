"""Request ids are ULIDs: 26 Crockford base32 characters, time first, random after."""

from __future__ import annotations

import re
import time
from collections import Counter

from daemon import handlers
from daemon.handlers import new_request_id

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def decode_ms(rid: str) -> int:
    ms = 0
    for ch in rid[:10]:
        ms = ms * 32 + CROCKFORD.index(ch)
    return ms


def test_format_and_time_prefix() -> None:
    before = time.time_ns() // 1_000_000
    rid = new_request_id()
    after = time.time_ns() // 1_000_000
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", rid)
    assert before <= decode_ms(rid) <= after


def test_unique_and_random_part_uses_every_symbol_evenly() -> None:
    ids = [new_request_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    counts = Counter(ch for rid in ids for ch in rid[10:])
    assert set(counts) == set(CROCKFORD)
    # 320k random symbols over 32 values: 10k each on average; a stuck bit would skew far more.
    assert min(counts.values()) > 9_000 and max(counts.values()) < 11_000


def test_ids_sort_by_time(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    now = [1_700_000_000_000_000_000]
    monkeypatch.setattr(handlers.time, "time_ns", lambda: now[0])
    first = new_request_id()
    now[0] += 1_000_000  # one millisecond later
    second = new_request_id()
    assert first[:10] < second[:10] and first < second


def test_time_part_is_exact_across_the_cached_boundary(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # The upper eight time characters are cached per 1024 ms: crossing that boundary must re-encode.
    base = 1_700_000_000_000 // 1024 * 1024
    for ms in (base - 1, base, base + 1, base + 1023, base + 1024, base - 1):
        monkeypatch.setattr(handlers.time, "time_ns", lambda ms=ms: ms * 1_000_000)
        assert decode_ms(new_request_id()) == ms
