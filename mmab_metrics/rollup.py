"""Rollup rules: levels, epoch-aligned buckets, which level serves a query.

Buckets are aligned to the Unix epoch in UTC and hold `[start, start +
interval)`, so the 24h level is the UTC day and a 48h bucket starts on an
even day counted from 1970-01-01.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mmab_metrics.durations import format_duration


@dataclass(frozen=True)
class Level:
    """One rollup level: its bucket interval and how long its buckets are kept."""

    interval_ns: int
    retention_ns: int

    @property
    def table(self) -> str:
        return f"level_{self.interval_ns // 1_000_000_000}s"

    @property
    def name(self) -> str:
        return format_duration(self.interval_ns)

    def retained_from(self, now_ns: int) -> int:
        """Return the first bucket start that retention keeps at `now_ns`."""
        return ceil_to(now_ns - self.retention_ns, self.interval_ns)

    def covers(self, time_ns: int, now_ns: int) -> bool:
        return floor_to(time_ns, self.interval_ns) >= now_ns - self.retention_ns


def floor_to(time_ns: int, interval_ns: int) -> int:
    return time_ns - time_ns % interval_ns


def ceil_to(time_ns: int, interval_ns: int) -> int:
    return -((-time_ns) // interval_ns) * interval_ns


def levels_from_config(pairs: Sequence[tuple[int, int]]) -> tuple[Level, ...]:
    return tuple(Level(interval, retention) for interval, retention in pairs)


class IntervalError(ValueError):
    """A query interval that is not a positive whole multiple of a level."""


def serving_level(
    levels: Sequence[Level],
    interval_ns: int | None,
    start_ns: int | None,
    now_ns: int,
) -> Level:
    """Pick the level that serves a metricValue query.

    With an interval: the coarsest level that divides it and still covers
    `start`, else the coarsest that divides it. Without: the finest level
    whose retention covers `start`, else the coarsest; the finest when
    `start` is missing too.
    """
    if interval_ns is not None:
        candidates = [level for level in levels if interval_ns % level.interval_ns == 0]
        if interval_ns <= 0 or not candidates:
            shown = ", ".join(level.name for level in levels)
            raise IntervalError(
                f"interval {format_duration(interval_ns)} is not a positive whole "
                f"multiple of a level ({shown})"
            )
        if start_ns is None:
            return candidates[-1]
        covering = [level for level in candidates if level.covers(start_ns, now_ns)]
        return covering[-1] if covering else candidates[-1]
    if start_ns is None:
        return levels[0]
    for level in levels:
        if level.covers(start_ns, now_ns):
            return level
    return levels[-1]


def exact_segments(
    levels: Sequence[Level], start_ns: int, end_ns: int, now_ns: int
) -> list[tuple[Level | None, int, int]]:
    """Split `[start, end)` into level buckets that tile it exactly, and raw edges.

    Coarse buckets cover the aligned middle, finer ones the remainders, and
    raw points whatever no retained bucket fits. Each piece is `(level, lo,
    hi)` with bucket starts in `[lo, hi)`, or `(None, lo, hi)` for raw times.
    """
    segments: list[tuple[Level | None, int, int]] = []

    def cover(lo: int, hi: int, index: int) -> None:
        if lo >= hi:
            return
        if index < 0:
            segments.append((None, lo, hi))
            return
        level = levels[index]
        inner_lo = max(ceil_to(lo, level.interval_ns), level.retained_from(now_ns))
        inner_hi = floor_to(hi, level.interval_ns)
        if inner_lo >= inner_hi:
            cover(lo, hi, index - 1)
            return
        segments.append((level, inner_lo, inner_hi))
        cover(lo, inner_lo, index - 1)
        cover(inner_hi, hi, index - 1)

    cover(start_ns, end_ns, len(levels) - 1)
    return segments
