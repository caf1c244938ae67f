"""The point store: raw points in DuckDB and their rollup levels.

Raw points `(series, time, value, source)` hold one row per key: a point
sent again with the same `(definition, object, time, source)` replaces the
stored one. Each level keeps, per epoch-aligned bucket, the mergeable summary
`count, sum, min, max, first, last` with the times of `first` and `last`, so
every aggregate is exact at every level.

Every write rolls up its own points before it is acknowledged, so a point is
visible at every level as soon as its write returns:

- a bucket still covered by raw retention (start >= now - rawRetention) that
  gains only new points merges them into its summary, which is exact;
- such a bucket in which a point replaced a stored value is recomputed from
  raw and replaced whole;
- a sealed bucket (start < now - rawRetention) can no longer be recomputed,
  so points merge into it, and a replaced value adjusts `sum` by the
  difference. Raw no longer contains what a sealed bucket summarises, so a
  point re-sent after raw dropped it is counted again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from loguru import logger

from mmab_metrics.rollup import Level, ceil_to, exact_segments, floor_to
from storage.database import Database
from storage.level_cache import LevelCache

_RETURNING = " RETURNING series_id, bucket_ns, count, sum, min, max, last, last_ns"
SUMMARY_COLUMNS = ("count", "sum", "min", "max", "first", "last", "first_ns", "last_ns")
_LEVEL_SCHEMA = {
    "series_id": pl.Int32,
    "bucket_ns": pl.Int64,
    "count": pl.Int64,
    "sum": pl.Float64,
    "min": pl.Float64,
    "max": pl.Float64,
    "first": pl.Float64,
    "last": pl.Float64,
    "first_ns": pl.Int64,
    "last_ns": pl.Int64,
}
POINT_SCHEMA = {
    "series_id": pl.Int32,
    "time_ns": pl.Int64,
    "value": pl.Float64,
    "source": pl.String,
}


def summarise(points: pl.DataFrame, interval_ns: int) -> pl.DataFrame:
    """Aggregate points into the buckets of `interval_ns`, one summary per bucket."""
    return (
        points.lazy()
        .with_columns(bucket_ns=pl.col("time_ns") - pl.col("time_ns") % interval_ns)
        .sort("time_ns")
        .group_by("series_id", "bucket_ns")
        .agg(
            count=pl.len().cast(pl.Int64),
            sum=pl.col("value").sum(),
            min=pl.col("value").min(),
            max=pl.col("value").max(),
            first=pl.col("value").first(),
            last=pl.col("value").last(),
            first_ns=pl.col("time_ns").first(),
            last_ns=pl.col("time_ns").last(),
        )
        .collect()
    )


def merge_summaries(frame: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """Merge the summaries of `frame` that share `keys` into one row each.

    When two summaries tie on the time of `first` or `last`, the one with the
    higher `rank` column (a newer write) wins; rows without times (count and
    sum corrections) never provide `first` or `last`.
    """
    if "rank" not in frame.columns:
        frame = frame.with_columns(rank=pl.lit(0, pl.Int8))
    return (
        frame.lazy()
        .group_by(*keys)
        .agg(
            count=pl.col("count").sum(),
            sum=pl.col("sum").sum(),
            min=pl.col("min").min(),
            max=pl.col("max").max(),
            first=pl.col("first")
            .sort_by(["first_ns", "rank"], descending=[False, True], nulls_last=True)
            .first(),
            first_ns=pl.col("first_ns").min(),
            last=pl.col("last")
            .sort_by(["last_ns", "rank"], descending=[False, False], nulls_last=False)
            .last(),
            last_ns=pl.col("last_ns").max(),
        )
        .collect()
    )


def _last_of_each_key(frame: pl.DataFrame) -> pl.DataFrame:
    """Sort points by series and time, keeping the last row of each key.

    The sort is stable, so of rows with the same `(series, time, source)` the
    one sent last stays; rows of one key are adjacent once sorted by source too.
    """
    frame = frame.sort("series_id", "time_ns", "source", maintain_order=True)
    repeated = (
        (pl.col("series_id") == pl.col("series_id").shift(-1))
        & (pl.col("time_ns") == pl.col("time_ns").shift(-1))
        & (pl.col("source") == pl.col("source").shift(-1))
    ).fill_null(False)
    if not frame.select(repeated.any()).item():
        return frame
    return frame.filter(~repeated)


class PointStore:
    """Raw points and their levels, behind the database lock."""

    def __init__(
        self,
        db: Database,
        levels: Sequence[Level],
        raw_retention_ns: Callable[[], int],
        aggregate_of: Callable[[str], str] = lambda short: "sum",
    ) -> None:
        self.db = db
        self.aggregate_of = aggregate_of
        self._short_of: dict[int, str] = {}
        self._pending: list[tuple[Level, pl.DataFrame, pl.DataFrame | None]] = []
        self.levels = tuple(levels)
        # The finest level is served from raw: raw retention is never shorter
        # than its retention, so raw contains every point of its retained
        # buckets, and storing it would copy raw.
        self.finest = self.levels[0]
        self.stored_levels = self.levels[1:]
        self.raw_retention_ns = raw_retention_ns
        self._series: dict[tuple[str, str], int] = {}
        self._series_lock = threading.Lock()
        self._keys: dict[str, int] = {}
        # Per series, the latest time of any point accepted: a write wholly
        # after it cannot replace a stored point or meet an existing bucket.
        self._latest: dict[int, int] = {}
        with db.cursor() as con:
            existing = {
                row[0]
                for row in con.execute(
                    "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'"
                ).fetchall()
            }
            # A level added to `metrics.levels` since the last start is built
            # from raw once the store is open.
            self.new_levels = [
                level for level in self.stored_levels if level.table not in existing
            ]
            for level in self.stored_levels:
                con.execute(
                    f"CREATE TABLE IF NOT EXISTS {level.table} ("
                    "series_id INTEGER, bucket_ns BIGINT, count BIGINT, sum DOUBLE, "
                    "min DOUBLE, max DOUBLE, first DOUBLE, last DOUBLE, "
                    "first_ns BIGINT, last_ns BIGINT)"
                )
            for series_id, short, obj in con.execute(
                "SELECT series_id, short, object FROM series"
            ).fetchall():
                self._register_series(short, obj, series_id)
            sources = ["SELECT series_id, max(time_ns) FROM raw GROUP BY series_id"]
            sources += [
                f"SELECT series_id, max(last_ns) FROM {level.table} GROUP BY series_id"
                for level in self.stored_levels
            ]
            for source in sources:
                for series_id, latest in con.execute(source).fetchall():
                    if latest > self._latest.get(series_id, latest - 1):
                        self._latest[series_id] = latest
        self.caches = {
            level: LevelCache(level, lambda sid: self.aggregate_of(self._short_of[sid]))
            for level in self.stored_levels
        }
        self.reload_caches()

    def reload_caches(self) -> None:
        """Load every stored level into its in-memory cache."""
        with self.db.cursor() as con:
            for level, cache in self.caches.items():
                table = con.sql(
                    "SELECT series_id, bucket_ns, count, sum, min, max, last, last_ns "
                    f"FROM {level.table}"
                ).to_arrow_table()
                cache.replace_all(pl.from_arrow(table))

    # ----------------------------------------------------------- series --

    def series_id(self, short: str, object_id: str) -> int | None:
        return self._series.get((short, object_id))

    def all_series(self) -> list[tuple[str, str, int]]:
        return [(short, obj, sid) for (short, obj), sid in self._series.items()]

    def has_data(self, short: str) -> bool:
        return any(key[0] == short for key in self._series)

    def _assign_series(self, pairs: pl.DataFrame) -> pl.DataFrame:
        """Map `(short, object)` pairs to series ids, creating the new ones."""
        keys = pairs.select(
            pl.concat_str(["short", "object"], separator="\x1f")
        ).to_series()
        with self._series_lock:
            ids = keys.replace_strict(
                self._keys, return_dtype=pl.Int32, default=None
            ).rename("series_id")
            missing = keys.filter(ids.is_null()).unique().to_list()
            if missing:
                next_id = max(self._series.values(), default=0) + 1
                rows = []
                for offset, key in enumerate(missing):
                    short, obj = key.split("\x1f", 1)
                    self._register_series(short, obj, next_id + offset)
                    rows.append((next_id + offset, short, obj))
                with self.db.cursor() as con:
                    con.executemany("INSERT INTO series VALUES (?, ?, ?)", rows)
                ids = keys.replace_strict(
                    self._keys, return_dtype=pl.Int32, default=None
                ).rename("series_id")
        return pairs.with_columns(ids)

    def _register_series(self, short: str, object_id: str, series_id: int) -> None:
        self._short_of[series_id] = short
        self._series[(short, object_id)] = series_id
        self._keys[f"{short}\x1f{object_id}"] = series_id

    # ----------------------------------------------------------- writes --

    def write(self, points: pl.DataFrame, now_ns: int) -> int:
        """Store points `(short, object, time_ns, value, source)` and roll them up.

        Of two points with the same key in one call, the later row wins.
        Returns the number of points accepted.
        """
        if points.is_empty():
            return 0
        frame = (
            self._assign_series(points).select(list(POINT_SCHEMA)).cast(POINT_SCHEMA)
        )
        frame = _last_of_each_key(frame)
        with self.db.lock:
            self._write_locked(frame, now_ns, removed=None)
        return points.height

    def replace_source(
        self,
        points: pl.DataFrame,
        previous: pl.DataFrame,
        now_ns: int,
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        """Replace the points of one source (a job) with `points`.

        `previous` contains the points this source had before, so that those
        no longer derived leave raw and their buckets are recomputed.
        `before_commit` runs inside the same transaction.
        """
        frame = (
            self._assign_series(points).select(list(POINT_SCHEMA)).cast(POINT_SCHEMA)
            if not points.is_empty()
            else pl.DataFrame(schema=POINT_SCHEMA)
        )
        old = (
            self._assign_series(previous).select(list(POINT_SCHEMA)).cast(POINT_SCHEMA)
            if not previous.is_empty()
            else pl.DataFrame(schema=POINT_SCHEMA)
        )
        removed = old.join(frame, on=["series_id", "time_ns", "source"], how="anti")
        # Points derived again with the same value change nothing.
        frame = frame.join(old, on=list(POINT_SCHEMA), how="anti")
        with self.db.lock:
            self._write_locked(
                frame, now_ns, removed=removed, before_commit=before_commit
            )

    def _write_locked(
        self,
        frame: pl.DataFrame,
        now_ns: int,
        removed: pl.DataFrame | None,
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        raw_cutoff = now_ns - self.raw_retention_ns()
        bounds = frame.group_by("series_id").agg(
            lo=pl.col("time_ns").min(), hi=pl.col("time_ns").max()
        )
        latest = self._latest
        # Series whose new points do not all come after what is stored.
        overlapping = {
            sid: latest[sid]
            for sid, lo in zip(
                bounds["series_id"].to_list(), bounds["lo"].to_list(), strict=True
            )
            if sid in latest and lo <= latest[sid]
        }
        con = self.db._con
        self._pending = []
        con.execute("BEGIN")
        try:
            # Rows go in clustered by series and time (`write` sorts them), so
            # that a series' points share row groups and prune by zone maps.
            in_raw = frame.filter(pl.col("time_ns") >= raw_cutoff)
            if not in_raw.is_empty():
                in_raw = in_raw.sort("series_id", "time_ns")
            replaced = pl.DataFrame(schema=POINT_SCHEMA)
            if overlapping:
                candidates = in_raw.filter(pl.col("series_id").is_in(list(overlapping)))
                replaced = self._replaced_values(con, candidates)
            if removed is not None and not removed.is_empty():
                gone = removed.filter(pl.col("time_ns") >= raw_cutoff)
                if not gone.is_empty():
                    replaced = pl.concat(
                        [replaced, gone.select(replaced.columns).cast(replaced.schema)]
                    )
            if not replaced.is_empty():
                con.register("_replaced", replaced.to_arrow())
                con.execute(
                    "DELETE FROM raw USING _replaced "
                    "WHERE raw.series_id = _replaced.series_id "
                    "AND raw.time_ns = _replaced.time_ns "
                    "AND raw.source = _replaced.source"
                )
                con.unregister("_replaced")
            if not in_raw.is_empty():
                con.register("_arrivals", in_raw.to_arrow())
                con.execute("INSERT INTO raw SELECT * FROM _arrivals")
                con.unregister("_arrivals")
            for level in self.stored_levels:
                if replaced.is_empty():
                    # Nothing to merge, as when a job's new events derive no point.
                    if not frame.is_empty():
                        self._merge_level(con, level, frame, bounds, now_ns)
                else:
                    self._roll_up(con, level, frame, replaced, now_ns)
            if before_commit is not None:
                before_commit()
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            self._pending = []
            raise
        for level, rows, removed_keys in self._pending:
            self.caches[level].update(rows, removed_keys)
        self._pending = []
        for sid, hi in zip(
            bounds["series_id"].to_list(), bounds["hi"].to_list(), strict=True
        ):
            if hi > latest.get(sid, hi - 1):
                latest[sid] = hi

    def _merge_level(
        self,
        con: Any,
        level: Level,
        arrivals: pl.DataFrame,
        bounds: pl.DataFrame,
        now_ns: int,
    ) -> None:
        """Merge new points into a level's buckets, all in SQL.

        Only for writes that replace no stored point: merging the summaries is
        then exact, and no bucket needs raw.
        """
        interval = level.interval_ns
        keep_from = now_ns - level.retention_ns
        latest = self._latest
        # A bucket can already exist only for a series whose stored points
        # reach the bucket of its earliest new point.
        meets_existing = any(
            sid in latest and lo - lo % interval <= latest[sid]
            for sid, lo in zip(
                bounds["series_id"].to_list(), bounds["lo"].to_list(), strict=True
            )
        )
        con.register("_arrivals", arrivals.to_arrow())
        summary = (
            f"SELECT series_id, time_ns - time_ns % {interval} AS bucket_ns, count(*) AS count, "
            "sum(value) AS sum, min(value) AS min, max(value) AS max, "
            "arg_min(value, time_ns) AS first, arg_max(value, time_ns) AS last, "
            "min(time_ns) AS first_ns, max(time_ns) AS last_ns FROM _arrivals "
            f"WHERE time_ns - time_ns % {interval} >= {keep_from} GROUP BY series_id, bucket_ns"
        )
        try:
            if not meets_existing:
                changed = con.execute(
                    f"INSERT INTO {level.table} {summary} ORDER BY series_id, bucket_ns"
                    + _RETURNING
                ).fetchnumpy()
                self._pending.append((level, pl.DataFrame(changed), None))
                return
            con.execute(f"CREATE OR REPLACE TEMP TABLE _new AS {summary}")
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE _old AS SELECT l.* FROM {level.table} l "
                "SEMI JOIN _new n ON l.series_id = n.series_id "
                "AND l.bucket_ns = n.bucket_ns"
            )
            con.execute(
                f"DELETE FROM {level.table} USING _old o WHERE "
                f"{level.table}.series_id = o.series_id "
                f"AND {level.table}.bucket_ns = o.bucket_ns"
            )
            # On a tie of times, the newer write (rank 1) gives first and last.
            changed = con.execute(
                f"INSERT INTO {level.table} SELECT series_id, bucket_ns, "
                "sum(count)::BIGINT, sum(sum), min(min), max(max), "
                "arg_min(first, first_ns::HUGEINT * 2 - rank), "
                "arg_max(last, last_ns::HUGEINT * 2 + rank), "
                "min(first_ns), max(last_ns) FROM ("
                "SELECT *, 1 AS rank FROM _new UNION ALL SELECT *, 0 AS rank FROM _old"
                ") GROUP BY series_id, bucket_ns ORDER BY series_id, bucket_ns"
                + _RETURNING
            ).fetchnumpy()
            self._pending.append((level, pl.DataFrame(changed), None))
            con.execute("DROP TABLE _new")
            con.execute("DROP TABLE _old")
        finally:
            con.unregister("_arrivals")

    @staticmethod
    def _replaced_values(con, points: pl.DataFrame) -> pl.DataFrame:
        """Return the stored raw rows that these points replace."""
        empty = pl.DataFrame(schema=POINT_SCHEMA)
        if points.is_empty():
            return empty
        bounds = points.group_by("series_id").agg(
            lo=pl.col("time_ns").min(), hi=pl.col("time_ns").max()
        )
        con.register("_bounds", bounds.to_arrow())
        con.register(
            "_keys", points.select("series_id", "time_ns", "source").to_arrow()
        )
        try:
            table = con.sql(
                "SELECT raw.series_id, raw.time_ns, raw.value, raw.source FROM raw "
                "JOIN _bounds b ON raw.series_id = b.series_id "
                "AND raw.time_ns BETWEEN b.lo AND b.hi "
                "SEMI JOIN _keys k ON raw.series_id = k.series_id "
                "AND raw.time_ns = k.time_ns AND raw.source = k.source"
            ).to_arrow_table()
        finally:
            con.unregister("_bounds")
            con.unregister("_keys")
        if table.num_rows == 0:
            return empty
        return pl.from_arrow(table).cast(POINT_SCHEMA)

    def _roll_up(
        self,
        con,
        level: Level,
        arrivals: pl.DataFrame,
        replaced: pl.DataFrame,
        now_ns: int,
    ) -> None:
        interval = level.interval_ns
        keep_from = now_ns - level.retention_ns
        sealed_before = now_ns - self.raw_retention_ns()
        arrivals = arrivals.filter(
            pl.col("time_ns") - pl.col("time_ns") % interval >= keep_from
        )
        replaced = replaced.filter(
            pl.col("time_ns") - pl.col("time_ns") % interval >= keep_from
        )
        if arrivals.is_empty() and replaced.is_empty():
            return
        new = summarise(arrivals, interval) if not arrivals.is_empty() else None
        touched_parts = []
        if new is not None:
            touched_parts.append(new.select("series_id", "bucket_ns"))
        if not replaced.is_empty():
            touched_parts.append(
                replaced.select(
                    "series_id",
                    bucket_ns=pl.col("time_ns") - pl.col("time_ns") % interval,
                )
            )
        touched = pl.concat(touched_parts).unique()
        dirty = (
            replaced.select(
                "series_id", bucket_ns=pl.col("time_ns") - pl.col("time_ns") % interval
            )
            .unique()
            .filter(pl.col("bucket_ns") >= sealed_before)
        )

        con.register("_touched", touched.to_arrow())
        existing_table = con.sql(
            f"SELECT l.* FROM {level.table} l SEMI JOIN _touched t "
            "ON l.series_id = t.series_id AND l.bucket_ns = t.bucket_ns"
        ).to_arrow_table()
        existing = pl.from_arrow(existing_table).cast(_LEVEL_SCHEMA)

        parts = []
        if not dirty.is_empty():
            # Buckets where a stored value changed: recompute them from raw.
            con.register("_dirty", dirty.to_arrow())
            raw_table = con.sql(
                f"SELECT r.series_id, r.time_ns, r.value FROM raw r SEMI JOIN _dirty d "
                f"ON r.series_id = d.series_id AND r.time_ns >= d.bucket_ns "
                f"AND r.time_ns < d.bucket_ns + {interval}"
            ).to_arrow_table()
            con.unregister("_dirty")
            raw_points = pl.from_arrow(raw_table)
            if raw_points.height:
                parts.append(summarise(raw_points, interval).cast(_LEVEL_SCHEMA))
            clean_keys = ["series_id", "bucket_ns"]
            existing = existing.join(dirty, on=clean_keys, how="anti")
            if new is not None:
                new = new.join(dirty, on=clean_keys, how="anti")
        sealed_changes = replaced.filter(
            pl.col("time_ns") - pl.col("time_ns") % interval < sealed_before
        )
        if not sealed_changes.is_empty():
            # A replaced or removed value in a sealed bucket: take the old one
            # back out of count and sum. A replacement's new value is merged in
            # with the arrivals, and min and max cannot shrink back.
            correction = sealed_changes.select(
                "series_id",
                bucket_ns=pl.col("time_ns") - pl.col("time_ns") % interval,
                count=pl.lit(-1, pl.Int64),
                sum=-pl.col("value"),
                min=pl.lit(None, pl.Float64),
                max=pl.lit(None, pl.Float64),
                first=pl.lit(None, pl.Float64),
                last=pl.lit(None, pl.Float64),
                first_ns=pl.lit(None, pl.Int64),
                last_ns=pl.lit(None, pl.Int64),
            )
            parts.append(
                correction.cast(_LEVEL_SCHEMA).with_columns(rank=pl.lit(1, pl.Int8))
            )
        if new is not None:
            parts.append(new.cast(_LEVEL_SCHEMA).with_columns(rank=pl.lit(1, pl.Int8)))
        parts.append(existing.with_columns(rank=pl.lit(0, pl.Int8)))
        parts = [
            part
            if "rank" in part.columns
            else part.with_columns(rank=pl.lit(1, pl.Int8))
            for part in parts
        ]
        merged = merge_summaries(pl.concat(parts), ["series_id", "bucket_ns"])
        merged = merged.filter(pl.col("count") > 0).select(list(_LEVEL_SCHEMA))

        con.execute(
            f"DELETE FROM {level.table} USING _touched t WHERE "
            f"{level.table}.series_id = t.series_id AND {level.table}.bucket_ns = t.bucket_ns"
        )
        con.unregister("_touched")
        if merged.height:
            con.register("_merged", merged.to_arrow())
            con.execute(f"INSERT INTO {level.table} SELECT * FROM _merged")
            con.unregister("_merged")
        removed = touched.join(merged, on=["series_id", "bucket_ns"], how="anti")
        self._pending.append((level, merged, removed))

    def rebuild(self, now_ns: int, batch_series: int = 50) -> dict[str, float]:
        """Recompute every level from raw, a batch of series at a time.

        Buckets that raw still covers are replaced whole; sealed buckets keep
        their summaries, since raw no longer holds all of their points. The
        lock is released between batches, so writes and queries wait for one
        batch at most. Re-running it changes nothing.
        """
        started = time.perf_counter()
        ids = sorted(self._series.values())
        sealed_before = now_ns - self.raw_retention_ns()
        for offset in range(0, len(ids), batch_series):
            low, high = ids[offset], ids[min(offset + batch_series, len(ids)) - 1]
            with self.db.transaction() as con:
                for level in self.stored_levels:
                    interval = level.interval_ns
                    lowest = max(sealed_before, now_ns - level.retention_ns)
                    con.execute(
                        f"DELETE FROM {level.table} WHERE series_id BETWEEN $1 AND $2 "
                        "AND bucket_ns >= $3",
                        [low, high, sealed_before],
                    )
                    con.execute(
                        f"INSERT INTO {level.table} SELECT series_id, "
                        f"time_ns - time_ns % {interval} AS bucket_ns, count(*), "
                        "sum(value), min(value), max(value), arg_min(value, time_ns), "
                        "arg_max(value, time_ns), min(time_ns), max(time_ns) FROM raw "
                        "WHERE series_id BETWEEN $1 AND $2 "
                        f"AND time_ns - time_ns % {interval} >= $3 "
                        "GROUP BY series_id, bucket_ns ORDER BY series_id, bucket_ns",
                        [low, high, lowest],
                    )
        self.reload_caches()
        seconds = time.perf_counter() - started
        logger.bind(series=len(ids), seconds=round(seconds, 3)).info("levels rebuilt")
        return {"seconds": seconds, "series": len(ids)}

    # ------------------------------------------------------------ reads --

    def _raw_buckets(
        self, interval: int, series_id: int, lo_ns: int, hi_ns: int, aggregate: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Aggregate one series' raw points into buckets of the finest level."""
        with self.db.cursor() as con:
            found = con.execute(
                "SELECT time_ns, value FROM raw "
                "WHERE series_id = ? AND time_ns >= ? AND time_ns < ?",
                [series_id, lo_ns, hi_ns],
            ).fetchnumpy()
        times = np.asarray(found["time_ns"], dtype=np.int64)
        values = np.asarray(found["value"], dtype=np.float64)
        if times.size > 1 and (np.diff(times) < 0).any():
            order = np.argsort(times, kind="stable")
            times, values = times[order], values[order]
        starts = times - times % interval
        if starts.size < 2 or (starts[1:] != starts[:-1]).all():
            return starts, values, np.ones(starts.size, np.int64)
        edges = np.flatnonzero(np.diff(starts)) + 1
        heads = np.concatenate([[0], edges])
        counts = np.diff(np.concatenate([heads, [starts.size]]))
        if aggregate in ("sum", "avg"):
            values = np.add.reduceat(values, heads)
        elif aggregate == "min":
            values = np.minimum.reduceat(values, heads)
        elif aggregate == "max":
            values = np.maximum.reduceat(values, heads)
        else:
            values = values[np.concatenate([edges - 1, [values.size - 1]])]
        return starts[heads], values, counts

    def values(
        self,
        level: Level,
        series_id: int,
        lo_ns: int,
        hi_ns: int,
        step_ns: int,
        aggregate: str,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return bucket starts and values of one series, in buckets of `step_ns`.

        Reads level buckets with start in [lo, hi), from raw for the finest
        level and from the in-memory cache for the others, and merges them
        into epoch-aligned buckets of `step_ns`, a multiple of the level's.
        """
        if level == self.finest:
            starts, values, counts = self._raw_buckets(
                level.interval_ns, series_id, lo_ns, hi_ns, aggregate
            )
        else:
            starts, values, counts = self.caches[level].read(series_id, lo_ns, hi_ns)
        if step_ns != level.interval_ns and starts.size:
            groups = starts - starts % step_ns
            edges = np.flatnonzero(np.diff(groups)) + 1
            heads = np.concatenate([[0], edges])
            if aggregate in ("sum", "avg"):
                values = np.add.reduceat(values, heads)
            elif aggregate == "min":
                values = np.minimum.reduceat(values, heads)
            elif aggregate == "max":
                values = np.maximum.reduceat(values, heads)
            else:
                values = values[np.concatenate([edges - 1, [values.size - 1]])]
            counts = np.add.reduceat(counts, heads)
            starts = groups[heads]
        if aggregate == "avg":
            values = values / counts
        return starts, values

    def segment_summaries(
        self,
        series_ids: Iterable[int],
        segments: Sequence[tuple[Level | None, int, int]],
    ) -> pl.DataFrame:
        """Return per series the merged summary of points in the given segments.

        A segment is a level and an aligned range of bucket starts, or None and a
        range of raw point times. Stored levels are read from their caches, which
        hold the aggregate's own column only, so the other columns stay null.
        """
        ids = list(series_ids)
        empty = pl.DataFrame(
            schema={
                "series_id": pl.Int32,
                **{c: _LEVEL_SCHEMA[c] for c in SUMMARY_COLUMNS},
            }
        )
        if not ids or not segments:
            return empty
        parts = []
        cached: dict[str, list[Any]] = {name: [] for name in empty.columns}
        for level, lo, hi in segments:
            if level is None or level == self.finest:
                continue
            cache = self.caches[level]
            for series_id in ids:
                found = cache.summarise(series_id, lo, hi)
                if found is None:
                    continue
                count, value, last_ns = found
                column = cache.column_of(series_id)
                for name in SUMMARY_COLUMNS:
                    cached[name].append(value if name == column else None)
                cached["series_id"].append(series_id)
                cached["count"][-1] = count
                cached["last_ns"][-1] = last_ns
        if cached["series_id"]:
            parts.append(pl.DataFrame(cached, schema=empty.schema))

        # Buckets of the finest level tile the same times in raw.
        raw_segments = [
            (lo, hi)
            for level, lo, hi in segments
            if level is None or level == self.finest
        ]
        if raw_segments:
            sql = (
                "SELECT series_id, count(*)::BIGINT AS count, sum(value) AS sum, "
                "min(value) AS min, max(value) AS max, "
                "arg_min(value, time_ns) AS first, arg_max(value, time_ns) AS last, "
                "min(time_ns) AS first_ns, max(time_ns) AS last_ns "
                "FROM raw SEMI JOIN _ids USING (series_id) "
                "WHERE time_ns >= $1 AND time_ns < $2 GROUP BY series_id"
            )
            with self.db.cursor() as con:
                con.register("_ids", pa.table({"series_id": pa.array(ids, pa.int32())}))
                try:
                    for lo, hi in raw_segments:
                        table = con.sql(sql, params=[lo, hi]).to_arrow_table()
                        if table.num_rows:
                            parts.append(pl.from_arrow(table).cast(empty.schema))
                finally:
                    con.unregister("_ids")
        if not parts:
            return empty
        frame = pl.concat(parts)
        if frame["series_id"].is_unique().all():
            return frame
        return merge_summaries(frame, ["series_id"])

    def summary_segments(
        self, start_ns: int, end_ns: int, now_ns: int
    ) -> list[tuple[Level | None, int, int]]:
        """Plan the pieces that summarise `[start, end)`.

        Within raw retention the range is exact per point. Before it, the
        finest level that covers `start` counts the buckets overlapping the
        range whole, up to the first of its buckets that raw still holds.
        """
        raw_from = now_ns - self.raw_retention_ns()
        segments: list[tuple[Level | None, int, int]] = []
        exact_from = start_ns
        if start_ns < raw_from:
            coarse = next(
                (level for level in self.levels if level.covers(start_ns, now_ns)),
                self.levels[-1],
            )
            boundary = min(
                ceil_to(raw_from, coarse.interval_ns),
                ceil_to(end_ns, coarse.interval_ns),
            )
            lo = max(
                floor_to(start_ns, coarse.interval_ns), coarse.retained_from(now_ns)
            )
            if lo < boundary:
                segments.append((coarse, lo, boundary))
            exact_from = boundary
        if exact_from < end_ns:
            segments.extend(exact_segments(self.levels, exact_from, end_ns, now_ns))
        return segments

    # -------------------------------------------------------- retention --

    def apply_retention(self, now_ns: int) -> dict[str, int]:
        """Delete raw points and buckets that retention no longer keeps."""
        deleted = {}
        with self.db.cursor() as con:
            cutoff = now_ns - self.raw_retention_ns()
            deleted["raw"] = con.execute(
                "DELETE FROM raw WHERE time_ns < ?", [cutoff]
            ).fetchone()[0]
            for level in self.stored_levels:
                deleted[level.table] = con.execute(
                    f"DELETE FROM {level.table} WHERE bucket_ns < ?",
                    [now_ns - level.retention_ns],
                ).fetchone()[0]
                self.caches[level].drop_before(now_ns - level.retention_ns)
        if any(deleted.values()):
            logger.bind(**deleted).info("metric retention applied")
        return deleted
