"""End to end: a simulated fleet drives the real server, which returns what it did."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess

NOW = "2025-03-16T12:00:00Z"


def client_of(server: ServerProcess) -> httpx.Client:
    return server.client()


def expected_job(job: dict) -> dict:
    """Derive the job object the server should return from a manifest job."""
    events = job["events"]

    def latest(field: str) -> str:
        return next((e[field] for e in reversed(events) if e.get(field)), "")

    def distinct(field: str) -> list[str]:
        return list(dict.fromkeys(e[field] for e in events if e.get(field)))

    return {
        "id": job["id"],
        "queueName": job["queueName"],
        "createdAt": events[0]["timestamp"],
        "updatedAt": events[-1]["timestamp"],
        "status": job["status"],
        "nodeOid": latest("nodeOid"),
        "containerId": latest("containerId"),
        "spotProtCount": job["spotProtCount"],
        "batchJobIds": distinct("batchJobId"),
        "volumeIds": distinct("volumnId"),
        "events": events,
    }


def check_state(server: ServerProcess, manifest: dict) -> None:
    with client_of(server) as http:
        response = http.get("/api/v1/job")
        assert response.status_code == 200
        jobs = {job["id"]: job for job in response.json()}
        assert response.headers["X-Total-Count"] == str(len(manifest["jobs"]))
        assert set(jobs) == {job["id"] for job in manifest["jobs"]}
        for job in manifest["jobs"]:
            assert jobs[job["id"]] == expected_job(job)
        created = [job["createdAt"] for job in response.json()]
        assert created == sorted(created)

        per_queue = Counter(job["queueName"] for job in manifest["jobs"])
        for queue, count in per_queue.items():
            listed = http.get("/api/v1/job", params={"queue": queue}).json()
            assert len(listed) == count
        statuses = Counter(job["status"] for job in manifest["jobs"])
        for status, count in statuses.items():
            listed = http.get("/api/v1/job", params={"status": status}).json()
            assert len(listed) == count

        sample = manifest["jobs"][17]
        single = http.get(f"/api/v1/job/{sample['id']}")
        assert single.json() == expected_job(sample)

        live = http.get("/api/v1/node").json()
        live_expected = [n for n in manifest["nodes"] if n["state"] == "live"]
        assert [n["id"] for n in live] == sorted(n["id"] for n in live_expected)
        by_id = {n["id"]: n for n in live}
        for node in live_expected:
            got = dict(by_id[node["id"]])
            assert got.pop("lastHeartbeat") == NOW
            assert got == node["descriptor"]

        finished = http.get("/api/v1/node", params={"finished": "true"}).json()
        finished_expected = [n for n in manifest["nodes"] if n["state"] == "finished"]
        assert [n["id"] for n in finished] == sorted(n["id"] for n in finished_expected)
        for node in finished:
            assert node["finishedAt"] == NOW

        table = http.get("/api/v1/node", params={"finished": "true", "format": "csv"})
        rows = list(csv.DictReader(io.StringIO(table.text)))
        assert [row["id"] for row in rows] == [n["id"] for n in finished]

        for node in manifest["nodes"]:
            listing = http.get(f"/api/v1/nodes/{node['id']}/files")
            assert listing.status_code == 200
            assert listing.json() == sorted(
                f"/nodes/{node['id']}/{p}" for p in node["files"]
            )
            for path, digest in node["files"].items():
                content = http.get(f"/nodes/{node['id']}/{path}").content
                assert len(content) == digest["size"]
                assert hashlib.sha256(content).hexdigest() == digest["sha256"]


@pytest.mark.xdist_group("fleet")
@pytest.mark.timeout(1200)
def test_simulated_fleet_is_served(fleet):
    server, manifest = fleet
    assert len(manifest["jobs"]) == 200
    assert sum(n["state"] == "live" for n in manifest["nodes"]) == 20
    assert any(job["spotProtCount"] for job in manifest["jobs"])
    check_state(server, manifest)


@pytest.mark.xdist_group("fleet")
@pytest.mark.timeout(1200)
def test_simulated_fleet_survives_restart(fleet):
    server, manifest = fleet
    with client_of(server) as http:
        before = [
            http.get(path).content
            for path in ("/api/v1/job", "/api/v1/node", "/api/v1/node?finished=true")
        ]
    server.restart()
    check_state(server, manifest)
    with client_of(server) as http:
        after = [
            http.get(path).content
            for path in ("/api/v1/job", "/api/v1/node", "/api/v1/node?finished=true")
        ]
    assert after == before


def simulate(server: ServerProcess, manifest: Path, *extra: str) -> dict:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmab_metrics.cli",
            "simulate",
            "--server",
            server.url,
            "--nodes",
            "4",
            "--jobs",
            "25",
            "--seed",
            "7",
            "--manifest",
            str(manifest),
            f"--token={server.tokens()['X-Agent-Token']}",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(manifest.read_text())


def test_same_seed_and_end_give_same_events(server_factory, tmp_path: Path):
    end = "2025-03-16T11:00:00.123456789Z"
    first = simulate(server_factory(), tmp_path / "m1.json", "--end", end)
    second = simulate(server_factory(), tmp_path / "m2.json", "--end", end)
    assert first["end"] == end
    assert second["jobs"] == first["jobs"]
    assert [n["descriptor"] for n in second["nodes"]] == [
        n["descriptor"] for n in first["nodes"]
    ]
    other = simulate(
        server_factory(), tmp_path / "m3.json", "--end", end, "--seed", "8"
    )
    assert other["jobs"] != first["jobs"]
