"""RFC 3339 timestamps as int nanoseconds since the Unix epoch, UTC.

Agents send Go `time.Time` values with nine fractional digits, which Python's
`datetime` cannot hold, so instants are plain ints end to end. Output is
Go's RFC3339Nano in UTC: trailing zeros of the fraction dropped, no fraction
when it is zero, always `Z`.
"""

from __future__ import annotations

import re

NS_PER_SECOND = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_SECOND

# The int64 nanosecond range, the instants Go's UnixNano can represent.
MIN_NS = -(1 << 63)
MAX_NS = (1 << 63) - 1

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
# A `+` in a query string arrives as a space after URL decoding.
_SPACE_OFFSET = re.compile(r"^(.*\d) (\d{2}:\d{2})$", re.ASCII)

_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class TimeFormatError(ValueError):
    """A timestamp that is not RFC 3339 or lies outside the int64 range."""


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Count days from 1970-01-01 to a proleptic Gregorian date."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100
    return era * 146_097 + day_of_era + day_of_year - 719_468


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """Convert days since 1970-01-01 to (year, month, day)."""
    days += 719_468
    era = days // 146_097
    day_of_era = days - era * 146_097
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36_524 - day_of_era // 146_096
    ) // 365
    year = year_of_era + era * 400
    day_of_year = day_of_era - (
        365 * year_of_era + year_of_era // 4 - year_of_era // 100
    )
    mp = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * mp + 2) // 5 + 1
    month = mp + (3 if mp < 10 else -9)
    return year + (month <= 2), month, day


def parse_time(text: str) -> int:
    """Parse an RFC 3339 timestamp with any offset into nanoseconds, UTC.

    Accepts 0 to 9 fractional digits and lowercase `t`/`z`. Rejects a missing
    offset, a date alone, numbers, impossible dates such as Feb 29 of a common
    year, second 60, and instants outside the int64 nanosecond range.

    >>> parse_time("2025-05-15T07:29:06.354967467+02:00")
    1747286946354967467
    """
    if not isinstance(text, str):
        raise TimeFormatError(f"invalid timestamp {text!r}: not a string")
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise TimeFormatError(
            f"invalid timestamp {text!r}: expected RFC 3339 such as "
            "2025-03-15T00:00:00Z"
        )
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction, zulu, sign, offset_hours, offset_minutes = match.groups()[6:]

    if not 1 <= month <= 12:
        raise TimeFormatError(f"invalid timestamp {text!r}: month out of range")
    days_in_month = _DAYS_IN_MONTH[month - 1] + (month == 2 and _is_leap(year))
    if not 1 <= day <= days_in_month:
        raise TimeFormatError(f"invalid timestamp {text!r}: day out of range")
    if hour > 23 or minute > 59 or second > 59:
        raise TimeFormatError(f"invalid timestamp {text!r}: time of day out of range")

    offset = 0
    if not zulu:
        if int(offset_hours) > 23 or int(offset_minutes) > 59:
            raise TimeFormatError(f"invalid timestamp {text!r}: offset out of range")
        offset = (int(offset_hours) * 60 + int(offset_minutes)) * 60
        if sign == "-":
            offset = -offset

    seconds = _days_from_civil(year, month, day) * 86_400
    seconds += hour * 3600 + minute * 60 + second - offset
    ns = seconds * NS_PER_SECOND
    if fraction:
        ns += int(fraction.ljust(9, "0"))
    if not MIN_NS <= ns <= MAX_NS:
        raise TimeFormatError(
            f"timestamp {text!r} is outside the supported range "
            "1677-09-21T00:12:43.145224192Z to 2262-04-11T23:47:16.854775807Z"
        )
    return ns


def parse_query_time(text: str) -> int:
    """Parse a timestamp from a query string, restoring a `+` read as a space."""
    match = _SPACE_OFFSET.match(text)
    if match is not None:
        text = f"{match.group(1)}+{match.group(2)}"
    return parse_time(text)


def format_time(ns: int) -> str:
    """Format nanoseconds since the epoch as Go's RFC3339Nano in UTC.

    >>> format_time(1747286946354967467), format_time(1742000000 * 10**9)
    ('2025-05-15T05:29:06.354967467Z', '2025-03-15T00:53:20Z')
    """
    seconds, fraction = divmod(ns, NS_PER_SECOND)
    days, second_of_day = divmod(seconds, 86_400)
    year, month, day = _civil_from_days(days)
    hour, rest = divmod(second_of_day, 3600)
    minute, second = divmod(rest, 60)
    text = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    return text + "Z"
