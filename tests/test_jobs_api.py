"""Jobs over HTTP: event posts, identity, ordering, derived fields, filters and errors."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.sample_job import sample_job

NOW = "2025-05-16T12:00:00Z"


@pytest.fixture(scope="module")
def jobs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("jobs"), now=NOW).start()
    yield server
    server.stop()


@pytest.fixture
def client(jobs_server: ServerProcess) -> Iterator[httpx.Client]:
    with jobs_server.client() as http:
        yield http


@pytest.fixture(scope="module")
def march(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A server at noon of the day after 2025-03-15, so that its jobs are current."""
    server = ServerProcess(tmp_path_factory.mktemp("march"), now="2025-03-16T12:00:00Z")
    server.start()
    with server.client() as http:
        yield http
    server.stop()


def post(client: httpx.Client, job_id: str, *events: dict, queue: str | None = "q1"):
    body: dict = {"events": list(events)}
    if queue is not None:
        body["queueName"] = queue
    return client.post(f"/api/v1/job/{job_id}/events", json=body)


def event(kind: str, timestamp: str, **fields: str) -> dict:
    return {"timestamp": timestamp, "eventType": kind, **fields}


def test_sample_job_round_trip(client):
    job = sample_job()
    for item in job["events"]:
        response = post(client, job["id"], item, queue=job["queueName"])
        assert response.status_code == 200, response.text
    stored = client.get(f"/api/v1/job/{job['id']}")
    assert stored.status_code == 200
    assert stored.json() == job
    listed = [j for j in client.get("/api/v1/job").json() if j["id"] == job["id"]]
    assert listed == [job]


def test_sample_job_posted_in_reverse_order(client):
    job = sample_job()
    job["id"] = "sample-reversed"
    job["batchJobIds"] = [job["events"][0]["batchJobId"]]
    for item in reversed(job["events"]):
        assert post(client, job["id"], item, queue=job["queueName"]).status_code == 200
    assert client.get(f"/api/v1/job/{job['id']}").json() == job


def test_post_answers_with_the_job(client):
    response = post(client, "answer-1", event("Job-Creating", "2025-05-15T00:00:00Z"))
    assert response.status_code == 200
    assert response.json()["id"] == "answer-1"
    assert response.json() == client.get("/api/v1/job/answer-1").json()


def test_timestamps_round_trip_byte_identical(client):
    stamps = [
        "2025-05-15T05:29:06.354967467Z",
        "2025-05-15T05:29:06.5Z",
        "2025-05-15T05:29:06Z",
        "2025-05-15T05:29:06.000000001Z",
        "2025-05-15T05:29:06.007Z",
    ]
    for stamp in stamps:
        assert post(client, "stamps", event("Job-Running", stamp)).status_code == 200
    offset = event(
        "Job-Running", "2025-05-15T07:29:06.354967467+02:00", containerId="c2"
    )
    assert post(client, "stamps", offset).status_code == 200

    raw = client.get("/api/v1/job/stamps").text
    for stamp in stamps:
        assert f'"{stamp}"' in raw
    assert "+00:00" not in raw
    assert "+02:00" not in raw
    got = [e["timestamp"] for e in client.get("/api/v1/job/stamps").json()["events"]]
    # Ordered by instant: c < d < e < a = f < b, ties in arrival order.
    assert got == [
        "2025-05-15T05:29:06Z",
        "2025-05-15T05:29:06.000000001Z",
        "2025-05-15T05:29:06.007Z",
        "2025-05-15T05:29:06.354967467Z",
        "2025-05-15T05:29:06.354967467Z",
        "2025-05-15T05:29:06.5Z",
    ]


