"""The configuration API over HTTP against a real server subprocess.

Covers `GET /api/v1/config`, `PUT /api/v1/configKV`, `PUT /api/v1/ckptConfig`
and `GET/PUT /api/v1/log/config`. Most tests share one module-scoped server,
and the autouse `restore_config` fixture puts every writable key back to its
first-start value after each test. Tests that restart a server start their own.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mmab_metrics.config import KEYS
from tests.conftest import ServerProcess

NOW = "2025-03-16T12:00:00Z"
CONFIG = "/api/v1/config"
KV = "/api/v1/configKV"
CKPT = "/api/v1/ckptConfig"
LOG = "/api/v1/log/config"

DURATION_KEYS = [
    "ckpt.ckptInterval",
    "node.heartbeat",
    "node.ttl",
    "node.cleanLogInterval",
    "job.storCleanIntvl",
    "job.retentionInterval",
    "job.successTTL",
    "job.failureTTL",
    "metrics.rawRetention",
]
SCHEDULING_KEYS = [
    "node.heartbeat",
    "ckpt.ckptInterval",
    "node.cleanLogInterval",
    "job.storCleanIntvl",
    "job.retentionInterval",
]
TTL_KEYS = ["node.ttl", "job.successTTL", "job.failureTTL"]
DEFAULT_LEVELS = [
    {"interval": "1m0s", "retention": "168h0m0s"},
    {"interval": "30m0s", "retention": "2160h0m0s"},
    {"interval": "24h0m0s", "retention": "18000h0m0s"},
]


# ---------------------------------------------------------------- helpers --


def leaf(document: dict[str, Any], path: str) -> Any:
    node: Any = document
    for part in path.split("."):
        node = node[part]
    return node


def kv_text(value: Any) -> str:
    """Return the configKV string form of a typed config value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return ",".join(f"{name}:{text}" for name, text in value.items())
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return ",".join(f"{level['interval']}:{level['retention']}" for level in value)
    if isinstance(value, list):
        return ",".join(value)
    return value


def put_kv(http: httpx.Client, kv_map: dict[str, Any]) -> httpx.Response:
    return http.put(KV, json={"kvMap": kv_map})


def get_config(http: httpx.Client) -> dict[str, Any]:
    response = http.get(CONFIG)
    assert response.status_code == 200
    return response.json()


def get_value(http: httpx.Client, path: str) -> Any:
    return leaf(get_config(http), path)


def set_value(http: httpx.Client, path: str, text: str) -> None:
    response = put_kv(http, {path: text})
    assert response.status_code == 200, response.text


def config_file(server: ServerProcess) -> Path:
    return server.data_dir / "config.json"


def assert_error(
    response: httpx.Response,
    status: int,
    field: str | None = None,
    named: str | None = None,
) -> dict:
    """Check the status, JSON body and `field` detail of an error response.

    The message must contain `named`, which defaults to `field`.
    """
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["statusCode"] == status
    assert isinstance(body["message"], str)
    assert body["message"]
    if field is not None:
        assert body["field"] == field
        assert (named or field) in body["message"]
    return body


# --------------------------------------------------------------- fixtures --


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module, its clock frozen at `NOW`."""
    process = ServerProcess(tmp_path_factory.mktemp("config-api") / "data", now=NOW)
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture(scope="module")
def initial(http: httpx.Client) -> dict[str, Any]:
    """The module server's config as it was at first start."""
    return get_config(http)


@pytest.fixture(autouse=True)
def restore_config(http: httpx.Client, initial: dict[str, Any]) -> Iterator[None]:
    yield
    kv_map = {
        key.path: kv_text(leaf(initial, key.path)) for key in KEYS if not key.read_only
    }
    response = put_kv(http, kv_map)
    assert response.status_code == 200, response.text
    assert response.json() == initial


# ------------------------------------------------ Go duration output form --

GO_FORM_INPUT = {
    "node.ttl": "5m",
    "ckpt.ckptInterval": "1.5h",
    "job.successTTL": "72h",
    "job.failureTTL": "10080m",
    "node.cleanLogInterval": "43200s",
    "job.storCleanIntvl": "1440m",
    "node.heartbeat": "30s",
}
GO_FORM_EXPECTED = {
    "node.ttl": "5m0s",
    "ckpt.ckptInterval": "1h30m0s",
    "job.successTTL": "72h0m0s",
    "job.failureTTL": "168h0m0s",
    "node.cleanLogInterval": "12h0m0s",
    "job.storCleanIntvl": "24h0m0s",
    "node.heartbeat": "30s",
}


def test_kv_go_form_input_accepted(http: httpx.Client) -> None:
    response = put_kv(http, GO_FORM_INPUT)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(("path", "expected"), GO_FORM_EXPECTED.items())
