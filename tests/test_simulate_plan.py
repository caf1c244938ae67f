"""Tests of the fleet simulator's plan and options. None of them needs a server."""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import re
import socket
from collections import Counter, defaultdict

import pytest

from mmab_metrics.durations import SECOND, parse_duration
from mmab_metrics.simulate import (
    LOG_FILES,
    ActionKind,
    Plan,
    add_arguments,
    build_manifest,
    build_plan,
    main,
)
from mmab_metrics.timecodec import format_time, parse_time

END_NS = parse_time("2025-05-15T12:00:00.5Z")
SPAN_NS = parse_duration("24h")

# Event types that may follow each type, written out here independently of
# the simulator. A reclaim may interrupt any unfinished step.
NEXT_TYPES = {
    None: {"Job-Creating"},
    "Job-Creating": {"Volume-Created"},
    "Volume-Created": {"Volume-Attached"},
    "Volume-Attached": {"Job-Created"},
    "Job-Created": {"Job-Running"},
    "Job-Running": {"Job-Checkpointing", "Job-Succeeded", "Job-Failed"},
    "Job-Checkpointing": {"Job-CheckpointSucceeded", "Job-CheckpointFailed"},
    "Job-CheckpointSucceeded": {"Job-Checkpointing", "Job-Succeeded", "Job-Failed"},
    "Job-CheckpointFailed": {"Job-Checkpointing", "Job-Succeeded", "Job-Failed"},
    "Job-Restoring": {"Job-RestoreSucceeded"},
    "Job-RestoreSucceeded": {"Job-Running"},
    "Job-Succeeded": set(),
    "Job-Failed": set(),
}
TERMINAL = {"Job-Succeeded", "Job-Failed"}

# "churn" keeps one node that is reclaimed again and again, so that jobs are
# hit during their startup and during a restore, and are placed on a node
# that has already had its interruption notice.
CONFIGURATIONS = {
    "default": {},
    "small-fleet": {"nodes": 2, "jobs": 80, "spot_rate": 0.8, "seed": 7},
    "one-node": {"nodes": 1, "jobs": 40, "spot_rate": 1.0, "seed": 3},
    "churn": {
        "nodes": 1,
        "jobs": 300,
        "spot_rate": 1.0,
        "span_ns": parse_duration("1h"),
        "seed": 2,
    },
    "short-span": {"span_ns": parse_duration("10m"), "jobs": 60, "seed": 5},
    "week": {"span_ns": parse_duration("168h"), "jobs": 150, "seed": 11},
    "no-spot": {"spot_rate": 0.0, "jobs": 100},
}


def make_plan(**overrides: object) -> Plan:
    params: dict[str, object] = {
        "nodes": 20,
        "jobs": 300,
        "queues": 3,
        "seed": 1,
        "spot_rate": 0.3,
        "span_ns": SPAN_NS,
        "end_ns": END_NS,
    }
    params.update(overrides)
    return build_plan(**params)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def plan() -> Plan:
    return make_plan()


@pytest.fixture(scope="module", params=sorted(CONFIGURATIONS))
def any_plan(request: pytest.FixtureRequest) -> Plan:
    return make_plan(**CONFIGURATIONS[request.param])


def node_by_id(plan: Plan) -> dict:
    return {node.id: node for node in plan.nodes}


def fraction_digits(timestamp: str) -> int:
    match = re.search(r"\.(\d+)Z$", timestamp)
    return len(match.group(1)) if match else 0


# -- determinism


def test_same_inputs_give_equal_plans() -> None:
    first = make_plan(jobs=120)
    second = make_plan(jobs=120)

    assert first == second
    first_manifest = json.dumps(build_manifest(first, "http://127.0.0.1:1"))
    second_manifest = json.dumps(build_manifest(second, "http://127.0.0.1:1"))
    assert first_manifest == second_manifest
    assert [a.body for a in first.actions] == [a.body for a in second.actions]


def test_other_seed_gives_other_events() -> None:
    first = make_plan(jobs=120, seed=1)
    second = make_plan(jobs=120, seed=2)

    assert [job.id for job in first.jobs] != [job.id for job in second.jobs]
    first_events = [e.to_json() for job in first.jobs for e in job.events]
    second_events = [e.to_json() for job in second.jobs for e in job.events]
    assert first_events != second_events


