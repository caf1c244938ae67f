"""Routes for metrics: definitions, ingestion, values per series, and summaries."""

from __future__ import annotations

import asyncio
import io
import json
import math
from typing import Any

import msgspec
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc
from litestar import Request, Response, get, post, put
from litestar.params import FromPath
from loguru import logger

from api.errors import ApiError, parse_json, read_body
from api.responses import json_response, query_time, query_value, read_json, services_of
from mmab_metrics.durations import DurationError, format_duration, parse_duration
from mmab_metrics.jobs import MAX_FUTURE_NS
from mmab_metrics.metrics import (
    AGGREGATES,
    SYSTEM_TOTAL,
    Definition,
    is_valid_object_id,
    is_valid_short_name,
    object_document,
    short_name,
)
from mmab_metrics.rollup import IntervalError, ceil_to, floor_to, serving_level
from mmab_metrics.timecodec import (
    MAX_NS,
    MIN_NS,
    TimeFormatError,
    format_time,
    parse_time,
)
from storage.definitions import DefinitionConflict

_MB = 1024 * 1024
_DAY_NS = 86_400 * 1_000_000_000
ARROW_STREAM = "application/vnd.apache.arrow.stream"
NDJSON = "application/x-ndjson"


def _definition(request: Request[Any, Any, Any], definition_id: str) -> Definition:
    definition = services_of(request).definitions.get(short_name(definition_id))
    if definition is None:
        raise ApiError(
            404,
            f"metric definition {definition_id!r} not found",
            field="definitionID",
            value=definition_id,
        )
    return definition


def _interval_param(request: Request[Any, Any, Any]) -> int | None:
    text = query_value(request, "interval")
    if text is None:
        return None
    try:
        interval = parse_duration(text)
    except DurationError as exc:
        raise ApiError(
            400, f"invalid `interval`: {exc}", field="interval", value=text
        ) from None
    if interval <= 0:
        raise ApiError(
            400,
            f"invalid `interval` {text!r}: must be positive",
            field="interval",
            value=text,
        )
    return interval


def _value_expression(aggregate: str) -> pl.Expr:
    if aggregate == "avg":
        return pl.col("sum") / pl.col("count")
    return pl.col(aggregate)


def _level_documents(request: Request[Any, Any, Any]) -> list[dict[str, str]]:
    return [
        {"interval": level.name, "retention": format_duration(level.retention_ns)}
        for level in services_of(request).points.levels
    ]


# ------------------------------------------------------------------ reads --


@get("/api/v1/metric", sync_to_thread=False)
def list_metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    services = services_of(request)
    levels = _level_documents(request)
    pairs = {(short, obj) for short, obj, _ in services.points.all_series()}
    pairs |= {(d.short, SYSTEM_TOTAL) for d in services.definitions.all() if d.builtin}
    metrics = []
    for short, obj in sorted(pairs):
        definition = services.definitions.get(short)
        if definition is None:
            continue
        metrics.append(
            {
                "name": definition.description,
                "id": f"{definition.id}.{obj}",
                "definition": {
                    "id": definition.id,
                    "description": definition.description,
                    "labels": list(definition.labels),
                },
                "object": object_document(obj),
                "levels": levels,
            }
        )
    return json_response(metrics)


_TIME_TEXT: dict[int, str] = {}
_TIME_TEXT_LIMIT = 200_000


def _time_text(bucket_ns: int) -> str:
    """Return `"time":"<RFC3339>"` for a bucket start, from a bounded cache."""
    text = _TIME_TEXT.get(bucket_ns)
    if text is None:
        if len(_TIME_TEXT) >= _TIME_TEXT_LIMIT:
            _TIME_TEXT.clear()
        text = f'{{"time":"{format_time(bucket_ns)}","value":'
        _TIME_TEXT[bucket_ns] = text
    return text


class _MinuteTexts:
    """RFC 3339 texts of whole minutes around the latest ones asked for.

    Rendering 10,000 timestamps costs more than reading their points, and
    answers of the finest levels ask for the same recent minutes again.
    """

    SPAN = 8 * 1440  # minutes: a week of 1m buckets and a day to spare

    def __init__(self) -> None:
        self._first = 0
        self._texts: pl.Series | None = None

    def texts(self, starts: np.ndarray) -> pl.Series | None:
        minute = 60_000_000_000
        if (starts % minute).any():
            return None
        index = starts // minute
        texts = self._texts
        if (
            texts is None
            or index[0] < self._first
            or index[-1] >= self._first + self.SPAN
        ):
            first = int(index[-1]) - self.SPAN + 1440
            if index[0] < first:
                return None
            grid = (np.arange(self.SPAN, dtype=np.int64) + first) * minute
            texts = (
                pl.Series(grid)
                .cast(pl.Datetime("ns"))
                .dt.strftime("%Y-%m-%dT%H:%M:%SZ")
            )
            self._first, self._texts = first, texts
        return texts.gather(index - self._first)


