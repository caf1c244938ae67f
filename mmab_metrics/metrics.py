"""Metric definitions, metric objects, and the points derived from job events.

A metric is a definition measured on an object; its id is
`<definitionID>.<objectID>`. Each definition has a rollup aggregate that
values its buckets at every level.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mmab_metrics.jobs import Event
from mmab_metrics.timecodec import NS_PER_SECOND

AGGREGATES = ("sum", "avg", "min", "max", "last")
DEFINITION_PREFIX = "metricDef-"
SYSTEM_TOTAL = "system-total"

_OBJECT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,139}", re.ASCII)
_SHORT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}", re.ASCII)


@dataclass(frozen=True)
class Definition:
    """A metric definition: `short` keys it in the summary, `id` is `metricDef-<short>`."""

    short: str
    description: str
    labels: tuple[str, ...]
    aggregate: str
    builtin: bool = False

    @property
    def id(self) -> str:
        return DEFINITION_PREFIX + self.short

    def document(self) -> dict[str, object]:
        return {
            "id": self.id,
            "description": self.description,
            "labels": list(self.labels),
            "aggregate": self.aggregate,
        }


def _builtin(
    short: str, description: str, labels: tuple[str, ...], aggregate: str
) -> Definition:
    return Definition(short, description, labels, aggregate, builtin=True)


BUILTINS: tuple[Definition, ...] = (
    _builtin("jobSubmitted", "Number of jobs submitted", ("count",), "sum"),
    _builtin("runtime", "Total runtime of jobs", ("duration",), "sum"),
    _builtin("spotProtection", "Number of Spot reclaims survived", ("count",), "sum"),
    _builtin(
        "timeSaved", "Time saved by restoring from checkpoints", ("duration",), "sum"
    ),
    _builtin("volumeAttachTime", "Time to attach a job's volume", ("duration",), "avg"),
    _builtin("checkpointAttempts", "Number of checkpoints started", ("count",), "sum"),
    _builtin(
        "checkpointSucceeded", "Number of checkpoints that succeeded", ("count",), "sum"
    ),
    _builtin(
        "checkpointFailed", "Number of checkpoints that failed", ("count",), "sum"
    ),
    _builtin("checkpointDuration", "Time to take a checkpoint", ("duration",), "avg"),
    _builtin("restoreAttempts", "Number of restores started", ("count",), "sum"),
    _builtin(
        "restoreSucceeded", "Number of restores that succeeded", ("count",), "sum"
    ),
    _builtin("restoreFailed", "Number of restores that failed", ("count",), "sum"),
    _builtin("restoreDuration", "Time to restore a job", ("duration",), "avg"),
)
BUILTIN_BY_SHORT = {d.short: d for d in BUILTINS}


def short_name(definition_id: str) -> str:
    """Accept either form of a definition id and return its short name."""
    if definition_id.startswith(DEFINITION_PREFIX):
        return definition_id[len(DEFINITION_PREFIX) :]
    return definition_id


def is_valid_short_name(text: str) -> bool:
    return _SHORT_NAME.fullmatch(text) is not None


def is_valid_object_id(text: str) -> bool:
    return _OBJECT_ID.fullmatch(text) is not None


def object_document(object_id: str) -> dict[str, str]:
    """Describe a metric object: its id, type and name."""
    if object_id == SYSTEM_TOTAL:
        return {"id": object_id, "type": SYSTEM_TOTAL, "name": SYSTEM_TOTAL}
    for prefix, kind in (("queue-", "queue"), ("node-", "node"), ("job-", "job")):
        if object_id.startswith(prefix) and len(object_id) > len(prefix):
            return {"id": object_id, "type": kind, "name": object_id[len(prefix) :]}
    return {"id": object_id, "type": "custom", "name": object_id}


def queue_object(queue: str) -> str:
    return f"queue-{queue}"


# -------------------------------------------------------------- derivation --


@dataclass(frozen=True, order=True)
class DerivedPoint:
    """One point derived from a job's events, before it is put on its objects."""

    short: str
    time_ns: int
    value: float


_TERMINAL = ("Job-Succeeded", "Job-Failed", "Job-Stopped")
_COUNTERS = {
    "Job-Checkpointing": "checkpointAttempts",
    "Job-CheckpointSucceeded": "checkpointSucceeded",
    "Job-CheckpointFailed": "checkpointFailed",
    "Job-Restoring": "restoreAttempts",
    "Job-RestoreSucceeded": "restoreSucceeded",
    "Job-RestoreFailed": "restoreFailed",
}


def _seconds(ns: int) -> float:
    return ns / NS_PER_SECOND


def derive(events: list[Event]) -> list[DerivedPoint]:
    """Derive the metric points of one job from its events, sorted by time.

    Each point takes the time of the event it belongs to. "Before" means
    earlier in the sorted list, so late events re-derive consistently.
    """
    points: list[DerivedPoint] = []
    first_running: int | None = None
    latest_running: int | None = None
    latest_checkpointing: int | None = None
    latest_restoring: int | None = None
    # The latest Job-Running before the latest Job-CheckpointSucceeded.
    checkpoint: tuple[int, int | None] | None = None
    # For the pending restore: the checkpoint that preceded its Job-Restoring.
    restore_checkpoint: tuple[int, int | None] | None = None
    submitted = finished = False
    volumes_created: dict[str, int] = {}
    volumes_attached: set[str] = set()

    for event in events:
        kind = event.event_type
        at = event.time_ns
        if kind == "Job-Creating" and not submitted:
            submitted = True
            points.append(DerivedPoint("jobSubmitted", at, 1.0))
        elif kind == "Job-Running":
            if first_running is None:
                first_running = at
            latest_running = at
        elif kind in _TERMINAL and not finished:
            finished = True
            if first_running is not None:
                points.append(DerivedPoint("runtime", at, _seconds(at - first_running)))
        elif kind == "Volume-Created":
            volume = event.data.get("volumnId")
            if isinstance(volume, str) and volume not in volumes_created:
                volumes_created[volume] = at
        elif kind == "Volume-Attached":
            volume = event.data.get("volumnId")
            if (
                isinstance(volume, str)
                and volume in volumes_created
                and volume not in volumes_attached
            ):
                volumes_attached.add(volume)
                points.append(
                    DerivedPoint(
                        "volumeAttachTime", at, _seconds(at - volumes_created[volume])
                    )
                )

        counter = _COUNTERS.get(kind)
        if counter is not None:
            points.append(DerivedPoint(counter, at, 1.0))
        if kind == "Job-Checkpointing":
            latest_checkpointing = at
        elif kind == "Job-CheckpointSucceeded":
            if latest_checkpointing is not None:
                points.append(
                    DerivedPoint(
                        "checkpointDuration", at, _seconds(at - latest_checkpointing)
                    )
                )
            checkpoint = (at, latest_running)
        elif kind == "Job-Restoring":
            latest_restoring = at
            restore_checkpoint = checkpoint
        elif kind == "Job-RestoreSucceeded":
            points.append(DerivedPoint("spotProtection", at, 1.0))
            if latest_restoring is not None:
                points.append(
                    DerivedPoint("restoreDuration", at, _seconds(at - latest_restoring))
                )
            if restore_checkpoint is not None and restore_checkpoint[1] is not None:
                saved_at, running_at = restore_checkpoint
                points.append(
                    DerivedPoint("timeSaved", at, _seconds(saved_at - running_at))
                )
    return sorted(points)