def test_other_end_shifts_window() -> None:
    later = make_plan(jobs=50, end_ns=END_NS + 3600 * SECOND)

    assert later.start_ns == END_NS + 3600 * SECOND - SPAN_NS
    assert min(e.timestamp_ns for j in later.jobs for e in j.events) > END_NS - SPAN_NS


# -- time


def test_timestamps_lie_in_window(any_plan: Plan) -> None:
    start, end = any_plan.start_ns, any_plan.end_ns

    assert start == end - any_plan.span_ns
    for job in any_plan.jobs:
        for event in job.events:
            assert start <= event.timestamp_ns <= end, (job.id, event)
            assert parse_time(event.to_json()["timestamp"]) == event.timestamp_ns
    for action in any_plan.actions:
        assert start <= action.at_ns <= end, action.kind
    for node in any_plan.nodes:
        created = parse_time(node.descriptor["instance"]["createTime"])
        assert start <= created <= end, node.id
        assert start <= node.registered_ns <= end, node.id


def test_actions_in_time_order(any_plan: Plan) -> None:
    times = [action.at_ns for action in any_plan.actions]

    assert times == sorted(times)


def test_nanosecond_timestamps_present(plan: Plan) -> None:
    stamps = [e.to_json()["timestamp"] for job in plan.jobs for e in job.events]
    digits = Counter(fraction_digits(stamp) for stamp in stamps)

    assert digits[9] > len(stamps) / 2
    assert sum(count for width, count in digits.items() if 0 < width < 9) > 0
    assert all(stamp.endswith("Z") for stamp in stamps)
    assert all(not re.search(r"\.\d*0Z$", stamp) for stamp in stamps)


def test_submissions_in_first_70_percent(plan: Plan) -> None:
    limit = plan.start_ns + 0.7 * plan.span_ns
    submissions = [job.events[0].timestamp_ns for job in plan.jobs]

    assert max(submissions) <= limit
    assert min(submissions) < plan.start_ns + 0.1 * plan.span_ns
    assert max(submissions) > plan.start_ns + 0.6 * plan.span_ns


# -- job events


def test_job_events_follow_allowed_sequence(any_plan: Plan) -> None:
    for job in any_plan.jobs:
        previous = None
        for event in job.events:
            allowed = NEXT_TYPES[previous] | ({"Job-Restoring"} if previous else set())
            if previous in TERMINAL:
                allowed = set()
            assert event.event_type in allowed, (job.id, previous, event.event_type)
            previous = event.event_type


def test_churn_reaches_rare_transitions() -> None:
    plan = make_plan(**CONFIGURATIONS["churn"])
    before_restoring = Counter()
    for job in plan.jobs:
        types = [event.event_type for event in job.events]
        for previous, current in itertools.pairwise(types):
            if current == "Job-Restoring":
                before_restoring[previous] += 1

    for previous in ("Job-Creating", "Volume-Created", "Job-Restoring"):
        assert before_restoring[previous] > 0, previous


def test_job_events_strictly_sorted(any_plan: Plan) -> None:
    for job in any_plan.jobs:
        times = [event.timestamp_ns for event in job.events]
        assert times == sorted(times), job.id
        assert len(set(times)) == len(times), job.id


def test_terminal_event_only_at_end(any_plan: Plan) -> None:
    for job in any_plan.jobs:
        types = [event.event_type for event in job.events]
        terminal_positions = [i for i, kind in enumerate(types) if kind in TERMINAL]
        assert terminal_positions in ([], [len(types) - 1]), job.id


def test_jobs_end_in_every_state(plan: Plan) -> None:
    statuses = Counter(job.status for job in plan.jobs)

    assert statuses["Succeeded"] > statuses["Failed"] > 0
    unfinished = len(plan.jobs) - statuses["Succeeded"] - statuses["Failed"]
    assert unfinished > 0


def test_creating_and_volume_fields(plan: Plan) -> None:
    for job in plan.jobs:
        creating = job.events[0].to_json()
        assert creating["batchJobId"] == job.id
        assert re.fullmatch(r"i-[0-9a-f]{17}", creating["nodeOid"])
        assert re.fullmatch(r"[0-9a-f]{64}", creating["containerId"])
        volume_events = [e for e in job.events if e.event_type.startswith("Volume-")]
        if len(volume_events) < 2:
            continue
        created, attached = volume_events
        volume_id = dict(created.fields)["volumnId"]
        assert re.fullmatch(r"vol-[0-9a-f]{17}", volume_id)
        assert dict(attached.fields)["volumnId"] == volume_id
        delay = attached.timestamp_ns - created.timestamp_ns
        assert 2 * SECOND <= delay <= 10 * SECOND


