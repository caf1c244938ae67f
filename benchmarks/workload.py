"""The benchmark workload: values, request payloads, query plans and expected answers.

Five definitions on 100 queue objects make 500 series with one point every
60 s. The values depend only on the seed and the number of days, and the
times end at the minute the run starts (`end_s`, exclusive), so every level
and both stores hold the whole workload. Series `i` is definition `i // 100`
on object `i % 100`.

Expected answers come from the numpy arrays alone, never from a store:
a per-series query is `(non-empty buckets, sum of bucket values)` with each
bucket valued by its definition's aggregate, and a summary is `(queues, sum
of the queue values)`.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.ipc

SEED = 20261204
STEP_S = 60
DAY_S = 86_400
NS = 1_000_000_000
OBJECTS = 100
DECIMALS = 3


@dataclass(frozen=True)
class MetricDefinition:
    """A workload definition: the VictoriaMetrics name, our short name, its aggregate."""

    name: str
    short: str
    aggregate: str
    description: str


# diskIoOps counts operations per minute, so its buckets are sums and query d
# (a sum over 100 queues) adds counts. The others are gauges averaged per bucket.
DEFINITIONS = (
    MetricDefinition("cpu_pct", "cpuPct", "avg", "CPU use of the queue, percent"),
    MetricDefinition(
        "mem_used_mb", "memUsedMb", "avg", "Memory used by the queue, MiB"
    ),
    MetricDefinition(
        "disk_io_ops", "diskIoOps", "sum", "Disk operations of the queue per minute"
    ),
    MetricDefinition(
        "net_rx_kbps", "netRxKbps", "avg", "Network receive rate of the queue, kbit/s"
    ),
    MetricDefinition(
        "temp_c", "tempC", "avg", "Temperature of the queue's hosts, Celsius"
    ),
)
SUM_DEFINITION = 2

QUERY_KINDS = {
    "a": "one series, 7 d window, 1m buckets",
    "b": "one series, 7 d window, 30m buckets",
    "c": "one series, 90 d window, 24h buckets",
    "d": "summary of the sum definition over its 100 queues, one UTC day",
}
_WINDOW_S = {"a": 7 * DAY_S, "b": 7 * DAY_S, "c": 90 * DAY_S}
BUCKET_S = {"a": 60, "b": 1800, "c": DAY_S, "d": DAY_S}


def object_name(index: int) -> str:
    """Return the VictoriaMetrics label value of object `index`, e.g. `obj-013`."""
    return f"obj-{index:03d}"


def object_id(index: int) -> str:
    """Return our object id of object `index`, e.g. `queue-obj-013`."""
    return "queue-" + object_name(index)


def floor_minute(time_s: float) -> int:
    return int(time_s) // STEP_S * STEP_S


def rfc3339(time_s: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time_s))


def generate_values(days: int, objects: int = OBJECTS) -> np.ndarray:
    """Return float64 values of shape (5 * objects, points per series), one row per series.

    Gauges follow diurnal sines, random walks and skewed noise, rounded to
    3 decimals, so that they compress like real measurements and not like
    constants. Phases count from the first point, so the values do not
    depend on the time of the run.
    """
    n = days * DAY_S // STEP_S
    rng = np.random.default_rng(SEED)
    t = np.arange(n, dtype=np.float64) * STEP_S
    day_phase = 2 * np.pi * t / DAY_S
    shape = (objects, 1)

    amplitude = rng.uniform(5, 30, shape)
    base = rng.uniform(10, 60, shape)
    phase = rng.uniform(0, 2 * np.pi, shape)
    noise = rng.normal(0, 4, (objects, n))
    cpu = np.clip(base + amplitude * np.sin(day_phase + phase) + noise, 0, 100)

    base = rng.uniform(500, 16_000, shape)
    memory = np.abs(base + np.cumsum(rng.normal(0, 3, (objects, n)), axis=1))

    mu = rng.uniform(1, 4, shape)
    disk_ops = np.floor(np.exp(mu + rng.normal(0, 0.8, (objects, n))))

    base = rng.uniform(100, 5_000, shape)
    phase = rng.uniform(0, 2 * np.pi, shape)
    load = 1 + 0.5 * np.sin(day_phase + phase)
    network = base * load * rng.gamma(4, 0.25, (objects, n))

    base = rng.uniform(35, 60, shape)
    phase = rng.uniform(0, 2 * np.pi, shape)
    temperature = (
        base + 5 * np.sin(day_phase / 7 + phase) + rng.normal(0, 0.5, (objects, n))
    )

    values = np.vstack([cpu, memory, disk_ops, network, temperature])
    return np.ascontiguousarray(np.round(values, DECIMALS))


@dataclass(frozen=True)
class Workload:
    """The generated values and their times, ending (exclusive) at `end_s`."""

    days: int
    end_s: int
    objects: int = OBJECTS

    @cached_property
    def values(self) -> np.ndarray:
        return generate_values(self.days, self.objects)

    @property
    def points_per_series(self) -> int:
        return self.days * DAY_S // STEP_S

    @property
    def series_count(self) -> int:
        return len(DEFINITIONS) * self.objects

    @property
    def point_count(self) -> int:
        return self.series_count * self.points_per_series

    @property
    def start_s(self) -> int:
        return self.end_s - self.days * DAY_S

    @cached_property
    def times_s(self) -> np.ndarray:
        return self.start_s + STEP_S * np.arange(self.points_per_series, dtype=np.int64)

    def definition_of(self, series: int) -> MetricDefinition:
        return DEFINITIONS[series // self.objects]

    def fingerprint(self) -> str:
        """Return the sha256 of the values, to tell one workload from another."""
        return hashlib.sha256(self.values.tobytes()).hexdigest()[:16]

    # ------------------------------------------------------ our payloads --

    def _series_columns(self) -> tuple[pa.Array, pa.Array]:
        definitions = pa.array([d.short for d in DEFINITIONS])
        objects = pa.array([object_id(i) for i in range(self.objects)])
        return definitions, objects

    def arrow_table(
        self, series: np.ndarray, first_point: int, last_point: int, order: str
    ) -> pa.Table:
        """Build the Arrow table of points `[first_point, last_point)` of `series`.

        `order` is "series" (all points of one series, then the next) or
        "time" (all series at one time, then the next minute).
        """
        points = np.arange(first_point, last_point)
        if order == "series":
            series_column = np.repeat(series, len(points))
            point_column = np.tile(points, len(series))
        elif order == "time":
            series_column = np.tile(series, len(points))
            point_column = np.repeat(points, len(series))
        else:
            raise ValueError(f"invalid order {order!r}: expected 'series' or 'time'")
        definitions, objects = self._series_columns()
        definition_index = pa.array(series_column // self.objects, pa.int32())
        object_index = pa.array(series_column % self.objects, pa.int32())
        times_ns = self.times_s[point_column] * NS
        return pa.table(
            {
                "definition": definitions.take(definition_index),
                "object": objects.take(object_index),
                "time": pa.array(times_ns, pa.timestamp("ns", tz="UTC")),
                "value": pa.array(self.values[series_column, point_column]),
            }
        )

    def request_batches(
        self, order: str, series_per_request: int, minutes_per_request: int
    ) -> Iterator[tuple[np.ndarray, int, int]]:
        """Yield `(series, first_point, last_point)` of each bulk request.

        Series-major requests hold `series_per_request` series with all their
        points, as a backfill sends them. Time-major requests hold every
        series for `minutes_per_request` minutes, as live arrivals do.
        """
        all_series = np.arange(self.series_count)
        if order == "series":
            for lo in range(0, self.series_count, series_per_request):
                yield (
                    all_series[lo : lo + series_per_request],
                    0,
                    self.points_per_series,
                )
        elif order == "time":
            for lo in range(0, self.points_per_series, minutes_per_request):
                hi = min(lo + minutes_per_request, self.points_per_series)
                yield all_series, lo, hi
        else:
            raise ValueError(f"invalid order {order!r}: expected 'series' or 'time'")

    def arrow_payloads(
        self, order: str, series_per_request: int = 25, minutes_per_request: int = 10
    ) -> list[bytes]:
        """Build the Arrow IPC stream bodies of a bulk ingest in `order`."""
        bodies = []
        for series, lo, hi in self.request_batches(
            order, series_per_request, minutes_per_request
        ):
            bodies.append(arrow_stream(self.arrow_table(series, lo, hi, order)))
        return bodies

    # ---------------------------------------- VictoriaMetrics payloads --

    def jsonl_payloads(
        self, order: str, series_per_request: int = 25, minutes_per_request: int = 10
    ) -> list[bytes]:
        """Build `/api/v1/import` JSON-lines bodies holding the same points per request."""
        times_ms = [str(t * 1000) for t in self.times_s.tolist()]
        value_text = [[repr(v) for v in row] for row in self.values.tolist()]
        bodies = []
        for series, lo, hi in self.request_batches(
            order, series_per_request, minutes_per_request
        ):
            timestamps = ",".join(times_ms[lo:hi])
            lines = []
            for index in series.tolist():
                definition = self.definition_of(index)
                label = object_name(index % self.objects)
                values = ",".join(value_text[index][lo:hi])
                lines.append(
                    f'{{"metric":{{"__name__":"{definition.short}","obj":"{label}"}},'
                    f'"values":[{values}],"timestamps":[{timestamps}]}}\n'
                )
            bodies.append("".join(lines).encode())
        return bodies

    # ------------------------------------------------------ small batch --

    def small_batch(self, repetition: int, points_per_series: int = 100) -> pa.Table:
        """Build 10,000 new points over 100 series (every 5th) in the last hour.

        Points lie 36 s apart and off the whole second by `repetition + 1`
        milliseconds, so they never replace a stored point or one of an
        earlier batch: each write merges new points into existing buckets.
        """
        series = np.arange(0, self.series_count, self.series_count // 100)
        offsets_ns = (
            np.arange(points_per_series, dtype=np.int64) * 36 * NS
            + (repetition + 1) * 1_000_000
        )
        times_ns = (self.end_s - 3600) * NS + offsets_ns
        series_column = np.repeat(series, points_per_series)
        definitions, objects = self._series_columns()
        rng = np.random.default_rng(SEED + repetition)
        values = np.round(rng.uniform(0, 100, len(series_column)), DECIMALS)
        return pa.table(
            {
                "definition": definitions.take(
                    pa.array(series_column // self.objects, pa.int32())
                ),
                "object": objects.take(
                    pa.array(series_column % self.objects, pa.int32())
                ),
                "time": pa.array(
                    np.tile(times_ns, len(series)), pa.timestamp("ns", tz="UTC")
                ),
                "value": pa.array(values),
            }
        )

    def small_batch_jsonl(self, repetition: int) -> bytes:
        """Build `small_batch(repetition)` as a VictoriaMetrics JSON-lines body."""
        table = self.small_batch(repetition)
        times_ms = (
            table.column("time").cast(pa.int64()).to_numpy() // 1_000_000
        ).tolist()
        values = table.column("value").to_pylist()
        definitions = table.column("definition").to_pylist()
        objects = table.column("object").to_pylist()
        lines = []
        step = 100
        for lo in range(0, table.num_rows, step):
            label = objects[lo].removeprefix("queue-")
            lines.append(
                f'{{"metric":{{"__name__":"{definitions[lo]}","obj":"{label}"}},'
                f'"values":[{",".join(map(repr, values[lo : lo + step]))}],'
                f'"timestamps":[{",".join(map(str, times_ms[lo : lo + step]))}]}}\n'
            )
        return "".join(lines).encode()

    # ----------------------------------------------------- query plans --

    def query_plan(self, kind: str, count: int) -> list[dict]:
        """Return `count` queries of `kind` ("a" to "d"), the same for every system.

        Query `i` of a, b and c reads series `(7919 i + 13) mod 500`. Query d
        walks the UTC days that the data covers whole; a 1-day workload has
        none, so its d reads the last 24 hours instead.
        """
        plan = []
        if kind == "d":
            first_day = -(-self.start_s // DAY_S) * DAY_S
            days = list(range(first_day, self.end_s - DAY_S + 1, DAY_S))
            if not days:
                days = [self.end_s - DAY_S]
            for i in range(count):
                start = days[i % len(days)]
                plan.append({"start": start, "end": start + DAY_S})
            return plan
        for i in range(count):
            series = (7919 * i + 13) % self.series_count
            definition = self.definition_of(series)
            plan.append(
                {
                    "series": series,
                    "definition": definition,
                    "object": series % self.objects,
                    "start": self.end_s - _WINDOW_S[kind],
                    "end": self.end_s,
                    "bucket": BUCKET_S[kind],
                }
            )
        return plan

    def expected(self, kind: str, query: dict) -> tuple[int, float]:
        """Return `(count, sum)` of the correct answer to `query`, from numpy alone."""
        times = self.times_s
        inside = (times >= query["start"]) & (times < query["end"])
        if kind == "d":
            lo = SUM_DEFINITION * self.objects
            per_queue = self.values[lo : lo + self.objects, inside].sum(axis=1)
            return int((inside.sum() > 0) * self.objects), float(per_queue.sum())
        values = self.values[query["series"], inside]
        buckets = times[inside] // query["bucket"]
        _, starts, counts = np.unique(buckets, return_index=True, return_counts=True)
        sums = np.add.reduceat(values, starts) if len(starts) else np.array([])
        if query["definition"].aggregate == "avg":
            sums = sums / counts
        return len(starts), float(np.sum(sums))


def arrow_stream(table: pa.Table) -> bytes:
    """Serialise `table` as one Arrow IPC stream."""
    sink = io.BytesIO()
    with pyarrow.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def check_answer(
    expected: tuple[int, float], got: tuple[int, float], rel: float = 1e-6
) -> dict:
    """Compare `(count, sum)` pairs: counts equal, sums within `rel` of the expected."""
    expected_count, expected_sum = expected
    got_count, got_sum = got
    ok = expected_count == got_count and abs(expected_sum - got_sum) <= rel * max(
        1.0, abs(expected_sum)
    )
    return {
        "ok": bool(ok),
        "expected": [expected_count, expected_sum],
        "got": [got_count, got_sum],
    }
