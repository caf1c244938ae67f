"""Metric retention and sealed buckets in-process, with the clock pinned by hand.

The default levels are 1m kept 168h, 30m kept 2160h and 24h kept 18000h,
and raw points are kept 168h. A bucket starting at `b` is kept while
`b >= now - retention`. A bucket that starts before `now - rawRetention` is
sealed, so points merge into its summary.
"""

from __future__ import annotations

import pytest

from mmab_metrics.durations import HOUR, MINUTE
from mmab_metrics.timecodec import format_time, parse_time
from tests.metric_helpers import (
    event,
    ingest_ok,
    points_of,
    post_events,
    register,
    strict_json,
    summary_by_queue,
    values,
)

NOW = "2025-03-15T12:00:00Z"
WIDE = {"start": "2025-03-01T00:00:00Z", "end": NOW}


def at(text: str, hours: int = 0, minutes: int = 0, ns: int = 0) -> str:
    return format_time(parse_time(text) + hours * HOUR + minutes * MINUTE + ns)


def levels_of(app, object_id, short, start, end):
    """Return the points of the 1m, 30m and 24h levels over one range."""
    return {
        interval: points_of(
            app.client, object_id, short, interval=interval, start=start, end=end
        )
        for interval in ("1m", "30m", "24h")
    }


@pytest.fixture
def c09(app):
    app.set_now(NOW)
    ingest_ok(
        app.client,
        "queue-q1",
        "jobSubmitted",
        [
            (at(NOW, hours=-200), 5),
            (at(NOW, hours=-169), 9),
            (at(NOW, hours=-168), 11),
            (at(NOW, hours=-167), 7),
        ],
    )
    app.sweep()
    return app


def c09_query(app, interval):
    return points_of(app.client, "queue-q1", "jobSubmitted", interval=interval, **WIDE)


def test_minute_level_keeps_edge_bucket(c09):
    assert c09_query(c09, "1m") == [
        ("2025-03-08T12:00:00Z", 11),
        ("2025-03-08T13:00:00Z", 7),
    ]


def test_half_hour_level_keeps_all(c09):
    assert c09_query(c09, "30m") == [
        ("2025-03-07T04:00:00Z", 5),
        ("2025-03-08T11:00:00Z", 9),
        ("2025-03-08T12:00:00Z", 11),
        ("2025-03-08T13:00:00Z", 7),
    ]


def test_day_level_keeps_all(c09):
    assert c09_query(c09, "24h") == [
        ("2025-03-07T00:00:00Z", 5),
        ("2025-03-08T00:00:00Z", 27),
    ]


def test_two_minutes_later_drops_edge(c09):
    half_hour, day = c09_query(c09, "30m"), c09_query(c09, "24h")
    c09.set_now(at(NOW, minutes=2))
    before_sweep = c09_query(c09, "1m")
    c09.sweep()
    assert c09_query(c09, "1m") == [("2025-03-08T13:00:00Z", 7)]
    assert before_sweep == [("2025-03-08T13:00:00Z", 7)]
    assert c09_query(c09, "30m") == half_hour
    assert c09_query(c09, "24h") == day


def test_sweep_twice_changes_nothing(c09):
    first = {i: c09_query(c09, i) for i in ("1m", "30m", "24h")}
    c09.sweep()
    assert {i: c09_query(c09, i) for i in ("1m", "30m", "24h")} == first


def test_retained_from_follows_clock(c09):
    c09.set_now(at(NOW, minutes=2, ns=1))
    response = values(c09.client, "queue-q1", "jobSubmitted", interval="1m", **WIDE)
    assert strict_json(response)["metaData"] == {
        "interval": "1m0s",
        "retainedFrom": "2025-03-08T12:03:00Z",
    }