def test_ids_are_unique(plan: Plan) -> None:
    job_ids = [job.id for job in plan.jobs]
    node_ids = [node.id for node in plan.nodes]
    instance_ids = [node.instance_id for node in plan.nodes]

    assert len(set(job_ids)) == len(job_ids)
    assert len(set(node_ids)) == len(node_ids)
    assert len(set(instance_ids)) == len(instance_ids)
    uuid4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
    assert all(re.fullmatch(uuid4, item) for item in job_ids + node_ids)


def test_queues_named_and_used() -> None:
    plan = make_plan(queues=4, jobs=200)

    assert plan.queues == ("sim-q1", "sim-q2", "sim-q3", "sim-q4")
    assert {job.queue_name for job in plan.jobs} == set(plan.queues)


def test_job_events_come_from_live_nodes(any_plan: Plan) -> None:
    nodes = node_by_id(any_plan)
    for job in any_plan.jobs:
        for event in job.events:
            node = nodes[event.node_id]
            assert node.registered_ns <= event.timestamp_ns, (job.id, event)
            if node.left_ns is not None:
                assert event.timestamp_ns < node.left_ns, (job.id, event)
            node_oid = dict(event.fields).get("nodeOid")
            if node_oid is not None:
                assert node_oid == node.instance_id


# -- Spot reclaims


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.3, 0.6, 1.0])
def test_reclaimed_share_close_to_rate(rate: float) -> None:
    plan = make_plan(jobs=400, spot_rate=rate)
    hit = {job_id for reclaim in plan.reclaims for job_id in reclaim.job_ids}

    assert abs(len(hit) / len(plan.jobs) - rate) <= 0.05
    if rate == 0.0:
        assert plan.reclaims == ()


def test_reclaim_follows_trigger_checkpoint(any_plan: Plan) -> None:
    jobs = {job.id: job for job in any_plan.jobs}
    for reclaim in any_plan.reclaims:
        trigger = jobs[reclaim.trigger_job_id]
        assert trigger.id in reclaim.job_ids
        checkpoints = [
            event
            for event in trigger.events
            if event.event_type == "Job-CheckpointSucceeded"
            and event.timestamp_ns < reclaim.at_ns
            and event.node_id == reclaim.node_id
        ]
        assert checkpoints, reclaim


def test_every_restoring_follows_reclaim(any_plan: Plan) -> None:
    reclaims_by_job = defaultdict(list)
    for reclaim in any_plan.reclaims:
        for job_id in reclaim.job_ids:
            reclaims_by_job[job_id].append(reclaim)

    for job in any_plan.jobs:
        restorings = [e for e in job.events if e.event_type == "Job-Restoring"]
        assert len(restorings) <= len(reclaims_by_job[job.id]), job.id
        for event in restorings:
            earlier = [
                r for r in reclaims_by_job[job.id] if r.at_ns < event.timestamp_ns
            ]
            assert earlier, (job.id, event)
            assert event.node_id != earlier[-1].node_id


def test_spot_prot_count_counts_restores(any_plan: Plan) -> None:
    for job in any_plan.jobs:
        restores = sum(e.event_type == "Job-RestoreSucceeded" for e in job.events)
        assert job.spot_prot_count == restores, job.id
    assert any_plan.spot_protection_count == sum(
        j.spot_prot_count for j in any_plan.jobs
    )


def test_reclaims_restore_jobs(plan: Plan) -> None:
    assert len(plan.reclaims) > 5
    assert plan.spot_protection_count > len(plan.reclaims)


def test_reclaimed_node_deleted_then_unused(any_plan: Plan) -> None:
    nodes = node_by_id(any_plan)
    actions = any_plan.actions
    for reclaim in any_plan.reclaims:
        node = nodes[reclaim.node_id]
        deletes = [
            i
            for i, a in enumerate(actions)
            if a.kind is ActionKind.LEAVE and a.node_id == node.id
        ]
        assert len(deletes) == 1, node.id
        delete = actions[deletes[0]]
        assert delete.method == "DELETE"
        assert delete.path == f"/api/v1/node/{node.id}"
        assert delete.at_ns == reclaim.at_ns
        assert node.left_ns == reclaim.at_ns
        assert node.state == "finished"
        later_users = [a for a in actions[deletes[0] + 1 :] if a.node_id == node.id]
        assert later_users == [], node.id
        for job in any_plan.jobs:
            for event in job.events:
                if event.timestamp_ns >= reclaim.at_ns:
                    assert event.node_id != node.id
                    assert dict(event.fields).get("nodeOid") != node.instance_id


