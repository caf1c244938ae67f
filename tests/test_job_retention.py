"""Job expiry with the clock pinned: hidden at once, deleted by the sweep."""

from __future__ import annotations

import pytest

from mmab_metrics.durations import HOUR
from mmab_metrics.timecodec import format_time, parse_time

DONE = "2025-03-15T00:00:00Z"


def post(app, job_id, kind, timestamp, queue="q1"):
    body = {"queueName": queue, "events": [{"timestamp": timestamp, "eventType": kind}]}
    response = app.client.post(f"/api/v1/job/{job_id}/events", json=body)
    assert response.status_code == 200, response.text
    return response


def visible(app, job_id):
    listed = {job["id"] for job in app.client.get("/api/v1/job").json()}
    single = app.client.get(f"/api/v1/job/{job_id}").status_code == 200
    assert (job_id in listed) == single
    return single


def at(ns):
    return format_time(ns)


@pytest.mark.parametrize(
    ("status", "ttl_hours"), [("Succeeded", 72), ("Failed", 168), ("Stopped", 168)]
)
def test_finished_job_expires_at_ttl(app, status, ttl_hours):
    app.set_now(DONE)
    post(app, "j", "Job-Creating", "2025-03-14T23:00:00Z")
    post(app, "j", f"Job-{status}", DONE)
    expiry = parse_time(DONE) + ttl_hours * HOUR

    app.set_now(at(expiry - 1))
    assert visible(app, "j")
    app.sweep()
    assert visible(app, "j")

    app.set_now(at(expiry))
    assert not visible(app, "j")
    report = app.sweep()
    assert report.jobs_deleted == 1
    assert app.services.jobs.get("j") is None


def test_running_job_never_expires(app):
    app.set_now(DONE)
    post(app, "r", "Job-Running", DONE)
    app.set_now("2030-01-01T00:00:00Z")
    app.sweep()
    assert visible(app, "r")


def test_ttl_change_applies_at_once(app):
    app.set_now(DONE)
    post(app, "s", "Job-Succeeded", DONE)
    app.set_now("2025-03-15T02:00:00Z")
    assert visible(app, "s")
    change = app.client.put(
        "/api/v1/configKV", json={"kvMap": {"job.successTTL": "1h"}}
    )
    assert change.status_code == 200
    assert not visible(app, "s")
    change = app.client.put(
        "/api/v1/configKV", json={"kvMap": {"job.successTTL": "0s"}}
    )
    assert change.status_code == 200
    assert not visible(app, "s")


def test_late_event_keeps_expired_job_hidden(app):
    app.set_now(DONE)
    post(app, "late", "Job-Creating", "2025-03-14T23:00:00Z")
    post(app, "late", "Job-Succeeded", DONE)
    app.set_now("2025-03-19T00:00:00Z")
    assert not visible(app, "late")
    post(app, "late", "Job-Running", "2025-03-14T23:30:00Z")
    assert not visible(app, "late")
    assert len(app.services.jobs.get("late")["events"]) == 3


def test_post_after_deletion_starts_new_job(app):
    app.set_now(DONE)
    post(app, "again", "Job-Succeeded", DONE)
    app.set_now("2025-03-19T00:00:00Z")
    app.sweep()
    post(app, "again", "Job-Creating", "2025-03-18T23:00:00Z", queue="q2")
    job = app.client.get("/api/v1/job/again").json()
    assert job["queueName"] == "q2"
    assert len(job["events"]) == 1


def test_sweep_keeps_unexpired_jobs(app):
    app.set_now(DONE)
    post(app, "old", "Job-Failed", "2025-03-01T00:00:00Z")
    post(app, "new", "Job-Failed", DONE)
    app.set_now("2025-03-08T00:00:00Z")
    assert app.sweep().jobs_deleted == 1
    assert app.services.jobs.get("old") is None
    assert app.services.jobs.get("new") is not None


def test_long_list_streams_in_batches(app, monkeypatch):
    import api.jobs

    monkeypatch.setattr(api.jobs, "_STREAM_BATCH", 2)
    app.set_now(DONE)
    for index in range(5):
        post(app, f"s{index}", "Job-Running", f"2025-03-14T0{index}:00:00Z")
    response = app.client.get("/api/v1/job")
    assert response.status_code == 200
    assert response.headers["X-Total-Count"] == "5"
    assert "content-length" not in response.headers
    assert [job["id"] for job in response.json()] == [f"s{i}" for i in range(5)]
    page = app.client.get("/api/v1/job", params={"offset": "1", "limit": "3"})
    assert [job["id"] for job in page.json()] == ["s1", "s2", "s3"]
