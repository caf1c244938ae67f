"""In-process measurements: DuckDB doing the store's work directly, and `PointStore`.

The DuckDB part is the ceiling of what this design can reach without HTTP,
Polars or the store's bookkeeping. It runs one `INSERT` from Arrow, builds
each level with one `GROUP BY`, and answers queries a to d with single SQL
statements, on raw points and on the levels. The `PointStore` part times the
store's own `write` (no HTTP, no request validation) on the same batches
that the server receives."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
from clients import summarize_latencies
from servers import file_bytes, fresh_dir, log
from workload import (
    DEFINITIONS,
    NS,
    SUM_DEFINITION,
    Workload,
    check_answer,
)

# At one point a minute the 1m level would copy raw, so like the store the
# ceiling keeps 30m and 24h tables and reads 1m buckets from raw.
LEVELS_S = (1800, 86_400)
VALIDATED_QUERIES = 3
RAW_SCHEMA = "CREATE TABLE raw (series_id INTEGER, time_ns BIGINT, value DOUBLE)"


def raw_table(workload: Workload, order: str) -> pa.Table:
    """Return all points as `(series_id, time_ns, value)` in `order`."""
    series = np.arange(workload.series_count, dtype=np.int32)
    points = np.arange(workload.points_per_series)
    if order == "series":
        series_column = np.repeat(series, len(points))
        point_column = np.tile(points, len(series))
    else:
        series_column = np.tile(series, len(points))
        point_column = np.repeat(points, len(series))
    return pa.table(
        {
            "series_id": series_column,
            "time_ns": workload.times_s[point_column] * NS,
            "value": workload.values[series_column, point_column],
        }
    )


def level_sql(interval_s: int, source: str = "raw") -> str:
    """Return the SELECT of one level's summaries of `source`, as the store keeps them."""
    interval_ns = interval_s * NS
    return (
        f"SELECT series_id, time_ns - time_ns % {interval_ns} AS bucket_ns, "
        "count(*) AS count, sum(value) AS sum, min(value) AS min, max(value) AS max, "
        "arg_min(value, time_ns) AS first, arg_max(value, time_ns) AS last, "
        f"min(time_ns) AS first_ns, max(time_ns) AS last_ns FROM {source} "
        "GROUP BY series_id, bucket_ns ORDER BY series_id, bucket_ns"
    )


def _value(aggregate: str, table_is_level: bool) -> str:
    if table_is_level:
        return "sum / count" if aggregate == "avg" else "sum"
    return "avg(value)" if aggregate == "avg" else "sum(value)"