def test_replacement_registers_at_reclaim(any_plan: Plan) -> None:
    nodes = node_by_id(any_plan)
    actions = any_plan.actions
    positions = {
        (a.kind, a.node_id): i
        for i, a in enumerate(actions)
        if a.kind in (ActionKind.LEAVE, ActionKind.REGISTER)
    }
    initial = [node for node in any_plan.nodes if node.replaces is None]
    for reclaim in any_plan.reclaims:
        replacement = nodes[reclaim.replacement_id]
        assert replacement.replaces == reclaim.node_id
        assert replacement.registered_ns == reclaim.at_ns
        assert replacement.instance_id != nodes[reclaim.node_id].instance_id
        leave = positions[(ActionKind.LEAVE, reclaim.node_id)]
        assert positions[(ActionKind.REGISTER, replacement.id)] == leave + 1
    assert len(any_plan.nodes) == len(initial) + len(any_plan.reclaims)
    live = [node for node in any_plan.nodes if node.state == "live"]
    assert len(live) == len(initial)


# -- nodes, heartbeats and files


def test_node_descriptors(any_plan: Plan) -> None:
    for node in any_plan.nodes:
        descriptor = node.descriptor
        assert descriptor["id"] == node.id
        assert "lastHeartbeat" not in descriptor
        (ip,) = descriptor["ips"]
        match = re.fullmatch(r"172\.31\.(\d+)\.(\d+)", ip)
        assert match, ip
        x, y = match.groups()
        assert descriptor["hostName"] == f"ip-172-31-{x}-{y}.us-west-1.compute.internal"
        assert descriptor["cloud"] == "aws"
        assert descriptor["arch"] == "x86_64"
        assert descriptor["cores"] in (2, 4, 8)
        assert descriptor["memoryInMB"] > 7000
        assert descriptor["cpuVendor"] in ("GenuineIntel", "AuthenticAMD")
        instance = descriptor["instance"]
        assert re.fullmatch(r"i-[0-9a-f]{17}", instance["instanceId"])
        assert instance["region"] == "us-west-1"
        assert instance["zone"].startswith("us-west-1")
        assert instance["payType"] == "Spot"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", instance["createTime"])
        assert parse_time(instance["createTime"]) <= node.registered_ns


def test_live_nodes_have_distinct_addresses(any_plan: Plan) -> None:
    live = [node for node in any_plan.nodes if node.state == "live"]
    addresses = [node.descriptor["ips"][0] for node in live]

    assert len(set(addresses)) == len(addresses)


def test_node_posts_are_register_then_heartbeats(any_plan: Plan) -> None:
    posts = defaultdict(list)
    for action in any_plan.actions:
        if action.kind in (ActionKind.REGISTER, ActionKind.HEARTBEAT):
            assert action.method == "POST"
            assert action.path == "/api/v1/node"
            posts[action.node_id].append(action)

    for node in any_plan.nodes:
        node_posts = posts[node.id]
        assert node_posts[0].kind is ActionKind.REGISTER
        assert all(a.kind is ActionKind.HEARTBEAT for a in node_posts[1:])
        assert all(json.loads(a.body) == node.descriptor for a in node_posts)
        times = [a.at_ns for a in node_posts]
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert max(gaps, default=0) <= 2 * any_plan.tick_ns, node.id
        if node.state == "live":
            assert times[-1] == any_plan.end_ns, node.id
            assert len(node_posts) > 1


def test_log_files_replaced_then_appended(any_plan: Plan) -> None:
    writes = defaultdict(list)
    for action in any_plan.actions:
        if action.kind in (ActionKind.FILE_REPLACE, ActionKind.FILE_APPEND):
            writes[action.path].append(action)

    for node in any_plan.nodes:
        assert set(node.files) == set(LOG_FILES)
        for path in LOG_FILES:
            file_writes = writes[f"/nodes/{node.id}/{path}"]
            assert file_writes[0].kind is ActionKind.FILE_REPLACE
            assert file_writes[0].method == "PUT"
            assert file_writes[0].at_ns == node.registered_ns
            assert all(w.kind is ActionKind.FILE_APPEND for w in file_writes[1:])
            assert all(w.method == "POST" for w in file_writes[1:])
            assert all(w.node_id == node.id for w in file_writes)
            content = b"".join(w.body for w in file_writes)
            assert node.files[path].size == len(content)
            assert node.files[path].sha256 == hashlib.sha256(content).hexdigest()


