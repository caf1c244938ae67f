"""Fleet plans: a simulated history of worker nodes and jobs, as requests.

`build_plan` draws the whole history from one seed, without I/O: nodes that
register, heartbeat, upload their logs and are reclaimed as Spot instances,
and jobs that run, checkpoint and are restored on other nodes. The plan lists
every request that replays this history through the agents' HTTP API, in the
order to send them.

A job's events run `Job-Creating`, `Volume-Created`, `Volume-Attached`,
`Job-Created` and `Job-Running`, then a `Job-Checkpointing` followed by
`Job-CheckpointSucceeded` or `Job-CheckpointFailed` at every checkpoint
interval, and end with `Job-Succeeded` or `Job-Failed`. A reclaim of its node
cuts in with `Job-Restoring`, `Job-RestoreSucceeded` and `Job-Running` on
another node, and the job resumes from its latest successful checkpoint.
Events after the end of the window are dropped, so late jobs stay unfinished.

The same inputs give the same plan, byte for byte, because every random
choice comes from one `random.Random(seed)`, drawn in a fixed order, and no
value in the plan depends on the wall clock.
"""

from __future__ import annotations

import enum
import hashlib
import heapq
import json
import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mmab_metrics.durations import HOUR, MILLISECOND, MINUTE, SECOND, format_duration
from mmab_metrics.timecodec import MAX_NS, MIN_NS, format_time

__all__ = [
    "LOG_FILES",
    "Action",
    "ActionKind",
    "FileDigest",
    "Plan",
    "PlannedEvent",
    "PlannedJob",
    "PlannedNode",
    "Reclaim",
    "build_plan",
]

QUEUE_PREFIX = "sim-q"
LOG_FILES = (
    "var/log/cloud-init-output.log",
    "var/log/memverge/pagent.log",
    "var/log/memverge/mmrunc.log",
)
CLOUD_INIT_LOG, PAGENT_LOG, MMRUNC_LOG = LOG_FILES

# A shorter window cannot hold a job's fixed steps: startup takes up to 21 s,
# a checkpoint up to 20 s and a restore up to 4 minutes after the reclaim.
MIN_SPAN_NS = 10 * MINUTE
# Each live node has its own 172.31.x.y address, x in 0..255 and y in 1..254.
MAX_NODES = 256 * 254

SUBMIT_START_NS = 2 * MINUTE  # after the initial nodes have registered
SUBMIT_SHARE = 0.7  # jobs are submitted in the first 70% of the window
TICKS_PER_SPAN = 48  # heartbeats and log uploads of every live node
CHECKPOINT_FAILURE_RATE = 0.08
JOB_FAILURE_RATE = 0.1
REDELIVERY_RATE = 0.02
MAX_REDELIVERY_DELAY_NS = 5 * MINUTE
MAX_BATCH_GAP_NS = MINUTE  # an agent batches only events this close together
# The reclaim of a job's node comes at least this long after its checkpoint
# when the window allows, so that jobs placed on the node just before the
# interruption notice have finished their startup.
RECLAIM_MIN_DELAY_NS = MINUTE

JSON_CONTENT_TYPE = "application/json"
FILE_CONTENT_TYPE = "application/octet-stream"

_XEON_8375C = "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"
_XEON_8275CL = "Intel(R) Xeon(R) Platinum 8275CL CPU @ 3.00GHz"
_EPYC_7R13 = "AMD EPYC 7R13 Processor"
_INTEL = "GenuineIntel"
_AMD = "AuthenticAMD"
# instanceType, vCPUs, memory in GiB, cpuModel, cpuVendor
_INSTANCE_TYPES = (
    ("m6i.large", 2, 8, _XEON_8375C, _INTEL),
    ("m6i.xlarge", 4, 16, _XEON_8375C, _INTEL),
    ("m6i.2xlarge", 8, 32, _XEON_8375C, _INTEL),
    ("c6i.xlarge", 4, 8, _XEON_8375C, _INTEL),
    ("c6i.2xlarge", 8, 16, _XEON_8375C, _INTEL),
    ("r6i.large", 2, 16, _XEON_8375C, _INTEL),
    ("r6i.xlarge", 4, 32, _XEON_8375C, _INTEL),
    ("c5.xlarge", 4, 8, _XEON_8275CL, _INTEL),
    ("m6a.large", 2, 8, _EPYC_7R13, _AMD),
    ("m6a.xlarge", 4, 16, _EPYC_7R13, _AMD),
)
# The kernel reports less than the nominal memory. The sample node of the API
# documentation, an m6i.large with 8 GiB, reports 7638 MB, and every type
# here is scaled by that ratio.
_REPORTED_MEMORY_RATIO = 7638 / 8192
_REGION = "us-west-1"
_ZONES = ("us-west-1a", "us-west-1c")

# ---------------------------------------------------------------------------
# The plan