_MINUTES = _MinuteTexts()


def _value_text(value: float) -> str:
    return repr(value) if math.isfinite(value) else "null"


def _render_points(starts: np.ndarray, values: np.ndarray) -> str:
    """Render bucket starts and values as the JSON list of points.

    A sum of finite points can overflow to an infinity, which JSON cannot
    carry, so such a bucket's value is rendered as `null`.
    """
    if starts.size == 0:
        return "[]"
    finite = bool(np.isfinite(values).all())
    if starts.size <= 4096:
        times = map(_time_text, starts.tolist())
        texts = map(repr if finite else _value_text, values.tolist())
        return "[" + "},".join(map(str.__add__, times, texts)) + "}]"
    aligned = not bool((starts % 1_000_000_000).any())
    if aligned:
        times = (
            pl.Series(starts).cast(pl.Datetime("ns")).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        )
    else:
        times = pl.Series([format_time(t) for t in starts.tolist()])
    value_text = pl.col("v").cast(pl.String)
    if not finite:
        value_text = (
            pl.when(pl.col("v").is_finite()).then(value_text).otherwise(pl.lit("null"))
        )
    text = (
        pl.DataFrame({"t": times, "v": values})
        .select(
            pl.concat_str(
                [
                    pl.lit('{"time":"'),
                    pl.col("t"),
                    pl.lit('","value":'),
                    value_text,
                    pl.lit("}"),
                ]
            ).str.join(",")
        )
        .item()
    )
    return f"[{text}]"