def test_pagent_log_mentions_jobs(plan: Plan) -> None:
    text = b"".join(
        a.body for a in plan.actions if a.path.endswith("/var/log/memverge/pagent.log")
    ).decode()

    for job in plan.jobs:
        assert job.id in text
    assert "Job-CheckpointSucceeded" in text
    assert "Spot interruption notice" in text


# -- event posts


def test_event_posts_carry_each_event_once(any_plan: Plan) -> None:
    jobs = {job.id: job for job in any_plan.jobs}
    posted = defaultdict(list)
    for action in any_plan.actions:
        if action.kind is not ActionKind.EVENTS:
            continue
        job = jobs[action.job_id]
        body = json.loads(action.body)
        assert action.method == "POST"
        assert action.path == f"/api/v1/job/{job.id}/events"
        assert action.content_type == "application/json"
        assert body["queueName"] == job.queue_name
        assert 1 <= len(body["events"]) <= 3
        assert action.at_ns == parse_time(body["events"][-1]["timestamp"])
        posted[job.id].extend(body["events"])

    for job in any_plan.jobs:
        assert posted[job.id] == [event.to_json() for event in job.events], job.id


def test_event_posts_name_posting_node(any_plan: Plan) -> None:
    jobs = {job.id: job for job in any_plan.jobs}
    for action in any_plan.actions:
        if action.kind not in (ActionKind.EVENTS, ActionKind.REDELIVERY):
            continue
        stamps = {e["timestamp"] for e in json.loads(action.body)["events"]}
        events = [
            e for e in jobs[action.job_id].events if e.to_json()["timestamp"] in stamps
        ]
        assert {event.node_id for event in events} == {action.node_id}


def test_some_posts_batch_events(plan: Plan) -> None:
    sizes = Counter(
        len(json.loads(a.body)["events"])
        for a in plan.actions
        if a.kind is ActionKind.EVENTS
    )

    assert sizes[1] > 0.7 * sum(sizes.values())
    assert sizes[2] > 0
    assert sizes[3] > 0


def test_redeliveries_repeat_earlier_posts(plan: Plan) -> None:
    sent: dict[bytes, int] = {}
    redeliveries = 0
    posts = 0
    for action in plan.actions:
        if action.kind is ActionKind.EVENTS:
            posts += 1
            sent.setdefault(action.body, action.at_ns)
        elif action.kind is ActionKind.REDELIVERY:
            redeliveries += 1
            assert action.body in sent
            assert action.at_ns >= sent[action.body]

    assert 0.005 <= redeliveries / posts <= 0.04