def test_kv_durations_read_go_form(
    http: httpx.Client, path: str, expected: str
) -> None:
    # Move every key off its default first, so that a value the update
    # ignored cannot pass as the expected one.
    set_value(http, "node.ttl", "7m")
    set_value(http, "ckpt.ckptInterval", "2h")
    set_value(http, "job.successTTL", "1h")
    set_value(http, "job.failureTTL", "1h")
    set_value(http, "node.cleanLogInterval", "1h")
    set_value(http, "job.storCleanIntvl", "1h")
    set_value(http, "node.heartbeat", "10s")
    response = put_kv(http, GO_FORM_INPUT)
    assert leaf(response.json(), path) == expected
    assert get_value(http, path) == expected


def test_config_metric_levels_go_form(http: httpx.Client) -> None:
    assert get_value(http, "metrics.levels") == DEFAULT_LEVELS


def test_config_raw_retention_go_form(http: httpx.Client) -> None:
    assert get_value(http, "metrics.rawRetention") == "168h0m0s"


# ------------------------------------------- Go duration acceptance set --

TTL_ACCEPTED = [
    ("1.5h", "1h30m0s"),
    ("90m", "1h30m0s"),
    ("1h30m", "1h30m0s"),
    ("30m1h", "1h30m0s"),
    (".5h", "30m0s"),
    ("5.m", "5m0s"),
    ("+5m", "5m0s"),
    ("300000ms", "5m0s"),
    ("300000000us", "5m0s"),
    ("300000000\u00b5s", "5m0s"),
    ("300000000\u03bcs", "5m0s"),
]
TTL_REJECTED = [
    "",
    "5",
    "300",
    "1d",
    "1w",
    "5M",
    "5 m",
    " 5m",
    "5m ",
    "1h 30m",
    "-",
    ".",
    ".s",
    "5m0",
    "3000000h",
    "-5m",
    "-1h30m",
]


@pytest.mark.parametrize(("text", "expected"), TTL_ACCEPTED)
def test_kv_ttl_accepts(http: httpx.Client, text: str, expected: str) -> None:
    set_value(http, "node.ttl", "7m")
    response = put_kv(http, {"node.ttl": text})
    assert response.status_code == 200, response.text
    assert get_value(http, "node.ttl") == expected


@pytest.mark.parametrize("text", TTL_REJECTED)
def test_kv_ttl_rejects(http: httpx.Client, text: str) -> None:
    set_value(http, "node.ttl", "7m")
    response = put_kv(http, {"node.ttl": text})
    assert_error(response, 400, "node.ttl")
    assert get_value(http, "node.ttl") == "7m0s"


@pytest.mark.parametrize("path", DURATION_KEYS)
def test_kv_negative_duration_rejected(http: httpx.Client, path: str) -> None:
    before = get_value(http, path)
    response = put_kv(http, {path: "-5m"})
    assert_error(response, 400, path)
    assert get_value(http, path) == before


@pytest.mark.parametrize("path", SCHEDULING_KEYS)
@pytest.mark.parametrize("text", ["999ms", "1ns", "0s", "0"])
def test_kv_interval_under_1s_rejected(
    http: httpx.Client, path: str, text: str
) -> None:
    before = get_value(http, path)
    response = put_kv(http, {path: text})
    assert_error(response, 400, path)
    assert get_value(http, path) == before


@pytest.mark.parametrize("path", SCHEDULING_KEYS)
def test_kv_interval_1s_accepted(http: httpx.Client, path: str) -> None:
    response = put_kv(http, {path: "1000ms"})
    assert response.status_code == 200, response.text
    assert get_value(http, path) == "1s"


@pytest.mark.parametrize("path", TTL_KEYS)
def test_kv_ttl_zero_accepted(http: httpx.Client, path: str) -> None:
    response = put_kv(http, {path: "0s"})
    assert response.status_code == 200, response.text
    assert get_value(http, path) == "0s"


# --------------------------------------- dotted keys and type conversion --


def snapshot(http: httpx.Client, server: ServerProcess) -> tuple[bytes, bytes]:
    """Return the bytes of `GET /api/v1/config` and of `config.json`."""
    response = http.get(CONFIG)
    assert response.status_code == 200
    return response.content, config_file(server).read_bytes()


@pytest.mark.parametrize(
    "kv_map",
    [
        {"node.ttll": "5m"},
        {"node": "5m"},
        {"node.ttl.x": "5m"},
        {"security.cognito": "x"},
        {"": "5m"},
        {"Node.ttl": "5m"},
        {"node.TTL": "5m"},
        {".node.ttl": "5m"},
        {"node..ttl": "5m"},
    ],
    ids=lambda kv_map: next(iter(kv_map)) or "empty",
)
def test_kv_unknown_path_changes_nothing(
    http: httpx.Client, server: ServerProcess, kv_map: dict[str, str]
) -> None:
    before = snapshot(http, server)
    response = put_kv(http, kv_map)
    assert_error(response, 400, next(iter(kv_map)))
    after = snapshot(http, server)
    assert after[0] == before[0]
    assert after[1] == before[1]


