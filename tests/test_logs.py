"""The server log and the access log: rotation, whole lines, routes, live settings."""

from __future__ import annotations

import json
import re

LINES = 20_000
_REQUEST_LINE = re.compile(
    r"^\S+Z DEBUG   request method=GET path=/probe/(\d{5})-x+ status=404 ms=[0-9.]+$"
)


def test_rotation_keeps_whole_lines_and_an_unbroken_run(server, http):
    change = http.put(
        "/api/v1/log/config", json={"level": "debug", "maxSizeMB": 1, "maxBackups": 3}
    )
    assert change.status_code == 200
    assert change.json() == {
        "level": "debug",
        "maxSizeMB": 1,
        "maxBackups": 3,
        "fileName": "mmab",
    }
    padding = "x" * 40
    for number in range(LINES):
        assert http.get(f"/probe/{number:05d}-{padding}").status_code == 404

    logs = server.data_dir / "logs"
    active = logs / "mmab.log"
    rotated = sorted(p for p in logs.glob("mmab.*.log"))
    assert active.exists()
    assert 1 <= len(rotated) <= 3

    numbers = []
    for path in [*rotated, active]:
        text = path.read_text(encoding="utf-8")
        assert text.endswith("\n")
        for line in text.splitlines():
            assert "\n" not in line
            if "request method=GET path=/probe/" in line:
                match = _REQUEST_LINE.match(line)
                assert match, line
                numbers.append(int(match.group(1)))
    numbers.sort()
    assert numbers[-1] == LINES - 1
    assert numbers == list(range(numbers[0], LINES))

    access = logs / "mmab-access.log"
    assert access.exists()
    assert list(logs.glob("mmab-access.*.log"))
    for line in access.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        assert set(entry) == {
            "time",
            "client",
            "user",
            "method",
            "path",
            "status",
            "bytes",
            "durationMs",
        }

    served = http.get("/mmab.log")
    assert served.status_code == 200
    assert served.content == active.read_bytes()[: len(served.content)]


def test_access_log_line(server, http):
    agent = {"X-Agent-Token": server.tokens()["X-Agent-Token"], "X-Node-ID": "node-7"}
    with server.client(auth=False) as plain:
        plain.get("/api/v1/config", headers=agent)
        plain.get("/health")
    http.get("/api/v1/node")
    lines = http.get("/mmab-access.log").text.splitlines()
    entries = [json.loads(line) for line in lines]
    config = [e for e in entries if e["path"] == "/api/v1/config"][-1]
    assert config["user"] == "agent:node-7"
    assert config["method"] == "GET"
    assert config["status"] == 200
    assert config["client"] == "127.0.0.1"
    assert config["bytes"] > 100
    assert config["time"] == "2025-03-16T12:00:00Z"
    health = [e for e in entries if e["path"] == "/health"][-1]
    assert health["user"] == "loopback"
    admin = [e for e in entries if e["path"] == "/api/v1/node"][-1]
    assert admin["user"] == "admin-token"


def test_server_log_names_start(server, http):
    text = http.get("/mmab.log").text
    assert f"listening on {server.url}" in text
    assert "data directory" in text


def test_file_name_moves_the_routes(server, http):
    change = http.put("/api/v1/log/config", json={"fileName": "ops-server"})
    assert change.status_code == 200
    http.get("/health")
    assert http.get("/ops-server.log").status_code == 200
    access = http.get("/ops-server-access.log")
    assert access.status_code == 200
    assert '"path":"/health"' in access.text
    assert http.get("/mmab.log").status_code == 404
    assert (server.data_dir / "logs" / "ops-server.log").exists()

    server.restart()
    with server.client() as again:
        assert again.get("/api/v1/log/config").json()["fileName"] == "ops-server"
        assert again.get("/ops-server.log").status_code == 200


def test_level_filters_server_log(server, http):
    http.put("/api/v1/log/config", json={"level": "error"})
    http.get("/probe/quiet")
    assert "path=/probe/quiet" not in http.get("/mmab.log").text
    http.put("/api/v1/log/config", json={"level": "debug"})
    http.get("/probe/loud")
    assert "path=/probe/loud" in http.get("/mmab.log").text
    assert '"path":"/probe/quiet"' in http.get("/mmab-access.log").text


def test_unknown_root_path_is_404(http):
    response = http.get("/other.log")
    assert response.status_code == 404
    assert response.json()["statusCode"] == 404
