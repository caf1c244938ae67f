"""Hostile inputs against the real server over HTTP.

Every case goes out through `http.client`, which sends the request target
byte for byte (httpx would resolve `..` and re-encode escapes). Each case
must get its exact status and a JSON error `{"statusCode": N, "message": ...}`,
must leak no token into the response or the logs, and must change nothing:
neither the API's responses nor any file that stores state.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import ServerProcess

NOW = "2025-03-16T12:00:00Z"
MB = 1024 * 1024
NODE = "node-1"
JOB = "job-1"
QUEUE = "q1"
SERIES = "/api/v1/metricValue/queue-q1/metricDef-jobSubmitted"
JSON_TYPE = {"Content-Type": "application/json"}
NDJSON_TYPE = {"Content-Type": "application/x-ndjson"}
READS = (
    "/api/v1/config",
    "/api/v1/node",
    "/api/v1/node?finished=true",
    "/api/v1/job",
    "/api/v1/metric",
)
STATE_FILES = ("config.json", "agent.token", "admin.token")


# ------------------------------------------------------------ the server --


@dataclass
class Target:
    """The module's server, its tokens and the state every case must keep."""

    server: ServerProcess
    tokens: dict[str, str]
    baseline: dict[str, Any]


def _setup(server: ServerProcess) -> None:
    """Give the server small body limits, a node with files, and a job."""
    with server.client() as http:
        limits = {
            "security.limits.maxBodyMB": "1",
            "security.limits.maxIngestBodyMB": "1",
            "node.maxPerLogSizeMB": "1",
        }
        response = http.put("/api/v1/configKV", json={"kvMap": limits})
        assert response.status_code == 200, response.text
        node = {"id": NODE, "hostName": "host-1", "ips": ["10.0.0.1"], "cores": 4}
        assert http.post("/api/v1/node", json=node).status_code == 200
        for path, content in (("agent/a.log", b"line 1\n"), ("b.log", b"b\n")):
            upload = http.put(f"/nodes/{NODE}/{path}", content=content)
            assert upload.status_code == 204, upload.text
        events = {
            "queueName": QUEUE,
            "events": [
                {"eventType": "Job-Creating", "timestamp": "2025-03-16T11:00:00Z"},
                {"eventType": "Job-Running", "timestamp": "2025-03-16T11:01:00Z"},
            ],
        }
        posted = http.post(f"/api/v1/job/{JOB}/events", json=events)
        assert posted.status_code == 200, posted.text