def test_kv_typo_creates_no_key(http: httpx.Client, server: ServerProcess) -> None:
    put_kv(http, {"node.ttll": "5m"})
    assert b"ttll" not in http.get(CONFIG).content
    assert b"ttll" not in config_file(server).read_bytes()


@pytest.mark.parametrize("text", ["0", "f", "F", "FALSE", "False", "false"])
def test_kv_bool_false_forms(http: httpx.Client, text: str) -> None:
    set_value(http, "job.ebsPerJob", "true")
    response = put_kv(http, {"job.ebsPerJob": text})
    assert response.status_code == 200, response.text
    assert get_value(http, "job.ebsPerJob") is False


@pytest.mark.parametrize("text", ["1", "t", "T", "TRUE", "True", "true"])
def test_kv_bool_true_forms(http: httpx.Client, text: str) -> None:
    set_value(http, "job.ebsPerJob", "false")
    response = put_kv(http, {"job.ebsPerJob": text})
    assert response.status_code == 200, response.text
    assert get_value(http, "job.ebsPerJob") is True


@pytest.mark.parametrize(
    "text", ["yes", "no", "on", "off", "", " true", "true ", "tRUE", "2", "y"]
)
def test_kv_bool_rejects(http: httpx.Client, text: str) -> None:
    set_value(http, "job.ebsPerJob", "false")
    response = put_kv(http, {"job.ebsPerJob": text})
    assert_error(response, 400, "job.ebsPerJob")
    assert get_value(http, "job.ebsPerJob") is False


def test_kv_int_is_json_number(http: httpx.Client) -> None:
    response = put_kv(http, {"job.diskSizeGB": "200"})
    assert response.status_code == 200, response.text
    value = get_value(http, "job.diskSizeGB")
    assert type(value) is int
    assert value == 200


@pytest.mark.parametrize(
    "text",
    [
        "abc",
        "100.5",
        "1e2",
        "",
        " 200",
        "200 ",
        "-1",
        "+5",
        "0x10",
        "1_000",
        "\uff12\uff10\uff10",
    ],
)
def test_kv_int_rejects(http: httpx.Client, text: str) -> None:
    response = put_kv(http, {"job.diskSizeGB": text})
    assert_error(response, 400, "job.diskSizeGB")
    assert get_value(http, "job.diskSizeGB") == 100


@pytest.mark.parametrize("value", [200, 200.0, True, None, ["200"], {"v": "200"}])
def test_kv_value_must_be_string(http: httpx.Client, value: Any) -> None:
    response = put_kv(http, {"job.diskSizeGB": value})
    assert_error(response, 400, "job.diskSizeGB")
    assert get_value(http, "job.diskSizeGB") == 100


def test_kv_empty_map_changes_nothing(
    http: httpx.Client, server: ServerProcess
) -> None:
    before = snapshot(http, server)
    response = put_kv(http, {})
    assert response.status_code == 200, response.text
    assert response.content == before[0]
    after = snapshot(http, server)
    assert after[0] == before[0]
    assert after[1] == before[1]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"kvMap": None},
        {"kvmap": {"node.ttl": "5m"}},
        {"kvMap": []},
        {"kvMap": "node.ttl=5m"},
    ],
    ids=["no-kvMap", "null", "wrong-case", "list", "string"],
)
def test_kv_body_without_map_rejected(
    http: httpx.Client, server: ServerProcess, body: dict[str, Any]
) -> None:
    before = snapshot(http, server)
    response = http.put(KV, json=body)
    assert_error(response, 400, "kvMap")
    assert snapshot(http, server) == before


# ----------------------------------------------------- lists and maps --


@pytest.mark.parametrize(
    ("path", "text", "expected"),
    [
        ("security.cognito.adminGroups", "admin,root", ["admin", "root"]),
        ("security.cognito.adminGroups", "", []),
        ("security.cognito.adminGroups", " admin , root ,", ["admin", "root"]),
        ("security.cognito.adminGroups", ",,", []),
        ("ckpt.ckptFiles", "", []),
        ("ckpt.ckptFiles", "/a,/b", ["/a", "/b"]),
        ("ckpt.IRMapScanPaths", "/opt", ["/opt"]),
    ],
)
def test_kv_list_values(
    http: httpx.Client, path: str, text: str, expected: list[str]
) -> None:
    set_value(http, path, "x,y,z")
    response = put_kv(http, {path: text})
    assert response.status_code == 200, response.text
    assert get_value(http, path) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("owner:name,team:engineer", {"owner": "name", "team": "engineer"}),
        ("url:http://host:8080/x", {"url": "http://host:8080/x"}),
        ("", {}),
        ("team:ops", {"team": "ops"}),
        (" owner : name , team:ops,", {"owner": "name", "team": "ops"}),
        ("owner:", {"owner": ""}),
    ],
)
def test_kv_map_values(http: httpx.Client, text: str, expected: dict[str, str]) -> None:
    set_value(http, "job.customTags", "old:1,other:2")
    response = put_kv(http, {"job.customTags": text})
    assert response.status_code == 200, response.text
    assert get_value(http, "job.customTags") == expected


