"""Routes for jobs: the list, one job, and the agents' event posts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import polars as pl
from litestar import Request, Response, get, post
from litestar.params import FromPath
from litestar.response import Stream
from loguru import logger

from api.errors import ApiError
from api.responses import (
    query_int,
    query_time,
    query_value,
    raw_json_response,
    read_json,
    services_of,
)
from mmab_metrics import jobs as job_rules
from mmab_metrics.metrics import SYSTEM_TOTAL, DerivedPoint, derive, queue_object
from storage.jobs import JobFilter


def job_points(job_id: str, queue: str, points: list[DerivedPoint]) -> pl.DataFrame:
    """Put a job's derived points on `system-total`, its queue and `job-<id>`."""
    objects = (SYSTEM_TOTAL, queue_object(queue), f"job-{job_id}")
    rows = [(p.short, obj, p.time_ns, p.value) for p in points for obj in objects]
    return pl.DataFrame(
        {
            "short": [r[0] for r in rows],
            "object": [r[1] for r in rows],
            "time_ns": [r[2] for r in rows],
            "value": [r[3] for r in rows],
            "source": [job_id] * len(rows),
        },
        schema={
            "short": pl.String,
            "object": pl.String,
            "time_ns": pl.Int64,
            "value": pl.Float64,
            "source": pl.String,
        },
    )


def _job_filter(request: Request[Any, Any, Any]) -> JobFilter:
    queue = query_value(request, "queue")
    if queue is not None and not job_rules.is_valid_id(queue):
        raise ApiError(400, f"invalid `queue` {queue!r}", field="queue", value=queue)
    status = query_value(request, "status")
    if status is not None and status not in job_rules.STATUSES:
        raise ApiError(
            400,
            f"invalid `status` {status!r}: expected one of "
            + ", ".join(sorted(job_rules.STATUSES)),
            field="status",
            value=status,
        )
    start, end = query_time(request, "start"), query_time(request, "end")
    if start is not None and end is not None and start >= end:
        raise ApiError(
            400, "invalid range: `start` must be before `end`", field="start"
        )
    return JobFilter(
        queue=queue,
        status=status,
        start_ns=start,
        end_ns=end,
        limit=query_int(request, "limit"),
        offset=query_int(request, "offset") or 0,
    )


@get("/api/v1/job", sync_to_thread=False)
def list_jobs(request: Request[Any, Any, Any]) -> Response[bytes] | Stream:
    services = services_of(request)
    job_ids, total = services.jobs.list(
        _job_filter(request), services.sweeper.ttls(), services.clock.now_ns()
    )
    headers = {"X-Total-Count": str(total)}
    if len(job_ids) <= _STREAM_BATCH:
        body = "[" + ",".join(services.jobs.documents(job_ids)) + "]"
        return raw_json_response(body, headers=headers)

    def chunks() -> Iterator[bytes]:
        # Documents are read a batch at a time, so a long list holds neither
        # the database lock nor every document at once.
        first = True
        yield b"["
        for offset in range(0, len(job_ids), _STREAM_BATCH):
            for document in services.jobs.documents(
                job_ids[offset : offset + _STREAM_BATCH]
            ):
                yield (document if first else "," + document).encode()
                first = False
        yield b"]"

    return Stream(chunks(), media_type="application/json", headers=headers)


_STREAM_BATCH = 500


def _not_found(job_id: str) -> ApiError:
    return ApiError(404, f"job {job_id!r} not found", field="jobID", value=job_id)


@get("/api/v1/job/{job_id:str}", sync_to_thread=False)
def get_job(request: Request[Any, Any, Any], job_id: FromPath[str]) -> Response[bytes]:
    services = services_of(request)
    if not job_rules.is_valid_id(job_id):
        raise _not_found(job_id)
    text = services.jobs.get_raw(
        job_id, services.sweeper.ttls(), services.clock.now_ns()
    )
    if text is None:
        raise _not_found(job_id)
    return raw_json_response(text)


@post("/api/v1/job/{job_id:str}/events", status_code=200)
async def post_job_events(
    request: Request[Any, Any, Any], job_id: FromPath[str]
) -> Response[bytes]:
    services = services_of(request)
    if not job_rules.is_valid_id(job_id):
        raise ApiError(
            400,
            f"invalid job id {job_id!r}: expected 1 to 128 of A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit",
            field="jobID",
            value=job_id,
        )
    body = await read_json(request)
    now = services.clock.now_ns()
    try:
        queue, arrivals = job_rules.parse_post(body, now)
    except job_rules.EventError as exc:
        raise ApiError(400, exc.message, field=exc.field) from None

    ttls = services.sweeper.ttls()
    with services.db.lock:
        # An expired job that the sweep has not deleted yet still merges late
        # events; it stays hidden unless they make it current again.
        document = services.jobs.get(job_id)
        if document is None:
            if queue is None:
                raise ApiError(
                    400,
                    f"missing `queueName`: the first post for job {job_id!r} must name "
                    "its queue",
                    field="queueName",
                )
            events: list[job_rules.Event] = []
        else:
            if queue is not None and queue != document["queueName"]:
                raise ApiError(
                    409,
                    f"job {job_id!r} belongs to queue {document['queueName']!r}, "
                    f"not {queue!r}",
                    field="queueName",
                    value=queue,
                )
            queue = document["queueName"]
            events = job_rules.events_from_view(document)

        merged, added = job_rules.merge(events, arrivals)
        if not added and document is not None:
            text = services.jobs.get_raw(job_id, ttls, now)
            return raw_json_response(text or "")
        assert queue is not None
        view = job_rules.view(job_id, queue, merged)
        stored: list[str] = []

        def store_job() -> None:
            stored.append(
                services.jobs.put(view, merged[0].time_ns, merged[-1].time_ns)
            )

        services.points.replace_source(
            job_points(job_id, queue, derive(merged)),
            job_points(job_id, queue, derive(events)),
            now,
            before_commit=store_job,
        )
        text = stored[0]
    logger.bind(job=job_id, added=added, status=view["status"]).debug(
        "job events stored"
    )
    return raw_json_response(text)


ROUTES = [list_jobs, get_job, post_job_events]
