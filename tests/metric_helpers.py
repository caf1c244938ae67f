"""Helpers for the metric tests: strict JSON, ingestion, queries and expected buckets.

Every function takes an `httpx.Client` or Litestar's `TestClient`, which
share the request API, so the same calls run against a real server and the
in-process app.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.ipc

from mmab_metrics.timecodec import format_time, parse_time

ARROW_STREAM = "application/vnd.apache.arrow.stream"
NDJSON = "application/x-ndjson"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON token {name}")


def strict_json(response: Any) -> Any:
    """Decode a response body as strict JSON: no NaN, Infinity or -Infinity tokens."""
    return json.loads(response.text, parse_constant=_reject_constant)


def ingest(client: Any, object_id: str, definition: str, points: list) -> Any:
    """Post points given as `[(time, value), ...]` to one series and return the response."""
    body = {"points": [{"time": t, "value": v} for t, v in points]}
    return client.post(f"/api/v1/metricValue/{object_id}/{definition}", json=body)


def ingest_ok(client: Any, object_id: str, definition: str, points: list) -> None:
    response = ingest(client, object_id, definition, points)
    assert response.status_code == 200, response.text
    assert strict_json(response) == {"accepted": len(points)}


def values(client: Any, object_id: str, definition: str, **params: str) -> Any:
    """Query one series with the query parameters as given and return the response."""
    return client.get(f"/api/v1/metricValue/{object_id}/{definition}", params=params)


def points_of(client: Any, object_id: str, definition: str, **params: str) -> list:
    """Query one series and return its points as `[(time, value), ...]`."""
    response = values(client, object_id, definition, **params)
    assert response.status_code == 200, response.text
    return [(p["time"], p["value"]) for p in strict_json(response)["points"]]


def summary(client: Any, **params: Any) -> dict:
    response = client.get("/api/v1/metrics/summary", params=params)
    assert response.status_code == 200, response.text
    return strict_json(response)


def summary_by_queue(client: Any, short: str, **params: Any) -> dict[str, tuple]:
    """Return one definition's summary items as `{queue: (time, value)}`."""
    items = summary(client, **params)["items"].get(short, [])
    return {
        item["metaData"]["queueName"]: (item["point"]["time"], item["point"]["value"])
        for item in items
    }


def post_events(client: Any, job_id: str, events: list, queue: str = "q1") -> Any:
    body = {"queueName": queue, "events": events}
    response = client.post(f"/api/v1/job/{job_id}/events", json=body)
    assert response.status_code == 200, response.text
    return response


def event(kind: str, timestamp: str, **fields: str) -> dict:
    return {"timestamp": timestamp, "eventType": kind, **fields}


def register(client: Any, short: str, aggregate: str) -> Any:
    body = {
        "description": f"test {aggregate}",
        "labels": ["test"],
        "aggregate": aggregate,
    }
    return client.put(f"/api/v1/metricDef/metricDef-{short}", json=body)


def arrow_stream(columns: dict[str, pa.Array]) -> bytes:
    """Encode columns as one Arrow IPC stream."""
    table = pa.table(columns)
    sink = io.BytesIO()
    with pyarrow.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def arrow_rows(rows: Iterable[tuple[str, str, str, float]]) -> bytes:
    """Encode `(definition, object, time, value)` rows with `time` as timestamp[ns, UTC]."""
    rows = list(rows)
    return arrow_stream(
        {
            "definition": pa.array([r[0] for r in rows], pa.string()),
            "object": pa.array([r[1] for r in rows], pa.string()),
            "time": pa.array(
                [parse_time(r[2]) for r in rows], pa.timestamp("ns", tz="UTC")
            ),
            "value": pa.array([r[3] for r in rows], pa.float64()),
        }
    )


def ndjson_rows(rows: Iterable[tuple[str, str, str, Any]]) -> bytes:
    lines = [
        json.dumps({"definition": d, "object": o, "time": t, "value": v})
        for d, o, t, v in rows
    ]
    return ("\n".join(lines) + "\n").encode()


def post_bulk(client: Any, body: bytes, content_type: str) -> Any:
    return client.post(
        "/api/v1/metricValue", content=body, headers={"content-type": content_type}
    )


# ------------------------------------------------------ expected buckets --


def aggregate(values_in_order: list[float], aggregate_name: str) -> float:
    """Value a bucket from its points' values in time order."""
    if aggregate_name == "sum":
        return math.fsum(values_in_order)
    if aggregate_name == "avg":
        return math.fsum(values_in_order) / len(values_in_order)
    if aggregate_name == "min":
        return min(values_in_order)
    if aggregate_name == "max":
        return max(values_in_order)
    if aggregate_name == "last":
        return values_in_order[-1]
    raise ValueError(aggregate_name)


def expected_buckets(
    points: Iterable[tuple[int, float]], interval_ns: int, aggregate_name: str
) -> list[tuple[str, float]]:
    """Bucket `(time_ns, value)` points into epoch-aligned buckets and value each one."""
    grouped: dict[int, list[float]] = {}
    for time_ns, value in sorted(points, key=lambda point: point[0]):
        start = time_ns - time_ns % interval_ns
        grouped.setdefault(start, []).append(value)
    return [
        (format_time(start), aggregate(grouped[start], aggregate_name))
        for start in sorted(grouped)
    ]


def close(actual: float, expected: float, scale: float = 0.0) -> bool:
    """Compare within 1e-9 relative, or 1e-9 of `scale` (the sum of magnitudes)."""
    return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-9 * scale + 1e-12)