@pytest.mark.parametrize("text", ["owner", ":name", "a:1,a:2", "a:1,b", " :x"])
def test_kv_map_rejects(http: httpx.Client, text: str) -> None:
    set_value(http, "job.customTags", "team:ops")
    response = put_kv(http, {"job.customTags": text})
    assert_error(response, 400, "job.customTags")
    assert get_value(http, "job.customTags") == {"team": "ops"}


def test_kv_map_replaces_old_map(http: httpx.Client) -> None:
    set_value(http, "job.customTags", "owner:name,team:engineer")
    set_value(http, "job.customTags", "team:ops")
    assert get_value(http, "job.customTags") == {"team": "ops"}


# ------------------------------------------------- concurrent writers --


def put_kv_together(
    server: ServerProcess, kv_maps: list[dict[str, str]]
) -> list[httpx.Response | None]:
    """Send each configKV map from its own thread and client at the same moment."""
    barrier = threading.Barrier(len(kv_maps), timeout=10)
    responses: list[httpx.Response | None] = [None] * len(kv_maps)

    def write(index: int, client: httpx.Client) -> None:
        barrier.wait()
        responses[index] = put_kv(client, kv_maps[index])

    clients = [server.client() for _ in kv_maps]
    threads = [
        threading.Thread(target=write, args=(index, client))
        for index, client in enumerate(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for client in clients:
        client.close()
    return responses


def test_kv_concurrent_writers_keep_both(server_factory: Any) -> None:
    server = server_factory(NOW)
    for r in range(50):
        ttl = f"{r + 6}m0s"
        size = 200 + r
        ttl_response, size_response = put_kv_together(
            server, [{"node.ttl": f"{r + 6}m"}, {"job.diskSizeGB": str(size)}]
        )
        assert ttl_response is not None, f"round {r}"
        assert size_response is not None, f"round {r}"
        assert ttl_response.status_code == 200, f"round {r}"
        assert size_response.status_code == 200, f"round {r}"
        assert leaf(ttl_response.json(), "node.ttl") == ttl, f"round {r}"
        assert leaf(size_response.json(), "job.diskSizeGB") == size, f"round {r}"
        with server.client() as client:
            document = get_config(client)
        assert leaf(document, "node.ttl") == ttl, f"round {r}"
        assert leaf(document, "job.diskSizeGB") == size, f"round {r}"

    server.restart()
    with server.client() as client:
        document = get_config(client)
    assert leaf(document, "node.ttl") == "55m0s"
    assert leaf(document, "job.diskSizeGB") == 249
    stored = json.loads(config_file(server).read_text(encoding="utf-8"))
    assert leaf(stored, "node.ttl") == "55m0s"
    assert leaf(stored, "job.diskSizeGB") == 249


# --------------------------------------------- read-only keys, errors --


@pytest.mark.parametrize("path", ["id", "staticFolder"])
def test_kv_read_only_rejected(http: httpx.Client, path: str) -> None:
    before = get_value(http, path)
    response = put_kv(http, {path: "changed"})
    assert_error(response, 400, path)
    assert get_value(http, path) == before


@pytest.mark.parametrize("path", ["id", "staticFolder"])
def test_kv_read_only_same_value_rejected(http: httpx.Client, path: str) -> None:
    response = put_kv(http, {path: get_value(http, path)})
    assert_error(response, 400, path)


def test_config_id_is_uuid(http: httpx.Client) -> None:
    value = get_value(http, "id")
    assert str(uuid.UUID(value)) == value


def test_error_body_shape(http: httpx.Client) -> None:
    response = put_kv(http, {"node.ttl": "1d"})
    body = assert_error(response, 400, "node.ttl")
    assert set(body) == {"statusCode", "message", "field"}
    assert "1d" in body["message"]


@pytest.mark.parametrize(
    "kv_map",
    [
        {"node.ttl": "9m", "job.diskSizeGB": "abc"},
        {"job.diskSizeGB": "abc", "node.ttl": "9m"},
        {"node.ttl": "9m", "node.ttll": "9m"},
        {"node.ttl": "9m", "id": "x"},
        {"node.ttl": "9m", "metrics.levels": "1m:200h"},
        {"node.ttl": "9m", "log.level": "verbose"},
    ],
    ids=["bad-last", "bad-first", "unknown", "read-only", "cross-key", "enum"],
)
def test_kv_multi_key_atomic(
    http: httpx.Client, server: ServerProcess, kv_map: dict[str, str]
) -> None:
    before = snapshot(http, server)
    response = put_kv(http, kv_map)
    assert_error(response, 400)
    after = snapshot(http, server)
    assert after[0] == before[0]
    assert after[1] == before[1]


def test_kv_multi_key_applies_all(http: httpx.Client) -> None:
    response = put_kv(
        http, {"node.ttl": "9m", "job.diskSizeGB": "300", "log.level": "warn"}
    )
    assert response.status_code == 200, response.text
    document = get_config(http)
    assert leaf(document, "node.ttl") == "9m0s"
    assert leaf(document, "job.diskSizeGB") == 300
    assert leaf(document, "log.level") == "warn"


def test_kv_response_is_whole_config(http: httpx.Client) -> None:
    response = put_kv(http, {"node.ttl": "9m"})
    assert response.json() == get_config(http)


# ---------------------------------------------- restart-required keys --


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("addr", "https://0.0.0.0:9443"),
        ("security.certFile", "/tmp/other.crt"),
        ("security.keyFile", "/tmp/other.pem"),
        ("metrics.levels", "1m:168h,30m:2160h"),
    ],
)
def test_kv_restart_required_header(http: httpx.Client, path: str, text: str) -> None:
    response = put_kv(http, {path: text})
    assert response.status_code == 200, response.text
    assert response.headers["X-Restart-Required"].split(",") == [path]


