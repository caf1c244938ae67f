"""Metrics over HTTP against a real server: ingestion, bucket queries, definitions, listing.

Servers run with the clock frozen at 2025-03-16T12:00:00Z, noon of the day
after the data, so that retention keeps it. Every metric response is decoded
with a strict JSON parser that rejects NaN and Infinity tokens.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import httpx
import pyarrow as pa
import pytest

from mmab_metrics.metrics import BUILTINS
from mmab_metrics.timecodec import parse_time
from tests.conftest import ServerProcess
from tests.metric_helpers import (
    ARROW_STREAM,
    NDJSON,
    arrow_rows,
    arrow_stream,
    event,
    ingest,
    ingest_ok,
    ndjson_rows,
    points_of,
    post_bulk,
    post_events,
    register,
    strict_json,
    summary,
    values,
)

NOW = "2025-03-16T12:00:00Z"
SERIES = "/api/v1/metricValue/queue-q1/jobSubmitted"

# Points on queue-q1/jobSubmitted at the edges of 1m buckets.
EDGE_POINTS = [
    ("2025-03-15T00:00:00Z", 1),
    ("2025-03-15T00:00:59.999999999Z", 2),
    ("2025-03-15T00:01:00Z", 4),
    ("2025-03-15T00:02:00Z", 8),
]
REFERENCE = [
    ("2025-03-15T00:00:00Z", 3),
    ("2025-03-15T00:01:00Z", 4),
    ("2025-03-15T00:02:00Z", 8),
]

# Points of each test definition on queue-agg. 2025-03-15 is an even day
# counted from 1970-01-01, so 48h buckets start on 03-13 and 03-15.
AGG_POINTS = [
    ("2025-03-13T12:00:00Z", 8),
    ("2025-03-14T23:59:59Z", 5),
    ("2025-03-15T00:00:10Z", 4),
    ("2025-03-15T00:00:50Z", -2),
    ("2025-03-15T00:01:00Z", 10),
    ("2025-03-15T00:29:59.999999999Z", 1),
    ("2025-03-15T00:30:00Z", 6),
    ("2025-03-15T01:10:00Z", 3),
    ("2025-03-16T01:00:00Z", 7),
]
AGG_DEFINITIONS = {
    "sum": "aggSum",
    "avg": "aggAvg",
    "min": "aggMin",
    "max": "aggMax",
    "last": "aggLast",
}
# Bucket starts per query interval, and the level that serves it.
AGG_TIMES = {
    "1m": (
        "1m0s",
        [
            "2025-03-13T12:00:00Z",
            "2025-03-14T23:59:00Z",
            "2025-03-15T00:00:00Z",
            "2025-03-15T00:01:00Z",
            "2025-03-15T00:29:00Z",
            "2025-03-15T00:30:00Z",
            "2025-03-15T01:10:00Z",
            "2025-03-16T01:00:00Z",
        ],
    ),
    "5m": (
        "1m0s",
        [
            "2025-03-13T12:00:00Z",
            "2025-03-14T23:55:00Z",
            "2025-03-15T00:00:00Z",
            "2025-03-15T00:25:00Z",
            "2025-03-15T00:30:00Z",
            "2025-03-15T01:10:00Z",
            "2025-03-16T01:00:00Z",
        ],
    ),
    "30m": (
        "30m0s",
        [
            "2025-03-13T12:00:00Z",
            "2025-03-14T23:30:00Z",
            "2025-03-15T00:00:00Z",
            "2025-03-15T00:30:00Z",
            "2025-03-15T01:00:00Z",
            "2025-03-16T01:00:00Z",
        ],
    ),
    "1h": (
        "30m0s",
        [
            "2025-03-13T12:00:00Z",
            "2025-03-14T23:00:00Z",
            "2025-03-15T00:00:00Z",
            "2025-03-15T01:00:00Z",
            "2025-03-16T01:00:00Z",
        ],
    ),
    "24h": (
        "24h0m0s",
        [
            "2025-03-13T00:00:00Z",
            "2025-03-14T00:00:00Z",
            "2025-03-15T00:00:00Z",
            "2025-03-16T00:00:00Z",
        ],
    ),
    "48h": ("24h0m0s", ["2025-03-13T00:00:00Z", "2025-03-15T00:00:00Z"]),
}
# Bucket values worked out by hand from AGG_POINTS, in the order of AGG_TIMES.
AGG_VALUES = {
    ("1m", "sum"): [8, 5, 2, 10, 1, 6, 3, 7],
    ("1m", "avg"): [8, 5, 1, 10, 1, 6, 3, 7],
    ("1m", "min"): [8, 5, -2, 10, 1, 6, 3, 7],
    ("1m", "max"): [8, 5, 4, 10, 1, 6, 3, 7],
    ("1m", "last"): [8, 5, -2, 10, 1, 6, 3, 7],
    ("5m", "sum"): [8, 5, 12, 1, 6, 3, 7],
    ("5m", "avg"): [8, 5, 4, 1, 6, 3, 7],
    ("5m", "min"): [8, 5, -2, 1, 6, 3, 7],
    ("5m", "max"): [8, 5, 10, 1, 6, 3, 7],
    ("5m", "last"): [8, 5, 10, 1, 6, 3, 7],
    ("30m", "sum"): [8, 5, 13, 6, 3, 7],
    ("30m", "avg"): [8, 5, 3.25, 6, 3, 7],
    ("30m", "min"): [8, 5, -2, 6, 3, 7],
    ("30m", "max"): [8, 5, 10, 6, 3, 7],
    ("30m", "last"): [8, 5, 1, 6, 3, 7],
    ("1h", "sum"): [8, 5, 19, 3, 7],
    ("1h", "avg"): [8, 5, 3.8, 3, 7],
    ("1h", "min"): [8, 5, -2, 3, 7],
    ("1h", "max"): [8, 5, 10, 3, 7],
    ("1h", "last"): [8, 5, 6, 3, 7],
    ("24h", "sum"): [8, 5, 22, 7],
    ("24h", "avg"): [8, 5, 22 / 6, 7],
    ("24h", "min"): [8, 5, -2, 7],
    ("24h", "max"): [8, 5, 10, 7],
    ("24h", "last"): [8, 5, 3, 7],
    ("48h", "sum"): [13, 29],
    ("48h", "avg"): [6.5, 29 / 7],
    ("48h", "min"): [5, -2],
    ("48h", "max"): [8, 10],
    ("48h", "last"): [5, 7],
}
LEVELS = [
    {"interval": "1m0s", "retention": "168h0m0s"},
    {"interval": "30m0s", "retention": "2160h0m0s"},
    {"interval": "24h0m0s", "retention": "18000h0m0s"},
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """One server with the edge points, the aggregate points and the sample-range points."""
    server = ServerProcess(tmp_path_factory.mktemp("metrics"), now=NOW).start()
    with server.client() as http:
        ingest_ok(http, "queue-q1", "jobSubmitted", EDGE_POINTS)
        for aggregate_name, short in AGG_DEFINITIONS.items():
            assert register(http, short, aggregate_name).status_code == 200
            ingest_ok(http, "queue-agg", short, AGG_POINTS)
        ingest_ok(
            http,
            "system-total",
            "metricDef-volumeAttachTime",
            [
                ("2025-03-13T04:51:25Z", 6.741566292),
                ("2025-03-13T05:40:59.5Z", 6.554704421),
                ("2025-03-15T00:00:00Z", 9),
            ],
        )
        yield http
    server.stop()


@pytest.fixture
def fresh(server: ServerProcess, http: httpx.Client) -> httpx.Client:
    """A client of a server of its own, for cases that need an empty store."""
    return http


def edge_query(http: httpx.Client, start: str, end: str, interval: str = "1m") -> list:
    return points_of(
        http, "queue-q1", "jobSubmitted", interval=interval, start=start, end=end
    )


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = strict_json(response)
    assert body["statusCode"] == status
    return body


def stored_nothing(http: httpx.Client, object_id: str, definition: str) -> bool:
    for interval in ("1m", "30m", "24h"):
        found = points_of(
            http,
            object_id,
            definition,
            interval=interval,
            start="2025-03-01T00:00:00Z",
            end="2025-03-17T00:00:00Z",
        )
        if found:
            return False
    return True


# ------------------------------------------------------- query parameters --


@pytest.mark.parametrize(
    "start",
    [
        "2025-03-15T00:00:00Z",
        "2025-03-15T00:00:00%2B00:00",
        "2025-03-15T01:00:00%2B01:00",
        "2025-03-15T00:00:00.000000000Z",
        "2025-03-15T00:00:00z",
        "2025-03-15t00:00:00Z",
        "2025-03-15T00:00:00+00:00",
        "2025-03-15T00:00:00%2000:00",
        "2025-03-14T19:00:00-05:00",
    ],
)
def test_start_forms_give_reference(store, start):
    url = f"{SERIES}?interval=1m&start={start}&end=2025-03-15T01:00:00Z"
    response = store.get(url)
    assert response.status_code == 200, response.text
    points = [(p["time"], p["value"]) for p in strict_json(response)["points"]]
    assert points == REFERENCE


def test_raw_plus_offset_is_accepted(store):
    url = (
        f"{SERIES}?interval=1m&start=2025-03-15T00:00:00+00:00&end=2025-03-15T01:00:00Z"
    )
    response = store.get(url)
    assert b"+00:00" in response.request.url.query
    assert response.status_code == 200


@pytest.mark.parametrize(
    "text",
    [
        "2025-03-15T00:00:00",
        "2025-03-15",
        "1742000000",
        "2025-02-29T00:00:00Z",
        "2025-03-15T00:00:60Z",
        "",
        "2025-03-15T24:00:00Z",
        "2025-03-15T00:00:00+24:00",
        "2025-03-15T00:00:00.0000000001Z",
        "2262-04-11T23:47:16.854775808Z",
    ],
)
@pytest.mark.parametrize("name", ["start", "end"])
def test_bad_time_is_400(store, name, text):
    params = {"interval": "1m", "start": "2025-03-15T00:00:00Z"}
    params["end"] = "2025-03-15T01:00:00Z"
    params[name] = text
    body = error_of(values(store, "queue-q1", "jobSubmitted", **params), 400)
    assert body["field"] == name


def test_start_after_end_is_400(store):
    response = values(
        store,
        "queue-q1",
        "jobSubmitted",
        interval="1m",
        start="2025-03-15T01:00:00Z",
        end="2025-03-15T00:00:00Z",
    )
    assert error_of(response, 400)["field"] == "start"


def test_start_equal_end_is_400(store):
    response = values(
        store,
        "queue-q1",
        "jobSubmitted",
        interval="1m",
        start="2025-03-15T00:00:00Z",
        end="2025-03-15T00:00:00Z",
    )
    assert error_of(response, 400)["field"] == "start"


def test_range_without_data_is_empty(store):
    response = values(
        store,
        "queue-q1",
        "jobSubmitted",
        interval="1m",
        start="2020-01-01T00:00:00Z",
        end="2020-01-01T01:00:00Z",
    )
    assert response.status_code == 200
    assert strict_json(response)["points"] == []


@pytest.mark.parametrize("definition", ["nope", "metricDef-nope", "metricDef-"])
def test_unknown_definition_is_404(store, definition):
    response = values(store, "queue-q1", definition, interval="1m")
    assert error_of(response, 404)["field"] == "definitionID"


def test_unknown_object_has_no_points(store):
    response = values(store, "queue-never", "jobSubmitted", interval="1m")
    assert response.status_code == 200
    body = strict_json(response)
    assert body["points"] == []
    assert body["id"] == "metricDef-jobSubmitted.queue-never"


def test_both_definition_forms_agree(store):
    params = {"interval": "1m", "start": "2025-03-15T00:00:00Z"}
    params["end"] = "2025-03-15T01:00:00Z"
    short = values(store, "queue-q1", "jobSubmitted", **params)
    full = values(store, "queue-q1", "metricDef-jobSubmitted", **params)
    assert strict_json(short) == strict_json(full)
    assert strict_json(full)["id"] == "metricDef-jobSubmitted.queue-q1"


# ------------------------------------------------------ buckets and edges --


def test_end_is_exclusive(store):
    found = edge_query(store, "2025-03-15T00:00:00Z", "2025-03-15T00:02:00Z")
    assert found == [("2025-03-15T00:00:00Z", 3), ("2025-03-15T00:01:00Z", 4)]


def test_adjacent_window_counts_once(store):
    first = edge_query(store, "2025-03-15T00:00:00Z", "2025-03-15T00:02:00Z")
    second = edge_query(store, "2025-03-15T00:02:00Z", "2025-03-15T00:04:00Z")
    assert second == [("2025-03-15T00:02:00Z", 8)]
    assert sum(v for _, v in first + second) == 15


def test_start_inside_bucket_includes_it(store):
    found = edge_query(store, "2025-03-15T00:00:30Z", "2025-03-15T00:01:00Z")
    assert found == [("2025-03-15T00:00:00Z", 3)]


def test_last_nanosecond_start_includes_bucket(store):
    found = edge_query(store, "2025-03-15T00:00:59.999999999Z", "2025-03-15T00:01:00Z")
    assert found == [("2025-03-15T00:00:00Z", 3)]


def test_end_past_bucket_start_includes_it(store):
    found = edge_query(store, "2025-03-15T00:00:00Z", "2025-03-15T00:01:00.000000001Z")
    assert found == [("2025-03-15T00:00:00Z", 3), ("2025-03-15T00:01:00Z", 4)]


def test_coarse_start_inside_bucket(store):
    found = edge_query(store, "2025-03-15T00:10:00Z", "2025-03-15T00:30:00Z", "30m")
    assert found == [("2025-03-15T00:00:00Z", 15)]


@pytest.mark.parametrize("interval", ["1m", "60s", "1m0s", "60000ms"])
def test_minute_interval_forms(store, interval):
    found = edge_query(store, "2025-03-15T00:00:00Z", "2025-03-16T00:00:00Z", interval)
    assert found == REFERENCE


@pytest.mark.parametrize(
    ("interval", "level"),
    [
        ("30m", "30m0s"),
        ("0.5h", "30m0s"),
        ("1800s", "30m0s"),
        ("30m0s", "30m0s"),
        ("24h", "24h0m0s"),
        ("1440m", "24h0m0s"),
        ("24h0m0s", "24h0m0s"),
        ("5m", "1m0s"),
        ("1h", "30m0s"),
        ("48h", "24h0m0s"),
    ],
)
def test_coarse_interval_forms(store, interval, level):
    response = values(
        store,
        "queue-q1",
        "jobSubmitted",
        interval=interval,
        start="2025-03-15T00:00:00Z",
        end="2025-03-16T00:00:00Z",
    )
    assert response.status_code == 200, response.text
    body = strict_json(response)
    assert body["points"] == [{"time": "2025-03-15T00:00:00Z", "value": 15}]
    assert body["metaData"]["interval"] == level


@pytest.mark.parametrize(
    "interval",
    ["1d", "1M", "abc", "7s", "", "0s", "-1m", "90s", "1m30s", "1h1s", "1ns", "5 m"],
)
def test_bad_interval_is_400(store, interval):
    response = values(
        store,
        "queue-q1",
        "jobSubmitted",
        interval=interval,
        start="2025-03-15T00:00:00Z",
        end="2025-03-16T00:00:00Z",
    )
    assert error_of(response, 400)["field"] == "interval"


@pytest.mark.parametrize("aggregate_name", sorted(AGG_DEFINITIONS))
@pytest.mark.parametrize("interval", sorted(AGG_TIMES))
def test_hand_computed_buckets(store, interval, aggregate_name):
    level, times = AGG_TIMES[interval]
    response = values(
        store,
        "queue-agg",
        AGG_DEFINITIONS[aggregate_name],
        interval=interval,
        start="2025-03-13T00:00:00Z",
        end="2025-03-17T00:00:00Z",
    )
    assert response.status_code == 200, response.text
    body = strict_json(response)
    assert body["metaData"] == {"interval": level}
    assert [p["time"] for p in body["points"]] == times
    assert [p["value"] for p in body["points"]] == AGG_VALUES[
        (interval, aggregate_name)
    ]


def test_48h_bucket_starts_on_even_day(store):
    day = parse_time("2025-03-13T00:00:00Z") // (86_400 * 10**9)
    assert day % 2 == 0
    found = points_of(
        store,
        "queue-agg",
        "aggSum",
        interval="48h",
        start="2025-03-14T12:00:00Z",
        end="2025-03-15T00:00:00Z",
    )
    assert found == [("2025-03-13T00:00:00Z", 13)]


def test_96h_reaggregates_from_day(store):
    found = points_of(
        store,
        "queue-agg",
        "aggSum",
        interval="96h",
        start="2025-03-13T00:00:00Z",
        end="2025-03-17T00:00:00Z",
    )
    # 2025-03-13 is day 20160 since 1970-01-01, a multiple of 4.
    assert found == [("2025-03-13T00:00:00Z", 42)]


# ---------------------------------------------------- default start / end --


def test_spec_sample_query(store):
    response = store.get(
        "/api/v1/metricValue/system-total/metricDef-volumeAttachTime"
        "?interval=1m&end=2025-03-15T00:00:00Z"
    )
    assert response.status_code == 200
    body = strict_json(response)
    assert body["id"] == "metricDef-volumeAttachTime.system-total"
    assert body["points"] == [
        {"time": "2025-03-13T04:51:00Z", "value": 6.741566292},
        {"time": "2025-03-13T05:40:00Z", "value": 6.554704421},
    ]
    assert body["metaData"] == {
        "interval": "1m0s",
        "retainedFrom": "2025-03-09T12:00:00Z",
    }


def test_default_start_is_end_minus_retention(store):
    ingest_ok(
        store,
        "queue-window",
        "jobSubmitted",
        [("2025-03-13T11:59:00Z", 1), ("2025-03-13T12:00:00Z", 2)],
    )
    response = values(
        store, "queue-window", "jobSubmitted", interval="1m", end="2025-03-20T12:00:00Z"
    )
    body = strict_json(response)
    assert body["points"] == [{"time": "2025-03-13T12:00:00Z", "value": 2}]
    assert body["metaData"] == {"interval": "1m0s"}


def test_default_end_is_now(store):
    ingest_ok(
        store,
        "queue-now",
        "jobSubmitted",
        [
            ("2025-03-16T11:59:59.999999999Z", 4),
            ("2025-03-16T12:00:00Z", 16),
            ("2025-03-16T12:01:00Z", 32),
        ],
    )
    response = values(store, "queue-now", "jobSubmitted")
    body = strict_json(response)
    assert body["points"] == [{"time": "2025-03-16T11:59:00Z", "value": 4}]
    assert body["metaData"] == {"interval": "1m0s"}


def test_default_range_of_coarse_level(store):
    response = values(store, "queue-window", "jobSubmitted", interval="30m")
    body = strict_json(response)
    assert body["points"] == [
        {"time": "2025-03-13T11:30:00Z", "value": 1},
        {"time": "2025-03-13T12:00:00Z", "value": 2},
    ]
    assert body["metaData"] == {"interval": "30m0s"}


def test_old_start_picks_covering_level(store):
    response = values(
        store, "queue-agg", "aggSum", start="2025-03-01T00:00:00Z", end=NOW
    )
    body = strict_json(response)
    assert body["metaData"] == {"interval": "30m0s"}
    assert len(body["points"]) == 6


def test_recent_start_picks_finest_level(store):
    response = values(
        store, "queue-agg", "aggSum", start="2025-03-15T00:00:00Z", end=NOW
    )
    assert strict_json(response)["metaData"] == {"interval": "1m0s"}


def test_very_old_start_picks_coarsest_level(store):
    response = values(store, "queue-agg", "aggSum", start="2020-01-01T00:00:00Z")
    body = strict_json(response)
    assert body["metaData"] == {
        "interval": "24h0m0s",
        "retainedFrom": "2023-02-26T00:00:00Z",
    }
    assert [p["value"] for p in body["points"]] == [8, 5, 22, 7]


def test_uncovered_start_gives_retained_from(store):
    response = values(
        store,
        "queue-agg",
        "aggSum",
        interval="1m",
        start="2025-03-01T00:00:00Z",
        end=NOW,
    )
    body = strict_json(response)
    assert body["metaData"] == {
        "interval": "1m0s",
        "retainedFrom": "2025-03-09T12:00:00Z",
    }
    assert len(body["points"]) == 8


def test_uncovered_start_reaggregates_finest(store):
    response = values(
        store,
        "queue-agg",
        "aggSum",
        interval="2m",
        start="2025-03-01T00:00:00Z",
        end="2025-03-15T00:02:00Z",
    )
    body = strict_json(response)
    assert body["metaData"] == {
        "interval": "1m0s",
        "retainedFrom": "2025-03-09T12:00:00Z",
    }
    assert body["points"] == [
        {"time": "2025-03-13T12:00:00Z", "value": 8},
        {"time": "2025-03-14T23:58:00Z", "value": 5},
        {"time": "2025-03-15T00:00:00Z", "value": 12},
    ]


# -------------------------------------------------------------- ingestion --


def test_ingest_returns_accepted(store):
    response = ingest(
        store,
        "custom-accepted",
        "jobSubmitted",
        [("2025-03-15T00:00:00Z", 1), ("2025-03-15T00:00:01Z", 2.5)],
    )
    assert response.status_code == 200
    assert strict_json(response) == {"accepted": 2}


def test_ingest_empty_list_accepts_none(store):
    response = ingest(store, "custom-empty", "jobSubmitted", [])
    assert response.status_code == 200
    assert strict_json(response) == {"accepted": 0}


@pytest.mark.parametrize(
    ("point", "field"),
    [
        ({"time": "2025-03-15T00:00:00", "value": 1}, "points[1].time"),
        ({"time": 1742000000, "value": 1}, "points[1].time"),
        ({"time": "2025-02-29T00:00:00Z", "value": 1}, "points[1].time"),
        ({"time": "2025-03-16T12:05:00.000000001Z", "value": 1}, "points[1].time"),
        ({"time": "2025-03-15T00:00:00Z", "value": "NaN"}, "points[1].value"),
        ({"time": "2025-03-15T00:00:00Z", "value": "1"}, "points[1].value"),
        ({"time": "2025-03-15T00:00:00Z", "value": True}, "points[1].value"),
        ({"time": "2025-03-15T00:00:00Z", "value": None}, "points[1].value"),
        ({"time": "2025-03-15T00:00:00Z", "value": [1]}, "points[1].value"),
        ({"time": "2025-03-15T00:00:00Z", "value": 10**400}, "points[1].value"),
        ({"time": "2025-03-15T00:00:00Z"}, "points[1]"),
        ({"value": 1}, "points[1]"),
        (5, "points[1]"),
    ],
)
def test_bad_point_stores_nothing(store, point, field):
    good = {"time": "2025-03-15T00:00:00Z", "value": 1}
    object_id = "custom-bad-point"
    response = store.post(
        f"/api/v1/metricValue/{object_id}/jobSubmitted",
        json={"points": [good, point]},
    )
    body = error_of(response, 400)
    assert body["field"] == field
    assert "points[1]" in body["message"]
    assert stored_nothing(store, object_id, "jobSubmitted")


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
def test_non_finite_token_names_point(store, token):
    object_id = "custom-non-finite"
    raw = (
        '{"points":[{"time":"2025-03-15T00:00:00Z","value":1},'
        f'{{"time":"2025-03-15T00:00:01Z","value":{token}}}]}}'
    )
    response = store.post(
        f"/api/v1/metricValue/{object_id}/jobSubmitted",
        content=raw.encode(),
        headers={"content-type": "application/json"},
    )
    body = error_of(response, 400)
    assert body["field"] == "points[1].value"
    assert stored_nothing(store, object_id, "jobSubmitted")


def test_five_minutes_ahead_is_accepted(store):
    response = ingest(
        store, "custom-ahead", "jobSubmitted", [("2025-03-16T12:05:00Z", 1)]
    )
    assert response.status_code == 200


def test_ingest_unknown_definition_is_404(store):
    response = ingest(store, "custom-x", "nope", [("2025-03-15T00:00:00Z", 1)])
    assert error_of(response, 404)["field"] == "definitionID"


@pytest.mark.parametrize("object_id", ["-bad", "a" * 141, "a%20b", "%C3%A9t%C3%A9"])
def test_ingest_bad_object_is_400(store, object_id):
    response = ingest(store, object_id, "jobSubmitted", [("2025-03-15T00:00:00Z", 1)])
    assert error_of(response, 400)["field"] == "objectID"


def test_longest_object_id_is_accepted(store):
    object_id = "a" * 140
    ingest_ok(store, object_id, "jobSubmitted", [("2025-03-15T00:00:00Z", 1)])
    found = points_of(
        store,
        object_id,
        "jobSubmitted",
        interval="1m",
        start="2025-03-15T00:00:00Z",
        end="2025-03-15T00:01:00Z",
    )
    assert found == [("2025-03-15T00:00:00Z", 1)]


@pytest.mark.parametrize(
    "body", [b"[]", b'{"points": {}}', b"{}", b"not json", b'{"points": null}']
)
def test_ingest_bad_body_is_400(store, body):
    response = store.post(
        "/api/v1/metricValue/custom-body/jobSubmitted",
        content=body,
        headers={"content-type": "application/json"},
    )
    error_of(response, 400)


def test_offset_times_are_stored_in_utc(store):
    ingest_ok(
        store, "custom-offset", "jobSubmitted", [("2025-03-15T05:30:10+05:30", 1)]
    )
    found = points_of(
        store,
        "custom-offset",
        "jobSubmitted",
        interval="1m",
        start="2025-03-15T00:00:00Z",
        end="2025-03-15T00:01:00Z",
    )
    assert found == [("2025-03-15T00:00:00Z", 1)]


# ------------------------------------------------------------ bulk ingest --


def bulk_points(store: httpx.Client, object_id: str, short: str = "aggSum") -> list:
    return points_of(
        store,
        object_id,
        short,
        interval="1m",
        start="2025-03-15T00:00:00Z",
        end="2025-03-15T01:00:00Z",
    )


def test_arrow_bulk_is_stored(store):
    rows = [
        ("aggSum", "custom-arrow", "2025-03-15T00:00:01Z", 1.5),
        ("metricDef-aggSum", "custom-arrow", "2025-03-15T00:00:02Z", 2.0),
        ("aggMax", "custom-arrow", "2025-03-15T00:01:00Z", 7.0),
    ]
    response = post_bulk(store, arrow_rows(rows), ARROW_STREAM)
    assert response.status_code == 200, response.text
    assert strict_json(response) == {"accepted": 3}
    assert bulk_points(store, "custom-arrow") == [("2025-03-15T00:00:00Z", 3.5)]
    assert bulk_points(store, "custom-arrow", "aggMax") == [("2025-03-15T00:01:00Z", 7)]


def test_arrow_int64_times_are_stored(store):
    body = arrow_stream(
        {
            "definition": pa.array(["aggSum", "aggSum"]),
            "object": pa.array(["custom-arrow-int", "custom-arrow-int"]),
            "time": pa.array(
                [
                    parse_time("2025-03-15T00:02:00Z"),
                    parse_time("2025-03-15T00:02:30Z"),
                ],
                pa.int64(),
            ),
            "value": pa.array([1.0, 4.0], pa.float64()),
        }
    )
    response = post_bulk(store, body, ARROW_STREAM)
    assert response.status_code == 200, response.text
    assert strict_json(response) == {"accepted": 2}
    assert bulk_points(store, "custom-arrow-int") == [("2025-03-15T00:02:00Z", 5)]


def test_ndjson_bulk_is_stored(store):
    rows = [
        ("aggSum", "custom-ndjson", "2025-03-15T00:00:01Z", 1),
        ("aggSum", "custom-ndjson", "2025-03-15T05:30:02+05:30", 2.5),
        ("metricDef-aggSum", "custom-ndjson", "2025-03-15t00:03:00.5z", 4),
    ]
    response = post_bulk(store, ndjson_rows(rows), NDJSON)
    assert response.status_code == 200, response.text
    assert strict_json(response) == {"accepted": 3}
    assert bulk_points(store, "custom-ndjson") == [
        ("2025-03-15T00:00:00Z", 3.5),
        ("2025-03-15T00:03:00Z", 4),
    ]


def test_content_type_parameters_are_accepted(store):
    rows = [("aggSum", "custom-ndjson-charset", "2025-03-15T00:00:01Z", 1)]
    response = post_bulk(store, ndjson_rows(rows), NDJSON + "; charset=utf-8")
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("encode", [arrow_rows, ndjson_rows], ids=["arrow", "ndjson"])
def test_bulk_later_duplicate_wins(store, encode):
    object_id = f"custom-dup-{encode.__name__}"
    rows = [
        ("aggSum", object_id, "2025-03-15T00:00:05Z", 1.0),
        ("aggSum", object_id, "2025-03-15T00:00:05Z", 2.0),
        ("metricDef-aggSum", object_id, "2025-03-15T00:00:05Z", 3.0),
    ]
    response = post_bulk(
        store, encode(rows), ARROW_STREAM if encode is arrow_rows else NDJSON
    )
    assert response.status_code == 200, response.text
    assert strict_json(response) == {"accepted": 3}
    assert bulk_points(store, object_id) == [("2025-03-15T00:00:00Z", 3)]


BAD_ROWS = {
    "nan": ("aggSum", "OBJ", "2025-03-15T00:00:02Z", math.nan),
    "infinity": ("aggSum", "OBJ", "2025-03-15T00:00:02Z", math.inf),
    "minus-infinity": ("aggSum", "OBJ", "2025-03-15T00:00:02Z", -math.inf),
    "future": ("aggSum", "OBJ", "2025-03-16T12:05:00.000000001Z", 1.0),
    "unknown-definition": ("nope", "OBJ", "2025-03-15T00:00:02Z", 1.0),
    "bad-object": ("aggSum", "-OBJ", "2025-03-15T00:00:02Z", 1.0),
    "long-object": ("aggSum", "o" * 141, "2025-03-15T00:00:02Z", 1.0),
    "empty-object": ("aggSum", "", "2025-03-15T00:00:02Z", 1.0),
}


def bad_batch(object_id: str, bad: tuple) -> list:
    definition, obj, time, value = bad
    return [
        ("aggSum", object_id, "2025-03-15T00:00:00Z", 1.0),
        ("aggSum", object_id, "2025-03-15T00:00:01Z", 1.0),
        (definition, obj.replace("OBJ", object_id), time, value),
        ("aggSum", object_id, "2025-03-15T00:00:03Z", 1.0),
    ]


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_arrow_bad_row_stores_nothing(store, case):
    object_id = f"custom-arrow-bad-{case}"
    response = post_bulk(
        store, arrow_rows(bad_batch(object_id, BAD_ROWS[case])), ARROW_STREAM
    )
    body = error_of(response, 400)
    assert body["value"] == 2
    assert "row 2" in body["message"]
    assert stored_nothing(store, object_id, "aggSum")


NDJSON_BAD_LINES = {
    **{
        case: None
        for case in BAD_ROWS
        if case not in ("nan", "infinity", "minus-infinity")
    },
    "nan-token": b'{"definition":"aggSum","object":"OBJ","time":"2025-03-15T00:00:02Z","value":NaN}',
    "infinity-token": b'{"definition":"aggSum","object":"OBJ","time":"2025-03-15T00:00:02Z","value":Infinity}',
    "overflow": b'{"definition":"aggSum","object":"OBJ","time":"2025-03-15T00:00:02Z","value":1e999}',
    "string-value": b'{"definition":"aggSum","object":"OBJ","time":"2025-03-15T00:00:02Z","value":"1"}',
    "bool-value": b'{"definition":"aggSum","object":"OBJ","time":"2025-03-15T00:00:02Z","value":true}',
    "null-value": b'{"definition":"aggSum","object":"OBJ","time":"2025-03-15T00:00:02Z","value":null}',
    "no-offset": b'{"definition":"aggSum","object":"OBJ","time":"2025-03-15T00:00:02","value":1}',
    "number-time": b'{"definition":"aggSum","object":"OBJ","time":1742000000,"value":1}',
    "missing-time": b'{"definition":"aggSum","object":"OBJ","value":1}',
    "not-json": b"{oops",
    "array": b"[1, 2]",
}


@pytest.mark.parametrize("case", sorted(NDJSON_BAD_LINES))
def test_ndjson_bad_row_stores_nothing(store, case):
    object_id = f"custom-ndjson-bad-{case}"
    line = NDJSON_BAD_LINES[case]
    if line is None:
        body = ndjson_rows(bad_batch(object_id, BAD_ROWS[case]))
    else:
        lines = ndjson_rows(bad_batch(object_id, BAD_ROWS["future"])).split(b"\n")
        lines[2] = line.replace(b"OBJ", object_id.encode())
        body = b"\n".join(lines)
    response = post_bulk(store, body, NDJSON)
    body = error_of(response, 400)
    assert body["value"] == 2
    assert "row 2" in body["message"]
    assert stored_nothing(store, object_id, "aggSum")


@pytest.mark.parametrize("case", ["unknown-definition", "not-json"])
def test_ndjson_blank_lines_do_not_shift_rows(store, case):
    object_id = f"custom-ndjson-blank-{case}"
    lines = ndjson_rows(bad_batch(object_id, BAD_ROWS["unknown-definition"])).split(
        b"\n"
    )
    if case == "not-json":
        lines[2] = b"{oops"
    body = b"\n".join([b"", lines[0], b"", b"  ", *lines[1:]])
    body = error_of(post_bulk(store, body, NDJSON), 400)
    assert body["value"] == 2
    assert "row 2" in body["message"]


@pytest.mark.parametrize(
    "columns",
    [
        {"definition": pa.array(["aggSum"]), "object": pa.array(["x"])},
        {
            "definition": pa.array(["aggSum"]),
            "object": pa.array(["x"]),
            "time": pa.array([1], pa.timestamp("us", tz="UTC")),
            "value": pa.array([1.0]),
        },
        {
            "definition": pa.array(["aggSum"]),
            "object": pa.array(["x"]),
            "time": pa.array([1], pa.timestamp("ns")),
            "value": pa.array([1.0]),
        },
        {
            "definition": pa.array(["aggSum"]),
            "object": pa.array(["x"]),
            "time": pa.array(["2025-03-15T00:00:00Z"]),
            "value": pa.array([1.0]),
        },
        {
            "definition": pa.array([1]),
            "object": pa.array(["x"]),
            "time": pa.array([1], pa.int64()),
            "value": pa.array([1.0]),
        },
        {
            "definition": pa.array(["aggSum"]),
            "object": pa.array(["x"]),
            "time": pa.array([1], pa.int64()),
            "value": pa.array(["1"]),
        },
    ],
    ids=["no-time", "micro", "naive", "string-time", "int-definition", "string-value"],
)
def test_arrow_bad_schema_is_400(store, columns):
    error_of(post_bulk(store, arrow_stream(columns), ARROW_STREAM), 400)


@pytest.mark.parametrize("body", [b"", b"garbage", b"\xff" * 64])
def test_arrow_bad_stream_is_400(store, body):
    error_of(post_bulk(store, body, ARROW_STREAM), 400)


@pytest.mark.parametrize(
    "content_type", ["application/json", "text/plain", "application/octet-stream", ""]
)
def test_bulk_wrong_content_type_is_415(store, content_type):
    rows = [("aggSum", "custom-415", "2025-03-15T00:00:00Z", 1)]
    error_of(post_bulk(store, ndjson_rows(rows), content_type), 415)
    assert stored_nothing(store, "custom-415", "aggSum")


def test_bulk_over_limit_is_413(fresh):
    change = fresh.put(
        "/api/v1/configKV", json={"kvMap": {"security.limits.maxIngestBodyMB": "1"}}
    )
    assert change.status_code == 200, change.text
    row = ndjson_rows([("jobSubmitted", "custom-big", "2025-03-15T00:00:00Z", 1)])
    body = row * (1024 * 1024 // len(row) + 1)
    assert len(body) > 1024 * 1024
    response = post_bulk(fresh, body, NDJSON)
    assert error_of(response, 413)["limit"] == "security.limits.maxIngestBodyMB"
    error_of(post_bulk(fresh, body, "text/plain"), 413)
    assert stored_nothing(fresh, "custom-big", "jobSubmitted")
    fits = post_bulk(fresh, row * (1024 * 1024 // len(row)), NDJSON)
    assert fits.status_code == 200, fits.text


# ------------------------------------------------------------ definitions --


def test_register_returns_definition(store):
    response = register(store, "regNew", "max")
    assert response.status_code == 200
    assert strict_json(response) == {
        "id": "metricDef-regNew",
        "description": "test max",
        "labels": ["test"],
        "aggregate": "max",
    }


def test_register_same_body_is_noop(store):
    first = register(store, "regTwice", "min")
    second = register(store, "regTwice", "min")
    assert second.status_code == 200
    assert strict_json(second) == strict_json(first)


def test_register_changes_aggregate_without_data(store):
    assert register(store, "regChange", "min").status_code == 200
    response = register(store, "regChange", "sum")
    assert response.status_code == 200
    assert strict_json(response)["aggregate"] == "sum"


def test_register_other_aggregate_with_data_is_409(store):
    assert register(store, "regData", "max").status_code == 200
    ingest_ok(store, "custom-reg", "regData", [("2025-03-15T00:00:00Z", 1)])
    error_of(register(store, "regData", "sum"), 409)
    assert register(store, "regData", "max").status_code == 200
    ingest_ok(store, "custom-reg", "regData", [("2025-03-15T00:00:10Z", 5)])
    found = points_of(
        store,
        "custom-reg",
        "regData",
        interval="1m",
        start="2025-03-15T00:00:00Z",
        end="2025-03-15T00:01:00Z",
    )
    assert found == [("2025-03-15T00:00:00Z", 5)]


def test_register_short_path_form(store):
    body = {"description": "short form", "labels": [], "aggregate": "last"}
    response = store.put("/api/v1/metricDef/regShort", json=body)
    assert response.status_code == 200
    assert strict_json(response)["id"] == "metricDef-regShort"


def test_builtin_change_is_409(store):
    body = {"description": "x", "labels": [], "aggregate": "avg"}
    error_of(store.put("/api/v1/metricDef/metricDef-jobSubmitted", json=body), 409)


@pytest.mark.parametrize(
    "body",
    [
        {"description": "x", "labels": [], "aggregate": "median"},
        {"description": "x", "labels": []},
        {"description": "x", "labels": "a", "aggregate": "sum"},
        {"description": 5, "labels": [], "aggregate": "sum"},
        [],
    ],
)
def test_register_bad_body_is_400(store, body):
    error_of(store.put("/api/v1/metricDef/metricDef-regBad", json=body), 400)


def test_register_bad_id_is_400(store):
    body = {"description": "x", "labels": [], "aggregate": "sum"}
    error_of(store.put("/api/v1/metricDef/metricDef-a.b", json=body), 400)


# ---------------------------------------------------------- late points --


def test_late_point_joins_bucket(store):
    ingest_ok(store, "custom-late", "aggMin", [("2025-03-15T00:10:00Z", 5)])
    ingest_ok(store, "custom-late", "aggLast", [("2025-03-15T00:10:00Z", 5)])
    ingest_ok(store, "custom-late", "aggMin", [("2025-03-15T00:01:00Z", 2)])
    ingest_ok(store, "custom-late", "aggLast", [("2025-03-15T00:01:00Z", 2)])
    for interval in ("30m", "24h"):
        params = {"interval": interval, "start": "2025-03-15T00:00:00Z", "end": NOW}
        assert points_of(store, "custom-late", "aggMin", **params)[0][1] == 2
        assert points_of(store, "custom-late", "aggLast", **params)[0][1] == 5


def test_replaced_value_is_recomputed(store):
    ingest_ok(
        store,
        "custom-replace",
        "aggMax",
        [("2025-03-15T00:05:00Z", 5), ("2025-03-15T00:10:00Z", 9)],
    )
    ingest_ok(store, "custom-replace", "aggMax", [("2025-03-15T00:10:00Z", 2)])
    for interval in ("1m", "30m", "24h", "48h"):
        found = points_of(
            store,
            "custom-replace",
            "aggMax",
            interval=interval,
            start="2025-03-15T00:00:00Z",
            end=NOW,
        )
        assert max(v for _, v in found) == 5, interval


def test_replaced_value_keeps_average_exact(store):
    ingest_ok(
        store,
        "custom-replace-avg",
        "aggAvg",
        [("2025-03-15T00:05:00Z", 1), ("2025-03-15T00:10:00Z", 9)],
    )
    ingest_ok(store, "custom-replace-avg", "aggAvg", [("2025-03-15T00:10:00Z", 3)])
    ingest_ok(store, "custom-replace-avg", "aggAvg", [("2025-03-15T00:10:00Z", 3)])
    for interval in ("30m", "1h", "24h"):
        found = points_of(
            store,
            "custom-replace-avg",
            "aggAvg",
            interval=interval,
            start="2025-03-15T00:00:00Z",
            end="2025-03-16T00:00:00Z",
        )
        assert found == [("2025-03-15T00:00:00Z", 2)], interval


# ----------------------------------------------------- duplicates, NaN --


def test_retry_keeps_newest_value(fresh):
    for value in (1, 3, 3):
        ingest_ok(fresh, "queue-q1", "jobSubmitted", [("2025-03-15T00:00:00Z", value)])
    for interval, end in (
        ("1m", "2025-03-15T00:01:00Z"),
        ("30m", "2025-03-15T00:30:00Z"),
        ("24h", "2025-03-16T00:00:00Z"),
    ):
        found = points_of(
            fresh,
            "queue-q1",
            "jobSubmitted",
            interval=interval,
            start="2025-03-15T00:00:00Z",
            end=end,
        )
        assert found == [("2025-03-15T00:00:00Z", 3)], interval


def test_nanosecond_apart_points_are_distinct(fresh):
    ingest_ok(fresh, "queue-q1", "jobSubmitted", [("2025-03-15T00:00:00Z", 3)])
    ingest_ok(
        fresh, "queue-q1", "jobSubmitted", [("2025-03-15T00:00:00.000000001Z", 4)]
    )
    found = points_of(
        fresh,
        "queue-q1",
        "jobSubmitted",
        interval="1m",
        start="2025-03-15T00:00:00Z",
        end="2025-03-15T00:01:00Z",
    )
    assert found == [("2025-03-15T00:00:00Z", 7)]


def test_non_finite_values_are_rejected(fresh):
    for token in ("NaN", "Infinity", "-Infinity", "1e999", '"NaN"'):
        raw = f'{{"points":[{{"time":"2025-03-15T00:00:00Z","value":{token}}}]}}'
        response = fresh.post(
            SERIES, content=raw.encode(), headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, token
    ingest_ok(fresh, "queue-q1", "jobSubmitted", [("2025-03-15T00:00:30Z", 2)])
    for interval in ("1m", "5m", "30m", "1h", "24h", "48h"):
        response = values(
            fresh,
            "queue-q1",
            "jobSubmitted",
            interval=interval,
            start="2025-03-15T00:00:00Z",
            end="2025-03-15T00:01:00Z",
        )
        assert strict_json(response)["points"] == [
            {"time": "2025-03-15T00:00:00Z", "value": 2}
        ], interval
    items = summary(fresh, start="2025-03-15T00:00:00Z", end="2025-03-15T00:01:00Z")
    assert items["items"]["jobSubmitted"][0]["point"]["value"] == 2


def test_overflowing_sum_stays_valid_json(fresh):
    big = 1.7e308
    ingest_ok(
        fresh,
        "queue-q1",
        "jobSubmitted",
        [("2025-03-15T00:00:00Z", big), ("2025-03-15T00:00:01Z", big)],
    )
    ingest_ok(fresh, "queue-q1", "jobSubmitted", [("2025-03-15T00:05:00Z", 1)])
    response = values(
        fresh,
        "queue-q1",
        "jobSubmitted",
        interval="1m",
        start="2025-03-15T00:00:00Z",
        end="2025-03-15T01:00:00Z",
    )
    points = strict_json(response)["points"]
    assert points == [
        {"time": "2025-03-15T00:00:00Z", "value": None},
        {"time": "2025-03-15T00:05:00Z", "value": 1},
    ]
    items = summary(fresh, start="2025-03-15T00:00:00Z", end="2025-03-15T01:00:00Z")
    assert items["items"]["jobSubmitted"][0]["point"]["value"] is None


# ------------------------------------------------------------- summary --


def test_summary_inverted_range_is_400(store):
    response = store.get(
        "/api/v1/metrics/summary",
        params={"start": "2025-03-15T01:00:00Z", "end": "2025-03-15T00:00:00Z"},
    )
    assert error_of(response, 400)["field"] == "start"


def test_summary_empty_range_is_400(store):
    response = store.get(
        "/api/v1/metrics/summary",
        params={"start": "2025-03-15T00:00:00Z", "end": "2025-03-15T00:00:00Z"},
    )
    assert error_of(response, 400)["field"] == "start"


def test_summary_without_data_is_empty(store):
    body = summary(store, start="2020-01-01T00:00:00Z", end="2020-01-01T01:00:00Z")
    assert body == {"items": {}}


@pytest.mark.parametrize("text", ["2025-03-15", "", "1742000000"])
def test_summary_bad_time_is_400(store, text):
    response = store.get("/api/v1/metrics/summary", params={"start": text})
    assert error_of(response, 400)["field"] == "start"


def test_summary_unknown_definition_is_404(store):
    response = store.get("/api/v1/metrics/summary", params={"definition": "nope"})
    error_of(response, 404)


def test_summary_pools_queue_points(store):
    body = summary(
        store,
        start="2025-03-13T00:00:00Z",
        end="2025-03-17T00:00:00Z",
        definition=["aggAvg", "metricDef-aggLast", "aggSum"],
    )
    assert sorted(body["items"]) == ["aggAvg", "aggLast", "aggSum"]
    assert body["items"]["aggAvg"] == [
        {
            "id": "aggAvg",
            "point": {"time": "2025-03-16T01:00:00Z", "value": 42 / 9},
            "metaData": {"queueName": "agg"},
        }
    ]
    assert body["items"]["aggLast"][0]["point"]["value"] == 7
    assert body["items"]["aggSum"][0]["point"]["value"] == 42


def test_summary_range_is_half_open(store):
    body = summary(
        store,
        start="2025-03-15T00:00:00Z",
        end="2025-03-15T00:02:00Z",
        definition="jobSubmitted",
    )
    item = body["items"]["jobSubmitted"][0]
    assert item["point"] == {"time": "2025-03-15T00:01:00Z", "value": 7}
    assert item["metaData"] == {"queueName": "q1"}


def test_summary_is_exact_per_point(store):
    body = summary(
        store,
        start="2025-03-15T00:00:59.999999999Z",
        end="2025-03-15T00:01:00.000000001Z",
        definition="jobSubmitted",
    )
    item = body["items"]["jobSubmitted"][0]
    assert item["point"] == {"time": "2025-03-15T00:01:00Z", "value": 6}


def test_summary_skips_system_total(store):
    body = summary(store, start="2025-03-13T00:00:00Z", end="2025-03-16T00:00:00Z")
    assert "volumeAttachTime" not in body["items"]


# ---------------------------------------------------------------- listing --


def test_metric_list(fresh):
    assert register(fresh, "gauge", "last").status_code == 200
    assert register(fresh, "unused", "sum").status_code == 200
    for object_id, short in [
        ("queue-q1", "jobSubmitted"),
        ("job-j1", "runtime"),
        ("node-n1", "gauge"),
        ("custom-x", "gauge"),
        ("queue-", "gauge"),
    ]:
        ingest_ok(fresh, object_id, short, [("2025-03-15T00:00:00Z", 1)])
    response = fresh.get("/api/v1/metric")
    assert response.status_code == 200
    listed = {metric["id"]: metric for metric in strict_json(response)}
    expected_ids = {f"metricDef-{d.short}.system-total" for d in BUILTINS}
    expected_ids |= {
        "metricDef-jobSubmitted.queue-q1",
        "metricDef-runtime.job-j1",
        "metricDef-gauge.node-n1",
        "metricDef-gauge.custom-x",
        "metricDef-gauge.queue-",
    }
    assert set(listed) == expected_ids
    for metric in listed.values():
        assert metric["levels"] == LEVELS
    assert listed["metricDef-jobSubmitted.queue-q1"]["object"] == {
        "id": "queue-q1",
        "type": "queue",
        "name": "q1",
    }
    assert listed["metricDef-runtime.job-j1"]["object"]["type"] == "job"
    assert listed["metricDef-runtime.job-j1"]["object"]["name"] == "j1"
    assert listed["metricDef-gauge.node-n1"]["object"]["type"] == "node"
    assert listed["metricDef-gauge.custom-x"]["object"]["type"] == "custom"
    assert listed["metricDef-gauge.queue-"]["object"]["type"] == "custom"
    assert listed["metricDef-runtime.system-total"]["object"] == {
        "id": "system-total",
        "type": "system-total",
        "name": "system-total",
    }
    runtime = listed["metricDef-runtime.system-total"]
    assert runtime["name"] == "Total runtime of jobs"
    assert runtime["definition"]["id"] == "metricDef-runtime"
    assert runtime["definition"]["labels"] == ["duration"]
    assert listed["metricDef-gauge.node-n1"]["definition"]["description"] == "test last"


# ------------------------------------------------ restarts and time zones --


def restart_queries(http: httpx.Client) -> list[bytes]:
    queries = []
    for interval in ("1m", "5m", "30m", "1h", "24h", "48h"):
        for short in ("jobSubmitted", "runtime", "gauge"):
            response = values(
                http,
                "queue-q1",
                short,
                interval=interval,
                start="2025-03-14T00:00:00Z",
                end="2025-03-16T12:00:00Z",
            )
            assert response.status_code == 200
            queries.append(response.content)
    queries.append(
        summary_bytes(http, start="2025-03-14T00:00:00Z", end="2025-03-16T12:00:00Z")
    )
    queries.append(http.get("/api/v1/metric").content)
    return queries


def summary_bytes(http: httpx.Client, **params: str) -> bytes:
    response = http.get("/api/v1/metrics/summary", params=params)
    assert response.status_code == 200
    return response.content


def test_restart_gives_same_answers(server_factory):
    server = server_factory(NOW)
    with server.client() as http:
        assert register(http, "gauge", "max").status_code == 200
        ingest_ok(
            http,
            "queue-q1",
            "jobSubmitted",
            [("2025-03-15T00:00:10Z", 1), ("2025-03-14T10:00:00Z", 2)],
        )
        ingest_ok(http, "queue-q1", "gauge", [("2025-03-15T00:00:10Z", 4)])
        post_events(
            http,
            "job-r",
            [
                event("Job-Running", "2025-03-15T00:00:00Z"),
                event("Job-Succeeded", "2025-03-15T00:10:00Z"),
            ],
        )
        before = restart_queries(http)
    server.restart()
    with server.client() as http:
        assert restart_queries(http) == before
        # Writes after the restart meet the buckets written before it.
        ingest_ok(http, "queue-q1", "jobSubmitted", [("2025-03-15T00:00:05Z", 2)])
        ingest_ok(http, "queue-q1", "jobSubmitted", [("2025-03-15T00:00:10Z", 4)])
        ingest_ok(http, "queue-q1", "gauge", [("2025-03-15T00:00:10Z", 3)])
        for interval in ("1m", "30m", "24h"):
            params = {"interval": interval, "start": "2025-03-15T00:00:00Z"}
            params["end"] = "2025-03-15T00:01:00Z"
            found = points_of(http, "queue-q1", "jobSubmitted", **params)
            assert found == [("2025-03-15T00:00:00Z", 6)], interval
            assert points_of(http, "queue-q1", "gauge", **params)[0][1] == 3
        post_events(http, "job-r", [event("Job-Running", "2025-03-14T23:50:00Z")])
        found = points_of(
            http,
            "queue-q1",
            "runtime",
            interval="30m",
            start="2025-03-15T00:00:00Z",
            end="2025-03-15T01:00:00Z",
        )
        assert found == [("2025-03-15T00:00:00Z", 1200)]


def timezone_checks(http: httpx.Client) -> None:
    found = points_of(
        http,
        "queue-q1",
        "jobSubmitted",
        interval="1m",
        start="2025-03-15T00:00:00Z",
        end="2025-03-15T00:01:00Z",
    )
    assert found == [("2025-03-15T00:00:00Z", 1)]
    for start, end in (
        ("2025-03-14T18:30:00Z", "2025-03-14T18:31:00Z"),
        ("2025-03-15T05:30:00Z", "2025-03-15T05:31:00Z"),
    ):
        shifted = points_of(
            http, "queue-q1", "jobSubmitted", interval="1m", start=start, end=end
        )
        assert shifted == []
    job = strict_json(http.get("/api/v1/job/job-1"))
    assert job["createdAt"] == "2025-03-15T00:00:00.123456789Z"
    queue = points_of(
        http,
        "queue-q9",
        "jobSubmitted",
        interval="1m",
        start="2025-03-15T00:00:00Z",
        end="2025-03-15T00:01:00Z",
    )
    assert queue == [("2025-03-15T00:00:00Z", 1)]


def test_process_time_zone_does_not_shift(server_factory):
    server = server_factory(NOW, env={"TZ": "Asia/Kolkata"})
    with server.client() as http:
        ingest_ok(http, "queue-q1", "jobSubmitted", [("2025-03-15T00:00:00Z", 1)])
        post_events(
            http,
            "job-1",
            [event("Job-Creating", "2025-03-15T00:00:00.123456789Z")],
            queue="q9",
        )
        timezone_checks(http)
    server.env = {"TZ": "UTC"}
    server.restart()
    with server.client() as http:
        timezone_checks(http)


def test_reads_after_job_read(fresh):
    post_events(fresh, "j1", [event("Job-Creating", "2025-03-15T00:00:00Z")])
    for interval in ("1m", "5m", "30m"):
        assert fresh.get("/api/v1/job/j1").status_code == 200
        found = points_of(
            fresh,
            "queue-q1",
            "jobSubmitted",
            interval=interval,
            start="2025-03-15T00:00:00Z",
            end="2025-03-15T00:30:00Z",
        )
        assert found == [("2025-03-15T00:00:00Z", 1)], interval
    assert fresh.get("/api/v1/job/j1").status_code == 200
    body = summary(fresh, start="2025-03-15T00:00:00Z", end="2025-03-16T00:00:00Z")
    assert body["items"]["jobSubmitted"][0]["point"]["value"] == 1


def test_long_answer_with_overflow_is_valid_json(fresh):
    start = parse_time("2025-03-12T00:00:00Z")
    minutes = 4200
    times = [start + i * 60 * 10**9 for i in range(minutes)]
    times.append(times[7] + 1)
    body = arrow_stream(
        {
            "definition": pa.array(["jobSubmitted"] * len(times)),
            "object": pa.array(["queue-long"] * len(times)),
            "time": pa.array(times, pa.int64()),
            "value": pa.array(
                [1.0] * 7 + [1.7e308] + [1.0] * (minutes - 8) + [1.7e308]
            ),
        }
    )
    response = post_bulk(fresh, body, ARROW_STREAM)
    assert response.status_code == 200, response.text
    response = values(
        fresh,
        "queue-long",
        "jobSubmitted",
        interval="1m",
        start="2025-03-12T00:00:00Z",
        end="2025-03-16T00:00:00Z",
    )
    points = strict_json(response)["points"]
    assert len(points) == minutes
    assert points[7] == {"time": "2025-03-12T00:07:00Z", "value": None}
    assert {p["value"] for i, p in enumerate(points) if i != 7} == {1}