def state(server: ServerProcess) -> dict[str, Any]:
    """Return the API's responses, the hashes of the state files, and every path.

    Paths are listed from the folder above the data directory, so a write
    that escapes the data directory shows up too. The logs and the DuckDB
    files are left out: logs grow with every request, and the database is
    checked through the API's responses.
    """
    responses = {}
    with server.client() as http:
        for path in READS:
            response = http.get(path)
            responses[path] = (
                response.status_code,
                response.headers.get("x-total-count"),
                response.content,
            )
    data_dir = server.data_dir
    hashes = {}
    for path in sorted(data_dir.rglob("*")):
        name = path.relative_to(data_dir).as_posix()
        if path.is_file() and (name in STATE_FILES or name.startswith("nodes/")):
            hashes[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    paths = sorted(
        path.relative_to(data_dir.parent).as_posix()
        for path in data_dir.parent.rglob("*")
        if not path.is_relative_to(data_dir / "logs")
        and not path.name.startswith("mmab.duckdb")
    )
    return {"responses": responses, "hashes": hashes, "paths": paths}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    data_dir = tmp_path_factory.mktemp("hostile") / "data"
    server = ServerProcess(data_dir, now=NOW).start()
    try:
        _setup(server)
        yield Target(server, server.tokens(), state(server))
    finally:
        server.stop()


# -------------------------------------------------------------- requests --


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def send(
    server: ServerProcess,
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    chunked: bool = False,
) -> Reply:
    """Send one request with the target exactly as given."""
    address = urlsplit(server.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if chunked:
            connection.putheader("Transfer-Encoding", "chunked")
        elif body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders()
        # The server may respond and close before it has read a rejected body.
        with suppress(BrokenPipeError, ConnectionResetError):
            if chunked and body is not None:
                for start in range(0, len(body), 65536):
                    piece = body[start : start + 65536]
                    connection.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                connection.send(b"0\r\n\r\n")
            elif body:
                connection.send(body)
        response = connection.getresponse()
        return Reply(
            response.status,
            {name.lower(): value for name, value in response.getheaders()},
            response.read(),
        )
    finally:
        connection.close()


def send_raw(server: ServerProcess, request: bytes) -> bytes:
    """Send bytes that `http.client` refuses to build; return the raw reply."""
    address = urlsplit(server.url)
    with socket.create_connection((address.hostname, address.port), 10) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


CREDENTIALS: dict[str, Callable[[dict[str, str]], dict[str, str]]] = {
    "tokens": dict,
    "none": lambda tokens: {},
    "wrong agent": lambda tokens: {"X-Agent-Token": "not-the-agent-token"},
    "empty agent": lambda tokens: {"X-Agent-Token": ""},
    "truncated agent": lambda tokens: {"X-Agent-Token": tokens["X-Agent-Token"][:-1]},
    "extended agent": lambda tokens: {"X-Agent-Token": tokens["X-Agent-Token"] + "x"},
    "upper-case agent": lambda tokens: {
        "X-Agent-Token": tokens["X-Agent-Token"].upper()
    },
    "agent in admin header": lambda tokens: {"X-Admin-Token": tokens["X-Agent-Token"]},
    "admin only": lambda tokens: {"X-Admin-Token": tokens["X-Admin-Token"]},
    "agent as bearer": lambda tokens: {
        "Authorization": f"Bearer {tokens['X-Agent-Token']}"
    },
}


def assert_no_token(text: bytes | str, tokens: Mapping[str, str]) -> None:
    data = text.encode() if isinstance(text, str) else text
    for name, value in tokens.items():
        assert value.encode() not in data, f"{name} leaked"


def assert_logs_free_of_tokens(target: Target) -> None:
    for path in (target.server.data_dir / "logs").iterdir():
        assert_no_token(path.read_bytes(), target.tokens)


def assert_state_kept(target: Target) -> None:
    now = state(target.server)
    assert now["responses"] == target.baseline["responses"]
    assert now["hashes"] == target.baseline["hashes"]
    assert now["paths"] == target.baseline["paths"]


def error_of(reply: Reply, status: int) -> dict[str, Any]:
    """Check that `reply` is the JSON error of `status`, and return it."""
    assert reply.status == status, reply.body[:500]
    assert reply.headers.get("content-type", "").startswith("application/json")
    error = json.loads(reply.body)
    assert isinstance(error, dict)
    assert error["statusCode"] == status
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


# ----------------------------------------------------------------- cases --


@dataclass(frozen=True)
class Case:
    """One hostile request and the error status it must get."""

    name: str
    method: str
    path: str
    status: int
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    credentials: str = "tokens"
    chunked: bool = False
    # The configuration key a 413 must name, or the challenge a 401 must send.
    limit: str = ""
    challenge: str = ""


def js(value: Any) -> bytes:
    return json.dumps(value).encode()


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def event_post(*events: dict[str, Any], queue: str | None = QUEUE) -> bytes:
    body: dict[str, Any] = {"events": list(events)}
    if queue is not None:
        body["queueName"] = queue
    return js(body)


def running(timestamp: Any = "2025-03-16T11:30:00Z", **extra: Any) -> dict[str, Any]:
    return {"eventType": "Job-Running", "timestamp": timestamp, **extra}


def points(*items: dict[str, Any]) -> bytes:
    return js({"points": list(items)})


def point(time_text: Any = "2025-03-16T11:30:00Z", value: Any = 1) -> dict[str, Any]:
    return {"time": time_text, "value": value}


def ndjson_row(**changes: Any) -> bytes:
    row = {
        "definition": "jobSubmitted",
        "object": "queue-q1",
        "time": "2025-03-16T11:30:00Z",
        "value": 1,
        **changes,
    }
    return js(row) + b"\n"


# Node file paths after `/nodes/`: each reaches outside `nodes/node-1/`, or is
# not a plain path, whatever its encoding.
TRAVERSALS = {
    "dot-dot": f"{NODE}/../../config.json",
    "dot-dot deep": f"{NODE}/../../../../../../etc/passwd",
    "encoded dots": f"{NODE}/%2e%2e/%2e%2e/agent.token",
    "upper-case encoded dots": f"{NODE}/%2E%2E/%2E%2E/admin.token",
    "encoded slash": f"{NODE}/..%2f..%2fconfig.json",
    "encoded slash in a file": f"{NODE}/agent%2fa.log",
    "encoded backslash": f"{NODE}/..%5c..%5cconfig.json",
    "raw backslash": f"{NODE}/..\\..\\config.json",
    "absolute path": f"{NODE}//etc/passwd",
    "encoded absolute path": f"{NODE}/%2fetc%2fpasswd",
    "dot-dot node id": "%2e%2e/config.json",
    "dot-dot into node id": f"..%2f{NODE}/agent/a.log",
    "dot segment": f"{NODE}/agent/./a.log",
    "NUL after name": f"{NODE}/agent/a.log%00",
    "NUL in folder": f"{NODE}/agent%00/a.log",
    "double encoding": f"{NODE}/%252e%252e/config.json",
    "overlong UTF-8 dots": f"{NODE}/%c0%ae%c0%ae/config.json",
    "invalid UTF-8": f"{NODE}/%ff.log",
    "trailing slash": f"{NODE}/agent/a.log/",
    "segment over 255": f"{NODE}/{'a' * 256}",
    "path over 1024": f"{NODE}/{'/'.join(['abcdefghi'] * 103)}",
    "deeper than 32": f"{NODE}/{'d/' * 40}x.log",
    "node id over 128": f"{'n' * 129}/a.log",
}

NODE_LIST_TRAVERSALS = {
    "dot-dot": "/api/v1/nodes/../files",
    "encoded dots": "/api/v1/nodes/%2e%2e/files",
    "encoded slashes": "/api/v1/nodes/..%2f..%2f/files",
    "encoded backslash": "/api/v1/nodes/..%5c/files",
    "absolute path": "/api/v1/nodes/%2fetc/files",
    "NUL": f"/api/v1/nodes/{NODE}%00/files",
    "node id over 128": f"/api/v1/nodes/{'n' * 129}/files",
    "invalid UTF-8": "/api/v1/nodes/%ff/files",
}


def traversal_cases() -> list[Case]:
    cases = []
    for name, path in TRAVERSALS.items():
        cases.append(Case(f"GET {name}", "GET", f"/nodes/{path}", 404))
        for method in ("POST", "PUT"):
            cases.append(
                Case(f"{method} {name}", method, f"/nodes/{path}", 404, body=b"x")
            )
    for name, path in NODE_LIST_TRAVERSALS.items():
        cases.append(Case(f"list files {name}", "GET", path, 404))
    cases += [
        Case(
            "PUT dot-dot without token",
            "PUT",
            f"/nodes/{TRAVERSALS['dot-dot']}",
            401,
            body=b"x",
            credentials="none",
            challenge="AgentToken",
        ),
        Case(
            "POST encoded dots with wrong token",
            "POST",
            f"/nodes/{TRAVERSALS['encoded dots']}",
            401,
            body=b"x",
            credentials="wrong agent",
            challenge="AgentToken",
        ),
        Case(
            "PUT file of unregistered node",
            "PUT",
            "/nodes/node-9/a.log",
            404,
            body=b"x",
        ),
        Case("DELETE node dot-dot", "DELETE", f"/api/v1/node/..%2f{NODE}", 404),
        Case("DELETE node NUL", "DELETE", f"/api/v1/node/{NODE}%00", 404),
        Case("DELETE node invalid UTF-8", "DELETE", "/api/v1/node/%ff", 404),
        Case("GET log file dot-dot", "GET", "/..%2fconfig.json", 404),
        Case("GET token file", "GET", "/agent.token", 404),
        Case("GET log NUL", "GET", "/mmab.log%00", 404),
        Case("GET schema dot-dot", "GET", "/schema/../api/v1/config", 404),
        Case(
            "POST events dot-dot job",
            "POST",
            "/api/v1/job/..%2f/events",
            400,
            body=event_post(running()),
            headers=JSON_TYPE,
        ),
        Case(
            "POST series dot-dot object",
            "POST",
            "/api/v1/metricValue/..%2fx/metricDef-jobSubmitted",
            404,
            body=points(point()),
            headers=JSON_TYPE,
        ),
    ]
    return cases


BIG = b" " * (MB + 1)
BIG_CHUNKED = b" " * (MB + 65536)


def size_cases() -> list[Case]:
    json_routes = [
        ("PUT", "/api/v1/configKV"),
        ("PUT", "/api/v1/ckptConfig"),
        ("PUT", "/api/v1/log/config"),
        ("PUT", "/api/v1/security/cognito"),
        ("POST", "/api/v1/node"),
        ("POST", f"/api/v1/job/{JOB}/events"),
        ("POST", SERIES),
        ("PUT", "/api/v1/metricDef/metricDef-big"),
    ]
    cases = [
        Case(
            f"{method} {path} over maxBodyMB",
            method,
            path,
            413,
            body=BIG,
            headers=JSON_TYPE,
            limit="security.limits.maxBodyMB",
        )
        for method, path in json_routes
    ]
    cases += [
        Case(
            "configKV chunked over maxBodyMB",
            "PUT",
            "/api/v1/configKV",
            413,
            body=BIG_CHUNKED,
            headers=JSON_TYPE,
            chunked=True,
            limit="security.limits.maxBodyMB",
        ),
        Case(
            "node over maxBodyMB as text/plain",
            "POST",
            "/api/v1/node",
            413,
            body=BIG,
            headers={"Content-Type": "text/plain"},
            limit="security.limits.maxBodyMB",
        ),
        Case(
            "PUT file over maxPerLogSizeMB",
            "PUT",
            f"/nodes/{NODE}/agent/a.log",
            413,
            body=BIG,
            limit="node.maxPerLogSizeMB",
        ),
        Case(
            "POST file chunked over maxPerLogSizeMB",
            "POST",
            f"/nodes/{NODE}/agent/a.log",
            413,
            body=BIG_CHUNKED,
            chunked=True,
            limit="node.maxPerLogSizeMB",
        ),
        Case(
            "POST new file over maxPerLogSizeMB",
            "POST",
            f"/nodes/{NODE}/new.log",
            413,
            body=BIG,
            limit="node.maxPerLogSizeMB",
        ),
        Case(
            "bulk over maxIngestBodyMB",
            "POST",
            "/api/v1/metricValue",
            413,
            body=BIG,
            headers=NDJSON_TYPE,
            limit="security.limits.maxIngestBodyMB",
        ),
        Case(
            "bulk chunked over maxIngestBodyMB",
            "POST",
            "/api/v1/metricValue",
            413,
            body=BIG_CHUNKED,
            headers=NDJSON_TYPE,
            chunked=True,
            limit="security.limits.maxIngestBodyMB",
        ),
        Case(
            "bulk over maxIngestBodyMB as text/plain",
            "POST",
            "/api/v1/metricValue",
            413,
            body=BIG,
            headers={"Content-Type": "text/plain"},
            limit="security.limits.maxIngestBodyMB",
        ),
    ]
    return cases


def json_cases() -> list[Case]:
    kv = "/api/v1/configKV"
    events = f"/api/v1/job/{JOB}/events"
    malformed = {
        "truncated": b'{"kvMap": {',
        "trailing data": b'{"kvMap": {}} x',
        "single quotes": b"{'kvMap': {}}",
        "NaN": b'{"kvMap": {"node.ttl": NaN}}',
        "Infinity": b'{"kvMap": {"node.ttl": Infinity}}',
        "comment": b'{"kvMap": {} /* note */}',
        "empty": b"",
        "whitespace": b"  \n ",
        "NUL bytes": b"\x00\x00",
        "invalid UTF-8": b'{"kvMap": {"customTags": "\xff:x"}}',
        "truncated UTF-8": b'{"kvMap": {"customTags": "a:\xc3"}}',
        "overlong UTF-8": b'{"kvMap": {"customTags": "a:\xc0\xaf"}}',
        "encoded surrogate": b'{"kvMap": {"customTags": "a:\xed\xa0\x80"}}',
        "escaped lone surrogate": b'{"kvMap": {"customTags": "a:\\ud800"}}',
        "deep nesting": nested(100_000).encode(),
    }
    cases = [
        Case(f"configKV {name}", "PUT", kv, 400, body=body, headers=JSON_TYPE)
        for name, body in malformed.items()
    ]
    wrong_types = [
        ("configKV array", "PUT", kv, b"[]"),
        ("configKV string", "PUT", kv, b'"kvMap"'),
        ("configKV null", "PUT", kv, b"null"),
        ("configKV kvMap list", "PUT", kv, js({"kvMap": ["node.ttl"]})),
        ("configKV number value", "PUT", kv, js({"kvMap": {"node.ttl": 360}})),
        ("configKV null value", "PUT", kv, js({"kvMap": {"node.ttl": None}})),
        ("configKV list value", "PUT", kv, js({"kvMap": {"node.ttl": ["6m"]}})),
        ("configKV bool value", "PUT", kv, js({"kvMap": {"node.heartbeat": True}})),
        ("configKV section", "PUT", kv, js({"kvMap": {"node": "x"}})),
        ("configKV read-only id", "PUT", kv, js({"kvMap": {"id": "x"}})),
        (
            "configKV log file dot-dot",
            "PUT",
            kv,
            js({"kvMap": {"log.fileName": "../x"}}),
        ),
        (
            "configKV one bad key of two",
            "PUT",
            kv,
            js({"kvMap": {"node.ttl": "6m", "node.heartbeat": "0s"}}),
        ),
        ("ckptConfig array", "PUT", "/api/v1/ckptConfig", b"[1]"),
        (
            "ckptConfig number duration",
            "PUT",
            "/api/v1/ckptConfig",
            js({"ckptInterval": 5}),
        ),
        (
            "ckptConfig unknown key",
            "PUT",
            "/api/v1/ckptConfig",
            js({"ckptInterval": "1h", "x": 1}),
        ),
        ("log config string size", "PUT", "/api/v1/log/config", js({"maxSizeMB": "5"})),
        (
            "log config bool backups",
            "PUT",
            "/api/v1/log/config",
            js({"maxBackups": True}),
        ),
        (
            "log config file dot-dot",
            "PUT",
            "/api/v1/log/config",
            js({"fileName": "../x"}),
        ),
        ("node array", "POST", "/api/v1/node", b"[]"),
        ("node id number", "POST", "/api/v1/node", js({"id": 5})),
        ("node id dot-dot", "POST", "/api/v1/node", js({"id": "../x"})),
        ("node ips string", "POST", "/api/v1/node", js({"id": "n2", "ips": "x"})),
        ("node cores string", "POST", "/api/v1/node", js({"id": "n2", "cores": "8"})),
        ("node cores negative", "POST", "/api/v1/node", js({"id": "n2", "cores": -1})),
        ("node cores fraction", "POST", "/api/v1/node", js({"id": "n2", "cores": 1.5})),
        (
            "node instance list",
            "POST",
            "/api/v1/node",
            js({"id": "n2", "instance": []}),
        ),
        ("events array", "POST", events, b"[]"),
        ("events queue number", "POST", events, js({"queueName": 5, "events": []})),
        ("events queue dot-dot", "POST", events, event_post(running(), queue="../q")),
        ("events object", "POST", events, js({"queueName": QUEUE, "events": {}})),
        ("events empty", "POST", events, event_post()),
        ("event number", "POST", events, js({"queueName": QUEUE, "events": [5]})),
        (
            "event type number",
            "POST",
            events,
            event_post({**running(), "eventType": 5}),
        ),
        (
            "event type empty",
            "POST",
            events,
            event_post({**running(), "eventType": ""}),
        ),
        ("event nodeOid list", "POST", events, event_post(running(nodeOid=["i-1"]))),
        (
            "first post without queue",
            "POST",
            "/api/v1/job/job-2/events",
            event_post(running(), queue=None),
        ),
        ("points object", "POST", SERIES, js({"points": {}})),
        ("point number", "POST", SERIES, js({"points": [5]})),
        ("point value string", "POST", SERIES, points(point(value="1"))),
        ("point value bool", "POST", SERIES, points(point(value=True))),
        ("point value null", "POST", SERIES, points(point(value=None))),
        ("point without time", "POST", SERIES, js({"points": [{"value": 1}]})),
        (
            "second point bad",
            "POST",
            SERIES,
            points(point(), point(time_text="bad")),
        ),
        (
            "definition aggregate list",
            "PUT",
            "/api/v1/metricDef/metricDef-x",
            js({"aggregate": ["sum"]}),
        ),
        (
            "definition labels numbers",
            "PUT",
            "/api/v1/metricDef/metricDef-x",
            js({"aggregate": "sum", "labels": [1]}),
        ),
        (
            "definition unknown aggregate",
            "PUT",
            "/api/v1/metricDef/metricDef-x",
            js({"aggregate": "median"}),
        ),
        (
            "definition invalid UTF-8 id",
            "PUT",
            "/api/v1/metricDef/%ff",
            js({"aggregate": "sum"}),
        ),
        ("cognito array", "PUT", "/api/v1/security/cognito", b"[]"),
        (
            "cognito enabled string",
            "PUT",
            "/api/v1/security/cognito",
            js({"enabled": "true"}),
        ),
        (
            "cognito unknown field",
            "PUT",
            "/api/v1/security/cognito",
            js({"unknown": 1}),
        ),
        (
            "cognito groups numbers",
            "PUT",
            "/api/v1/security/cognito",
            js({"adminGroups": [1]}),
        ),
    ]
    cases += [
        Case(name, method, path, 400, body=body, headers=JSON_TYPE)
        for name, method, path, body in wrong_types
    ]
    cases += [
        Case(
            "events other queue",
            "POST",
            events,
            409,
            body=event_post(running(), queue="q2"),
            headers=JSON_TYPE,
        ),
        Case(
            "built-in definition changed",
            "PUT",
            "/api/v1/metricDef/metricDef-jobSubmitted",
            409,
            body=js({"aggregate": "max"}),
            headers=JSON_TYPE,
        ),
    ]
    return cases


def number_cases() -> list[Case]:
    kv = "/api/v1/configKV"
    events = f"/api/v1/job/{JOB}/events"
    huge = [
        (
            "configKV 26-digit int",
            kv,
            "PUT",
            js({"kvMap": {"node.maxPerLogSizeMB": "9" * 26}}),
        ),
        (
            "configKV huge duration",
            kv,
            "PUT",
            js({"kvMap": {"node.ttl": "99999999999h"}}),
        ),
        ("configKV 1e999", kv, "PUT", b"1e999"),
        (
            "ckpt huge duration",
            "/api/v1/ckptConfig",
            "PUT",
            js({"ckptInterval": "9999999999999h"}),
        ),
        ("log size 1e400", "/api/v1/log/config", "PUT", b'{"maxSizeMB": 1e400}'),
        ("log size 10**30", "/api/v1/log/config", "PUT", js({"maxSizeMB": 10**30})),
        (
            "node cores 10**30",
            "/api/v1/node",
            "POST",
            js({"id": "n2", "cores": 10**30}),
        ),
        (
            "node memory 1e400",
            "/api/v1/node",
            "POST",
            b'{"id": "n2", "memoryInMB": 1e400}',
        ),
        (
            "event field of 5000 digits",
            events,
            "POST",
            b'{"events": [{"eventType": "Job-Running", "timestamp": '
            b'"2025-03-16T11:30:00Z", "x": 1' + b"0" * 5000 + b"}]}",
        ),
        (
            "point 1e999",
            SERIES,
            "POST",
            b'{"points": [{"time": "2025-03-16T11:30:00Z", "value": 1e999}]}',
        ),
        (
            "point -1e400",
            SERIES,
            "POST",
            b'{"points": [{"time": "2025-03-16T11:30:00Z", "value": -1e400}]}',
        ),
        ("point 400-digit int", SERIES, "POST", points(point(value=10**400))),
    ]
    cases = [
        Case(name, method, path, 400, body=body, headers=JSON_TYPE)
        for name, path, method, body in huge
    ]
    cases += [
        Case(
            "bulk value 1e400",
            "POST",
            "/api/v1/metricValue",
            400,
            body=b'{"definition": "jobSubmitted", "object": "queue-q1", '
            b'"time": "2025-03-16T11:30:00Z", "value": 1e400}\n',
            headers=NDJSON_TYPE,
        ),
        Case(
            "bulk value NaN",
            "POST",
            "/api/v1/metricValue",
            400,
            body=ndjson_row() + b'{"definition": "jobSubmitted", "object": "q", '
            b'"time": "2025-03-16T11:30:00Z", "value": NaN}\n',
            headers=NDJSON_TYPE,
        ),
        Case(
            "bulk value string",
            "POST",
            "/api/v1/metricValue",
            400,
            body=ndjson_row(value="1"),
            headers=NDJSON_TYPE,
        ),
        Case(
            "bulk unknown definition",
            "POST",
            "/api/v1/metricValue",
            400,
            body=ndjson_row() + ndjson_row(definition="nope"),
            headers=NDJSON_TYPE,
        ),
        Case(
            "bulk dot-dot object",
            "POST",
            "/api/v1/metricValue",
            400,
            body=ndjson_row(object="../x"),
            headers=NDJSON_TYPE,
        ),
        Case(
            "bulk invalid UTF-8",
            "POST",
            "/api/v1/metricValue",
            400,
            body=b'{"definition": "\xff"}\n',
            headers=NDJSON_TYPE,
        ),
        Case(
            "bulk garbage Arrow stream",
            "POST",
            "/api/v1/metricValue",
            400,
            body=b"not an arrow stream",
            headers={"Content-Type": "application/vnd.apache.arrow.stream"},
        ),
    ]
    return cases


def nesting_cases() -> list[Case]:
    events = f"/api/v1/job/{JOB}/events"
    over = 65  # one level past api.errors.MAX_JSON_DEPTH
    cases = [
        Case(
            f"event field nested {depth}",
            "POST",
            events,
            400,
            body=b'{"events": [{"eventType": "Job-Running", "timestamp": '
            b'"2025-03-16T11:30:00Z", "x": ' + nested(depth).encode() + b"}]}",
            headers=JSON_TYPE,
        )
        for depth in (over, 500, 5000)
    ]
    cases += [
        Case(
            "event field objects nested 600",
            "POST",
            events,
            400,
            body=b'{"events": [{"eventType": "Job-Running", "timestamp": '
            b'"2025-03-16T11:30:00Z", "x": '
            + b'{"a": ' * 600
            + b"1"
            + b"}" * 600
            + b"}]}",
            headers=JSON_TYPE,
        ),
        Case(
            "node field nested 900",
            "POST",
            "/api/v1/node",
            400,
            body=b'{"id": "n2", "extra": ' + nested(900).encode() + b"}",
            headers=JSON_TYPE,
        ),
        Case(
            "node instance field nested 65",
            "POST",
            "/api/v1/node",
            400,
            body=b'{"id": "n2", "instance": {"x": ' + nested(over).encode() + b"}}",
            headers=JSON_TYPE,
        ),
        Case(
            "point value nested 900",
            "POST",
            SERIES,
            400,
            body=b'{"points": [{"time": "2025-03-16T11:30:00Z", "value": '
            + nested(900).encode()
            + b"}]}",
            headers=JSON_TYPE,
        ),
        Case(
            "bulk row field nested 5000",
            "POST",
            "/api/v1/metricValue",
            400,
            body=ndjson_row()[:-2] + b', "x": ' + nested(5000).encode() + b"}\n",
            headers=NDJSON_TYPE,
        ),
    ]
    return cases


BAD_TIMES = {
    "date only": "2025-03-16",
    "no offset": "2025-03-16T11:30:00",
    "epoch string": "1742124600",
    "epoch number": 1742124600,
    "null": None,
    "February 30": "2025-02-30T11:30:00Z",
    "hour 24": "2025-03-16T24:00:00Z",
    "second 60": "2025-03-16T11:30:60Z",
    "ten fraction digits": "2025-03-16T11:30:00.1234567890Z",
    "offset 24h": "2025-03-16T11:30:00+24:00",
    "year 9999": "9999-12-31T23:59:59Z",
    "below int64": "1677-09-21T00:12:43.145224191Z",
    "above int64": "2262-04-11T23:47:16.854775808Z",
    "over 5 minutes ahead": "2025-03-16T12:05:00.000000001Z",
    "full-width digit": "\uff12025-03-16T11:30:00Z",
}


def time_cases() -> list[Case]:
    events = f"/api/v1/job/{JOB}/events"
    cases = [
        Case(
            f"event timestamp {name}",
            "POST",
            events,
            400,
            body=event_post(running(value)),
            headers=JSON_TYPE,
        )
        for name, value in BAD_TIMES.items()
    ]
    cases += [
        Case(
            f"point time {name}",
            "POST",
            SERIES,
            400,
            body=points(point(time_text=value)),
            headers=JSON_TYPE,
        )
        for name, value in BAD_TIMES.items()
        if name in ("no offset", "epoch number", "below int64", "over 5 minutes ahead")
    ]
    cases += [
        Case(
            "node createTime word",
            "POST",
            "/api/v1/node",
            400,
            body=js({"id": "n2", "instance": {"createTime": "yesterday"}}),
            headers=JSON_TYPE,
        ),
        Case(
            "bulk time no offset",
            "POST",
            "/api/v1/metricValue",
            400,
            body=ndjson_row(time="2025-03-16T11:30:00"),
            headers=NDJSON_TYPE,
        ),
        Case(
            "bulk time ahead",
            "POST",
            "/api/v1/metricValue",
            400,
            body=ndjson_row(time="2025-03-16T12:06:00Z"),
            headers=NDJSON_TYPE,
        ),
    ]
    return cases


def content_type_cases() -> list[Case]:
    kv_body = js({"kvMap": {"node.ttl": "6m"}})
    wrong = [
        ("configKV text/plain", "PUT", "/api/v1/configKV", kv_body, "text/plain"),
        (
            "configKV form",
            "PUT",
            "/api/v1/configKV",
            b"kvMap=node.ttl%3D6m",
            "application/x-www-form-urlencoded",
        ),
        (
            "configKV multipart",
            "PUT",
            "/api/v1/configKV",
            kv_body,
            "multipart/form-data; boundary=x",
        ),
        ("configKV XML", "PUT", "/api/v1/configKV", b"<kvMap/>", "application/xml"),
        (
            "node text/plain",
            "POST",
            "/api/v1/node",
            js({"id": "n2"}),
            "text/plain",
        ),
        (
            "events NDJSON",
            "POST",
            f"/api/v1/job/{JOB}/events",
            event_post(running()),
            "application/x-ndjson",
        ),
        ("series text/csv", "POST", SERIES, points(point()), "text/csv"),
        (
            "bulk JSON",
            "POST",
            "/api/v1/metricValue",
            ndjson_row(),
            "application/json",
        ),
        ("bulk text/csv", "POST", "/api/v1/metricValue", ndjson_row(), "text/csv"),
    ]
    cases = [
        Case(name, method, path, 415, body=body, headers={"Content-Type": kind})
        for name, method, path, body, kind in wrong
    ]
    cases.append(
        Case("bulk without type", "POST", "/api/v1/metricValue", 415, body=ndjson_row())
    )
    return cases


def method_cases() -> list[Case]:
    # Only methods that uvicorn's HTTP parser recognises reach the app. The
    # parser rejects any other method with a plain-text 400.
    pairs = [
        ("PATCH", "/api/v1/config"),
        ("DELETE", "/api/v1/config"),
        ("POST", "/api/v1/config"),
        ("PUT", "/api/v1/node"),
        ("PATCH", f"/nodes/{NODE}/agent/a.log"),
        ("DELETE", f"/nodes/{NODE}/agent/a.log"),
        ("DELETE", f"/api/v1/job/{JOB}"),
        ("PUT", "/api/v1/metricValue"),
        ("DELETE", "/api/v1/metricDef/metricDef-jobSubmitted"),
        ("PROPFIND", "/api/v1/job"),
        ("TRACE", "/api/v1/job"),
        ("PURGE", "/api/v1/metric"),
    ]
    return [
        Case(f"{method} {path}", method, path, 405, body=b"{}", headers=JSON_TYPE)
        for method, path in pairs
    ]


def token_cases() -> list[Case]:
    node = js({"id": "n2", "hostName": "h"})
    agent_writes = [
        ("register", "POST", "/api/v1/node", node, JSON_TYPE),
        ("leave", "DELETE", f"/api/v1/node/{NODE}", None, {}),
        ("replace file", "PUT", f"/nodes/{NODE}/agent/a.log", b"forged\n", {}),
        ("append file", "POST", f"/nodes/{NODE}/agent/a.log", b"forged\n", {}),
        (
            "post events",
            "POST",
            f"/api/v1/job/{JOB}/events",
            event_post(running()),
            JSON_TYPE,
        ),
        ("post series", "POST", SERIES, points(point()), JSON_TYPE),
        ("post bulk", "POST", "/api/v1/metricValue", ndjson_row(), NDJSON_TYPE),
    ]
    cases = [
        Case(
            f"{name} without token",
            method,
            path,
            401,
            body=body,
            headers=headers,
            credentials="none",
            challenge="AgentToken",
        )
        for name, method, path, body, headers in agent_writes
    ]
    for credentials in (
        "wrong agent",
        "empty agent",
        "truncated agent",
        "extended agent",
        "upper-case agent",
        "agent in admin header",
    ):
        cases.append(
            Case(
                f"register with {credentials}",
                "POST",
                "/api/v1/node",
                401,
                body=node,
                headers=JSON_TYPE,
                credentials=credentials,
                challenge="AgentToken",
            )
        )
    for name, method, path, body, headers in agent_writes[:3]:
        for credentials in ("admin only", "agent as bearer"):
            cases.append(
                Case(
                    f"{name} with {credentials}",
                    method,
                    path,
                    403,
                    body=body,
                    headers=headers,
                    credentials=credentials,
                )
            )
    return cases


def header_cases() -> list[Case]:
    return [
        Case(
            "CR LF encoded in job id",
            "GET",
            "/api/v1/job/a%0d%0aSet-Cookie:%20x=1",
            404,
        ),
        Case(
            "CR LF encoded in posted job id",
            "POST",
            "/api/v1/job/a%0d%0aSet-Cookie:%20x=1/events",
            400,
            body=event_post(running()),
            headers=JSON_TYPE,
        ),
        Case(
            "CR LF encoded in node id",
            "DELETE",
            "/api/v1/node/a%0d%0aX-Admin-Token:%20x",
            404,
        ),
    ]


def query_cases() -> list[Case]:
    bad = [
        ("/api/v1/node?finished=maybe", 400),
        ("/api/v1/node?finished=true&finished=false", 400),
        ("/api/v1/node?limit=-1", 400),
        ("/api/v1/node?limit=1e3", 400),
        ("/api/v1/node?limit=9999999999999", 400),
        ("/api/v1/node?offset=%ff", 400),
        ("/api/v1/node?offset=%ef%bc%91", 400),
        ("/api/v1/node?format=xml&finished=true", 400),
        ("/api/v1/node?format=csv", 400),
        ("/api/v1/job?start=yesterday", 400),
        ("/api/v1/job?start=2025-03-16", 400),
        ("/api/v1/job?start=1742124600", 400),
        ("/api/v1/job?start=%00", 400),
        ("/api/v1/job?start=9999-01-01T00:00:00Z", 400),
        ("/api/v1/job?start=2025-03-16T11:00:00Z&end=2025-03-16T10:00:00Z", 400),
        ("/api/v1/job?status=Nope", 400),
        ("/api/v1/job?queue=../q1", 400),
        ("/api/v1/job?queue=%00", 400),
        ("/api/v1/job?limit=abc", 400),
        (f"{SERIES}?interval=0s", 400),
        (f"{SERIES}?interval=-1m", 400),
        (f"{SERIES}?interval=90s", 400),
        (f"{SERIES}?interval=abc", 400),
        (f"{SERIES}?interval=9223372036854775808ns", 400),
        (f"{SERIES}?interval=1m&interval=1m", 400),
        (f"{SERIES}?start=2025-03-16T11:00:00Z&end=2025-03-16T11:00:00Z", 400),
        (f"{SERIES}?end=1677-09-21T00:12:43.145224191Z", 400),
        ("/api/v1/metrics/summary?start=bad", 400),
        ("/api/v1/metrics/summary?definition=nope", 404),
        ("/api/v1/metricValue/queue-q1/nope", 404),
    ]
    return [Case(f"GET {path}", "GET", path, status) for path, status in bad]


CASES = [
    *traversal_cases(),
    *size_cases(),
    *json_cases(),
    *number_cases(),
    *nesting_cases(),
    *time_cases(),
    *content_type_cases(),
    *method_cases(),
    *token_cases(),
    *header_cases(),
    *query_cases(),
]


def test_corpus_names_unique():
    names = [case.name for case in CASES]
    assert len(names) == len(set(names))
    assert len(names) >= 60


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_hostile_input_rejected(target: Target, case: Case):
    headers = {**CREDENTIALS[case.credentials](target.tokens), **case.headers}
    reply = send(
        target.server,
        case.method,
        case.path,
        body=case.body,
        headers=headers,
        chunked=case.chunked,
    )
    error = error_of(reply, case.status)
    if case.limit:
        assert error["limit"] == case.limit
        assert case.limit in error["message"]
    if case.challenge:
        assert reply.headers["www-authenticate"].startswith(case.challenge)
    assert "set-cookie" not in reply.headers
    assert_no_token(reply.body, target.tokens)
    assert_state_kept(target)
    assert_logs_free_of_tokens(target)


# ------------------------------------------------- X-Node-ID and the logs --


def _access_entries(target: Target) -> list[dict[str, Any]]:
    path = target.server.data_dir / "logs" / "mmab-access.log"
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def wait_for_entry(
    target: Target, after: int, method: str, path: str
) -> dict[str, Any]:
    """Return the first access log entry of `method path` past line `after`.

    The server writes the line after it has sent the response, so this
    polls for up to 5 seconds.
    """
    deadline = time.monotonic() + 5
    while True:
        for entry in _access_entries(target)[after:]:
            if entry["method"] == method and entry["path"] == path:
                return entry
        assert time.monotonic() < deadline, f"no access log line for {method} {path}"
        time.sleep(0.02)


HOSTILE_NODE_IDS = {
    "JSON break-out": f'{NODE}", "user": "admin-token',
    "tab": f"{NODE}\tx",
    "obs-text": "node-\xff",
    "over 128": "n" * 129,
    "dot-dot": f"../{NODE}",
    "encoded CR LF": f"{NODE}%0d%0aforged",
    "brace": "{message}",
}


@pytest.mark.parametrize("value", HOSTILE_NODE_IDS.values(), ids=HOSTILE_NODE_IDS)
def test_hostile_node_id_logged_as_unknown(target: Target, value: str):
    before = len(_access_entries(target))
    headers = {**target.tokens, **JSON_TYPE, "X-Node-ID": value}
    reply = send(target.server, "POST", "/api/v1/node", body=b"[]", headers=headers)
    error_of(reply, 400)
    entry = wait_for_entry(target, before, "POST", "/api/v1/node")
    assert entry["status"] == 400
    assert entry["user"] == "agent:?"
    assert_state_kept(target)
    assert_logs_free_of_tokens(target)


def test_forged_server_log_line_escaped(target: Target):
    forged = "x\n2025-03-16T12:00:00Z ERROR   forged line"
    reply = send(
        target.server,
        "PUT",
        "/api/v1/configKV",
        body=js({"kvMap": {forged: "1"}}),
        headers=JSON_TYPE,
    )
    error_of(reply, 400)
    log = (target.server.data_dir / "logs" / "mmab.log").read_text("utf-8")
    lines = log.splitlines()
    assert not any(
        line.startswith("2025-03-16T12:00:00Z ERROR   forged") for line in lines
    )
    assert any("x\\n2025-03-16T12:00:00Z ERROR   forged line" in line for line in lines)
    assert_state_kept(target)


RAW_HEADER_BREAKS = {
    "bare LF": b"X-Node-ID: node-1\nX-Forged: 1\r\n",
    "bare CR": b"X-Node-ID: node-1\rX-Forged: 1\r\n",
    "obs-fold": b"X-Node-ID: node-1\r\n X-Forged: 1\r\n",
    "NUL": b"X-Node-ID: node-1\x00forged\r\n",
}


@pytest.mark.parametrize("header", RAW_HEADER_BREAKS.values(), ids=RAW_HEADER_BREAKS)
def test_line_break_in_header_rejected(target: Target, header: bytes):
    """uvicorn's HTTP parser rejects these before the app, with a plain-text 400."""
    body = js({"id": "n2", "hostName": "h"})
    request = (
        b"POST /api/v1/node HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + b"X-Agent-Token: "
        + target.tokens["X-Agent-Token"].encode()
        + b"\r\n"
        + header
        + b"Content-Type: application/json\r\n"
        + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
        + body
    )
    reply = send_raw(target.server, request)
    head = reply.split(b"\r\n\r\n", 1)[0].lower()
    assert reply.startswith(b"HTTP/1.1 400 ")
    assert b"x-forged" not in head
    assert_no_token(reply, target.tokens)
    assert_state_kept(target)


def test_access_log_lines_are_json(target: Target):
    before = len(_access_entries(target))
    error_of(send(target.server, "GET", "/api/v1/job/a%0d%0aforged"), 404)
    # Reading every line as JSON fails if a request broke a line.
    entry = wait_for_entry(target, before, "GET", "/api/v1/job/a\r\nforged")
    assert entry["status"] == 404
    assert_logs_free_of_tokens(target)