def test_kv_restart_required_lists_all(http: httpx.Client) -> None:
    response = put_kv(
        http,
        {
            "addr": "https://0.0.0.0:9443",
            "security.certFile": "/tmp/other.crt",
            "metrics.levels": "1m:168h,30m:2160h",
            "node.ttl": "9m",
        },
    )
    assert response.status_code == 200, response.text
    listed = set(response.headers["X-Restart-Required"].split(","))
    assert listed == {"addr", "security.certFile", "metrics.levels"}


def test_kv_live_key_no_restart_header(http: httpx.Client) -> None:
    response = put_kv(http, {"node.ttl": "9m"})
    assert "X-Restart-Required" not in response.headers


def test_kv_unchanged_addr_no_restart_header(http: httpx.Client) -> None:
    response = put_kv(http, {"addr": get_value(http, "addr")})
    assert "X-Restart-Required" not in response.headers


def test_kv_addr_stored(http: httpx.Client) -> None:
    set_value(http, "addr", "https://0.0.0.0:9443")
    assert get_value(http, "addr") == "https://0.0.0.0:9443"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0.0.0.0:8081",
        "ftp://0.0.0.0:8081",
        "https://",
        "https://0.0.0.0:99999",
        "https://0.0.0.0:port",
        "http://[::1",
    ],
)
def test_kv_addr_rejects(http: httpx.Client, text: str) -> None:
    before = get_value(http, "addr")
    response = put_kv(http, {"addr": text})
    assert_error(response, 400, "addr")
    assert get_value(http, "addr") == before


# ------------------------------------------------------ metric levels --


def test_kv_levels_set(http: httpx.Client) -> None:
    response = put_kv(http, {"metrics.levels": "1m:168h,30m:2160h"})
    assert response.status_code == 200, response.text
    assert get_value(http, "metrics.levels") == [
        {"interval": "1m0s", "retention": "168h0m0s"},
        {"interval": "30m0s", "retention": "2160h0m0s"},
    ]


def test_kv_levels_with_raw_retention(http: httpx.Client) -> None:
    response = put_kv(
        http, {"metrics.levels": "1m:200h", "metrics.rawRetention": "200h"}
    )
    assert response.status_code == 200, response.text
    assert get_value(http, "metrics.levels") == [
        {"interval": "1m0s", "retention": "200h0m0s"}
    ]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1m",
        "1m:168h:5",
        "x:168h",
        "1m:1d",
        "2m:168h,3m:2160h",
        "1m:168h,90s:2160h",
        "30m:2160h,1m:168h",
        "1m:168h,1m:2160h",
        "1m:30s",
        "-1m:168h",
        "1m:-168h",
        "0s:168h",
        "500ms:168h",
        "1.5s:168h",
    ],
)
def test_kv_levels_rejects(http: httpx.Client, text: str) -> None:
    response = put_kv(http, {"metrics.levels": text})
    assert_error(response, 400, "metrics.levels")
    assert get_value(http, "metrics.levels") == DEFAULT_LEVELS


def test_kv_levels_finer_than_raw_rejected(http: httpx.Client) -> None:
    response = put_kv(http, {"metrics.levels": "1m:200h"})
    body = assert_error(response, 400)
    assert "metrics.rawRetention" in body["message"]
    assert get_value(http, "metrics.levels") == DEFAULT_LEVELS


def test_kv_raw_retention_under_finest_rejected(http: httpx.Client) -> None:
    response = put_kv(http, {"metrics.rawRetention": "100h"})
    assert_error(response, 400, "metrics.rawRetention")
    assert get_value(http, "metrics.rawRetention") == "168h0m0s"


