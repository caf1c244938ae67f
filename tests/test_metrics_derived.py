"""Metrics derived from job events: the spec's sample job, late events, a simulated fleet.

Each derived point is timestamped at its event and recorded on
`system-total`, on `queue-<queue>` and on `job-<id>`. Summary items carry
the time of the newest point that contributed to them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import httpx
import pytest

from mmab_metrics.jobs import make_event
from mmab_metrics.metrics import BUILTIN_BY_SHORT, derive
from mmab_metrics.timecodec import format_time, parse_time
from tests.conftest import ServerProcess
from tests.metric_helpers import (
    close,
    event,
    expected_buckets,
    points_of,
    post_events,
    strict_json,
    summary,
    summary_by_queue,
)
from tests.sample_job import sample_job

SAMPLE = sample_job()
SAMPLE_OBJECTS = ("system-total", "queue-jacky-test", f"job-{SAMPLE['id']}")
# The design's worked example: each derived metric's value and the time of
# the event it takes.
SAMPLE_POINTS = {
    "jobSubmitted": ("2025-05-15T05:29:06.354967467Z", 1),
    "volumeAttachTime": ("2025-05-15T05:29:19.49788509Z", 7),
    "checkpointAttempts": ("2025-05-15T05:55:06.194790675Z", 1),
    "checkpointSucceeded": ("2025-05-15T05:55:06.894972615Z", 1),
    "checkpointDuration": ("2025-05-15T05:55:06.894972615Z", 0.70018194),
    "restoreAttempts": ("2025-05-15T06:00:22.278832037Z", 1),
    "restoreSucceeded": ("2025-05-15T06:01:26.010124985Z", 1),
    "spotProtection": ("2025-05-15T06:01:26.010124985Z", 1),
    "restoreDuration": ("2025-05-15T06:01:26.010124985Z", 63.731292948),
    "timeSaved": ("2025-05-15T06:01:26.010124985Z", 1546.219110066),
    "runtime": ("2025-05-15T06:35:48.011660015Z", 3987.335797466),
}
SAMPLE_RANGE = {"start": "2025-05-15T05:00:00Z", "end": "2025-05-15T07:00:00Z"}


def minute_of(text: str) -> str:
    ns = parse_time(text)
    return format_time(ns - ns % (60 * 10**9))


def no_negative(value: object) -> bool:
    """Tell whether a decoded JSON document contains no negative number."""
    if isinstance(value, bool):
        return True
    if isinstance(value, int | float):
        return value >= 0
    if isinstance(value, dict):
        return all(no_negative(v) for v in value.values())
    if isinstance(value, list):
        return all(no_negative(v) for v in value)
    return True


# ------------------------------------------------------------ sample job --


@pytest.fixture(scope="module")
def sample_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A server at noon of the day after the sample job, its events posted one by one."""
    server = ServerProcess(
        tmp_path_factory.mktemp("sample"), now="2025-05-16T12:00:00Z"
    ).start()
    with server.client() as http:
        for item in SAMPLE["events"]:
            post_events(http, SAMPLE["id"], [item], queue=SAMPLE["queueName"])
        yield http
    server.stop()


@pytest.mark.parametrize("object_id", SAMPLE_OBJECTS)
@pytest.mark.parametrize("short", sorted(SAMPLE_POINTS))
def test_sample_job_minute_points(sample_server, short, object_id):
    time_text, value = SAMPLE_POINTS[short]
    found = points_of(sample_server, object_id, short, interval="1m", **SAMPLE_RANGE)
    assert found == [(minute_of(time_text), value)]


@pytest.mark.parametrize("object_id", SAMPLE_OBJECTS)
@pytest.mark.parametrize("short", ["checkpointFailed", "restoreFailed"])
def test_sample_job_has_no_failures(sample_server, short, object_id):
    assert (
        points_of(sample_server, object_id, short, interval="1m", **SAMPLE_RANGE) == []
    )


def test_sample_job_summary(sample_server):
    body = summary(
        sample_server, start="2025-05-15T00:00:00Z", end="2025-05-16T00:00:00Z"
    )
    assert sorted(body["items"]) == sorted(SAMPLE_POINTS)
    for short, (time_text, value) in SAMPLE_POINTS.items():
        assert body["items"][short] == [
            {
                "id": short,
                "point": {"time": time_text, "value": value},
                "metaData": {"queueName": "jacky-test"},
            }
        ], short


def test_sample_job_default_summary_is_empty(sample_server):
    assert summary(sample_server) == {"items": {}}


