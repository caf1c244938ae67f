"""Go `time.Duration` strings: `Duration.String()` output and `time.ParseDuration` input.

Expected values are those of Go's `time` package: clients compare the strings
the original Go server returns, so the output form matters, not just the value.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmab_metrics.durations import (
    HOUR,
    MICROSECOND,
    MILLISECOND,
    MINUTE,
    NANOSECOND,
    SECOND,
    DurationError,
    format_duration,
    parse_duration,
)

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
MICRO_SIGN = "\u00b5"
GREEK_MU = "\u03bc"

FORMATTED = [
    (0, "0s"),
    (1 * NANOSECOND, "1ns"),
    (1100 * NANOSECOND, f"1.1{MICRO_SIGN}s"),
    (2200 * MICROSECOND, "2.2ms"),
    (1500 * MILLISECOND, "1.5s"),
    (4 * MINUTE + 5001 * MILLISECOND, "4m5.001s"),
    (8 * MINUTE + 1 * NANOSECOND, "8m0.000000001s"),
    (-90 * SECOND, "-1m30s"),
    (750 * 24 * HOUR, "18000h0m0s"),
    # The spec's sample config and its defaults.
    (30 * SECOND, "30s"),
    (5 * MINUTE, "5m0s"),
    (1 * HOUR, "1h0m0s"),
    (90 * MINUTE, "1h30m0s"),
    (72 * HOUR, "72h0m0s"),
    (168 * HOUR, "168h0m0s"),
    # Unit boundaries and signs.
    (999 * NANOSECOND, "999ns"),
    (1 * MICROSECOND, f"1{MICRO_SIGN}s"),
    (1 * MILLISECOND, "1ms"),
    (1 * SECOND, "1s"),
    (1 * MINUTE, "1m0s"),
    (1 * MINUTE + 1 * SECOND, "1m1s"),
    (-1 * NANOSECOND, "-1ns"),
    (-1100 * NANOSECOND, f"-1.1{MICRO_SIGN}s"),
    (INT64_MAX, "2562047h47m16.854775807s"),
    (INT64_MIN, "-2562047h47m16.854775808s"),
]


@pytest.mark.parametrize(("ns", "expected"), FORMATTED)
def test_format_go_string(ns: int, expected: str) -> None:
    assert format_duration(ns) == expected


def test_format_uses_micro_sign() -> None:
    text = format_duration(1100)
    assert MICRO_SIGN in text
    assert GREEK_MU not in text


def test_format_never_prints_days() -> None:
    assert "d" not in format_duration(10_000 * 24 * HOUR)


ACCEPTED = [
    ("1.5h", 90 * MINUTE),
    ("90m", 90 * MINUTE),
    ("1h30m", 90 * MINUTE),
    ("30m1h", 90 * MINUTE),
    (".5h", 30 * MINUTE),
    ("5.m", 5 * MINUTE),
    ("+5m", 5 * MINUTE),
    ("300000ms", 5 * MINUTE),
    ("300000000us", 5 * MINUTE),
    (f"300000000{MICRO_SIGN}s", 5 * MINUTE),
    (f"300000000{GREEK_MU}s", 5 * MINUTE),
    ("5m", 5 * MINUTE),
    ("300ms", 300 * MILLISECOND),
    (f"12{MICRO_SIGN}s", 12 * MICROSECOND),
    ("1ns", 1),
    ("0", 0),
    ("+0", 0),
    ("-0", 0),
    ("0s", 0),
    ("1h1h", 2 * HOUR),
    ("00001s", SECOND),
    ("1.000000001s", SECOND + 1),
    # Go reads fraction digits past int64 precision and ignores them.
    ("1.00000000000000000000001s", SECOND),
    # Go truncates a fraction of a nanosecond.
    ("1.9ns", 1),
    ("2562047h47m16.854775807s", INT64_MAX),
    ("9223372036854775807ns", INT64_MAX),
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED)
def test_parse_accepts_go_forms(text: str, expected: int) -> None:
    assert parse_duration(text) == expected


def test_parse_sign_covers_whole_string() -> None:
    assert parse_duration("-1h30m") == -5400 * SECOND


def test_parse_negative_fraction() -> None:
    assert parse_duration("-1.5h") == -5400 * SECOND


def test_parse_int64_min() -> None:
    assert parse_duration("-9223372036854775808ns") == INT64_MIN


def test_parse_int64_min_formatted() -> None:
    assert parse_duration("-2562047h47m16.854775808s") == INT64_MIN


REJECTED = [
    "",
    "5",
    "300",
    "1d",
    "1w",
    "5M",
    "5H",
    "5MS",
    "5 m",
    " 5m",
    "5m ",
    "1h 30m",
    "-",
    "+",
    ".",
    ".s",
    "-.s",
    "5m0",
    "0s0",
    "ms",
    "1.",
    "1..5s",
    "1e3s",
    "--5m",
    "+-5m",
    "5m\n",
    "\u0665m",  # ARABIC-INDIC DIGIT FIVE
    "\uff15m",  # FULLWIDTH DIGIT FIVE
    "5\u00b5",
    "5sec",
]


@pytest.mark.parametrize("text", REJECTED)
def test_parse_rejects_non_go_forms(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(text)


OVERFLOWING = [
    "3000000h",
    "2562048h",
    "2562047h47m16.854775808s",
    "9223372036854775808ns",
    "-9223372036854775809ns",
    "99999999999999999999s",
    "9" * 400 + "ns",
    "2562047h2562047h",
]


@pytest.mark.parametrize("text", OVERFLOWING)
def test_parse_rejects_int64_overflow(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(text)


def test_parse_error_is_value_error() -> None:
    with pytest.raises(ValueError, match="1d"):
        parse_duration("1d")


def test_parse_rejects_non_string() -> None:
    with pytest.raises(DurationError):
        parse_duration(300)  # type: ignore[arg-type]


@given(st.integers(min_value=INT64_MIN, max_value=INT64_MAX))
def test_format_parse_round_trip(ns: int) -> None:
    assert parse_duration(format_duration(ns)) == ns


@given(st.integers(min_value=INT64_MIN, max_value=INT64_MAX))
def test_format_is_canonical(ns: int) -> None:
    text = format_duration(ns)
    assert format_duration(parse_duration(text)) == text