def test_kv_raw_retention_equal_finest_accepted(http: httpx.Client) -> None:
    set_value(http, "metrics.rawRetention", "300h")
    set_value(http, "metrics.rawRetention", "10080m")
    assert get_value(http, "metrics.rawRetention") == "168h0m0s"


# ------------------------------------------------------ ints and enums --


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("job.diskSizeGB", "65537"),
        ("job.diskSizeGB", "99999999999999999999"),
        ("job.diskSizeGB", "18446744073709551616"),
        ("job.diskSizeGB", "9" * 5000),
        ("node.maxPerLogSizeMB", "0"),
        ("node.maxNodeLogTotalMB", "0"),
        ("log.maxSizeMB", "0"),
        ("security.limits.maxBodyMB", "0"),
        ("security.limits.maxInFlight", "0"),
        ("storage.memoryLimitMB", "1"),
        ("log.maxBackups", "9" * 30),
    ],
)
def test_kv_int_out_of_bounds(http: httpx.Client, path: str, text: str) -> None:
    before = get_value(http, path)
    response = put_kv(http, {path: text})
    assert_error(response, 400, path)
    assert get_value(http, path) == before


@pytest.mark.parametrize(
    ("path", "text", "expected"),
    [
        ("job.diskSizeGB", "0", 0),
        ("job.diskSizeGB", "65536", 65536),
        ("job.diskSizeGB", "00250", 250),
        ("node.maxPerLogSizeMB", "1", 1),
        ("log.maxBackups", "0", 0),
    ],
)
def test_kv_int_in_bounds(
    http: httpx.Client, path: str, text: str, expected: int
) -> None:
    response = put_kv(http, {path: text})
    assert response.status_code == 200, response.text
    assert get_value(http, path) == expected


ENUMS = {
    "ckpt.ckptMode": ("none", ["Iterative", "NONE", "full", "", " none"]),
    "job.retentionPolicy": ("memory", ["Time", "size", "", "time "]),
    "job.diskType": ("io2", ["GP3", "gp4", "ssd", ""]),
    "log.level": ("warn", ["warning", "DEBUG", "trace", "fatal", ""]),
}


@pytest.mark.parametrize(
    ("path", "text"),
    [(path, text) for path, (_, rejected) in ENUMS.items() for text in rejected],
)
def test_kv_enum_rejects(http: httpx.Client, path: str, text: str) -> None:
    before = get_value(http, path)
    response = put_kv(http, {path: text})
    assert_error(response, 400, path)
    assert get_value(http, path) == before


@pytest.mark.parametrize(
    ("path", "text"), [(path, accepted) for path, (accepted, _) in ENUMS.items()]
)
def test_kv_enum_accepts(http: httpx.Client, path: str, text: str) -> None:
    response = put_kv(http, {path: text})
    assert response.status_code == 200, response.text
    assert get_value(http, path) == text


SURROGATE_BODIES = {
    "kv-key": (KV, rb'{"kvMap": {"\ud800": "x"}}'),
    "kv-string": (KV, rb'{"kvMap": {"ckpt.ckptImagePath": "\ud800"}}'),
    "kv-map": (KV, rb'{"kvMap": {"job.customTags": "owner:\udfff"}}'),
    "kv-list": (KV, rb'{"kvMap": {"security.cognito.adminGroups": "admin,\ud800"}}'),
    "kv-utf8-bytes": (KV, b'{"kvMap": {"ckpt.ckptImagePath": "\xed\xa0\x80"}}'),
    "ckpt-list": (CKPT, rb'{"ckptFiles": ["\ud800"]}'),
    "ckpt-key": (CKPT, rb'{"\udc00": true}'),
    "log-string": (LOG, rb'{"fileName": "a\ud800"}'),
}


@pytest.mark.parametrize(
    ("route", "body"), SURROGATE_BODIES.values(), ids=SURROGATE_BODIES.keys()
)
def test_put_lone_surrogate_rejected(
    http: httpx.Client, server: ServerProcess, route: str, body: bytes
) -> None:
    before = snapshot(http, server)
    response = http.put(
        route, content=body, headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "body")
    assert snapshot(http, server) == before