def test_sample_job_summary_filter(sample_server):
    body = summary(
        sample_server,
        start="2025-05-15T00:00:00Z",
        end="2025-05-16T00:00:00Z",
        definition=["runtime", "metricDef-timeSaved"],
    )
    assert sorted(body["items"]) == ["runtime", "timeSaved"]


def test_sample_job_events_in_one_post(app):
    app.set_now("2025-05-16T12:00:00Z")
    events = list(reversed(SAMPLE["events"]))
    post_events(app.client, "reversed", events, queue="jacky-test")
    for short, (time_text, value) in SAMPLE_POINTS.items():
        for object_id in ("queue-jacky-test", "job-reversed"):
            found = points_of(
                app.client, object_id, short, interval="1m", **SAMPLE_RANGE
            )
            assert found == [(minute_of(time_text), value)], (short, object_id)


# ------------------------------------------------ late and repeated events --

T0 = "2025-03-15T00:00:00Z"


def t0_plus(seconds: int) -> str:
    return format_time(parse_time(T0) + seconds * 10**9)


def minute_values(app, object_id: str, short: str) -> list:
    return points_of(
        app.client,
        object_id,
        short,
        interval="1m",
        start=T0,
        end="2025-03-15T01:00:00Z",
    )


def test_late_running_gives_runtime(app):
    arrivals = [
        event("Job-Creating", T0),
        event("Volume-Created", t0_plus(5), volumnId="vol-1"),
        event("Volume-Attached", t0_plus(6), volumnId="vol-1"),
        event("Job-Succeeded", t0_plus(60)),
        event("Job-Running", t0_plus(10)),
        event("Job-Checkpointing", t0_plus(30)),
        event("Job-CheckpointSucceeded", t0_plus(35)),
        event("Job-CheckpointSucceeded", t0_plus(35)),
        event("Volume-Attached", t0_plus(6), volumnId="vol-1"),
        {**event("Job-SomethingNew", t0_plus(40)), "extra": {"a": 1}},
    ]
    for item in arrivals:
        post_events(app.client, "job-1", [item])
    for object_id in ("system-total", "queue-q1", "job-job-1"):
        assert minute_values(app, object_id, "runtime") == [(t0_plus(60), 50)]
        assert minute_values(app, object_id, "checkpointSucceeded") == [(T0, 1)]
        assert minute_values(app, object_id, "checkpointDuration") == [(T0, 5)]
        assert minute_values(app, object_id, "volumeAttachTime") == [(T0, 1)]
        assert minute_values(app, object_id, "jobSubmitted") == [(T0, 1)]
    found = summary_by_queue(app.client, "runtime", start=T0, end=t0_plus(3600))
    assert found == {"q1": (t0_plus(60), 50)}


def test_late_running_rederives_one_job(app):
    post_events(
        app.client,
        "a",
        [event("Job-Running", t0_plus(20)), event("Job-Succeeded", t0_plus(60))],
    )
    post_events(
        app.client,
        "b",
        [event("Job-Running", T0), event("Job-Succeeded", t0_plus(60))],
    )
    assert minute_values(app, "queue-q1", "runtime") == [(t0_plus(60), 100)]
    post_events(app.client, "a", [event("Job-Running", t0_plus(10))])
    assert minute_values(app, "job-a", "runtime") == [(t0_plus(60), 50)]
    assert minute_values(app, "job-b", "runtime") == [(t0_plus(60), 60)]
    for object_id in ("queue-q1", "system-total"):
        assert minute_values(app, object_id, "runtime") == [(t0_plus(60), 110)]
    for interval in ("30m", "24h"):
        found = points_of(
            app.client,
            "queue-q1",
            "runtime",
            interval=interval,
            start=T0,
            end="2025-03-16T00:00:00Z",
        )
        assert found == [(T0, 110)], interval
    found = summary_by_queue(app.client, "runtime", start=T0, end=t0_plus(3600))
    assert found == {"q1": (t0_plus(60), 110)}


def test_late_terminal_moves_runtime(app):
    post_events(
        app.client,
        "m",
        [event("Job-Running", T0), event("Job-Succeeded", t0_plus(120))],
    )
    assert minute_values(app, "queue-q1", "runtime") == [(t0_plus(120), 120)]
    post_events(app.client, "m", [event("Job-Failed", t0_plus(30))])
    for object_id in ("system-total", "queue-q1", "job-m"):
        assert minute_values(app, object_id, "runtime") == [(T0, 30)], object_id
    for interval in ("30m", "24h"):
        found = points_of(
            app.client,
            "queue-q1",
            "runtime",
            interval=interval,
            start=T0,
            end="2025-03-16T00:00:00Z",
        )
        assert found == [(T0, 30)], interval
    found = summary_by_queue(app.client, "runtime", start=T0, end=t0_plus(3600))
    assert found == {"q1": (t0_plus(30), 30)}