class ActionKind(enum.StrEnum):
    """Kind of a planned request."""

    REGISTER = "register"  # POST /api/v1/node, the node's first post
    HEARTBEAT = "heartbeat"  # POST /api/v1/node again
    LEAVE = "leave"  # DELETE /api/v1/node/{nodeID}
    FILE_REPLACE = "file-replace"  # PUT /nodes/{nodeID}/{path}
    FILE_APPEND = "file-append"  # POST /nodes/{nodeID}/{path}
    EVENTS = "events"  # POST /api/v1/job/{jobID}/events
    REDELIVERY = "redelivery"  # an EVENTS request sent a second time


@dataclass(frozen=True)
class Action:
    """One planned HTTP request, in the order the plan sends it.

    `at_ns` is the simulated instant of the request. `node_id` goes into the
    `X-Node-ID` header. `body` is sent as is, with `content_type`.
    """

    at_ns: int
    kind: ActionKind
    method: str
    path: str
    node_id: str
    body: bytes = b""
    content_type: str | None = None
    job_id: str | None = None


@dataclass(frozen=True)
class PlannedEvent:
    """One job event, with the node that posts it and the job's container."""

    timestamp_ns: int
    event_type: str
    fields: tuple[tuple[str, str], ...]
    node_id: str
    container_id: str

    def to_json(self) -> dict[str, str]:
        """Build the event object as it is posted."""
        return {
            "timestamp": format_time(self.timestamp_ns),
            "eventType": self.event_type,
            **dict(self.fields),
        }


@dataclass(frozen=True)
class FileDigest:
    """Size and SHA-256 of a node log file's content after the run."""

    size: int
    sha256: str


@dataclass(frozen=True)
class PlannedNode:
    """A worker node: its descriptor as posted and its life in the window."""

    id: str
    descriptor: dict[str, Any]
    registered_ns: int
    left_ns: int | None  # the reclaim time, or None for a node live at the end
    replaces: str | None  # the id of the reclaimed node this one replaces
    files: dict[str, FileDigest]

    @property
    def instance_id(self) -> str:
        return self.descriptor["instance"]["instanceId"]

    @property
    def state(self) -> str:
        return "live" if self.left_ns is None else "finished"


@dataclass(frozen=True)
class PlannedJob:
    """A job with its distinct events sorted by time."""

    id: str
    queue_name: str
    events: tuple[PlannedEvent, ...]
    spot_prot_count: int

    @property
    def status(self) -> str:
        """The latest `Job-*` event type without its prefix, as the server derives it."""
        for event in reversed(self.events):
            if event.event_type.startswith("Job-"):
                return event.event_type.removeprefix("Job-")
        return ""


@dataclass(frozen=True)
class Reclaim:
    """A Spot reclaim: the node that left, the jobs restored elsewhere.

    `trigger_job_id` is the job whose successful checkpoint preceded the
    reclaim. `job_ids` lists every job active on the node at `at_ns`, the
    trigger included. `replacement_id` is the node that registered at `at_ns`.
    """

    node_id: str
    at_ns: int
    trigger_job_id: str
    job_ids: tuple[str, ...]
    replacement_id: str


@dataclass(frozen=True)
class Plan:
    """A whole simulated fleet history and the requests that replay it."""

    seed: int
    start_ns: int
    end_ns: int
    span_ns: int
    spot_rate: float
    tick_ns: int  # interval between heartbeats and log uploads
    queues: tuple[str, ...]
    nodes: tuple[PlannedNode, ...]  # initial nodes, then replacements in time order
    jobs: tuple[PlannedJob, ...]  # in submission order
    reclaims: tuple[Reclaim, ...]  # in time order
    actions: tuple[Action, ...]

    @property
    def event_count(self) -> int:
        return sum(len(job.events) for job in self.jobs)

    @property
    def spot_protection_count(self) -> int:
        return sum(job.spot_prot_count for job in self.jobs)


def build_plan(
    *,
    nodes: int,
    jobs: int,
    queues: int,
    seed: int,
    spot_rate: float,
    span_ns: int,
    end_ns: int,
) -> Plan:
    """Draw a fleet history over `[end_ns - span_ns, end_ns]` and plan its requests.

    Raises ValueError naming the parameter when a value is out of range.
    """
    _validate_inputs(nodes, jobs, queues, spot_rate, span_ns, end_ns)
    simulation = _Simulation(
        nodes=nodes,
        jobs=jobs,
        queue_names=tuple(f"{QUEUE_PREFIX}{i}" for i in range(1, queues + 1)),
        rng=random.Random(seed),
        spot_rate=spot_rate,
        start_ns=end_ns - span_ns,
        end_ns=end_ns,
    )
    simulation.run()
    return _write_plan(simulation, seed, span_ns)