def test_kv_surrogate_pair_accepted(http: httpx.Client) -> None:
    body = rb'{"kvMap": {"ckpt.ckptImagePath": "/ckpt/\ud83d\ude00"}}'
    response = http.put(KV, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert get_value(http, "ckpt.ckptImagePath") == "/ckpt/\U0001f600"


# -------------------------------------------------------- ckptConfig --


CKPT_KEYS = {
    "ckptMode",
    "ckptImagePath",
    "ckptInterval",
    "ckptFiles",
    "IRMapScanPaths",
    "ckptOnSigTerm",
    "diagnosisMode",
    "rootFSDiff",
    "cloudWatchMode",
    "tcpClose",
}


def test_ckpt_partial_update(http: httpx.Client) -> None:
    before = get_value(http, "ckpt")
    response = http.put(CKPT, json={"ckptInterval": "90m", "ckptOnSigTerm": True})
    assert response.status_code == 200, response.text
    expected = {**before, "ckptInterval": "1h30m0s", "ckptOnSigTerm": True}
    assert response.json() == expected
    assert get_value(http, "ckpt") == expected


def test_ckpt_answers_ckpt_section(http: httpx.Client) -> None:
    response = http.put(CKPT, json={"tcpClose": True})
    assert set(response.json()) == CKPT_KEYS


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"ckptFiles": ["/a", "/b"]}, {"ckptFiles": ["/a", "/b"]}),
        ({"IRMapScanPaths": []}, {"IRMapScanPaths": []}),
        ({"ckptMode": "none"}, {"ckptMode": "none"}),
        ({"diagnosisMode": False}, {"diagnosisMode": False}),
        ({"ckptImagePath": "/ckpt"}, {"ckptImagePath": "/ckpt"}),
        ({"ckptInterval": "1s"}, {"ckptInterval": "1s"}),
    ],
)
def test_ckpt_typed_values(
    http: httpx.Client, body: dict[str, Any], expected: dict[str, Any]
) -> None:
    response = http.put(CKPT, json=body)
    assert response.status_code == 200, response.text
    ckpt = get_value(http, "ckpt")
    for name, value in expected.items():
        assert ckpt[name] == value


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ckptInterval": 3600}, "ckpt.ckptInterval"),
        ({"ckptInterval": "1h", "ckptOnSigTerm": "true"}, "ckpt.ckptOnSigTerm"),
        ({"ckptInterval": "-1m"}, "ckpt.ckptInterval"),
        ({"ckptInterval": "500ms"}, "ckpt.ckptInterval"),
        ({"ckptInterval": "1d"}, "ckpt.ckptInterval"),
        ({"ckptInterval": None}, "ckpt.ckptInterval"),
        ({"ckptOnSigTerm": "true"}, "ckpt.ckptOnSigTerm"),
        ({"ckptOnSigTerm": 1}, "ckpt.ckptOnSigTerm"),
        ({"ckptFiles": "a,b"}, "ckpt.ckptFiles"),
        ({"ckptFiles": ["a", 1]}, "ckpt.ckptFiles"),
        ({"ckptMode": "full"}, "ckpt.ckptMode"),
        ({"ckptMode": None}, "ckpt.ckptMode"),
        ({"ckptImagePath": 5}, "ckpt.ckptImagePath"),
    ],
)
def test_ckpt_rejects(
    http: httpx.Client, server: ServerProcess, body: dict[str, Any], field: str
) -> None:
    before = snapshot(http, server)
    response = http.put(CKPT, json=body)
    assert_error(response, 400, field)
    assert snapshot(http, server) == before


@pytest.mark.parametrize(
    "body",
    [{"ckptImagePath": "/x", "unknownKey": 1}, {"ttl": "5m"}, {"CKPTMODE": "none"}],
)
def test_ckpt_unknown_key_rejected(
    http: httpx.Client, server: ServerProcess, body: dict[str, Any]
) -> None:
    name = list(body)[-1]
    before = snapshot(http, server)
    response = http.put(CKPT, json=body)
    assert_error(response, 400, f"ckpt.{name}", named=name)
    assert snapshot(http, server) == before


# -------------------------------------------------------- log config --

LOG_DEFAULT = {"level": "info", "maxSizeMB": 10, "maxBackups": 10, "fileName": "mmab"}


def test_log_config_defaults(http: httpx.Client) -> None:
    response = http.get(LOG)
    assert response.status_code == 200
    assert response.json() == LOG_DEFAULT


def test_log_config_set_level(http: httpx.Client) -> None:
    response = http.put(LOG, json={"level": "debug"})
    assert response.status_code == 200, response.text
    assert response.json() == {**LOG_DEFAULT, "level": "debug"}
    assert http.get(LOG).json() == {**LOG_DEFAULT, "level": "debug"}
    assert get_value(http, "log.level") == "debug"