def test_late_checkpointing_shortens_duration(app):
    post_events(
        app.client,
        "d",
        [
            event("Job-Checkpointing", t0_plus(10)),
            event("Job-CheckpointSucceeded", t0_plus(50)),
        ],
    )
    post_events(app.client, "d", [event("Job-Checkpointing", t0_plus(40))])
    assert minute_values(app, "queue-q1", "checkpointDuration") == [(T0, 10)]
    assert minute_values(app, "queue-q1", "checkpointAttempts") == [(T0, 2)]
    found = summary_by_queue(
        app.client, "checkpointDuration", start=T0, end=t0_plus(3600)
    )
    assert found == {"q1": (t0_plus(50), 10)}


def test_late_restore_moves_time_saved(app):
    post_events(
        app.client,
        "c",
        [
            event("Job-Running", t0_plus(0)),
            event("Job-CheckpointSucceeded", t0_plus(100)),
            event("Job-Restoring", t0_plus(300)),
            event("Job-RestoreSucceeded", t0_plus(310)),
        ],
    )
    assert minute_values(app, "job-c", "timeSaved") == [(t0_plus(300), 100)]
    post_events(app.client, "c", [event("Job-Running", t0_plus(40))])
    assert minute_values(app, "job-c", "timeSaved") == [(t0_plus(300), 60)]
    assert minute_values(app, "queue-q1", "timeSaved") == [(t0_plus(300), 60)]
    assert minute_values(app, "queue-q1", "restoreDuration") == [(t0_plus(300), 10)]


def test_same_instant_jobs_both_count(app):
    instant = "2025-03-15T00:00:00.5Z"
    for job_id in ("x", "y"):
        post_events(app.client, job_id, [event("Job-Creating", instant)])
    for object_id in ("queue-q1", "system-total"):
        assert minute_values(app, object_id, "jobSubmitted") == [(T0, 2)]
    for job_id in ("x", "y"):
        assert minute_values(app, f"job-{job_id}", "jobSubmitted") == [(T0, 1)]
    found = summary_by_queue(app.client, "jobSubmitted", start=T0, end=t0_plus(60))
    assert found == {"q1": (instant, 2)}


def test_redelivery_changes_nothing(app):
    events = [event("Job-Creating", T0), event("Job-Checkpointing", t0_plus(5))]
    post_events(app.client, "r", events)
    before = [
        minute_values(app, "queue-q1", short)
        for short in ("jobSubmitted", "checkpointAttempts")
    ]
    post_events(app.client, "r", events)
    post_events(app.client, "r", [events[1]])
    after = [
        minute_values(app, "queue-q1", short)
        for short in ("jobSubmitted", "checkpointAttempts")
    ]
    assert after == before
    assert before == [[(T0, 1)], [(T0, 1)]]


def test_queues_split_summary(app):
    post_events(app.client, "job-1", [event("Job-Creating", "2025-03-14T00:00:00Z")])
    post_events(
        app.client, "job-2", [event("Job-Creating", "2025-03-14T23:59:59.999999999Z")]
    )
    post_events(app.client, "job-3", [event("Job-Creating", T0)], queue="q2")
    first = summary(app.client, start="2025-03-14T00:00:00Z", end=T0)
    assert first["items"]["jobSubmitted"] == [
        {
            "id": "jobSubmitted",
            "point": {"time": "2025-03-14T23:59:59.999999999Z", "value": 2},
            "metaData": {"queueName": "q1"},
        }
    ]
    second = summary(app.client, start=T0, end="2025-03-16T00:00:00Z")
    assert second["items"]["jobSubmitted"] == [
        {
            "id": "jobSubmitted",
            "point": {"time": T0, "value": 1},
            "metaData": {"queueName": "q2"},
        }
    ]


def test_unfinished_jobs_have_no_runtime(app):
    post_events(
        app.client,
        "job-4",
        [event("Job-Creating", T0), event("Job-Running", t0_plus(10))],
    )
    post_events(app.client, "job-5", [event("Job-Creating", T0)])
    body = summary(app.client, start="2025-03-14T00:00:00Z", end="2025-03-16T00:00:00Z")
    assert summary_by_queue(
        app.client,
        "jobSubmitted",
        start="2025-03-14T00:00:00Z",
        end="2025-03-16T00:00:00Z",
    ) == {"q1": (T0, 2)}
    assert "runtime" not in body["items"]
    assert no_negative(body)
    assert minute_values(app, "job-job-4", "runtime") == []
    jobs = strict_json(app.client.get("/api/v1/job"))
    assert no_negative(jobs)
    for job in jobs:
        assert None not in job.values()
        assert job["volumeIds"] == []
        assert job["batchJobIds"] == []