# -- validation, manifest and options


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"nodes": 0}, "`nodes`"),
        ({"nodes": 10**6}, "`nodes`"),
        ({"jobs": 0}, "`jobs`"),
        ({"queues": 0}, "`queues`"),
        ({"spot_rate": -0.1}, "`spot_rate`"),
        ({"spot_rate": 1.5}, "`spot_rate`"),
        ({"spot_rate": float("nan")}, "`spot_rate`"),
        ({"span_ns": parse_duration("9m")}, "`span`"),
        ({"end_ns": -(2**63) + 1}, "`end`"),
    ],
)
def test_build_plan_rejects_invalid_input(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_plan(**overrides)


def test_manifest_lists_nodes_and_jobs(plan: Plan) -> None:
    manifest = build_manifest(plan, "https://127.0.0.1:8081")

    assert manifest["server"] == "https://127.0.0.1:8081"
    assert manifest["seed"] == 1
    assert manifest["end"] == format_time(END_NS) == "2025-05-15T12:00:00.5Z"
    assert manifest["span"] == "24h0m0s"
    assert manifest["queues"] == ["sim-q1", "sim-q2", "sim-q3"]
    assert len(manifest["nodes"]) == len(plan.nodes)
    states = Counter(node["state"] for node in manifest["nodes"])
    assert states == {"live": 20, "finished": len(plan.reclaims)}
    for entry in manifest["nodes"]:
        assert set(entry["files"]) == set(LOG_FILES)
        assert all(f["size"] > 0 for f in entry["files"].values())
    for entry, job in zip(manifest["jobs"], plan.jobs, strict=True):
        assert entry["id"] == job.id
        assert entry["queueName"] == job.queue_name
        latest = [
            e["eventType"] for e in entry["events"] if e["eventType"][:4] == "Job-"
        ]
        assert entry["status"] == latest[-1].removeprefix("Job-")
        assert entry["spotProtCount"] == job.spot_prot_count
        stamps = [parse_time(e["timestamp"]) for e in entry["events"]]
        assert stamps == sorted(stamps)
        distinct = {json.dumps(e, sort_keys=True) for e in entry["events"]}
        assert len(distinct) == len(entry["events"])
    json.dumps(manifest)


def parse_options(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="mmab-metrics simulate")
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_options_defaults() -> None:
    args = parse_options(
        "--server", "https://127.0.0.1:8081/", "--nodes", "2", "--jobs", "5"
    )

    assert args.server == "https://127.0.0.1:8081"
    assert (args.nodes, args.jobs, args.queues, args.seed) == (2, 5, 3, 1)
    assert args.spot_rate == 0.3
    assert args.span == SPAN_NS
    assert args.end is None
    assert args.manifest is None
    assert args.cacert is None
    assert args.insecure is False
    assert args.token is None


def test_options_parse_values(tmp_path) -> None:
    cacert = tmp_path / "ca.pem"
    cacert.write_text("unused")
    args = parse_options(
        "--server=http://127.0.0.1:9",
        "--nodes=4",
        "--jobs=9",
        "--queues=2",
        "--seed=-5",
        "--spot-rate=1",
        "--span=1h30m",
        "--end=2025-05-15T14:00:00.25+02:00",
        f"--manifest={tmp_path / 'm.json'}",
        f"--cacert={cacert}",
        "--token=secret",
    )

    assert args.seed == -5
    assert args.spot_rate == 1.0
    assert args.span == parse_duration("90m")
    assert args.end == parse_time("2025-05-15T12:00:00.25Z")
    assert args.cacert == cacert
    assert args.token == "secret"


REQUIRED = ("--server", "http://127.0.0.1:9", "--nodes", "2", "--jobs", "2")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--nodes", "0"), "--nodes"),
        (("--jobs", "x"), "--jobs"),
        (("--queues", "1.5"), "--queues"),
        (("--spot-rate", "1.5"), "--spot-rate"),
        (("--spot-rate", "nan"), "--spot-rate"),
        (("--span", "5m"), "at least 10m0s"),
        (("--span", "abc"), "--span"),
        (("--end", "2025-05-15"), "--end"),
        (("--server", "ftp://127.0.0.1"), "--server"),
        (("--cacert", "/nonexistent/ca.pem"), "--cacert"),
        (("--cacert", __file__, "--insecure"), "not allowed with"),
        (("--seed", "one"), "--seed"),
        (("--manifest", "/nonexistent/m.json"), "--manifest"),
    ],
)
def test_options_reject_invalid(argv: tuple[str, ...], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as raised:
        parse_options(*REQUIRED, *argv)

    assert raised.value.code == 2
    assert message in capsys.readouterr().err


def test_options_require_counts(capsys) -> None:
    with pytest.raises(SystemExit) as raised:
        parse_options("--server", "http://127.0.0.1:9")

    assert raised.value.code == 2
    assert "--nodes" in capsys.readouterr().err


def closed_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


def test_main_reports_unreachable_server(capsys) -> None:
    server = f"http://127.0.0.1:{closed_port()}"
    args = parse_options("--server", server, "--nodes", "1", "--jobs", "1")

    assert main(args) == 1
    captured = capsys.readouterr()
    assert f"{server}/health" in captured.err
    assert captured.out == ""


def test_main_reports_unreachable_server_with_end(capsys, tmp_path) -> None:
    server = f"http://127.0.0.1:{closed_port()}"
    manifest = tmp_path / "manifest.json"
    args = parse_options(
        *("--server", server, "--nodes", "1", "--jobs", "1"),
        *("--end", "2025-05-15T12:00:00Z", "--manifest", str(manifest)),
    )

    assert main(args) == 1
    assert f"POST {server}/api/v1/node" in capsys.readouterr().err
    assert not manifest.exists()