@pytest.mark.parametrize(
    ("interval", "retention_hours"), [("1m", 168), ("30m", 2160), ("24h", 18000)]
)
def test_bucket_kept_until_edge(app, interval, retention_hours):
    bucket = "2025-03-15T00:00:00Z"
    app.set_now(at(bucket, hours=1))
    ingest_ok(app.client, "queue-edge", "jobSubmitted", [(bucket, 3)])
    query = {"interval": interval, "start": bucket, "end": at(bucket, hours=24)}

    edge = at(bucket, hours=retention_hours)
    app.set_now(edge)
    assert points_of(app.client, "queue-edge", "jobSubmitted", **query) == [(bucket, 3)]
    app.sweep()
    assert points_of(app.client, "queue-edge", "jobSubmitted", **query) == [(bucket, 3)]

    app.set_now(at(edge, ns=1))
    assert points_of(app.client, "queue-edge", "jobSubmitted", **query) == []
    app.sweep()
    assert points_of(app.client, "queue-edge", "jobSubmitted", **query) == []


def test_expired_level_leaves_coarser_levels(app):
    bucket = "2025-03-15T00:00:00Z"
    app.set_now(at(bucket, hours=1))
    ingest_ok(app.client, "queue-edge", "jobSubmitted", [(at(bucket, minutes=1), 3)])
    app.set_now(at(bucket, hours=2160, minutes=1))
    app.sweep()
    found = levels_of(app, "queue-edge", "jobSubmitted", bucket, at(bucket, hours=24))
    assert found == {"1m": [], "30m": [], "24h": [(bucket, 3)]}


@pytest.mark.parametrize(
    ("hours_ago", "levels"),
    [(200, ["30m", "24h"]), (2200, ["24h"]), (19000, [])],
)
def test_old_point_reaches_covering_levels(app, hours_ago, levels):
    app.set_now(NOW)
    time_text = at(NOW, hours=-hours_ago)
    ingest_ok(app.client, "queue-old", "jobSubmitted", [(time_text, 2)])
    found = levels_of(
        app,
        "queue-old",
        "jobSubmitted",
        at(time_text, hours=-24),
        at(time_text, hours=24),
    )
    assert [interval for interval, points in found.items() if points] == levels
    for interval in levels:
        assert [value for _, value in found[interval]] == [2], interval


# ------------------------------------------------------------ sealed buckets --


@pytest.fixture
def sealed(app):
    """Points of 2025-03-01 written while raw held them, then sealed by the clock."""
    app.set_now("2025-03-01T12:00:00Z")
    for short, aggregate in (("gaugeMax", "max"), ("gaugeLast", "last")):
        assert register(app.client, short, aggregate).status_code == 200
    for short in ("jobSubmitted", "volumeAttachTime", "gaugeMax", "gaugeLast"):
        ingest_ok(
            app.client,
            "queue-s",
            short,
            [("2025-03-01T00:05:00Z", 1), ("2025-03-01T00:20:00Z", 2)],
        )
    app.set_now("2025-03-09T00:00:00Z")
    app.sweep()
    return app


def sealed_values(app, short):
    found = levels_of(
        app, "queue-s", short, "2025-03-01T00:00:00Z", "2025-03-02T00:00:00Z"
    )
    assert found["1m"] == []
    assert len(found["30m"]) == 1
    assert len(found["24h"]) == 1
    return found["30m"][0][1], found["24h"][0][1]


def test_sealed_bucket_merges_new_point(sealed):
    ingest_ok(sealed.client, "queue-s", "jobSubmitted", [("2025-03-01T00:10:00Z", 4)])
    assert sealed_values(sealed, "jobSubmitted") == (7, 7)


def test_sealed_bucket_counts_resent_point(sealed):
    ingest_ok(sealed.client, "queue-s", "jobSubmitted", [("2025-03-01T00:05:00Z", 1)])
    assert sealed_values(sealed, "jobSubmitted") == (4, 4)


def test_sealed_average_counts_new_point(sealed):
    ingest_ok(
        sealed.client, "queue-s", "volumeAttachTime", [("2025-03-01T00:10:00Z", 6)]
    )
    assert sealed_values(sealed, "volumeAttachTime") == (3, 3)


def test_sealed_max_widens(sealed):
    ingest_ok(sealed.client, "queue-s", "gaugeMax", [("2025-03-01T00:10:00Z", 9)])
    assert sealed_values(sealed, "gaugeMax") == (9, 9)