def test_late_and_duplicate_events(march):
    client = march
    t = "2025-03-15T00:00:"
    arrivals = [
        event("Job-Creating", f"{t}00Z"),
        event("Volume-Created", f"{t}05Z", volumnId="vol-1"),
        event("Volume-Attached", f"{t}06Z", volumnId="vol-1"),
        event("Job-Succeeded", "2025-03-15T00:01:00Z"),
        event("Job-Running", f"{t}10Z"),
        event("Job-Checkpointing", f"{t}30Z"),
        event("Job-CheckpointSucceeded", f"{t}35Z"),
        event("Job-CheckpointSucceeded", f"{t}35Z"),
        event("Volume-Attached", f"{t}06Z", volumnId="vol-1"),
        {**event("Job-SomethingNew", f"{t}40Z"), "extraField": {"nested": [1, 2]}},
    ]
    for item in arrivals:
        assert post(client, "late-1", item).status_code == 200
    job = client.get("/api/v1/job/late-1").json()
    assert job["status"] == "Succeeded"
    kinds = [e["eventType"] for e in job["events"]]
    assert kinds == [
        "Job-Creating",
        "Volume-Created",
        "Volume-Attached",
        "Job-Running",
        "Job-Checkpointing",
        "Job-CheckpointSucceeded",
        "Job-SomethingNew",
        "Job-Succeeded",
    ]
    assert job["volumeIds"] == ["vol-1"]
    assert job["spotProtCount"] == 0
    assert job["events"][6]["extraField"] == {"nested": [1, 2]}
    assert job["updatedAt"] == "2025-03-15T00:01:00Z"


def test_redelivery_with_offset_is_the_same_event(client):
    first = event("Job-Creating", "2025-05-15T01:00:00Z", nodeOid="i-1")
    again = event("Job-Creating", "2025-05-15T03:00:00+02:00", nodeOid="i-1")
    post(client, "redeliver-1", first)
    post(client, "redeliver-1", again)
    assert len(client.get("/api/v1/job/redeliver-1").json()["events"]) == 1


def test_equal_json_values_are_one_event(client):
    post(
        client, "redeliver-2", {**event("Job-Running", "2025-05-15T01:00:00Z"), "n": 1}
    )
    post(
        client,
        "redeliver-2",
        {**event("Job-Running", "2025-05-15T01:00:00Z"), "n": 1.0},
    )
    post(
        client, "redeliver-2", {**event("Job-Running", "2025-05-15T01:00:00Z"), "n": 2}
    )
    assert len(client.get("/api/v1/job/redeliver-2").json()["events"]) == 2


def test_late_event_never_changes_status(client):
    post(client, "late-2", event("Job-Failed", "2025-05-15T02:00:00Z"))
    post(client, "late-2", event("Job-Running", "2025-05-15T01:00:00Z"))
    assert client.get("/api/v1/job/late-2").json()["status"] == "Failed"


def test_unknown_event_type_does_not_set_status(client):
    post(client, "unknown-type", event("Job-Running", "2025-05-15T01:00:00Z"))
    post(client, "unknown-type", event("Job-Teleported", "2025-05-15T02:00:00Z"))
    post(client, "unknown-type", event("Volume-Detached", "2025-05-15T03:00:00Z"))
    job = client.get("/api/v1/job/unknown-type").json()
    assert job["status"] == "Running"
    assert job["updatedAt"] == "2025-05-15T03:00:00Z"


def test_unfinished_jobs_have_empty_forms(march):
    client = march
    post(client, "job-4", event("Job-Creating", "2025-03-15T00:00:00Z"))
    post(client, "job-4", event("Job-Running", "2025-03-15T00:00:10Z"))
    post(client, "job-5", event("Job-Creating", "2025-03-15T00:00:00Z"))
    for job_id, status in (("job-4", "Running"), ("job-5", "Creating")):
        job = client.get(f"/api/v1/job/{job_id}").json()
        assert job["status"] == status
        assert job["volumeIds"] == []
        assert job["batchJobIds"] == []
        assert job["nodeOid"] == ""
        assert job["containerId"] == ""
        assert None not in job.values()


def test_node_and_container_follow_latest_event(client):
    post(
        client,
        "moves",
        event("Job-Creating", "2025-05-15T01:00:00Z", nodeOid="i-a", containerId="c-a"),
        event(
            "Job-Restoring", "2025-05-15T03:00:00Z", nodeOid="i-b", containerId="c-b"
        ),
        event("Job-Running", "2025-05-15T02:00:00Z", nodeOid="i-late"),
    )
    job = client.get("/api/v1/job/moves").json()
    assert job["nodeOid"] == "i-b"
    assert job["containerId"] == "c-b"