def _too_many_points(levels: Any, found: int, cap: int, lo: int, hi: int) -> ApiError:
    """Name the point cap and the finest interval whose response fits under it."""
    needed = -(-(hi - lo) // cap)
    finest = levels[0].interval_ns
    # A whole multiple of the finest level is always a valid interval.
    suggestion = finest * -(-needed // finest)
    return ApiError(
        400,
        f"the answer has {found} points, more than `security.limits.maxPoints` "
        f"({cap}); ask for a coarser interval such as {format_duration(suggestion)} "
        "or a shorter range",
        field="interval",
        limit="security.limits.maxPoints",
        suggestedInterval=format_duration(suggestion),
    )


@get("/api/v1/metricValue/{object_id:str}/{definition_id:str}", sync_to_thread=False)
def metric_values(
    request: Request[Any, Any, Any],
    object_id: FromPath[str],
    definition_id: FromPath[str],
) -> Response[bytes]:
    services = services_of(request)
    definition = _definition(request, definition_id)
    now = services.clock.now_ns()
    interval = _interval_param(request)
    start = query_time(request, "start")
    end = query_time(request, "end")
    if end is None:
        end = now
    try:
        level = serving_level(services.points.levels, interval, start, now)
    except IntervalError as exc:
        raise ApiError(
            400,
            f"invalid `interval`: {exc}",
            field="interval",
            value=query_value(request, "interval"),
        ) from None
    step = interval or level.interval_ns
    if start is None:
        start = max(end - level.retention_ns, MIN_NS)
    if start >= end:
        raise ApiError(
            400,
            f"invalid range: `start` {format_time(start)} must be before `end` "
            f"{format_time(end)}",
            field="start",
        )

    metadata: dict[str, str] = {"interval": level.name}
    retained = level.retained_from(now)
    if retained > start:
        metadata["retainedFrom"] = format_time(retained)

    series_id = services.points.series_id(definition.short, object_id)
    points = "[]"
    if series_id is not None:
        lo = max(floor_to(start, step), retained)
        hi = min(ceil_to(end, step), MAX_NS)
        starts, values = services.points.values(
            level, series_id, lo, hi, step, definition.aggregate
        )
        cap = services.config.get("security.limits.maxPoints")
        if starts.size > cap:
            raise _too_many_points(services.points.levels, starts.size, cap, lo, hi)
        points = _render_points(starts, values)
    body = (
        '{"id":'
        + msgspec.json.encode(f"{definition.id}.{object_id}").decode()
        + ',"points":'
        + points
        + ',"metaData":'
        + msgspec.json.encode(metadata).decode()
        + "}"
    )
    return Response(content=body.encode(), media_type="application/json")


@get("/api/v1/metrics/summary", sync_to_thread=False)
def metrics_summary(request: Request[Any, Any, Any]) -> Response[bytes]:
    services = services_of(request)
    now = services.clock.now_ns()
    end = query_time(request, "end")
    if end is None:
        end = now
    start = query_time(request, "start")
    if start is None:
        start = max(end - _DAY_NS, MIN_NS)
    if start >= end:
        raise ApiError(
            400,
            f"invalid range: `start` {format_time(start)} must be before `end` "
            f"{format_time(end)}",
            field="start",
        )
    wanted = request.query_params.getall("definition", [])
    if wanted:
        definitions = [_definition(request, name) for name in wanted]
    else:
        definitions = services.definitions.all()

    segments = services.points.summary_segments(start, end, now)
    items: dict[str, list[dict[str, Any]]] = {}
    for definition in dict.fromkeys(definitions):
        queues = {
            sid: obj[len("queue-") :]
            for short, obj, sid in services.points.all_series()
            if short == definition.short and obj.startswith("queue-") and len(obj) > 6
        }
        if not queues:
            continue
        summary = services.points.segment_summaries(queues, segments)
        if summary.is_empty():
            continue
        summary = summary.with_columns(value=_value_expression(definition.aggregate))
        rows = sorted(
            (queues[sid], value, last_ns)
            for sid, value, last_ns in summary.select(
                "series_id", "value", "last_ns"
            ).iter_rows()
        )
        items[definition.short] = [
            {
                "id": definition.short,
                "point": {"time": format_time(last_ns), "value": value},
                "metaData": {"queueName": queue},
            }
            for queue, value, last_ns in rows
        ]
    return json_response({"items": items})


# ----------------------------------------------------------------- writes --


def _check_time(now: int, time_ns: int, where: str) -> None:
    if time_ns > now + MAX_FUTURE_NS:
        raise ApiError(
            400,
            f"invalid `{where}` {format_time(time_ns)}: more than 5 minutes ahead of the "
            f"server clock ({format_time(now)})",
            field=where,
        )


def _check_value(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(
            400,
            f"invalid `{where}` {msgspec.json.encode(value).decode()}: expected a number",
            field=where,
        )
    try:
        result = float(value)
    except OverflowError:
        result = math.inf
    if not math.isfinite(result):
        raise ApiError(400, f"invalid `{where}`: not a finite number", field=where)
    return result


def _non_finite_point(body: bytes) -> int | None:
    """Find the first point whose value is NaN, an infinity or out of float range.

    The strict decoder rejects such a body without saying where, so this
    lenient pass finds the point for the error message.
    """
    try:
        document = json.loads(body, parse_constant=float, parse_float=float)
    except (ValueError, RecursionError):
        return None
    points = document.get("points") if isinstance(document, dict) else None
    if not isinstance(points, list):
        return None
    for index, point in enumerate(points):
        value = point.get("value") if isinstance(point, dict) else None
        if isinstance(value, float) and not math.isfinite(value):
            return index
    return None


async def _read_points_body(request: Request[Any, Any, Any]) -> Any:
    """Read a JSON body within `security.limits.maxBodyMB`, naming a non-finite point."""
    limit_mb = services_of(request).config.get("security.limits.maxBodyMB")
    body = await read_body(request, limit_mb * _MB, "security.limits.maxBodyMB")
    try:
        return parse_json(body, request.headers.get("content-type"))
    except ApiError as exc:
        index = _non_finite_point(body) if exc.status == 400 else None
        if index is None:
            raise
        where = f"points[{index}].value"
        raise ApiError(
            400, f"invalid `{where}`: not a finite number", field=where
        ) from None


@post("/api/v1/metricValue/{object_id:str}/{definition_id:str}", status_code=200)
async def ingest_series(
    request: Request[Any, Any, Any],
    object_id: FromPath[str],
    definition_id: FromPath[str],
) -> Response[bytes]:
    services = services_of(request)
    definition = _definition(request, definition_id)
    if not is_valid_object_id(object_id):
        raise ApiError(
            400,
            f"invalid object id {object_id!r}: expected 1 to 140 of A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit",
            field="objectID",
            value=object_id,
        )
    body = await _read_points_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("points"), list):
        raise ApiError(
            400,
            'missing `points`: expected {"points": [{"time": ..., "value": ...}]}',
            field="points",
        )
    now = services.clock.now_ns()
    times, values = [], []
    for index, point in enumerate(body["points"]):
        where = f"points[{index}]"
        if not isinstance(point, dict):
            raise ApiError(400, f"invalid `{where}`: expected an object", field=where)
        if "time" not in point or "value" not in point:
            raise ApiError(
                400, f"invalid `{where}`: needs `time` and `value`", field=where
            )
        try:
            time_ns = parse_time(point["time"])
        except TimeFormatError as exc:
            raise ApiError(
                400, f"invalid `{where}.time`: {exc}", field=f"{where}.time"
            ) from None
        _check_time(now, time_ns, f"{where}.time")
        times.append(time_ns)
        values.append(_check_value(point["value"], f"{where}.value"))
    frame = pl.DataFrame(
        {
            "short": [definition.short] * len(times),
            "object": [object_id] * len(times),
            "time_ns": times,
            "value": values,
            "source": [""] * len(times),
        },
        schema={
            "short": pl.String,
            "object": pl.String,
            "time_ns": pl.Int64,
            "value": pl.Float64,
            "source": pl.String,
        },
    )
    accepted = services.points.write(frame, now)
    return json_response({"accepted": accepted})


class _Row(msgspec.Struct, forbid_unknown_fields=False):
    definition: str
    object: str
    time: str
    value: float


def _bulk_frame_from_ndjson(body: bytes) -> pl.DataFrame:
    decoder = msgspec.json.Decoder(_Row)
    shorts, objects, times, values = [], [], [], []
    cache: dict[str, int] = {}
    # Rows are numbered among the non-blank lines, as in the frame checked later.
    lines = [line for line in body.split(b"\n") if line.strip()]
    for index, line in enumerate(lines):
        # msgspec raises RecursionError for an unknown field nested too deep to skip.
        try:
            row = decoder.decode(line)
        except (msgspec.DecodeError, RecursionError) as exc:
            raise ApiError(
                400, f"invalid row {index}: {exc}", field="row", value=index
            ) from None
        time_ns = cache.get(row.time)
        if time_ns is None:
            try:
                time_ns = parse_time(row.time)
            except TimeFormatError as exc:
                raise ApiError(
                    400, f"invalid row {index}: {exc}", field="row", value=index
                ) from None
            cache[row.time] = time_ns
        shorts.append(row.definition)
        objects.append(row.object)
        times.append(time_ns)
        values.append(row.value)
    return pl.DataFrame(
        {"definition": shorts, "object": objects, "time_ns": times, "value": values},
        schema={
            "definition": pl.String,
            "object": pl.String,
            "time_ns": pl.Int64,
            "value": pl.Float64,
        },
    )


def _bulk_frame_from_arrow(body: bytes) -> pl.DataFrame:
    try:
        table = pyarrow.ipc.open_stream(io.BytesIO(body)).read_all()
    except (pa.ArrowInvalid, OSError, ValueError) as exc:
        raise ApiError(400, f"invalid Arrow IPC stream: {exc}", field="body") from None
    for name in ("definition", "object", "time", "value"):
        if name not in table.column_names:
            raise ApiError(
                400, f"missing column `{name}` in the Arrow stream", field=name
            )
    time_column = table.column("time")
    if pa.types.is_timestamp(time_column.type):
        if time_column.type.unit != "ns" or time_column.type.tz not in (
            "UTC",
            "+00:00",
        ):
            raise ApiError(
                400,
                f"invalid column `time` of type {time_column.type}: expected "
                "timestamp[ns, UTC] or int64 nanoseconds",
                field="time",
            )
        time_column = time_column.cast(pa.int64())
    elif not pa.types.is_int64(time_column.type):
        raise ApiError(
            400,
            f"invalid column `time` of type {time_column.type}: expected "
            "timestamp[ns, UTC] or int64 nanoseconds",
            field="time",
        )
    for name in ("definition", "object"):
        kind = table.column(name).type
        if not (
            pa.types.is_string(kind)
            or pa.types.is_large_string(kind)
            or pa.types.is_dictionary(kind)
        ):
            raise ApiError(
                400,
                f"invalid column `{name}` of type {kind}: expected strings",
                field=name,
            )
    if not pa.types.is_floating(table.column("value").type):
        raise ApiError(
            400,
            f"invalid column `value` of type {table.column('value').type}: expected float64",
            field="value",
        )
    frame = pl.from_arrow(
        pa.table(
            {
                "definition": table.column("definition"),
                "object": table.column("object"),
                "time_ns": time_column,
                "value": table.column("value").cast(pa.float64()),
            }
        )
    )
    return frame.with_columns(pl.col("definition", "object").cast(pl.String))


def _validate_bulk(
    request: Request[Any, Any, Any], frame: pl.DataFrame, now: int
) -> pl.DataFrame:
    """Check every row; raise 400 naming the first bad row and what is wrong."""
    services = services_of(request)
    frame = frame.with_columns(
        short=pl.col("definition").str.strip_prefix("metricDef-")
    )
    # Definitions and objects repeat, so check their distinct values only.
    unknown = [
        short
        for short in frame["short"].drop_nulls().unique().to_list()
        if services.definitions.get(short) is None
    ]
    invalid = [
        obj
        for obj in frame["object"].drop_nulls().unique().to_list()
        if not is_valid_object_id(obj)
    ]
    checks = [
        (pl.any_horizontal(pl.all().is_null()), "a missing value"),
        (~pl.col("value").is_finite(), "a value that is not a finite number"),
        (
            pl.col("time_ns") > now + MAX_FUTURE_NS,
            "a time more than 5 minutes ahead of the server clock",
        ),
    ]
    if unknown:
        checks.append((pl.col("short").is_in(unknown), "an unknown definition"))
    if invalid:
        checks.append((pl.col("object").is_in(invalid), "an invalid object id"))
    flags = frame.select(
        [
            condition.fill_null(False).alias(str(i))
            for i, (condition, _) in enumerate(checks)
        ]
    )
    found = []
    for index, (_, reason) in enumerate(checks):
        column = flags[str(index)]
        if column.any():
            found.append((int(column.arg_true()[0]), reason))
    if found:
        row, reason = min(found)
        raise ApiError(400, f"invalid row {row}: {reason}", field="row", value=row)
    return frame.select(
        "short", "object", "time_ns", "value", source=pl.lit("", pl.String)
    )


@post("/api/v1/metricValue", status_code=200)
async def ingest_bulk(request: Request[Any, Any, Any]) -> Response[bytes]:
    services = services_of(request)
    # The body size is checked before its type, as on every other route.
    limit = services.config.get("security.limits.maxIngestBodyMB") * _MB
    body = await read_body(request, limit, "security.limits.maxIngestBodyMB")
    content_type = (
        (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    )
    if content_type not in (ARROW_STREAM, NDJSON):
        raise ApiError(
            415,
            f"unsupported content type {content_type or 'none'!r}: send {ARROW_STREAM} "
            f"or {NDJSON}",
        )
    now = services.clock.now_ns()
    frame = (
        _bulk_frame_from_arrow(body)
        if content_type == ARROW_STREAM
        else _bulk_frame_from_ndjson(body)
    )
    frame = _validate_bulk(request, frame, now)
    accepted = services.points.write(frame, now)
    logger.bind(points=accepted).debug("bulk points written")
    return json_response({"accepted": accepted})


@put("/api/v1/metricDef/{definition_id:str}")
async def register_definition(
    request: Request[Any, Any, Any], definition_id: FromPath[str]
) -> Response[bytes]:
    services = services_of(request)
    short = short_name(definition_id)
    if not is_valid_short_name(short):
        raise ApiError(
            400,
            f"invalid definition id {definition_id!r}: expected metricDef- and 1 to 128 "
            "of A-Z a-z 0-9 _ -",
            field="definitionID",
            value=definition_id,
        )
    body = await read_json(request)
    if not isinstance(body, dict):
        raise ApiError(
            400, "invalid body: expected {description, labels, aggregate}", field="body"
        )
    description = body.get("description", "")
    labels = body.get("labels", [])
    aggregate = body.get("aggregate")
    if not isinstance(description, str):
        raise ApiError(
            400, "invalid `description`: expected a string", field="description"
        )
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ApiError(
            400, "invalid `labels`: expected a list of strings", field="labels"
        )
    if aggregate not in AGGREGATES:
        raise ApiError(
            400,
            f"invalid `aggregate` {msgspec.json.encode(aggregate).decode()}: expected one of "
            + ", ".join(AGGREGATES),
            field="aggregate",
        )
    definition = Definition(short, description, tuple(labels), aggregate)
    try:
        changed = services.definitions.register(
            definition, services.points.has_data(short)
        )
    except DefinitionConflict as exc:
        raise ApiError(409, str(exc), field="aggregate") from None
    if changed:
        logger.bind(definition=definition.id, aggregate=aggregate).info(
            "metric definition registered"
        )
    return json_response(definition.document())


@post("/api/v1/metrics/rollup", status_code=200)
async def rebuild_levels(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Recompute every level from raw points, a batch of series at a time."""
    services = services_of(request)
    result = await asyncio.to_thread(services.points.rebuild, services.clock.now_ns())
    return json_response(result)


ROUTES = [
    rebuild_levels,
    list_metrics,
    metric_values,
    metrics_summary,
    ingest_series,
    ingest_bulk,
    register_definition,
]