@pytest.mark.parametrize(
    "body",
    [
        {"maxSizeMB": 1},
        {"maxBackups": 0},
        {"maxBackups": 3, "maxSizeMB": 50},
        {"fileName": "srv_1-a"},
        {"fileName": "9lives"},
        {"level": "error"},
    ],
)
def test_log_config_accepts(http: httpx.Client, body: dict[str, Any]) -> None:
    response = http.put(LOG, json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {**LOG_DEFAULT, **body}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"maxSizeMB": 0}, "log.maxSizeMB"),
        ({"maxSizeMB": "10"}, "log.maxSizeMB"),
        ({"maxSizeMB": 1.5}, "log.maxSizeMB"),
        ({"maxSizeMB": True}, "log.maxSizeMB"),
        ({"maxSizeMB": 10**30}, "log.maxSizeMB"),
        ({"maxBackups": -1}, "log.maxBackups"),
        ({"maxBackups": None}, "log.maxBackups"),
        ({"fileName": "../x"}, "log.fileName"),
        ({"fileName": ""}, "log.fileName"),
        ({"fileName": "-x"}, "log.fileName"),
        ({"fileName": "_x"}, "log.fileName"),
        ({"fileName": "a b"}, "log.fileName"),
        ({"fileName": "a.log"}, "log.fileName"),
        ({"fileName": "a/b"}, "log.fileName"),
        ({"fileName": 5}, "log.fileName"),
        ({"level": "trace"}, "log.level"),
        ({"level": "DEBUG"}, "log.level"),
    ],
)
def test_log_config_rejects(
    http: httpx.Client, server: ServerProcess, body: dict[str, Any], field: str
) -> None:
    before = snapshot(http, server)
    response = http.put(LOG, json=body)
    assert_error(response, 400, field)
    assert http.get(LOG).json() == LOG_DEFAULT
    assert snapshot(http, server) == before


def test_log_config_unknown_key_rejected(
    http: httpx.Client, server: ServerProcess
) -> None:
    before = snapshot(http, server)
    response = http.put(LOG, json={"level": "debug", "maxSize": 5})
    assert_error(response, 400, "log.maxSize", named="maxSize")
    assert snapshot(http, server) == before


def test_kv_sets_log_keys(http: httpx.Client) -> None:
    set_value(http, "log.maxBackups", "0")
    assert http.get(LOG).json()["maxBackups"] == 0


# ------------------------------------------------------- persistence --


def test_settings_persist_across_restart(server_factory: Any) -> None:
    server = server_factory(NOW)
    with server.client() as client:
        kv = {
            "node.ttl": "9m",
            "job.customTags": "team:ops,url:http://h:1/x",
            "security.cognito.adminGroups": "admin,root",
            "metrics.levels": "1m:168h,30m:2160h",
            "job.ebsPerJob": "false",
            "job.diskSizeGB": "300",
        }
        assert put_kv(client, kv).status_code == 200
        ckpt = {"ckptInterval": "90m", "ckptFiles": ["/a"], "tcpClose": True}
        assert client.put(CKPT, json=ckpt).status_code == 200
        log = {"level": "debug", "maxSizeMB": 5, "maxBackups": 0}
        assert client.put(LOG, json=log).status_code == 200
        before = get_config(client)
        log_before = client.get(LOG).json()

    server.restart()
    with server.client() as client:
        after = get_config(client)
        log_after = client.get(LOG).json()
    assert after == before
    assert log_after == log_before
    stored = json.loads(config_file(server).read_text(encoding="utf-8"))
    assert stored == before


# ------------------------------------------------------- request bodies --

PUT_ROUTES = [KV, CKPT, LOG]
BAD_BODIES = {
    "malformed": b"{",
    "truncated": b'{"kvMap": {"node.ttl": "5m"}',
    "trailing": b'{"kvMap": {}} x',
    "list": b"[]",
    "string": b'"node.ttl"',
    "number": b"1",
    "empty": b"",
    "blank": b"   ",
    "null": b"null",
    "nan": b'{"kvMap": {}, "x": NaN}',
    "huge-float": b'{"kvMap": {}, "x": 1e400}',
    "bad-utf8": b'{"kvMap": {"node.ttl": "\xff"}}',
    "deep": b"[" * 100_000,
}


@pytest.mark.parametrize("route", PUT_ROUTES)
@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_put_bad_body_is_400(
    http: httpx.Client, server: ServerProcess, route: str, body: bytes
) -> None:
    before = snapshot(http, server)
    response = http.put(
        route, content=body, headers={"content-type": "application/json"}
    )
    assert_error(response, 400)
    assert snapshot(http, server) == before


@pytest.mark.parametrize("route", PUT_ROUTES)
@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "application/xml",
    ],
)
def test_put_wrong_content_type_is_415(
    http: httpx.Client, server: ServerProcess, route: str, content_type: str
) -> None:
    bodies = {
        KV: {"kvMap": {"node.ttl": "9m"}},
        CKPT: {"tcpClose": True},
        LOG: {"level": "debug"},
    }
    before = snapshot(http, server)
    response = http.put(
        route, content=json.dumps(bodies[route]), headers={"content-type": content_type}
    )
    assert_error(response, 415)
    assert snapshot(http, server) == before


def test_put_json_with_charset_accepted(http: httpx.Client) -> None:
    response = http.put(
        KV,
        content=b'{"kvMap": {"node.ttl": "9m"}}',
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200, response.text
    assert get_value(http, "node.ttl") == "9m0s"
