"""Go `time.Duration` strings, both ways, as int nanoseconds.

The original server is written in Go, and clients compare the strings it
returns (`"5m0s"`, `"72h0m0s"`), so both the accepted grammar of
`time.ParseDuration` and the output of `Duration.String()` are copied
exactly. Hours are the largest unit: 750 days print as `18000h0m0s`.
"""

from __future__ import annotations

NANOSECOND = 1
MICROSECOND = 1000 * NANOSECOND
MILLISECOND = 1000 * MICROSECOND
SECOND = 1000 * MILLISECOND
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE

_MAX_INT64 = (1 << 63) - 1

_UNITS = {
    "ns": NANOSECOND,
    "us": MICROSECOND,
    "\u00b5s": MICROSECOND,  # U+00B5 MICRO SIGN
    "\u03bcs": MICROSECOND,  # U+03BC GREEK SMALL LETTER MU
    "ms": MILLISECOND,
    "s": SECOND,
    "m": MINUTE,
    "h": HOUR,
}


class DurationError(ValueError):
    """A string that `time.ParseDuration` would reject."""


def _leading_int(s: str, i: int) -> tuple[int, int]:
    """Read decimal digits from `s[i:]`; return the value and the next index."""
    value = 0
    start = i
    while i < len(s) and "0" <= s[i] <= "9":
        value = value * 10 + (ord(s[i]) - 48)
        if value > _MAX_INT64 + 1:
            raise DurationError(f"invalid duration {s!r}: number too large")
        i += 1
    return (value if i > start else -1), i


def parse_duration(text: str) -> int:
    """Parse a Go duration string such as `1h30m` or `-1.5s` into nanoseconds.

    The sign applies to the whole string (`-1h30m` is -5400 s), units may come
    in any order, and `0` alone is the only number allowed without a unit.

    >>> parse_duration("1h30m"), parse_duration("300ms"), parse_duration(".5h")
    (5400000000000, 300000000, 1800000000000)
    """
    if not isinstance(text, str):
        raise DurationError(f"invalid duration {text!r}: not a string")
    s = text
    negative = False
    i = 0
    if s[:1] in ("-", "+"):
        negative = s[0] == "-"
        i = 1
    if s[i:] == "0":
        return 0
    if i == len(s):
        raise DurationError(f"invalid duration {text!r}")

    total = 0
    while i < len(s):
        if not (s[i] == "." or "0" <= s[i] <= "9"):
            raise DurationError(f"invalid duration {text!r}")
        whole, i = _leading_int(s, i)
        has_whole = whole >= 0
        whole = max(whole, 0)

        fraction, scale, has_fraction = 0, 1.0, False
        if i < len(s) and s[i] == ".":
            i += 1
            start = i
            overflow = False
            while i < len(s) and "0" <= s[i] <= "9":
                # Like Go, digits that would overflow are read and ignored.
                if not overflow:
                    candidate = fraction * 10 + (ord(s[i]) - 48)
                    if fraction > _MAX_INT64 // 10 or candidate > _MAX_INT64 + 1:
                        overflow = True
                    else:
                        fraction = candidate
                        scale *= 10
                i += 1
            has_fraction = i > start
        if not has_whole and not has_fraction:
            raise DurationError(f"invalid duration {text!r}")

        start = i
        while i < len(s) and s[i] != "." and not ("0" <= s[i] <= "9"):
            i += 1
        unit_name = s[start:i]
        if not unit_name:
            raise DurationError(f"missing unit in duration {text!r}")
        unit = _UNITS.get(unit_name)
        if unit is None:
            raise DurationError(f"unknown unit {unit_name!r} in duration {text!r}")

        if whole > (_MAX_INT64 + 1) // unit:
            raise DurationError(f"invalid duration {text!r}: out of range")
        value = whole * unit
        if fraction:
            # Go computes the fraction in float64 and truncates it, and so do we,
            # so that every input gives Go's nanosecond.
            value += int(float(fraction) * (float(unit) / scale))
            if value > _MAX_INT64 + 1:
                raise DurationError(f"invalid duration {text!r}: out of range")
        total += value
        if total > _MAX_INT64 + 1:
            raise DurationError(f"invalid duration {text!r}: out of range")

    if not negative and total > _MAX_INT64:
        raise DurationError(f"invalid duration {text!r}: out of range")
    return -total if negative else total


def _fraction(value: int, precision: int) -> tuple[str, int]:
    """Format `value` / 10**precision's fraction with trailing zeros dropped."""
    digits = []
    printed = False
    for _ in range(precision):
        digit = value % 10
        printed = printed or digit != 0
        if printed:
            digits.append(chr(48 + digit))
        value //= 10
    text = "".join(reversed(digits))
    return ("." + text if text else ""), value


def format_duration(ns: int) -> str:
    """Format nanoseconds as Go's `Duration.String()` does.

    >>> format_duration(300 * SECOND), format_duration(1100), format_duration(0)
    ('5m0s', '1.1µs', '0s')
    """
    if ns == 0:
        return "0s"
    negative = ns < 0
    u = -ns if negative else ns

    if u < SECOND:
        if u < MICROSECOND:
            text = f"{u}ns"
        elif u < MILLISECOND:
            frac, whole = _fraction(u, 3)
            text = f"{whole}{frac}\u00b5s"
        else:
            frac, whole = _fraction(u, 6)
            text = f"{whole}{frac}ms"
    else:
        frac, seconds = _fraction(u, 9)
        text = f"{seconds % 60}{frac}s"
        minutes = seconds // 60
        if minutes:
            text = f"{minutes % 60}m{text}"
            hours = minutes // 60
            if hours:
                text = f"{hours}h{text}"
    return "-" + text if negative else text