def tile(start_ns: int, end_ns: int) -> list[tuple[str, str, int, int]]:
    """Split `[start, end)` into whole 24h buckets, whole 30m buckets, and raw edges.

    Returns `(table, column, lo, hi)` pieces that together cover each point
    of the range exactly once.
    """
    pieces = []

    def cover(lo: int, hi: int, level: int) -> None:
        if lo >= hi:
            return
        if level < 0:
            pieces.append(("raw", "time_ns", lo, hi))
            return
        interval = LEVELS_S[level] * NS
        inner_lo = -(-lo // interval) * interval
        inner_hi = hi // interval * interval
        if inner_lo >= inner_hi:
            cover(lo, hi, level - 1)
            return
        pieces.append((f"level_{LEVELS_S[level]}s", "bucket_ns", inner_lo, inner_hi))
        cover(lo, inner_lo, level - 1)
        cover(inner_hi, hi, level - 1)

    cover(start_ns, end_ns, len(LEVELS_S) - 1)
    return pieces


def query_sql(kind: str, query: dict, on_levels: bool) -> tuple[str, list]:
    """Return the SQL and parameters of one query, on raw or on the level tables."""
    if kind == "d":
        lo = SUM_DEFINITION * 100
        if not on_levels:
            return (
                "SELECT series_id, sum(value) AS v FROM raw "
                "WHERE series_id BETWEEN $1 AND $2 AND time_ns >= $3 AND time_ns < $4 "
                "GROUP BY series_id",
                [lo, lo + 99, query["start"] * NS, query["end"] * NS],
            )
        parts = []
        for table, column, start_ns, end_ns in tile(
            query["start"] * NS, query["end"] * NS
        ):
            value = "value" if table == "raw" else "sum"
            parts.append(
                f"SELECT series_id, {value} AS v FROM {table} WHERE series_id BETWEEN "
                f"{lo} AND {lo + 99} AND {column} >= {start_ns} AND {column} < {end_ns}"
            )
        union = " UNION ALL ".join(parts)
        return f"SELECT series_id, sum(v) AS v FROM ({union}) GROUP BY series_id", []
    bucket_ns = query["bucket"] * NS
    aggregate = query["definition"].aggregate
    start_ns = query["start"] * NS // bucket_ns * bucket_ns
    params = [query["series"], start_ns, query["end"] * NS]
    if on_levels and kind != "a":
        table = f"level_{query['bucket']}s"
        return (
            f"SELECT bucket_ns, {_value(aggregate, True)} AS v FROM {table} "
            "WHERE series_id = $1 AND bucket_ns >= $2 AND bucket_ns < $3 ORDER BY bucket_ns",
            params,
        )
    if kind == "a":
        return (
            "SELECT time_ns, value AS v FROM raw "
            "WHERE series_id = $1 AND time_ns >= $2 AND time_ns < $3 ORDER BY time_ns",
            params,
        )
    return (
        f"SELECT time_ns - time_ns % {bucket_ns} AS b, {_value(aggregate, False)} AS v "
        "FROM raw WHERE series_id = $1 AND time_ns >= $2 AND time_ns < $3 "
        "GROUP BY b ORDER BY b",
        params,
    )


def run_sql_queries(
    con: duckdb.DuckDBPyConnection,
    workload: Workload,
    kinds: str,
    on_levels: bool,
    count: int,
    max_seconds: float,
) -> dict:
    """Validate, then time, each query kind; a result is materialised with `fetchnumpy`."""
    results = {}
    for kind in kinds:
        plan = workload.query_plan(kind, count + VALIDATED_QUERIES)
        statements = [query_sql(kind, query, on_levels) for query in plan]
        checks = []
        for query, (sql, params) in zip(
            plan[:VALIDATED_QUERIES], statements[:VALIDATED_QUERIES], strict=True
        ):
            values = con.execute(sql, params).fetchnumpy()["v"]
            got = (len(values), float(np.sum(values)))
            checks.append(check_answer(workload.expected(kind, query), got))
        latencies = []
        deadline = time.perf_counter() + max_seconds
        for sql, params in statements[VALIDATED_QUERIES:]:
            started = time.perf_counter()
            con.execute(sql, params).fetchnumpy()
            latencies.append(time.perf_counter() - started)
            if time.perf_counter() > deadline:
                break
        summary = summarize_latencies(latencies)
        summary["valid"] = all(check["ok"] for check in checks)
        summary["checks"] = checks
        results[kind] = summary
        where = "levels" if on_levels else "raw"
        marker = "" if summary["valid"] else f"  *** WRONG ANSWER: {checks}"
        log(
            f"    DuckDB {where} query {kind}: median {summary['median_ms']:.3f} ms "
            f"valid={summary['valid']}{marker}"
        )
    return results


def build_levels(con: duckdb.DuckDBPyConnection) -> float:
    """Build the level tables from raw; return the seconds taken."""
    started = time.perf_counter()
    for interval_s in LEVELS_S:
        con.execute(f"CREATE TABLE level_{interval_s}s AS {level_sql(interval_s)}")
    return time.perf_counter() - started


def write_small_batch(con: duckdb.DuckDBPyConnection, batch: pa.Table) -> None:
    """Insert a batch into raw and merge its summaries into each level, in one transaction.

    Existing buckets are updated in place and new ones inserted, which is
    the store's path for points that replace nothing.
    """
    con.execute("BEGIN")
    con.register("_batch", batch)
    con.execute("INSERT INTO raw SELECT * FROM _batch")
    for interval_s in LEVELS_S:
        table = f"level_{interval_s}s"
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _summary AS {level_sql(interval_s, '_batch')}"
        )
        con.execute(
            f"UPDATE {table} l SET count = l.count + s.count, sum = l.sum + s.sum, "
            "min = least(l.min, s.min), max = greatest(l.max, s.max), "
            "first = CASE WHEN s.first_ns < l.first_ns THEN s.first ELSE l.first END, "
            "first_ns = least(l.first_ns, s.first_ns), "
            "last = CASE WHEN s.last_ns > l.last_ns THEN s.last ELSE l.last END, "
            "last_ns = greatest(l.last_ns, s.last_ns) "
            "FROM _summary s WHERE l.series_id = s.series_id AND l.bucket_ns = s.bucket_ns"
        )
        con.execute(
            f"INSERT INTO {table} SELECT s.* FROM _summary s ANTI JOIN {table} l "
            "ON l.series_id = s.series_id AND l.bucket_ns = s.bucket_ns"
        )
    con.unregister("_batch")
    con.execute("COMMIT")


def small_batch_raw(workload: Workload, repetition: int) -> pa.Table:
    """Return `Workload.small_batch` as `(series_id, time_ns, value)` rows."""
    table = workload.small_batch(repetition)
    shorts = {d.short: i for i, d in enumerate(DEFINITIONS)}
    definition_index = np.array(
        [shorts[s] for s in table.column("definition").to_pylist()], dtype=np.int32
    )
    object_index = np.array(
        [int(o.rsplit("-", 1)[1]) for o in table.column("object").to_pylist()],
        dtype=np.int32,
    )
    return pa.table(
        {
            "series_id": definition_index * workload.objects + object_index,
            "time_ns": table.column("time").cast(pa.int64()),
            "value": table.column("value"),
        }
    )


