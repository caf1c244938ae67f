"""An in-memory copy of the stored levels' buckets, kept current by every write.

A query of a stored level reads numpy slices instead of DuckDB, whose
per-query cost is larger than a whole small answer. Per series and level it
holds four arrays: bucket starts, `count`, the time of the latest point, and
the one summary column the series' aggregate needs (`sum` for sum and avg,
else `min`, `max` or `last`), 32 bytes a bucket.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from mmab_metrics.rollup import Level

_COLUMN = {"sum": "sum", "avg": "sum", "min": "min", "max": "max", "last": "last"}
_COLUMNS = ("sum", "min", "max", "last")


def _fields(buckets: SeriesBuckets) -> list[np.ndarray]:
    return [buckets.starts, buckets.values, buckets.counts, buckets.last_times]


def _split(
    frame: pl.DataFrame, columns: list[str]
) -> list[tuple[int, list[np.ndarray]]]:
    """Split a frame by series into numpy arrays of `columns`, sorted by bucket."""
    if frame.height == 0:
        return []
    ordered = frame.sort("series_id", "bucket_ns")
    series = ordered["series_id"].to_numpy()
    arrays = [ordered[name].to_numpy() for name in columns]
    edges = np.flatnonzero(np.diff(series)) + 1
    heads = np.concatenate([[0], edges])
    tails = np.concatenate([edges, [series.size]])
    return [
        (int(series[head]), [array[head:tail] for array in arrays])
        for head, tail in zip(heads.tolist(), tails.tolist(), strict=True)
    ]


@dataclass
class SeriesBuckets:
    starts: np.ndarray  # int64 bucket starts, ascending
    values: np.ndarray  # float64, the aggregate's summary column
    counts: np.ndarray  # int64
    last_times: np.ndarray  # int64 nanoseconds of each bucket's latest point


class LevelCache:
    """Buckets of one stored level, by series id."""

    def __init__(self, level: Level, aggregate_of: Callable[[int], str]) -> None:
        self.level = level
        self.aggregate_of = aggregate_of
        self._series: dict[int, SeriesBuckets] = {}
        self._lock = threading.Lock()

    def column_of(self, series_id: int) -> str:
        return _COLUMN[self.aggregate_of(series_id)]

    def replace_all(self, frame: pl.DataFrame) -> None:
        """Load every bucket of the level from a frame of its rows."""
        series: dict[int, SeriesBuckets] = {}
        for (series_id,), part in frame.sort("series_id", "bucket_ns").group_by(
            "series_id", maintain_order=True
        ):
            series[series_id] = self._arrays(series_id, part)
        with self._lock:
            self._series = series

    def _arrays(self, series_id: int, part: pl.DataFrame) -> SeriesBuckets:
        column = self.column_of(series_id)
        return SeriesBuckets(
            part["bucket_ns"].to_numpy().astype(np.int64, copy=True),
            part[column].to_numpy().astype(np.float64, copy=True),
            part["count"].to_numpy().astype(np.int64, copy=True),
            part["last_ns"].to_numpy().astype(np.int64, copy=True),
        )

    def update(self, rows: pl.DataFrame, removed: pl.DataFrame | None = None) -> None:
        """Apply changed buckets, and drop `removed` (series_id, bucket_ns) keys."""
        gone: dict[int, np.ndarray] = {}
        if removed is not None and removed.height:
            for series_id, starts in _split(removed, ["bucket_ns"]):
                gone[series_id] = starts[0]
        changed = _split(
            rows, ["bucket_ns", "count", "last_ns", "sum", "min", "max", "last"]
        )
        with self._lock:
            for series_id, (starts, counts, last_times, *columns) in changed:
                column = _COLUMNS.index(self.column_of(series_id))
                new = SeriesBuckets(
                    starts.astype(np.int64),
                    columns[column].astype(np.float64),
                    counts.astype(np.int64),
                    last_times.astype(np.int64),
                )
                self._apply(series_id, new, gone.pop(series_id, None))
            for series_id, starts in gone.items():
                self._apply(series_id, None, starts)

    def _apply(
        self, series_id: int, new: SeriesBuckets | None, gone: np.ndarray | None
    ) -> None:
        current = self._series.get(series_id)
        if current is None or current.starts.size == 0:
            if new is not None and new.starts.size:
                self._series[series_id] = new
            return
        if gone is None and new is not None and new.starts[0] >= current.starts[-1]:
            # Live data: the new buckets replace the last one or follow it.
            keep = current.starts.size - int(new.starts[0] == current.starts[-1])
            self._series[series_id] = SeriesBuckets(
                *(
                    np.concatenate([old[:keep], added])
                    for old, added in zip(_fields(current), _fields(new), strict=True)
                )
            )
            return
        fields = _fields(current)
        drop = [d for d in (gone, None if new is None else new.starts) if d is not None]
        if drop:
            keep_mask = ~np.isin(fields[0], np.concatenate(drop))
            fields = [field[keep_mask] for field in fields]
        if new is not None:
            fields = [
                np.concatenate([old, added])
                for old, added in zip(fields, _fields(new), strict=True)
            ]
            order = np.argsort(fields[0], kind="stable")
            fields = [field[order] for field in fields]
        if fields[0].size:
            self._series[series_id] = SeriesBuckets(*fields)
        else:
            self._series.pop(series_id, None)

    def drop_before(self, cutoff_ns: int) -> None:
        with self._lock:
            for series_id, buckets in list(self._series.items()):
                first = int(np.searchsorted(buckets.starts, cutoff_ns, side="left"))
                if first == 0:
                    continue
                if first >= buckets.starts.size:
                    del self._series[series_id]
                else:
                    self._series[series_id] = SeriesBuckets(
                        *(field[first:] for field in _fields(buckets))
                    )

    def summarise(
        self, series_id: int, lo_ns: int, hi_ns: int
    ) -> tuple[int, float, int] | None:
        """Return count, aggregated column and latest time of buckets in [lo, hi)."""
        with self._lock:
            buckets = self._series.get(series_id)
        if buckets is None:
            return None
        first = int(np.searchsorted(buckets.starts, lo_ns, side="left"))
        last = int(np.searchsorted(buckets.starts, hi_ns, side="left"))
        if first >= last:
            return None
        values = buckets.values[first:last]
        times = buckets.last_times[first:last]
        column = self.column_of(series_id)
        if column == "sum":
            value = float(values.sum())
        elif column == "min":
            value = float(values.min())
        elif column == "max":
            value = float(values.max())
        else:
            value = float(values[int(np.argmax(times))])
        return int(buckets.counts[first:last].sum()), value, int(times.max())

    def read(
        self, series_id: int, lo_ns: int, hi_ns: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return bucket starts, summary column and counts with start in [lo, hi)."""
        with self._lock:
            buckets = self._series.get(series_id)
        if buckets is None:
            empty = np.empty(0, np.int64)
            return empty, np.empty(0, np.float64), empty
        first = int(np.searchsorted(buckets.starts, lo_ns, side="left"))
        last = int(np.searchsorted(buckets.starts, hi_ns, side="left"))
        return (
            buckets.starts[first:last],
            buckets.values[first:last],
            buckets.counts[first:last],
        )