def _validate_inputs(
    nodes: int, jobs: int, queues: int, spot_rate: float, span_ns: int, end_ns: int
) -> None:
    if not 1 <= nodes <= MAX_NODES:
        msg = f"`nodes` must be between 1 and {MAX_NODES}, got {nodes!r}"
        raise ValueError(msg)
    if jobs < 1:
        msg = f"`jobs` must be at least 1, got {jobs!r}"
        raise ValueError(msg)
    if queues < 1:
        msg = f"`queues` must be at least 1, got {queues!r}"
        raise ValueError(msg)
    if not 0.0 <= spot_rate <= 1.0:  # also rejects NaN
        msg = f"`spot_rate` must be between 0 and 1, got {spot_rate!r}"
        raise ValueError(msg)
    if span_ns < MIN_SPAN_NS:
        msg = (
            f"`span` must be at least {format_duration(MIN_SPAN_NS)}, "
            f"got {format_duration(span_ns)}"
        )
        raise ValueError(msg)
    if not (end_ns - span_ns >= MIN_NS and end_ns <= MAX_NS):
        msg = (
            f"`end` minus `span` must lie within {format_time(MIN_NS)} to "
            f"{format_time(MAX_NS)}, got end {end_ns} and span {span_ns} ns"
        )
        raise ValueError(msg)


# ---------------------------------------------------------------------------
# Random values


def _draw_ns(rng: random.Random, low_s: float, high_s: float) -> int:
    """Draw a duration uniformly from `[low_s, high_s]` seconds, to the nanosecond."""
    return rng.randrange(round(low_s * SECOND), round(high_s * SECOND) + 1)


def _draw_hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(4 * digits):0{digits}x}"


def _draw_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _floor_second(ns: int) -> int:
    return ns - ns % SECOND