def test_terminal_before_running_has_no_runtime(app):
    post_events(
        app.client,
        "odd",
        [event("Job-Failed", t0_plus(5)), event("Job-Running", t0_plus(10))],
    )
    assert minute_values(app, "job-odd", "runtime") == []


# ------------------------------------------------------- simulated fleet --

SIM_NOW = "2025-03-16T12:00:00Z"
HALF_HOUR = 1800 * 10**9


@pytest.fixture
def simulated(fleet: tuple[ServerProcess, dict]) -> Iterator[tuple[httpx.Client, dict]]:
    """A client of the simulated fleet's server, and the manifest of the run."""
    server, manifest = fleet
    with server.client() as http:
        yield http, manifest


def derived_points(manifest: dict) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """Derive every job's points from the manifest and put them on their objects."""
    series: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for job in manifest["jobs"]:
        events = [
            make_event(data, parse_time(data["timestamp"])) for data in job["events"]
        ]
        objects = ("system-total", f"queue-{job['queueName']}", f"job-{job['id']}")
        for point in derive(events):
            for object_id in objects:
                series.setdefault((point.short, object_id), []).append(
                    (point.time_ns, point.value)
                )
    return series


@pytest.mark.xdist_group("fleet")
@pytest.mark.timeout(1200)
def test_simulated_summary(simulated):
    http, manifest = simulated
    series = derived_points(manifest)
    start, end = "2025-03-15T00:00:00Z", "2025-03-17T00:00:00Z"
    body = summary(http, start=start, end=end)
    expected_shorts = {
        short for short, object_id in series if object_id.startswith("queue-")
    }
    assert set(body["items"]) == expected_shorts
    for short in expected_shorts:
        aggregate = BUILTIN_BY_SHORT[short].aggregate
        items = {item["metaData"]["queueName"]: item for item in body["items"][short]}
        queues = {q for s, q in series if s == short and q.startswith("queue-")}
        assert set(items) == {q.removeprefix("queue-") for q in queues}, short
        for queue in queues:
            points = series[(short, queue)]
            item = items[queue.removeprefix("queue-")]
            assert item["id"] == short
            assert item["point"]["time"] == format_time(max(t for t, _ in points))
            total = math.fsum(v for _, v in points)
            wanted = total / len(points) if aggregate == "avg" else total
            assert close(item["point"]["value"], wanted), (short, queue)


@pytest.mark.xdist_group("fleet")
@pytest.mark.timeout(1200)
def test_simulated_half_hour_buckets(simulated):
    http, manifest = simulated
    series = derived_points(manifest)
    objects = ["system-total", *(f"queue-{q}" for q in manifest["queues"])]
    for short, definition in BUILTIN_BY_SHORT.items():
        for object_id in objects:
            found = points_of(
                http,
                object_id,
                short,
                interval="30m",
                start="2025-03-15T00:00:00Z",
                end="2025-03-17T00:00:00Z",
            )
            wanted = expected_buckets(
                series.get((short, object_id), []), HALF_HOUR, definition.aggregate
            )
            assert [t for t, _ in found] == [t for t, _ in wanted], (short, object_id)
            for (_, actual), (_, value) in zip(found, wanted, strict=True):
                assert close(actual, value), (short, object_id)


@pytest.mark.xdist_group("fleet")
@pytest.mark.timeout(1200)
def test_simulated_job_minutes(simulated):
    http, manifest = simulated
    series = derived_points(manifest)
    for job in manifest["jobs"][:: len(manifest["jobs"]) // 8]:
        object_id = f"job-{job['id']}"
        for short, definition in BUILTIN_BY_SHORT.items():
            found = points_of(
                http,
                object_id,
                short,
                interval="1m",
                start="2025-03-15T00:00:00Z",
                end="2025-03-17T00:00:00Z",
            )
            wanted = expected_buckets(
                series.get((short, object_id), []), 60 * 10**9, definition.aggregate
            )
            assert [t for t, _ in found] == [t for t, _ in wanted], (short, object_id)
            for (_, actual), (_, value) in zip(found, wanted, strict=True):
                assert close(actual, value), (short, object_id)
