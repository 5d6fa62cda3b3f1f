"""Durations and rates as people write them (``daemon/units.py``), at the edges of what is accepted."""

from __future__ import annotations

import pytest

from daemon.units import MAX_DURATION_DAYS, MAX_RATE_LIMIT, format_duration, parse_duration, parse_rate


@pytest.mark.parametrize(("text", "seconds"), [
    ("0", 0.0), ("500ms", 0.5), ("30s", 30.0), ("1h30m", 5400.0), (" 90D ", 90 * 86400.0), ("2w", 14 * 86400.0),
    (f"{MAX_DURATION_DAYS}d", MAX_DURATION_DAYS * 86400.0),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty duration"), ("1", "invalid duration '1'"), ("1x", "invalid duration"), ("-1s", "invalid duration"),
    ("00", "invalid duration"), (f"{MAX_DURATION_DAYS + 1}d", f"longer than {MAX_DURATION_DAYS}d"),
    ("99999999999999999999999999d", "longer than"),
])
def test_bad_durations(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(text)


@pytest.mark.parametrize(("text", "rate"), [
    ("100/60s", (100, 60.0)), ("5/m", (5, 60.0)), (f"{MAX_RATE_LIMIT}/1s", (MAX_RATE_LIMIT, 1.0)),
])
def test_rates(text: str, rate: tuple[int, float]) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize(("text", "message"), [
    ("100", "is not a rate limit"), ("0/1s", "at least 1 request"), ("5/0", "at least 1 request"),
    (f"{MAX_RATE_LIMIT + 1}/1s", f"at most {MAX_RATE_LIMIT:,}"), ("5/xyz", "must be a duration"),
])
def test_bad_rates(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rate(text)


def test_format_duration() -> None:
    assert [format_duration(s) for s in (60, 3600, 86400 * 90, 1.5, 90)] == ["1m", "1h", "90d", "1.5s", "90s"]