def test_distinct_ids_in_event_order(client):
    post(
        client,
        "ids",
        event("Job-Creating", "2025-05-15T01:00:00Z", batchJobId="b2"),
        event("Volume-Created", "2025-05-15T01:00:01Z", volumnId="vol-2"),
        event("Volume-Created", "2025-05-15T01:00:02Z", volumnId="vol-1"),
        event("Volume-Attached", "2025-05-15T01:00:03Z", volumnId="vol-2"),
        event("Job-Restoring", "2025-05-15T01:00:04Z", batchJobId="b1"),
    )
    job = client.get("/api/v1/job/ids").json()
    assert job["volumeIds"] == ["vol-2", "vol-1"]
    assert job["batchJobIds"] == ["b2", "b1"]


def test_changed_queue_conflicts(client):
    assert (
        post(
            client, "queued", event("Job-Creating", "2025-05-15T01:00:00Z")
        ).status_code
        == 200
    )
    before = client.get("/api/v1/job/queued").text
    response = post(
        client, "queued", event("Job-Running", "2025-05-15T02:00:00Z"), queue="q2"
    )
    assert response.status_code == 409
    assert "q1" in response.json()["message"]
    assert client.get("/api/v1/job/queued").text == before


def test_later_post_may_omit_queue(client):
    post(client, "no-queue-later", event("Job-Creating", "2025-05-15T01:00:00Z"))
    response = post(
        client,
        "no-queue-later",
        event("Job-Running", "2025-05-15T02:00:00Z"),
        queue=None,
    )
    assert response.status_code == 200
    assert response.json()["queueName"] == "q1"


def test_first_post_needs_queue(client):
    response = post(
        client, "no-queue", event("Job-Creating", "2025-05-15T01:00:00Z"), queue=None
    )
    assert response.status_code == 400
    assert response.json()["field"] == "queueName"
    assert client.get("/api/v1/job/no-queue").status_code == 404


BAD_BODIES = [
    ("not json", b"{", "body"),
    ("array body", b"[]", "body"),
    ("null body", b"null", "body"),
    ("empty body", b"", "body"),
    ("no events", b'{"queueName": "q1"}', "events"),
    ("empty events", b'{"queueName": "q1", "events": []}', "events"),
    ("events not a list", b'{"queueName": "q1", "events": {}}', "events"),
    ("event not an object", b'{"queueName": "q1", "events": [1]}', "events[0]"),
    (
        "no timestamp",
        b'{"queueName": "q1", "events": [{"eventType": "Job-Running"}]}',
        "events[0].timestamp",
    ),
    (
        "no type",
        b'{"queueName": "q1", "events": [{"timestamp": "2025-05-15T00:00:00Z"}]}',
        "events[0].eventType",
    ),
    (
        "empty type",
        b'{"queueName": "q1", "events": [{"timestamp": "2025-05-15T00:00:00Z", "eventType": ""}]}',
        "events[0].eventType",
    ),
    (
        "numeric type",
        b'{"queueName": "q1", "events": [{"timestamp": "2025-05-15T00:00:00Z", "eventType": 5}]}',
        "events[0].eventType",
    ),
    (
        "numeric nodeOid",
        b'{"queueName": "q1", "events": [{"timestamp": "2025-05-15T00:00:00Z", "eventType": "Job-Running", "nodeOid": 1}]}',
        "events[0].nodeOid",
    ),
    (
        "no offset",
        b'{"queueName": "q1", "events": [{"timestamp": "2025-05-15T00:00:00", "eventType": "Job-Running"}]}',
        "events[0].timestamp",
    ),
    (
        "epoch number",
        b'{"queueName": "q1", "events": [{"timestamp": 1747267200, "eventType": "Job-Running"}]}',
        "events[0].timestamp",
    ),
    (
        "date alone",
        b'{"queueName": "q1", "events": [{"timestamp": "2025-05-15", "eventType": "Job-Running"}]}',
        "events[0].timestamp",
    ),
    (
        "out of int64 range",
        b'{"queueName": "q1", "events": [{"timestamp": "2263-01-01T00:00:00Z", "eventType": "Job-Running"}]}',
        "events[0].timestamp",
    ),
    (
        "in the future",
        b'{"queueName": "q1", "events": [{"timestamp": "2025-05-16T12:05:00.000000001Z", "eventType": "Job-Running"}]}',
        "events[0].timestamp",
    ),
    (
        "bad queue",
        b'{"queueName": "../q", "events": [{"timestamp": "2025-05-15T00:00:00Z", "eventType": "Job-Running"}]}',
        "queueName",
    ),
    (
        "numeric queue",
        b'{"queueName": 7, "events": [{"timestamp": "2025-05-15T00:00:00Z", "eventType": "Job-Running"}]}',
        "queueName",
    ),
    (
        "NaN field",
        b'{"queueName": "q1", "events": [{"timestamp": "2025-05-15T00:00:00Z", "eventType": "Job-Running", "x": NaN}]}',
        "body",
    ),
    (
        "huge number field",
        b'{"queueName": "q1", "events": [{"timestamp": "2025-05-15T00:00:00Z", "eventType": "Job-Running", "x": 1e999}]}',
        "body",
    ),
    (
        "second event bad",
        b'{"queueName": "q1", "events": [{"timestamp": "2025-05-15T00:00:00Z", "eventType": "Job-Running"}, {"timestamp": "x", "eventType": "Job-Running"}]}',
        "events[1].timestamp",
    ),
]