def test_sealed_last_compares_times(sealed):
    ingest_ok(sealed.client, "queue-s", "gaugeLast", [("2025-03-01T00:10:00Z", 9)])
    assert sealed_values(sealed, "gaugeLast") == (2, 2)
    ingest_ok(sealed.client, "queue-s", "gaugeLast", [("2025-03-01T00:25:00Z", 8)])
    assert sealed_values(sealed, "gaugeLast") == (8, 8)


def test_sealed_summary_counts_whole_bucket(sealed):
    found = summary_by_queue(
        sealed.client,
        "jobSubmitted",
        start="2025-03-01T00:12:00Z",
        end="2025-03-01T00:13:00Z",
    )
    assert found == {"s": ("2025-03-01T00:20:00Z", 3)}


def test_rebuild_keeps_sealed_buckets(sealed):
    ingest_ok(sealed.client, "queue-s", "jobSubmitted", [("2025-03-08T12:00:00Z", 5)])
    before = {
        short: levels_of(
            sealed, "queue-s", short, "2025-03-01T00:00:00Z", "2025-03-09T00:00:00Z"
        )
        for short in ("jobSubmitted", "gaugeMax", "gaugeLast", "volumeAttachTime")
    }
    response = sealed.client.post("/api/v1/metrics/rollup")
    assert response.status_code == 200, response.text
    after = {
        short: levels_of(
            sealed, "queue-s", short, "2025-03-01T00:00:00Z", "2025-03-09T00:00:00Z"
        )
        for short in before
    }
    assert after == before


@pytest.fixture
def straddling(app):
    """A 30m bucket that the raw cutoff splits: 00:10 left raw, 00:20 is still in it."""
    app.set_now("2025-03-08T00:00:00Z")
    for short in ("jobSubmitted", "volumeAttachTime"):
        ingest_ok(
            app.client,
            "queue-s",
            short,
            [("2025-03-01T00:10:00Z", 1), ("2025-03-01T00:20:00Z", 2)],
        )
    app.set_now("2025-03-08T00:15:00Z")
    app.sweep()
    return app


def straddling_value(app, short):
    found = points_of(
        app.client,
        "queue-s",
        short,
        interval="30m",
        start="2025-03-01T00:00:00Z",
        end="2025-03-01T00:30:00Z",
    )
    assert len(found) == 1
    return found[0][1]


def test_straddling_replacement_adjusts_sum(straddling):
    ingest_ok(
        straddling.client, "queue-s", "jobSubmitted", [("2025-03-01T00:20:00Z", 5)]
    )
    assert straddling_value(straddling, "jobSubmitted") == 6


def test_straddling_replacement_keeps_count(straddling):
    ingest_ok(
        straddling.client, "queue-s", "volumeAttachTime", [("2025-03-01T00:20:00Z", 5)]
    )
    assert straddling_value(straddling, "volumeAttachTime") == 3


def test_straddling_resent_old_point_counts(straddling):
    ingest_ok(
        straddling.client, "queue-s", "jobSubmitted", [("2025-03-01T00:10:00Z", 1)]
    )
    assert straddling_value(straddling, "jobSubmitted") == 4


# ----------------------------------------------------- old jobs' late events --


def test_late_event_of_sealed_job(app):
    app.set_now("2025-03-01T12:00:00Z")
    post_events(app.client, "old", [event("Job-Creating", "2025-03-01T00:05:00Z")])
    app.set_now("2025-03-09T00:00:00Z")
    app.sweep()
    post_events(app.client, "old", [event("Job-Checkpointing", "2025-03-01T00:07:00Z")])
    query = {
        "interval": "30m",
        "start": "2025-03-01T00:00:00Z",
        "end": "2025-03-01T00:30:00Z",
    }
    for object_id in ("system-total", "queue-q1", "job-old"):
        submitted = points_of(app.client, object_id, "jobSubmitted", **query)
        attempts = points_of(app.client, object_id, "checkpointAttempts", **query)
        assert submitted == [("2025-03-01T00:00:00Z", 1)], object_id
        assert attempts == [("2025-03-01T00:00:00Z", 1)], object_id