def measure_duckdb(
    workload: Workload, base: Path, count: int, max_seconds: float, batches: int
) -> dict:
    """Measure DuckDB in-process for both insert orders."""
    results: dict = {"version": duckdb.__version__}
    for order in ("series", "time"):
        table = raw_table(workload, order)
        directory = fresh_dir(base / f"duckdb-{order}")
        path = directory / "raw.duckdb"
        con = duckdb.connect(str(path))
        con.execute(RAW_SCHEMA)
        con.register("_points", table)
        started = time.perf_counter()
        con.execute("INSERT INTO raw SELECT * FROM _points")
        inserted = time.perf_counter() - started
        con.execute("CHECKPOINT")
        checkpointed = time.perf_counter() - started
        con.unregister("_points")
        raw_disk = file_bytes(path)
        rollup_s = build_levels(con)
        con.execute("CHECKPOINT")
        levels_disk = file_bytes(path)
        part = {
            "insert_s": inserted,
            "insert_checkpoint_s": checkpointed,
            "insert_points_per_s": workload.point_count / checkpointed,
            "rollup_s": rollup_s,
            "raw_bytes_per_point": raw_disk["allocated"] / workload.point_count,
            "levels_bytes_per_point": levels_disk["allocated"] / workload.point_count,
        }
        log(
            f"  DuckDB {order}-major: insert+checkpoint {checkpointed:.2f} s "
            f"({part['insert_points_per_s']:,.0f} pts/s), levels {rollup_s:.3f} s, "
            f"{part['raw_bytes_per_point']:.2f} B/pt raw, "
            f"{part['levels_bytes_per_point']:.2f} B/pt with levels"
        )
        part["queries_raw"] = run_sql_queries(
            con, workload, "abcd", False, count, max_seconds
        )
        part["queries_levels"] = run_sql_queries(
            con, workload, "abcd", True, count, max_seconds
        )
        if order == "series":
            bodies = [small_batch_raw(workload, 100 + i) for i in range(batches)]
            latencies = []
            for batch in bodies:
                started = time.perf_counter()
                write_small_batch(con, batch)
                latencies.append(time.perf_counter() - started)
            part["small_batch"] = summarize_latencies(latencies)
            log(
                f"  DuckDB 10k-point batch + levels: median "
                f"{part['small_batch']['median_ms']:.2f} ms"
            )
        con.close()
        results[order] = part
    return results


# ------------------------------------------------------------ PointStore --


def point_frames(
    workload: Workload, order: str, minutes_per_request: int
) -> list[pl.DataFrame]:
    """Build the `PointStore.write` frames of the same batches the server receives."""
    frames = []
    for series, lo, hi in workload.request_batches(order, 25, minutes_per_request):
        table = workload.arrow_table(series, lo, hi, order)
        frames.append(_point_frame(table))
    return frames


def _point_frame(table: pa.Table) -> pl.DataFrame:
    return pl.from_arrow(table).select(
        short=pl.col("definition"),
        object=pl.col("object"),
        time_ns=pl.col("time").cast(pl.Int64),
        value=pl.col("value"),
        source=pl.lit("", pl.String),
    )


def measure_point_store(
    workload: Workload,
    base: Path,
    order: str,
    minutes_per_request: int,
    batches: int,
    max_writes: int | None = None,
) -> dict:
    """Time `PointStore.write` of the workload's batches, then of 10,000-point batches.

    `max_writes` keeps only the first writes, the oldest points in time-major order.
    """
    from api.services import Services
    from mmab_metrics.clock import Clock
    from mmab_metrics.metrics import Definition

    directory = fresh_dir(base / f"pointstore-{order}")
    frames = point_frames(workload, order, minutes_per_request)
    if max_writes is not None:
        frames = frames[:max_writes]
    points = sum(frame.height for frame in frames)
    now_ns = workload.end_s * NS
    services = Services.open(directory, Clock(now_ns, frozen=True), stderr_log=False)
    try:
        for definition in DEFINITIONS:
            services.definitions.register(
                Definition(
                    definition.short, definition.description, (), definition.aggregate
                ),
                False,
            )
        started = time.perf_counter()
        for frame in frames:
            services.points.write(frame, now_ns)
        seconds = time.perf_counter() - started
        result = {
            "seconds": seconds,
            "points": points,
            "points_per_s": points / seconds,
            "writes": len(frames),
        }
        log(
            f"  PointStore.write {order}-major: {seconds:.2f} s "
            f"({result['points_per_s']:,.0f} pts/s, {len(frames)} writes of {points:,} points)"
        )
        if batches:
            small = [
                _point_frame(workload.small_batch(200 + i)) for i in range(batches)
            ]
            latencies = []
            for frame in small:
                started = time.perf_counter()
                services.points.write(frame, now_ns)
                latencies.append(time.perf_counter() - started)
            result["small_batch"] = summarize_latencies(latencies)
            log(
                f"  PointStore.write 10k-point batch: median "
                f"{result['small_batch']['median_ms']:.2f} ms"
            )
    finally:
        services.close()
        services.logs.close()
    return result
