"""Property: every level returns what aggregating the deduplicated raw points gives.

The clock is pinned at 2025-03-16T00:00:00Z, so the raw cutoff
2025-03-09T00:00:00Z is a bucket start at every level and no bucket
straddles it. Recent points (after the cutoff) may repeat a key, and the
newest write of a key must win. Old points (before it) land in sealed 30m
and 24h buckets, where a re-sent point would count again by design, so
their keys are unique.
"""

from __future__ import annotations

import itertools
import math

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmab_metrics.durations import parse_duration
from mmab_metrics.timecodec import format_time, parse_time
from tests.metric_helpers import (
    ARROW_STREAM,
    NDJSON,
    arrow_stream,
    close,
    expected_buckets,
    ingest,
    ndjson_rows,
    post_bulk,
    register,
    strict_json,
    summary_by_queue,
    values,
)

NOW = "2025-03-16T00:00:00Z"
RAW_FROM = parse_time("2025-03-09T00:00:00Z")
DAY = 86_400 * 10**9
START = format_time(RAW_FROM - 8 * DAY)
END = format_time(parse_time(NOW) + DAY)
AGGREGATES = {"sum": "propSum", "avg": "propAvg", "min": "propMin"}
AGGREGATES |= {"max": "propMax", "last": "propLast"}
# Each query interval, mapped to the level that serves it. The 1m level
# contains only recent points, because its retention equals the raw retention.
INTERVALS = {"1m": "1m", "5m": "1m", "30m": "30m", "1h": "30m"}
INTERVALS |= {"24h": "24h", "48h": "24h", "96h": "24h"}
SERIES = itertools.count()

# Offsets inside a minute that sit on or next to bucket edges.
EDGE_NS = st.sampled_from([0, 1, 29_999_999_999, 30 * 10**9, 59_999_999_999])
VALUES = st.one_of(
    st.integers(-1000, 1000).map(float),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
)


@st.composite
def recent_time(draw) -> int:
    minute = draw(st.integers(0, 7 * 1440 - 1))
    offset = draw(st.one_of(EDGE_NS, st.integers(0, 60 * 10**9 - 1)))
    return RAW_FROM + minute * 60 * 10**9 + offset


@st.composite
def old_time(draw) -> int:
    minute = draw(st.integers(1, 8 * 1440))
    offset = draw(st.one_of(EDGE_NS, st.integers(0, 60 * 10**9 - 1)))
    return RAW_FROM - minute * 60 * 10**9 + offset


@st.composite
def scenario(draw):
    """Points in arrival order, split into batches, each with its ingest route."""
    recent = draw(st.lists(st.tuples(recent_time(), VALUES), max_size=25))
    if recent and draw(st.booleans()):
        # Re-send some recent keys with new values.
        repeats = draw(st.lists(st.sampled_from(recent), max_size=6))
        recent += [(t, draw(VALUES)) for t, _ in repeats]
    old = draw(
        st.lists(st.tuples(old_time(), VALUES), max_size=12, unique_by=lambda p: p[0])
    )
    points = recent + old
    order = draw(st.permutations(range(len(points))))
    arrivals = [points[i] for i in order]
    cuts = sorted(draw(st.sets(st.integers(1, max(len(arrivals) - 1, 1)), max_size=4)))
    bounds = [0, *[c for c in cuts if c < len(arrivals)], len(arrivals)]
    batches = [arrivals[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    routes = [draw(st.sampled_from(["json", "ndjson", "arrow"])) for _ in batches]
    aggregate = draw(st.sampled_from(sorted(AGGREGATES)))
    return aggregate, batches, routes


def send(app, object_id: str, short: str, batch: list, route: str) -> None:
    if route == "json":
        points = [(format_time(t), v) for t, v in batch]
        response = ingest(app.client, object_id, short, points)
    elif route == "ndjson":
        rows = [(short, object_id, format_time(t), v) for t, v in batch]
        response = post_bulk(app.client, ndjson_rows(rows), NDJSON)
    else:
        body = arrow_stream(
            {
                "definition": pa.array([short] * len(batch), pa.string()),
                "object": pa.array([object_id] * len(batch), pa.string()),
                "time": pa.array([t for t, _ in batch], pa.int64()),
                "value": pa.array([v for _, v in batch], pa.float64()),
            }
        )
        response = post_bulk(app.client, body, ARROW_STREAM)
    assert response.status_code == 200, response.text
    assert strict_json(response) == {"accepted": len(batch)}


@pytest.fixture
def prop_app(app):
    app.set_now(NOW)
    for aggregate, short in AGGREGATES.items():
        assert register(app.client, short, aggregate).status_code == 200
    return app


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=scenario())
def test_levels_match_raw_aggregates(prop_app, case):
    aggregate, batches, routes = case
    short = AGGREGATES[aggregate]
    queue = f"p{next(SERIES)}"
    object_id = f"queue-{queue}"
    for batch, route in zip(batches, routes, strict=True):
        send(prop_app, object_id, short, batch, route)

    # The newest write of each key wins: later batches, then later rows.
    newest: dict[int, float] = {}
    for batch in batches:
        for time_ns, value in batch:
            newest[time_ns] = value
    scale = sum(abs(v) for v in newest.values())

    for interval, level in INTERVALS.items():
        kept = [(t, v) for t, v in newest.items() if level != "1m" or t >= RAW_FROM]
        expected = expected_buckets(kept, parse_duration(interval), aggregate)
        response = values(
            prop_app.client, object_id, short, interval=interval, start=START, end=END
        )
        assert response.status_code == 200, response.text
        got = [(p["time"], p["value"]) for p in strict_json(response)["points"]]
        assert [t for t, _ in got] == [t for t, _ in expected], interval
        for (_, actual), (_, wanted) in zip(got, expected, strict=True):
            assert close(actual, wanted, scale), (interval, actual, wanted)

    items = summary_by_queue(prop_app.client, short, start=START, end=END)
    if not newest:
        assert queue not in items
        return
    time_text, value = items[queue]
    assert time_text == format_time(max(newest))
    ordered = [newest[t] for t in sorted(newest)]
    wanted = {
        "sum": math.fsum(ordered),
        "avg": math.fsum(ordered) / len(ordered),
        "min": min(ordered),
        "max": max(ordered),
        "last": ordered[-1],
    }[aggregate]
    assert close(value, wanted, scale)