@pytest.mark.parametrize(
    ("name", "body", "field"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES]
)
def test_bad_post_is_rejected(client, name, body, field):
    job_id = "bad-" + name.replace(" ", "-")
    response = client.post(
        f"/api/v1/job/{job_id}/events",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()
    assert error["statusCode"] == 400
    assert error["field"] == field
    assert error["message"]
    assert client.get(f"/api/v1/job/{job_id}").status_code == 404


def test_event_at_five_minutes_ahead_is_accepted(client):
    response = post(client, "ahead", event("Job-Running", "2025-05-16T12:05:00Z"))
    assert response.status_code == 200


def test_bad_post_leaves_existing_job(client):
    post(client, "kept", event("Job-Creating", "2025-05-15T01:00:00Z"))
    before = client.get("/api/v1/job/kept").text
    body = {
        "queueName": "q1",
        "events": [event("Job-Running", "2025-05-15T02:00:00Z"), {"x": 1}],
    }
    assert client.post("/api/v1/job/kept/events", json=body).status_code == 400
    assert client.get("/api/v1/job/kept").text == before


def test_wrong_content_type(client):
    response = client.post(
        "/api/v1/job/ct/events",
        content=b'{"queueName": "q1", "events": []}',
        headers={"Content-Type": "text/plain"},
    )
    assert response.status_code == 415


@pytest.mark.parametrize("job_id", ["-bad", "a" * 129, "a b", "é"])
def test_invalid_job_id(client, job_id):
    response = post(client, job_id, event("Job-Running", "2025-05-15T01:00:00Z"))
    assert response.status_code in (400, 404)
    assert response.json()["statusCode"] == response.status_code


def test_unknown_job_is_404(client):
    response = client.get("/api/v1/job/never-posted")
    assert response.status_code == 404
    assert response.json() == {
        "statusCode": 404,
        "message": "job 'never-posted' not found",
        "field": "jobID",
        "value": "never-posted",
    }


def test_wrong_method_is_405(client):
    response = client.delete("/api/v1/job")
    assert response.status_code == 405
    assert response.json()["statusCode"] == 405


@pytest.fixture(scope="module")
def listing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    server = ServerProcess(tmp_path_factory.mktemp("listing"), now=NOW).start()
    with server.client() as http:
        for index in range(12):
            queue = "qa" if index % 3 else "qb"
            created = f"2025-05-15T{index:02d}:00:00Z"
            done = f"2025-05-15T{index:02d}:30:00Z"
            post(http, f"list-{index:02d}", event("Job-Creating", created), queue=queue)
            if index % 2:
                post(
                    http, f"list-{index:02d}", event("Job-Succeeded", done), queue=queue
                )
        yield http
    server.stop()


def test_list_sorted_by_created(listing):
    response = listing.get("/api/v1/job")
    ids = [job["id"] for job in response.json()]
    assert ids == [f"list-{i:02d}" for i in range(12)]
    assert response.headers["X-Total-Count"] == "12"


def test_list_filters(listing):
    by_queue = listing.get("/api/v1/job", params={"queue": "qb"})
    assert [j["id"] for j in by_queue.json()] == [
        "list-00",
        "list-03",
        "list-06",
        "list-09",
    ]
    assert by_queue.headers["X-Total-Count"] == "4"
    succeeded = listing.get("/api/v1/job", params={"status": "Succeeded"}).json()
    assert {j["id"] for j in succeeded} == {f"list-{i:02d}" for i in range(1, 12, 2)}
    window = listing.get(
        "/api/v1/job",
        params={"start": "2025-05-15T03:00:00Z", "end": "2025-05-15T05:30:00Z"},
    ).json()
    # Filtered on updatedAt: list-03 ends at 03:30, list-04 at 04:00, list-05 at 05:30.
    assert [j["id"] for j in window] == ["list-03", "list-04"]


def test_list_paging_keeps_total(listing):
    page = listing.get("/api/v1/job", params={"limit": "5", "offset": "10"})
    assert [j["id"] for j in page.json()] == ["list-10", "list-11"]
    assert page.headers["X-Total-Count"] == "12"
    assert listing.get("/api/v1/job", params={"limit": "0"}).json() == []


def test_list_empty_result_is_empty_list(listing):
    response = listing.get("/api/v1/job", params={"queue": "nothing-here"})
    assert response.status_code == 200
    assert response.content == b"[]"
    assert response.headers["X-Total-Count"] == "0"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "-1"}, "limit"),
        ({"limit": "abc"}, "limit"),
        ({"offset": "1.5"}, "offset"),
        ({"status": "Bogus"}, "status"),
        ({"queue": "../x"}, "queue"),
        ({"start": "2025-05-15"}, "start"),
        ({"end": "yesterday"}, "end"),
        ({"start": "2025-05-15T02:00:00Z", "end": "2025-05-15T01:00:00Z"}, "start"),
    ],
)
def test_list_bad_parameters(listing, params, field):
    response = listing.get("/api/v1/job", params=params)
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_list_is_valid_json_with_unicode(client):
    weird = {
        **event("Job-Running", "2025-05-15T01:00:00Z"),
        "note": 'naïve \u2028 "quoted"',
    }
    post(client, "unicode", weird)
    job = json.loads(client.get("/api/v1/job/unicode").content)
    assert job["events"][0]["note"] == 'naïve \u2028 "quoted"'


def test_jobs_survive_restart(tmp_path):
    server = ServerProcess(tmp_path / "data", now=NOW).start()
    try:
        with server.client() as http:
            job = sample_job()
            for item in job["events"]:
                post(http, job["id"], item, queue=job["queueName"])
            before = http.get("/api/v1/job").content
        server.restart()
        with server.client() as http:
            assert http.get("/api/v1/job").content == before
    finally:
        server.stop()


def test_instants_do_not_depend_on_process_zone(tmp_path):
    server = ServerProcess(
        tmp_path / "data", now=NOW, env={"TZ": "Asia/Kolkata"}
    ).start()
    try:
        with server.client() as http:
            stamp = "2025-03-15T00:00:00.123456789Z"
            post(http, "job-1", event("Job-Creating", stamp), queue="q9")
            assert http.get("/api/v1/job/job-1").json()["createdAt"] == stamp
        server.env = {"TZ": "UTC"}
        server.restart()
        with server.client() as http:
            assert http.get("/api/v1/job/job-1").json()["createdAt"] == stamp
    finally:
        server.stop()