def _ceil_second(ns: int) -> int:
    return -(-ns // SECOND) * SECOND


# ---------------------------------------------------------------------------
# The simulation


@dataclass
class _NodeState:
    index: int  # position in `_Simulation.nodes`
    id: str
    descriptor: dict[str, Any]
    ip: str
    registered_ns: int
    replaces: str | None
    left_ns: int | None = None
    # True from the interruption notice on. No job is placed on a doomed node.
    doomed: bool = False
    jobs: set[int] = field(default_factory=set)  # indices of its active jobs

    @property
    def instance_id(self) -> str:
        return self.descriptor["instance"]["instanceId"]


@dataclass
class _JobState:
    index: int
    id: str
    queue_name: str
    submit_ns: int
    checkpoint_interval_ns: int
    work_ns: int  # running time the job needs to finish
    fails: bool
    events: list[PlannedEvent] = field(default_factory=list)
    node: _NodeState | None = None
    container_id: str = ""
    # A reclaim bumps the epoch, which cancels every step scheduled before it.
    epoch: int = 0
    # Spot reclaim bookkeeping, see `_Simulation._on_hit`.
    designated: bool = False
    fired: bool = False
    hit: bool = False
    finished: bool = False
    # Work done, in ns of running time, at the start of the current run
    # segment and at the latest successful checkpoint. A restore resumes
    # from the checkpoint.
    segment_start_ns: int = 0
    segment_progress_ns: int = 0
    saved_progress_ns: int = 0
    checkpoint_start_ns: int = 0
    checkpoint_fails: bool = False
    spot_prot_count: int = 0

    def progress_at(self, at_ns: int) -> int:
        return self.segment_progress_ns + (at_ns - self.segment_start_ns)

    def finish_at(self) -> int:
        return self.segment_start_ns + self.work_ns - self.segment_progress_ns


class _LazyPool:
    """Job indices to draw from at random, some of which may have gone stale.

    `draw` discards the stale entries it meets, so a draw costs O(1) amortised
    instead of a scan of every job.
    """

    def __init__(self, items: Iterable[int]) -> None:
        self._items = list(items)

    def add(self, item: int) -> None:
        self._items.append(item)

    def draw(self, rng: random.Random, is_valid: Callable[[int], bool]) -> int | None:
        items = self._items
        while items:
            position = rng.randrange(len(items))
            item = items[position]
            items[position] = items[-1]
            items.pop()
            if is_valid(item):
                return item
        return None


# Heap priorities at equal times: a reclaim cuts job steps due at its instant.
_RECLAIM_PRIORITY = 0
_STEP_PRIORITY = 1


class _Simulation:
    """A discrete-event simulation of the fleet, in simulated time order.

    To make the share of reclaimed jobs `spot_rate`, `round(spot_rate * jobs)`
    jobs are designated at random to trigger a reclaim of their node after a
    successful checkpoint. A reclaim also hits the other jobs on that node,
    and each of them cancels one pending designation. A designated job that
    finishes without being hit passes its designation on to another job.
    The share ends above `spot_rate` when reclaims hit more jobs than there
    are designations left to cancel, as in a small fleet with many jobs per
    node. It ends below when designated jobs still wait for a checkpoint at
    the end of the window.
    """

    def __init__(
        self,
        *,
        nodes: int,
        jobs: int,
        queue_names: tuple[str, ...],
        rng: random.Random,
        spot_rate: float,
        start_ns: int,
        end_ns: int,
    ) -> None:
        self.rng = rng
        self.spot_rate = spot_rate
        self.queue_names = queue_names
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.span_ns = end_ns - start_ns
        self.nodes: list[_NodeState] = []
        self.available: list[_NodeState] = []  # live and not doomed
        self.live_ips: set[str] = set()
        self.reclaims: list[Reclaim] = []
        self._heap: list[tuple[int, int, int, str, int, int]] = []
        self._sequence = 0
        self._surplus = 0  # hit jobs beyond the designations they cancelled

        for _ in range(nodes):
            created_ns = _ceil_second(start_ns) + self.rng.randint(0, 30) * SECOND
            self._add_node(created_ns, created_ns + _draw_ns(self.rng, 20, 60), None)
        self.jobs = self._draw_jobs(jobs)
        designated = set(self.rng.sample(range(jobs), round(spot_rate * jobs)))
        for index in designated:
            self.jobs[index].designated = True
        self._designated_pool = _LazyPool(sorted(designated))
        self._candidate_pool = _LazyPool(i for i in range(jobs) if i not in designated)

    # -- setup

    def _add_node(
        self, created_ns: int, registered_ns: int, replaces: str | None
    ) -> _NodeState:
        rng = self.rng
        ip = f"172.31.{rng.randrange(256)}.{rng.randint(1, 254)}"
        while ip in self.live_ips:
            ip = f"172.31.{rng.randrange(256)}.{rng.randint(1, 254)}"
        instance_type, cores, memory_gib, cpu_model, cpu_vendor = rng.choice(
            _INSTANCE_TYPES
        )
        node_id = _draw_uuid(rng)
        descriptor = {
            "id": node_id,
            "ips": [ip],
            "hostName": f"ip-{ip.replace('.', '-')}.{_REGION}.compute.internal",
            "cloud": "aws",
            "arch": "x86_64",
            "cores": cores,
            "cpuModel": cpu_model,
            "cpuVendor": cpu_vendor,
            "memoryInMB": round(memory_gib * 1024 * _REPORTED_MEMORY_RATIO),
            "instance": {
                "zone": rng.choice(_ZONES),
                "instanceId": "i-" + _draw_hex(rng, 17),
                "instanceType": instance_type,
                "region": _REGION,
                "createTime": format_time(created_ns),
                "payType": "Spot",
            },
        }
        node = _NodeState(
            len(self.nodes), node_id, descriptor, ip, registered_ns, replaces
        )
        self.nodes.append(node)
        self.available.append(node)
        self.live_ips.add(ip)
        return node

    def _draw_jobs(self, count: int) -> list[_JobState]:
        rng = self.rng
        submit_low = self.start_ns + SUBMIT_START_NS
        submit_high = self.start_ns + round(self.span_ns * SUBMIT_SHARE)
        drawn = []
        for _ in range(count):
            job_id = _draw_uuid(rng)
            queue_name = rng.choice(self.queue_names)
            submit_ns = rng.randint(submit_low, submit_high)
            if rng.random() < 0.25:
                # Whole milliseconds, so that shorter fractions appear too.
                submit_ns -= submit_ns % MILLISECOND
            interval = round(self.span_ns * rng.uniform(0.015, 0.05))
            interval = min(max(interval, 2 * MINUTE), 2 * HOUR)
            # An exponential tail, so that a few jobs outlast the window.
            work = round(interval * (1.5 + rng.expovariate(1 / 3.5)))
            fails = rng.random() < JOB_FAILURE_RATE
            drawn.append((submit_ns, job_id, queue_name, interval, work, fails))
        drawn.sort()
        return [
            _JobState(index, job_id, queue_name, submit_ns, interval, work, fails)
            for index, (submit_ns, job_id, queue_name, interval, work, fails) in (
                enumerate(drawn)
            )
        ]

    # -- the event loop

    def run(self) -> None:
        for job in self.jobs:
            self._schedule(job, job.submit_ns, "submit")
        steps: dict[str, Callable[[_JobState, int], None]] = {
            "submit": self._submit,
            "volume-created": self._volume_created,
            "volume-attached": self._volume_attached,
            "created": self._created,
            "running": self._running,
            "checkpointing": self._checkpointing,
            "checkpoint-done": self._checkpoint_done,
            "finish": self._finish,
            "restoring": self._restoring,
            "restore-succeeded": self._restore_succeeded,
        }
        while self._heap:
            at_ns, _, _, step, index, tag = heapq.heappop(self._heap)
            if at_ns > self.end_ns:
                break
            if step == "reclaim":
                self._reclaim(self.nodes[index], at_ns, trigger_index=tag)
                continue
            job = self.jobs[index]
            if tag == job.epoch:
                steps[step](job, at_ns)

    def _push(self, at_ns: int, priority: int, step: str, index: int, tag: int) -> None:
        """Schedule a step on job or node `index`.

        `tag` is the job's epoch for a job step and the trigger's job index
        for a reclaim.
        """
        self._sequence += 1
        heapq.heappush(self._heap, (at_ns, priority, self._sequence, step, index, tag))

    def _schedule(self, job: _JobState, at_ns: int, step: str) -> None:
        self._push(at_ns, _STEP_PRIORITY, step, job.index, job.epoch)

    def _emit(self, job: _JobState, at_ns: int, event_type: str, **fields: str) -> None:
        assert job.node is not None
        job.events.append(
            PlannedEvent(
                at_ns, event_type, tuple(fields.items()), job.node.id, job.container_id
            )
        )

    def _place(self, job: _JobState) -> None:
        """Put the job on a random live node in a new container."""
        candidates = self.available or [n for n in self.nodes if n.left_ns is None]
        node = self.rng.choice(candidates)
        node.jobs.add(job.index)
        job.node = node
        job.container_id = _draw_hex(self.rng, 64)

    # -- job steps

    def _submit(self, job: _JobState, at_ns: int) -> None:
        self._place(job)
        assert job.node is not None
        self._emit(
            job,
            at_ns,
            "Job-Creating",
            nodeOid=job.node.instance_id,
            containerId=job.container_id,
            batchJobId=job.id,
        )
        self._schedule(job, at_ns + _draw_ns(self.rng, 1, 8), "volume-created")

    def _volume_created(self, job: _JobState, at_ns: int) -> None:
        volume_id = "vol-" + _draw_hex(self.rng, 17)
        self._emit(job, at_ns, "Volume-Created", volumnId=volume_id)
        # Whole seconds, so that the attach keeps the creation's fraction.
        self._schedule(job, at_ns + self.rng.randint(2, 10) * SECOND, "volume-attached")

    def _volume_attached(self, job: _JobState, at_ns: int) -> None:
        volume_id = dict(job.events[-1].fields)["volumnId"]
        self._emit(job, at_ns, "Volume-Attached", volumnId=volume_id)
        # Half the jobs are created exactly one second after the attach.
        delay = SECOND if self.rng.random() < 0.5 else _draw_ns(self.rng, 0.2, 2)
        self._schedule(job, at_ns + delay, "created")

    def _created(self, job: _JobState, at_ns: int) -> None:
        self._emit(job, at_ns, "Job-Created")
        self._schedule(job, at_ns + _draw_ns(self.rng, 0.05, 1), "running")

    def _running(self, job: _JobState, at_ns: int) -> None:
        self._emit(job, at_ns, "Job-Running")
        job.segment_start_ns = at_ns
        job.segment_progress_ns = job.saved_progress_ns
        self._schedule_next_work_step(job, at_ns + job.checkpoint_interval_ns, at_ns)

    def _schedule_next_work_step(
        self, job: _JobState, next_checkpoint_ns: int, now_ns: int
    ) -> None:
        finish_ns = job.finish_at()
        if next_checkpoint_ns < finish_ns:
            self._schedule(job, next_checkpoint_ns, "checkpointing")
        else:
            # A job whose work ended during a checkpoint exits right after it.
            earliest_ns = now_ns + _draw_ns(self.rng, 0.01, 0.5)
            self._schedule(job, max(finish_ns, earliest_ns), "finish")

    def _checkpointing(self, job: _JobState, at_ns: int) -> None:
        self._emit(job, at_ns, "Job-Checkpointing")
        job.checkpoint_start_ns = at_ns
        job.checkpoint_fails = self.rng.random() < CHECKPOINT_FAILURE_RATE
        self._schedule(job, at_ns + _draw_ns(self.rng, 0.3, 20), "checkpoint-done")

    def _checkpoint_done(self, job: _JobState, at_ns: int) -> None:
        next_checkpoint_ns = job.checkpoint_start_ns + job.checkpoint_interval_ns
        if job.checkpoint_fails:
            self._emit(job, at_ns, "Job-CheckpointFailed")
        else:
            self._emit(job, at_ns, "Job-CheckpointSucceeded")
            job.saved_progress_ns = job.progress_at(job.checkpoint_start_ns)
            if job.designated and not job.fired and not job.hit:
                upper_ns = min(next_checkpoint_ns, job.finish_at(), self.end_ns)
                self._try_fire(job, at_ns, upper_ns)
        self._schedule_next_work_step(job, next_checkpoint_ns, at_ns)

    def _finish(self, job: _JobState, at_ns: int) -> None:
        self._emit(job, at_ns, "Job-Failed" if job.fails else "Job-Succeeded")
        job.finished = True
        assert job.node is not None
        job.node.jobs.discard(job.index)
        if job.designated and not job.fired and not job.hit:
            self._pass_designation(job)

    def _restoring(self, job: _JobState, at_ns: int) -> None:
        assert job.node is not None
        self._emit(
            job,
            at_ns,
            "Job-Restoring",
            nodeOid=job.node.instance_id,
            containerId=job.container_id,
        )
        self._schedule(job, at_ns + _draw_ns(self.rng, 10, 90), "restore-succeeded")

    def _restore_succeeded(self, job: _JobState, at_ns: int) -> None:
        self._emit(job, at_ns, "Job-RestoreSucceeded")
        job.spot_prot_count += 1
        self._schedule(job, at_ns + _draw_ns(self.rng, 0.02, 0.5), "running")

    # -- Spot reclaims

    def _try_fire(self, job: _JobState, after_ns: int, upper_ns: int) -> None:
        """Schedule the reclaim of the job's node in `(after_ns, upper_ns)`.

        The window ends before the job's next checkpoint and before it
        finishes, so the trigger is running when its node goes. A job whose
        node is already doomed is hit by that reclaim instead.
        """
        node = job.node
        assert node is not None
        if node.doomed or upper_ns - after_ns < 2:
            return
        if upper_ns - after_ns > 2 * RECLAIM_MIN_DELAY_NS:
            at_ns = self.rng.randrange(after_ns + RECLAIM_MIN_DELAY_NS, upper_ns)
        else:
            at_ns = self.rng.randrange(after_ns + 1, upper_ns)
        job.fired = True
        node.doomed = True
        self.available.remove(node)
        self._push(at_ns, _RECLAIM_PRIORITY, "reclaim", node.index, job.index)

    def _reclaim(self, node: _NodeState, at_ns: int, *, trigger_index: int) -> None:
        node.left_ns = at_ns
        self.live_ips.discard(node.ip)
        created_ns = max(
            _floor_second(at_ns) - self.rng.randint(40, 90) * SECOND,
            _ceil_second(self.start_ns),
        )
        replacement = self._add_node(created_ns, at_ns, node.id)

        hit_ids = []
        for index in sorted(node.jobs):
            job = self.jobs[index]
            hit_ids.append(job.id)
            job.epoch += 1
            self._on_hit(job, trigger_index)
            self._place(job)
            self._schedule(job, at_ns + _draw_ns(self.rng, 20, 150), "restoring")
        node.jobs.clear()
        self.reclaims.append(
            Reclaim(
                node.id,
                at_ns,
                self.jobs[trigger_index].id,
                tuple(hit_ids),
                replacement.id,
            )
        )

    def _on_hit(self, job: _JobState, trigger_index: int) -> None:
        """Keep the count of hit jobs at the number of designations."""
        if job.hit:
            return
        job.hit = True
        if job.index == trigger_index:
            return
        if job.designated and not job.fired:
            # Hit before its own reclaim, the job already counts toward the share.
            job.designated = False
            return
        cancelled = self._designated_pool.draw(self.rng, self._is_pending_designation)
        if cancelled is None:
            self._surplus += 1
            return
        self.jobs[cancelled].designated = False
        self._candidate_pool.add(cancelled)

    def _pass_designation(self, job: _JobState) -> None:
        job.designated = False
        if self._surplus:
            self._surplus -= 1
            return
        chosen = self._candidate_pool.draw(self.rng, self._is_candidate)
        if chosen is not None:
            self.jobs[chosen].designated = True
            self._designated_pool.add(chosen)

    def _is_pending_designation(self, index: int) -> bool:
        job = self.jobs[index]
        return job.designated and not job.fired and not job.hit and not job.finished

    def _is_candidate(self, index: int) -> bool:
        job = self.jobs[index]
        return not job.designated and not job.hit and not job.finished


# ---------------------------------------------------------------------------
# From the simulation to requests


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@dataclass(frozen=True)
class _Post:
    at_ns: int
    job: _JobState
    events: tuple[PlannedEvent, ...]
    redelivery: bool


def _plan_posts(simulation: _Simulation) -> list[_Post]:
    """Group each job's events into posts and pick the posts sent twice.

    Most posts carry one event. Some carry the next one or two events of the
    same job from the same node, within a minute, and are sent when the last
    of them happens.
    """
    rng = simulation.rng
    left_ns = {node.id: node.left_ns for node in simulation.nodes}
    posts = []
    for job in simulation.jobs:
        events = job.events
        position = 0
        while position < len(events):
            size = rng.choices((1, 2, 3), weights=(85, 10, 5))[0]
            first = events[position]
            group = [first]
            for event in events[position + 1 : position + size]:
                if event.node_id != first.node_id:
                    break
                if event.timestamp_ns - first.timestamp_ns > MAX_BATCH_GAP_NS:
                    break
                group.append(event)
            position += len(group)
            at_ns = group[-1].timestamp_ns
            posts.append(_Post(at_ns, job, tuple(group), redelivery=False))

            if rng.random() < REDELIVERY_RATE:
                # Resent before the posting node leaves, and within the window.
                latest_ns = min(at_ns + MAX_REDELIVERY_DELAY_NS, simulation.end_ns)
                node_left_ns = left_ns[first.node_id]
                if node_left_ns is not None:
                    latest_ns = min(latest_ns, node_left_ns - 1)
                resend_ns = rng.randint(at_ns, max(at_ns, latest_ns))
                posts.append(_Post(resend_ns, job, tuple(group), redelivery=True))
    return posts


def _pagent_line(job: _JobState, event: PlannedEvent) -> str:
    fields = "".join(f" {name}={value}" for name, value in event.fields)
    stamp = format_time(event.timestamp_ns)
    return (
        f"{stamp} INFO job {job.id} queue {job.queue_name} {event.event_type}{fields}\n"
    )


_MMRUNC_MESSAGES = {
    "Job-Creating": "INFO create container {container} for job {job}",
    "Job-Checkpointing": "INFO checkpoint of container {container} started",
    "Job-CheckpointSucceeded": "INFO checkpoint of container {container} completed",
    "Job-CheckpointFailed": "WARN checkpoint of container {container} failed",
    "Job-Restoring": "INFO restore container {container} for job {job}",
    "Job-RestoreSucceeded": "INFO restore of container {container} completed",
    "Job-Succeeded": "INFO container {container} exited with code 0",
    "Job-Failed": "ERROR container {container} exited with code 1",
}


def _mmrunc_line(job: _JobState, event: PlannedEvent) -> str | None:
    template = _MMRUNC_MESSAGES.get(event.event_type)
    if template is None:
        return None
    message = template.format(container=event.container_id, job=job.id)
    return f"{format_time(event.timestamp_ns)} {message}\n"


class _ActionWriter:
    """Turn the timeline into requests, tracking each log file's content."""

    def __init__(self) -> None:
        self.actions: list[Action] = []
        self.live: dict[str, _NodeState] = {}  # in registration order
        self._pending: dict[tuple[str, str], list[str]] = {}
        # Size and running SHA-256 of each uploaded file, by (node id, path).
        self._files: dict[tuple[str, str], tuple[int, Any]] = {}

    def digests(self, node_id: str) -> dict[str, FileDigest]:
        result = {}
        for path in LOG_FILES:
            size, hasher = self._files[(node_id, path)]
            result[path] = FileDigest(size, hasher.hexdigest())
        return result

    def register(self, node: _NodeState, at_ns: int) -> None:
        self.live[node.id] = node
        self._post_descriptor(node, at_ns, ActionKind.REGISTER)
        for path, content in _first_log_chunks(node).items():
            self._add_file(at_ns, ActionKind.FILE_REPLACE, node.id, path, content)
            self._files[(node.id, path)] = (len(content), hashlib.sha256(content))

    def post(self, post: _Post) -> None:
        job = post.job
        node_id = post.events[0].node_id
        body = {
            "queueName": job.queue_name,
            "events": [event.to_json() for event in post.events],
        }
        self.actions.append(
            Action(
                at_ns=post.at_ns,
                kind=ActionKind.REDELIVERY if post.redelivery else ActionKind.EVENTS,
                method="POST",
                path=f"/api/v1/job/{job.id}/events",
                node_id=node_id,
                body=_json_bytes(body),
                content_type=JSON_CONTENT_TYPE,
                job_id=job.id,
            )
        )
        if post.redelivery:
            return
        for event in post.events:
            self._pending_lines(node_id, PAGENT_LOG).append(_pagent_line(job, event))
            line = _mmrunc_line(job, event)
            if line is not None:
                self._pending_lines(node_id, MMRUNC_LOG).append(line)

    def leave(self, reclaim: Reclaim) -> None:
        stamp = format_time(reclaim.at_ns)
        notice = f"{stamp} WARN Spot interruption notice received, node leaving\n"
        self._pending_lines(reclaim.node_id, PAGENT_LOG).append(notice)
        self._flush(reclaim.node_id, reclaim.at_ns)
        self.actions.append(
            Action(
                at_ns=reclaim.at_ns,
                kind=ActionKind.LEAVE,
                method="DELETE",
                path=f"/api/v1/node/{reclaim.node_id}",
                node_id=reclaim.node_id,
            )
        )
        del self.live[reclaim.node_id]

    def tick(self, at_ns: int) -> None:
        """Upload every live node's new log lines, then post its heartbeat."""
        for node in self.live.values():
            self._flush(node.id, at_ns)
            self._post_descriptor(node, at_ns, ActionKind.HEARTBEAT)

    def _pending_lines(self, node_id: str, path: str) -> list[str]:
        return self._pending.setdefault((node_id, path), [])

    def _flush(self, node_id: str, at_ns: int) -> None:
        for path in LOG_FILES:
            lines = self._pending.pop((node_id, path), None)
            if not lines:
                continue
            content = "".join(lines).encode()
            self._add_file(at_ns, ActionKind.FILE_APPEND, node_id, path, content)
            size, hasher = self._files[(node_id, path)]
            hasher.update(content)
            self._files[(node_id, path)] = (size + len(content), hasher)

    def _post_descriptor(self, node: _NodeState, at_ns: int, kind: ActionKind) -> None:
        self.actions.append(
            Action(
                at_ns=at_ns,
                kind=kind,
                method="POST",
                path="/api/v1/node",
                node_id=node.id,
                body=_json_bytes(node.descriptor),
                content_type=JSON_CONTENT_TYPE,
            )
        )

    def _add_file(
        self, at_ns: int, kind: ActionKind, node_id: str, path: str, content: bytes
    ) -> None:
        self.actions.append(
            Action(
                at_ns=at_ns,
                kind=kind,
                method="PUT" if kind is ActionKind.FILE_REPLACE else "POST",
                path=f"/nodes/{node_id}/{path}",
                node_id=node_id,
                body=content,
                content_type=FILE_CONTENT_TYPE,
            )
        )


def _first_log_chunks(node: _NodeState) -> dict[str, bytes]:
    """Build the content a node uploads when it registers, one chunk per file."""
    instance = node.descriptor["instance"]
    created = instance["createTime"]
    registered = format_time(node.registered_ns)
    cloud_init = (
        f"Cloud-init running 'init' at {created}\n"
        f"ci-info: eth0 up, address {node.ip}\n"
        "Installing MemVerge pagent and mmrunc\n"
        f"Cloud-init finished at {registered}, datasource DataSourceEc2\n"
    )
    pagent = (
        f"{registered} INFO pagent started on node {node.id}, instance "
        f"{instance['instanceId']} ({instance['instanceType']}, {instance['zone']})\n"
        f"{registered} INFO registered with the management server\n"
    )
    mmrunc = f"{registered} INFO mmrunc ready, checkpoint images in /mmc-checkpoint\n"
    return {
        CLOUD_INIT_LOG: cloud_init.encode(),
        PAGENT_LOG: pagent.encode(),
        MMRUNC_LOG: mmrunc.encode(),
    }


# Timeline priorities at equal times: nodes come and go before job posts,
# and heartbeats follow the posts of their instant.
_NODE_PRIORITY = 0
_POST_PRIORITY = 1
_TICK_PRIORITY = 2


def _write_plan(simulation: _Simulation, seed: int, span_ns: int) -> Plan:
    """Order every request of the simulated history and build the plan."""
    start_ns, end_ns = simulation.start_ns, simulation.end_ns
    tick_ns = span_ns // TICKS_PER_SPAN
    node_by_id = {node.id: node for node in simulation.nodes}

    timeline: list[tuple[int, int, int, Any]] = []
    for node in simulation.nodes:
        if node.replaces is None:
            timeline.append((node.registered_ns, _NODE_PRIORITY, len(timeline), node))
    for reclaim in simulation.reclaims:
        timeline.append((reclaim.at_ns, _NODE_PRIORITY, len(timeline), reclaim))
    for post in _plan_posts(simulation):
        timeline.append((post.at_ns, _POST_PRIORITY, len(timeline), post))
    for tick in range(1, TICKS_PER_SPAN):
        timeline.append(
            (start_ns + tick * tick_ns, _TICK_PRIORITY, len(timeline), None)
        )
    timeline.sort(key=lambda item: item[:3])

    writer = _ActionWriter()
    for at_ns, _, _, item in timeline:
        if isinstance(item, _NodeState):
            writer.register(item, at_ns)
        elif isinstance(item, Reclaim):
            writer.leave(item)
            writer.register(node_by_id[item.replacement_id], at_ns)
        elif isinstance(item, _Post):
            writer.post(item)
        else:
            writer.tick(at_ns)
    # Every node still live posts once more at the end, so that none is past
    # the server's node TTL when the run stops.
    writer.tick(end_ns)

    planned_nodes = tuple(
        PlannedNode(
            node.id,
            node.descriptor,
            node.registered_ns,
            node.left_ns,
            node.replaces,
            writer.digests(node.id),
        )
        for node in simulation.nodes
    )
    planned_jobs = tuple(
        PlannedJob(job.id, job.queue_name, tuple(job.events), job.spot_prot_count)
        for job in simulation.jobs
    )
    return Plan(
        seed=seed,
        start_ns=start_ns,
        end_ns=end_ns,
        span_ns=span_ns,
        spot_rate=simulation.spot_rate,
        tick_ns=tick_ns,
        queues=simulation.queue_names,
        nodes=planned_nodes,
        jobs=planned_jobs,
        reclaims=tuple(simulation.reclaims),
        actions=tuple(writer.actions),
    )
