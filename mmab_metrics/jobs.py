"""Jobs and their events: identity, ordering and the derived job fields.

A job is the sorted list of its distinct events plus its queue; every other
field of `GET /api/v1/job` is derived from those events here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from mmab_metrics.timecodec import TimeFormatError, format_time, parse_time

# Job and node ids and queue names.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", re.ASCII)

# Events may be at most this far ahead of the server clock.
MAX_FUTURE_NS = 5 * 60 * 1_000_000_000

STATUSES = frozenset(
    {
        "Creating",
        "Created",
        "Running",
        "Checkpointing",
        "CheckpointSucceeded",
        "CheckpointFailed",
        "Restoring",
        "RestoreSucceeded",
        "RestoreFailed",
        "VolumeUnready",
        "RestoreVolumeUnready",
        "Stopped",
        "Succeeded",
        "Failed",
    }
)
# Statuses after which a job expires, mapped to the TTL key that governs them.
EXPIRING = {
    "Succeeded": "job.successTTL",
    "Failed": "job.failureTTL",
    "Stopped": "job.failureTTL",
}

_STRING_FIELDS = ("eventType", "nodeOid", "containerId", "batchJobId", "volumnId")


class EventError(ValueError):
    """An invalid job post; `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def is_valid_id(text: str) -> bool:
    return isinstance(text, str) and ID_PATTERN.fullmatch(text) is not None


@dataclass(frozen=True)
class Event:
    """One job event: its instant, its JSON object as returned, its identity."""

    time_ns: int
    data: dict[str, Any]
    identity: str

    @property
    def event_type(self) -> str:
        return self.data["eventType"]


def _canonical(value: Any) -> Any:
    """Map equal JSON values to equal Python values (`1.0` and `1` alike)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def make_event(data: dict[str, Any], time_ns: int) -> Event:
    identity = json.dumps(
        _canonical({**data, "timestamp": time_ns}),
        sort_keys=True,
        separators=(",", ":"),
    )
    return Event(time_ns, data, identity)


def parse_event(raw: Any, index: int, now_ns: int) -> Event:
    """Validate one posted event and normalise its timestamp to UTC."""
    where = f"events[{index}]"
    if not isinstance(raw, dict):
        raise EventError(where, f"invalid `{where}`: expected a JSON object")
    for name in ("timestamp", "eventType"):
        if name not in raw:
            raise EventError(f"{where}.{name}", f"missing `{where}.{name}`")
    for name in _STRING_FIELDS:
        if name in raw and not isinstance(raw[name], str):
            raise EventError(
                f"{where}.{name}",
                f"invalid `{where}.{name}` {json.dumps(raw[name])}: expected a string",
            )
    if not raw["eventType"]:
        raise EventError(f"{where}.eventType", f"invalid `{where}.eventType`: empty")
    stamp = raw["timestamp"]
    try:
        time_ns = parse_time(stamp)
    except TimeFormatError as exc:
        raise EventError(
            f"{where}.timestamp", f"invalid `{where}.timestamp`: {exc}"
        ) from None
    if time_ns > now_ns + MAX_FUTURE_NS:
        raise EventError(
            f"{where}.timestamp",
            f"invalid `{where}.timestamp` {stamp!r}: more than 5 minutes ahead of "
            f"the server clock ({format_time(now_ns)})",
        )
    data = dict(raw)
    data["timestamp"] = format_time(time_ns)
    return make_event(data, time_ns)


def merge(existing: list[Event], arrivals: list[Event]) -> tuple[list[Event], int]:
    """Add the arrivals that are not redeliveries; keep the list sorted by time.

    Ties keep arrival order because the sort is stable and new events go last.
    Returns the merged list and how many events were added.
    """
    seen = {event.identity for event in existing}
    added = []
    for event in arrivals:
        if event.identity not in seen:
            seen.add(event.identity)
            added.append(event)
    if not added:
        return existing, 0
    merged = existing + added
    merged.sort(key=lambda event: event.time_ns)
    return merged, len(added)


def status_of(events: list[Event]) -> str:
    """Return the status named by the latest known `Job-*` event, or `""`."""
    for event in reversed(events):
        kind = event.event_type
        if kind.startswith("Job-") and kind[4:] in STATUSES:
            return kind[4:]
    return ""


def _latest(events: list[Event], field: str) -> str:
    for event in reversed(events):
        value = event.data.get(field)
        if isinstance(value, str) and value:
            return value
    return ""


def _distinct(events: list[Event], field: str) -> list[str]:
    values: dict[str, None] = {}
    for event in events:
        value = event.data.get(field)
        if isinstance(value, str) and value:
            values.setdefault(value)
    return list(values)


def view(job_id: str, queue: str, events: list[Event]) -> dict[str, Any]:
    """Build the job object of `GET /api/v1/job` from its sorted events."""
    return {
        "id": job_id,
        "queueName": queue,
        "createdAt": format_time(events[0].time_ns),
        "updatedAt": format_time(events[-1].time_ns),
        "status": status_of(events),
        "nodeOid": _latest(events, "nodeOid"),
        "containerId": _latest(events, "containerId"),
        "spotProtCount": sum(e.event_type == "Job-RestoreSucceeded" for e in events),
        "batchJobIds": _distinct(events, "batchJobId"),
        "volumeIds": _distinct(events, "volumnId"),
        "events": [event.data for event in events],
    }


def events_from_view(document: dict[str, Any]) -> list[Event]:
    """Rebuild the stored events of a job document."""
    return [
        make_event(data, parse_time(data["timestamp"])) for data in document["events"]
    ]


def parse_post(body: Any, now_ns: int) -> tuple[str | None, list[Event]]:
    """Validate a `POST /api/v1/job/{id}/events` body: its queue and events."""
    if not isinstance(body, dict):
        raise EventError("body", "invalid body: expected a JSON object")
    queue = body.get("queueName")
    if queue is not None and not is_valid_id(queue):
        raise EventError(
            "queueName",
            f"invalid `queueName` {json.dumps(queue)}: expected 1 to 128 of "
            "A-Z a-z 0-9 . _ -, starting with a letter or digit",
        )
    events = body.get("events")
    if not isinstance(events, list) or not events:
        raise EventError(
            "events", "missing or empty `events`: expected a list of events"
        )
    return queue, [parse_event(raw, i, now_ns) for i, raw in enumerate(events)]
