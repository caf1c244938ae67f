"""Worker nodes over HTTP: registration, listing, departures, log files and path attacks."""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from mmab_metrics.nodes import CSV_COLUMNS
from mmab_metrics.timecodec import parse_time
from tests.conftest import ServerProcess

NOW = "2025-03-16T12:00:00Z"
MB = 1024 * 1024

# The spec's node object without `lastHeartbeat`, the descriptor an agent posts.
SPEC_NODE = {
    "id": "0e0c7b08-32cc-4737-a2ea-9e2a2bfc7fd1",
    "ips": ["172.31.1.234"],
    "hostName": "ip-172-31-1-234.us-west-1.compute.internal",
    "cloud": "aws",
    "arch": "x86_64",
    "cores": 2,
    "cpuModel": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
    "cpuVendor": "GenuineIntel",
    "memoryInMB": 7638,
    "instance": {
        "zone": "us-west-1a",
        "instanceId": "i-044f3323bfd228fd6",
        "instanceType": "m6i.large",
        "region": "us-west-1",
        "createTime": "2025-03-11T23:05:22Z",
        "payType": "Spot",
    },
}

EMPTY_INSTANCE = {
    "zone": "",
    "instanceId": "",
    "instanceType": "",
    "region": "",
    "createTime": "",
    "payType": "",
}


def node(node_id: str, **fields: object) -> dict:
    """Return the spec's descriptor under another id, with `fields` replaced."""
    return {**json.loads(json.dumps(SPEC_NODE)), "id": node_id, **fields}


def listed(client: httpx.Client, node_id: str, query: str = "") -> dict | None:
    rows = [
        row for row in client.get(f"/api/v1/node{query}").json() if row["id"] == node_id
    ]
    assert len(rows) <= 1
    return rows[0] if rows else None


def raw_request(
    server: ServerProcess, method: str, target: str, body: bytes | None = None
) -> tuple[int, bytes]:
    """Send `target` byte for byte: http.client neither decodes nor normalises it."""
    url = urlsplit(server.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        connection.request(method, target, body=body, headers=server.tokens())
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def data_tree(root: Path) -> dict[str, object]:
    """Map every path under the data directory, except logs and the database, to its content."""
    entries: dict[str, object] = {}
    for directory, dirs, files in os.walk(root):
        here = Path(directory)
        if here == root:
            dirs[:] = [name for name in dirs if name != "logs"]
        for name in dirs + files:
            path = here / name
            relative = path.relative_to(root).as_posix()
            if relative.startswith("mmab.duckdb"):
                continue
            if path.is_symlink():
                entries[relative] = ("symlink", os.readlink(path))
            elif path.is_dir():
                entries[relative] = ("dir",)
            else:
                entries[relative] = path.read_bytes()
    return entries


@pytest.fixture(scope="module")
def nodes_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("nodes"), now=NOW).start()
    yield server
    server.stop()


@pytest.fixture
def client(nodes_server: ServerProcess) -> Iterator[httpx.Client]:
    with nodes_server.client() as http:
        yield http


# Registration


def test_register_returns_config_sections(client):
    response = client.post("/api/v1/node", json=node("reg-1"))
    config = client.get("/api/v1/config").json()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"node": config["node"], "ckpt": config["ckpt"]}


def test_register_spec_node_round_trip(client):
    assert client.post("/api/v1/node", json=SPEC_NODE).status_code == 200
    row = listed(client, SPEC_NODE["id"])
    assert row == {**SPEC_NODE, "lastHeartbeat": NOW}


def test_list_is_bare_json_list(client):
    client.post("/api/v1/node", json=node("bare-1"))
    response = client.get("/api/v1/node")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert isinstance(response.json(), list)
    assert response.headers["x-total-count"] == str(len(response.json()))


def test_posted_last_heartbeat_ignored(client):
    body = node("hb-ignored", lastHeartbeat="2000-01-01T00:00:00Z")
    assert client.post("/api/v1/node", json=body).status_code == 200
    assert listed(client, "hb-ignored")["lastHeartbeat"] == NOW


def test_posted_finished_at_ignored(client):
    body = node("fa-ignored", finishedAt="2000-01-01T00:00:00Z")
    assert client.post("/api/v1/node", json=body).status_code == 200
    assert "finishedAt" not in listed(client, "fa-ignored")


def test_missing_fields_empty_forms(client):
    assert client.post("/api/v1/node", json={"id": "bare-id"}).status_code == 200
    assert listed(client, "bare-id") == {
        "id": "bare-id",
        "ips": [],
        "hostName": "",
        "cloud": "",
        "arch": "",
        "cores": 0,
        "cpuModel": "",
        "cpuVendor": "",
        "memoryInMB": 0,
        "instance": EMPTY_INSTANCE,
        "lastHeartbeat": NOW,
    }


def test_null_fields_empty_forms(client):
    # A Go agent sends a nil slice or pointer as null.
    body = {
        "id": "null-fields",
        "ips": None,
        "hostName": None,
        "cores": None,
        "memoryInMB": None,
        "instance": None,
    }
    assert client.post("/api/v1/node", json=body).status_code == 200
    row = listed(client, "null-fields")
    assert row["ips"] == []
    assert row["hostName"] == ""
    assert row["cores"] == 0
    assert row["memoryInMB"] == 0
    assert row["instance"] == EMPTY_INSTANCE


def test_partial_instance_empty_forms(client):
    body = {"id": "part-inst", "instance": {"zone": "us-west-1a", "payType": None}}
    assert client.post("/api/v1/node", json=body).status_code == 200
    assert listed(client, "part-inst")["instance"] == {
        **EMPTY_INSTANCE,
        "zone": "us-west-1a",
    }


def null_paths(value: object, path: str = "") -> list[str]:
    """Return the JSON paths under `value` whose value is null."""
    if value is None:
        return [path]
    if isinstance(value, dict):
        return [
            p for key, item in value.items() for p in null_paths(item, f"{path}.{key}")
        ]
    if isinstance(value, list):
        return [
            p for i, item in enumerate(value) for p in null_paths(item, f"{path}[{i}]")
        ]
    return []


def test_no_null_in_list(client):
    client.post("/api/v1/node", json={"id": "no-null"})
    assert null_paths(client.get("/api/v1/node").json()) == []


def test_create_time_offset_to_utc(client):
    instance = {**SPEC_NODE["instance"], "createTime": "2025-03-12T01:05:22.5+02:00"}
    assert (
        client.post("/api/v1/node", json=node("ct-utc", instance=instance)).status_code
        == 200
    )
    created = listed(client, "ct-utc")["instance"]["createTime"]
    assert created == "2025-03-11T23:05:22.5Z"


def test_extra_fields_kept(client):
    body = node("extra-1", agentVersion="1.4.2", labels={"team": "hpc"})
    assert client.post("/api/v1/node", json=body).status_code == 200
    row = listed(client, "extra-1")
    assert row["agentVersion"] == "1.4.2"
    assert row["labels"] == {"team": "hpc"}


def test_id_of_128_chars_accepted(client):
    node_id = "n" * 128
    assert client.post("/api/v1/node", json={"id": node_id}).status_code == 200
    assert listed(client, node_id) is not None


# Each case is a body and the field its error must name. The ids are
# otherwise valid, so a descriptor stored by mistake would show up under them.
INVALID_DESCRIPTORS = [
    ({"hostName": "h"}, "id"),
    ({"id": ""}, "id"),
    ({"id": None}, "id"),
    ({"id": 7}, "id"),
    ({"id": "-leading-dash"}, "id"),
    ({"id": ".hidden"}, "id"),
    ({"id": "a" * 129}, "id"),
    ({"id": "a/b"}, "id"),
    ({"id": "a b"}, "id"),
    ({"id": "nöde"}, "id"),
    ({"id": "bad-ips-str", "ips": "172.31.1.234"}, "ips"),
    ({"id": "bad-ips-int", "ips": [1]}, "ips"),
    ({"id": "bad-host", "hostName": 5}, "hostName"),
    ({"id": "bad-cloud", "cloud": ["aws"]}, "cloud"),
    ({"id": "bad-arch", "arch": True}, "arch"),
    ({"id": "bad-cores-str", "cores": "2"}, "cores"),
    ({"id": "bad-cores-neg", "cores": -1}, "cores"),
    ({"id": "bad-cores-float", "cores": 2.5}, "cores"),
    ({"id": "bad-cores-bool", "cores": True}, "cores"),
    ({"id": "bad-model", "cpuModel": 1}, "cpuModel"),
    ({"id": "bad-vendor", "cpuVendor": {}}, "cpuVendor"),
    ({"id": "bad-mem", "memoryInMB": "7638"}, "memoryInMB"),
    ({"id": "bad-inst", "instance": "m6i.large"}, "instance"),
    ({"id": "bad-inst-list", "instance": []}, "instance"),
    ({"id": "bad-zone", "instance": {"zone": 1}}, "instance.zone"),
    ({"id": "bad-pay", "instance": {"payType": False}}, "instance.payType"),
    ({"id": "bad-ct", "instance": {"createTime": "yesterday"}}, "instance.createTime"),
    (
        {"id": "bad-ct-date", "instance": {"createTime": "2025-03-11"}},
        "instance.createTime",
    ),
    (
        {"id": "bad-ct-zero", "instance": {"createTime": "0001-01-01T00:00:00Z"}},
        "instance.createTime",
    ),
]


@pytest.mark.parametrize(("body", "field"), INVALID_DESCRIPTORS)
def test_invalid_descriptor_rejected(client, body, field):
    total = client.get("/api/v1/node").headers["x-total-count"]
    response = client.post("/api/v1/node", json=body)
    assert response.status_code == 400
    assert response.json()["statusCode"] == 400
    assert response.json()["field"] == field
    assert field in response.json()["message"]
    assert client.get("/api/v1/node").headers["x-total-count"] == total
    if isinstance(body.get("id"), str):
        assert listed(client, body["id"]) is None
        assert listed(client, body["id"], "?finished=true") is None


@pytest.mark.parametrize(
    "content",
    [b"[]", b'"i-aaaa"', b"null", b"42", b'{"id": "half-', b"{bad}", b"", b"   "],
    ids=[
        "list",
        "string",
        "null",
        "number",
        "truncated",
        "malformed",
        "empty",
        "blank",
    ],
)
def test_invalid_body_rejected(client, content):
    total = client.get("/api/v1/node").headers["x-total-count"]
    response = client.post(
        "/api/v1/node", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["field"] == "body"
    assert client.get("/api/v1/node").headers["x-total-count"] == total
    assert listed(client, "half-") is None


def test_wrong_content_type_415(client):
    response = client.post(
        "/api/v1/node",
        content=json.dumps({"id": "ct-text"}),
        headers={"content-type": "text/plain"},
    )
    assert response.status_code == 415
    assert response.json()["statusCode"] == 415
    assert listed(client, "ct-text") is None


# Departures


def test_delete_finishes_node_at_once(client):
    client.post("/api/v1/node", json=node("leave-1"))
    response = client.delete("/api/v1/node/leave-1")
    assert response.status_code == 204
    assert response.content == b""
    assert listed(client, "leave-1") is None
    assert listed(client, "leave-1", "?finished=true")["finishedAt"] == NOW


def test_finished_row_keeps_descriptor(client):
    client.post("/api/v1/node", json=node("leave-2"))
    client.delete("/api/v1/node/leave-2")
    row = listed(client, "leave-2", "?finished=true")
    assert row == {**node("leave-2"), "lastHeartbeat": NOW, "finishedAt": NOW}


def test_delete_unknown_node_404(client):
    response = client.delete("/api/v1/node/i-never-registered")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["statusCode"] == 404
    assert "i-never-registered" in response.json()["message"]


def test_delete_invalid_id_404(client):
    response = client.delete("/api/v1/node/-bad")
    assert response.status_code == 404
    assert response.json()["statusCode"] == 404


def test_delete_finished_node_again(client):
    client.post("/api/v1/node", json=node("leave-twice"))
    client.delete("/api/v1/node/leave-twice")
    assert client.delete("/api/v1/node/leave-twice").status_code == 204
    assert listed(client, "leave-twice", "?finished=true")["finishedAt"] == NOW


def test_reregister_finished_node_live(client):
    client.post("/api/v1/node", json=node("back-1"))
    client.delete("/api/v1/node/back-1")
    assert client.post("/api/v1/node", json=node("back-1")).status_code == 200
    assert listed(client, "back-1") == {**node("back-1"), "lastHeartbeat": NOW}
    assert listed(client, "back-1", "?finished=true") is None


def test_reregister_updates_descriptor(client):
    client.post("/api/v1/node", json=node("redesc", cores=2))
    client.post("/api/v1/node", json=node("redesc", cores=8, ips=[]))
    row = listed(client, "redesc")
    assert row["cores"] == 8
    assert row["ips"] == []


# Listing: a server of its own, so that it contains exactly these nodes.

FLEET_LIVE = ["n-01", "n-02", "n-03"]
FLEET_FINISHED = ["n-04", "n-05"]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    server = ServerProcess(tmp_path_factory.mktemp("fleet"), now=NOW).start()
    with server.client() as http:
        for node_id in ["n-03", "n-05", "n-01", "n-04", "n-02"]:
            ips = ["10.0.0.5", "10.0.1.5"] if node_id == "n-05" else ["10.0.0.4"]
            assert (
                http.post("/api/v1/node", json=node(node_id, ips=ips)).status_code
                == 200
            )
        for node_id in ["n-05", "n-04"]:
            assert http.delete(f"/api/v1/node/{node_id}").status_code == 204
        yield http
    server.stop()


def ids(response: httpx.Response) -> list[str]:
    return [row["id"] for row in response.json()]


def test_list_sorted_by_id(fleet):
    assert ids(fleet.get("/api/v1/node")) == FLEET_LIVE


def test_list_total_count(fleet):
    assert fleet.get("/api/v1/node").headers["x-total-count"] == "3"


def test_list_rows_have_heartbeat(fleet):
    for row in fleet.get("/api/v1/node").json():
        assert row["lastHeartbeat"] == NOW
        assert "finishedAt" not in row


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("limit=2", ["n-01", "n-02"]),
        ("limit=2&offset=2", ["n-03"]),
        ("offset=1", ["n-02", "n-03"]),
        ("offset=1&limit=1", ["n-02"]),
        ("offset=3", []),
        ("offset=99", []),
        ("limit=0", []),
        ("limit=99", FLEET_LIVE),
    ],
)
def test_list_limit_offset(fleet, query, expected):
    response = fleet.get(f"/api/v1/node?{query}")
    assert response.status_code == 200
    assert ids(response) == expected
    assert response.headers["x-total-count"] == "3"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=-1", "limit"),
        ("limit=two", "limit"),
        ("limit=1.5", "limit"),
        ("limit=", "limit"),
        ("offset=-1", "offset"),
        ("offset=x", "offset"),
        ("limit=1&limit=2", "limit"),
    ],
)
def test_list_bad_paging_400(fleet, query, field):
    response = fleet.get(f"/api/v1/node?{query}")
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_finished_list(fleet):
    response = fleet.get("/api/v1/node?finished=true")
    assert response.status_code == 200
    assert ids(response) == FLEET_FINISHED
    assert response.headers["x-total-count"] == "2"


def test_finished_rows_have_finished_at(fleet):
    for row in fleet.get("/api/v1/node?finished=true").json():
        assert row["finishedAt"] == NOW
        assert row["lastHeartbeat"] == NOW


def test_finished_false_lists_live(fleet):
    assert ids(fleet.get("/api/v1/node?finished=false")) == FLEET_LIVE


def test_finished_paging(fleet):
    response = fleet.get("/api/v1/node?finished=true&offset=1&limit=5")
    assert ids(response) == ["n-05"]
    assert response.headers["x-total-count"] == "2"


def test_finished_csv_content_type(fleet):
    response = fleet.get("/api/v1/node?finished=true&format=csv")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"


def test_finished_csv_header(fleet):
    text = fleet.get("/api/v1/node?finished=true&format=csv").text
    header = next(csv.reader(io.StringIO(text)))
    assert header == [
        "id",
        "hostName",
        "ips",
        "cloud",
        "arch",
        "cores",
        "cpuModel",
        "cpuVendor",
        "memoryInMB",
        "instance.zone",
        "instance.instanceId",
        "instance.instanceType",
        "instance.region",
        "instance.createTime",
        "instance.payType",
        "lastHeartbeat",
        "finishedAt",
    ]
    assert tuple(header) == CSV_COLUMNS


def test_finished_csv_one_row_per_node(fleet):
    text = fleet.get("/api/v1/node?finished=true&format=csv").text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["id"] for row in rows] == FLEET_FINISHED


def test_finished_csv_values(fleet):
    text = fleet.get("/api/v1/node?finished=true&format=csv").text
    row = list(csv.DictReader(io.StringIO(text)))[1]
    instance = SPEC_NODE["instance"]
    assert row == {
        "id": "n-05",
        "hostName": SPEC_NODE["hostName"],
        "ips": "10.0.0.5 10.0.1.5",
        "cloud": "aws",
        "arch": "x86_64",
        "cores": "2",
        "cpuModel": SPEC_NODE["cpuModel"],
        "cpuVendor": "GenuineIntel",
        "memoryInMB": "7638",
        "instance.zone": instance["zone"],
        "instance.instanceId": instance["instanceId"],
        "instance.instanceType": instance["instanceType"],
        "instance.region": instance["region"],
        "instance.createTime": instance["createTime"],
        "instance.payType": instance["payType"],
        "lastHeartbeat": NOW,
        "finishedAt": NOW,
    }


def test_finished_csv_total_count(fleet):
    response = fleet.get("/api/v1/node?finished=true&format=csv")
    assert response.headers["x-total-count"] == "2"


def test_format_json_explicit(fleet):
    assert ids(fleet.get("/api/v1/node?finished=true&format=json")) == FLEET_FINISHED


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("finished=yes", "finished"),
        ("finished=TRUEISH", "finished"),
        ("finished=true&finished=false", "finished"),
        ("finished=true&format=xml", "format"),
        ("finished=true&format=CSVX", "format"),
        ("format=csv", "format"),
        ("finished=false&format=csv", "format"),
    ],
)
def test_bad_list_query_400(fleet, query, field):
    response = fleet.get(f"/api/v1/node?{query}")
    assert response.status_code == 400
    assert response.json()["statusCode"] == 400
    assert response.json()["field"] == field


# Node files


def upload(client: httpx.Client, node_id: str, path: str, data: bytes, *, append=False):
    method = client.post if append else client.put
    return method(f"/nodes/{node_id}/{path}", content=data)


@pytest.fixture(scope="module")
def file_node(nodes_server: ServerProcess) -> str:
    with nodes_server.client() as http:
        assert http.post("/api/v1/node", json=node("i-files")).status_code == 200
    return "i-files"


def test_put_returns_204(client, file_node):
    response = upload(client, file_node, "put-204.log", b"x")
    assert response.status_code == 204
    assert response.content == b""


def test_post_returns_204(client, file_node):
    response = upload(client, file_node, "post-204.log", b"x", append=True)
    assert response.status_code == 204
    assert response.content == b""


def test_get_returns_bytes(client, file_node):
    data = bytes(range(256)) * 4
    upload(client, file_node, "var/log/binary.log", data)
    response = client.get(f"/nodes/{file_node}/var/log/binary.log")
    assert response.status_code == 200
    assert response.content == data


def test_put_replaces(client, file_node):
    upload(client, file_node, "replace.log", b"first version\n")
    upload(client, file_node, "replace.log", b"second\n")
    assert client.get(f"/nodes/{file_node}/replace.log").content == b"second\n"


def test_put_empty_body(client, file_node):
    upload(client, file_node, "emptied.log", b"old\n")
    assert upload(client, file_node, "emptied.log", b"").status_code == 204
    assert client.get(f"/nodes/{file_node}/emptied.log").content == b""


def test_post_appends(client, file_node):
    upload(client, file_node, "append.log", b"one\n", append=True)
    upload(client, file_node, "append.log", b"two\n", append=True)
    assert client.get(f"/nodes/{file_node}/append.log").content == b"one\ntwo\n"


def test_post_after_put_appends(client, file_node):
    upload(client, file_node, "mixed.log", b"base\n")
    upload(client, file_node, "mixed.log", b"more\n", append=True)
    assert client.get(f"/nodes/{file_node}/mixed.log").content == b"base\nmore\n"


def test_file_listing(client):
    client.post("/api/v1/node", json=node("i-list"))
    for path in [
        "var/log/memverge/pagent.log",
        "var/log/cloud-init-output.log",
        "a.log",
    ]:
        assert upload(client, "i-list", path, b"line\n").status_code == 204
    response = client.get("/api/v1/nodes/i-list/files")
    assert response.status_code == 200
    assert response.json() == [
        "/nodes/i-list/a.log",
        "/nodes/i-list/var/log/cloud-init-output.log",
        "/nodes/i-list/var/log/memverge/pagent.log",
    ]


def test_listed_paths_are_readable(client):
    client.post("/api/v1/node", json=node("i-readable"))
    upload(client, "i-readable", "var/log/memverge/mmrunc.log", b"mmrunc\n")
    for path in client.get("/api/v1/nodes/i-readable/files").json():
        assert client.get(path).content == b"mmrunc\n"


def test_file_listing_empty(client):
    client.post("/api/v1/node", json=node("i-no-files"))
    response = client.get("/api/v1/nodes/i-no-files/files")
    assert response.status_code == 200
    assert response.json() == []


def test_finished_node_files_listed(client):
    client.post("/api/v1/node", json=node("i-gone-files"))
    upload(client, "i-gone-files", "kept.log", b"kept\n")
    client.delete("/api/v1/node/i-gone-files")
    assert client.get("/api/v1/nodes/i-gone-files/files").json() == [
        "/nodes/i-gone-files/kept.log"
    ]
    assert client.get("/nodes/i-gone-files/kept.log").content == b"kept\n"


@pytest.mark.parametrize("append", [False, True], ids=["put", "post"])
def test_write_unregistered_node_404(client, nodes_server, append):
    response = upload(client, "i-unregistered", "x.log", b"data", append=append)
    assert response.status_code == 404
    assert response.json()["statusCode"] == 404
    assert not (nodes_server.data_dir / "nodes" / "i-unregistered").exists()


def test_files_of_unknown_node_404(client):
    response = client.get("/api/v1/nodes/i-zzzz/files")
    assert response.status_code == 404
    assert response.json()["statusCode"] == 404
    assert "i-zzzz" in response.json()["message"]


def test_file_of_unknown_node_404(client):
    response = client.get("/nodes/i-zzzz/var/log/cloud-init-output.log")
    assert response.status_code == 404
    assert response.json()["statusCode"] == 404


def test_missing_file_404(client, file_node):
    response = client.get(f"/nodes/{file_node}/never-uploaded.log")
    assert response.status_code == 404
    assert response.json()["statusCode"] == 404


def test_folder_read_404(client, file_node):
    upload(client, file_node, "folder/inner.log", b"inner\n")
    response = client.get(f"/nodes/{file_node}/folder")
    assert response.status_code == 404
    assert response.json()["statusCode"] == 404


@pytest.mark.parametrize("append", [False, True], ids=["put", "post"])
def test_write_over_folder_409(client, file_node, append):
    upload(client, file_node, "dir409/inner.log", b"inner\n")
    response = upload(client, file_node, "dir409", b"data", append=append)
    assert response.status_code == 409
    assert response.json()["field"] == "filePath"
    assert client.get(f"/nodes/{file_node}/dir409/inner.log").content == b"inner\n"


@pytest.mark.parametrize("append", [False, True], ids=["put", "post"])
def test_write_below_file_409(client, file_node, append):
    upload(client, file_node, "plain409.log", b"plain\n")
    response = upload(client, file_node, "plain409.log/inner.log", b"x", append=append)
    assert response.status_code == 409
    assert client.get(f"/nodes/{file_node}/plain409.log").content == b"plain\n"


def test_longest_segment_accepted(client, file_node):
    name = "s" * 255
    assert upload(client, file_node, name, b"long\n").status_code == 204
    assert client.get(f"/nodes/{file_node}/{name}").content == b"long\n"


def test_percent_encoded_name_char(client, file_node):
    upload(client, file_node, "encoded.log", b"encoded\n")
    assert client.get(f"/nodes/{file_node}/encoded%2Elog").content == b"encoded\n"


# Path attacks: a node `i-aaaa` with two files, and `secret.txt` next to `nodes/`.

ATTACKS = [
    "/nodes/i-aaaa/../../secret.txt",
    "/nodes/i-aaaa/../i-aaaa/cloud-init-output.log",
    "/nodes/i-aaaa/memverge/../cloud-init-output.log",
    "/nodes/i-aaaa/./cloud-init-output.log",
    "/nodes/i-aaaa/..%2f..%2fsecret.txt",
    "/nodes/i-aaaa/..%2F..%2Fsecret.txt",
    "/nodes/i-aaaa/%2e%2e/%2e%2e/secret.txt",
    "/nodes/i-aaaa/%2E%2E/%2E%2E/secret.txt",
    "/nodes/i-aaaa/%2e%2e%2f%2e%2e%2fsecret.txt",
    "/nodes/i-aaaa/..%5c..%5csecret.txt",
    "/nodes/i-aaaa/%2e%2e%5c%2e%2e%5csecret.txt",
    "/nodes/i-aaaa/..%255c..%255csecret.txt",
    "/nodes/i-aaaa/..%252f..%252fsecret.txt",
    "/nodes/i-aaaa/%c0%ae%c0%ae/%c0%ae%c0%ae/secret.txt",
    "/nodes/i-aaaa/{P_ENCODED}",
    "/nodes/i-aaaa/{P}",
    "/nodes/i-aaaa/%2F..%2F..%2Fsecret.txt",
    "/nodes/i-aaaa/pagent.log%00.txt",
    "/nodes/i-aaaa/memverge/pagent.log%00",
    "/nodes/i-aaaa/memverge%2fpagent.log",
    "/nodes/i-aaaa%2Fmemverge/pagent.log",
    "/nodes/i-aaaa//cloud-init-output.log",
    "/nodes/i-aaaa/memverge//pagent.log",
    "/nodes/i-aaaa/cloud-init-output.log/",
    "/nodes//i-aaaa/cloud-init-output.log",
    "/nodes/..%2F..%2Fsecret.txt/x",
    "/nodes/%2e%2e/secret.txt",
    "/nodes/../secret.txt",
    "/api/v1/nodes/..%2F../files",
    "/api/v1/nodes/..%2F..%2F/files",
    "/api/v1/nodes/%2e%2e/files",
]


@pytest.fixture(scope="module")
def attack_target(nodes_server: ServerProcess) -> dict[str, str]:
    """Register `i-aaaa` with its two files and plant `secret.txt`; return the path forms."""
    with nodes_server.client() as http:
        assert http.post("/api/v1/node", json=node("i-aaaa")).status_code == 200
        assert (
            upload(http, "i-aaaa", "cloud-init-output.log", b"cloud-init\n").status_code
            == 204
        )
        assert (
            upload(http, "i-aaaa", "memverge/pagent.log", b"pagent\n").status_code
            == 204
        )
    secret = nodes_server.data_dir / "secret.txt"
    secret.write_bytes(b"SECRET-1\n")
    absolute = str(secret.resolve())
    return {"P": absolute, "P_ENCODED": absolute.replace("/", "%2F")}


def test_genuine_files_served(nodes_server, attack_target):
    assert raw_request(nodes_server, "GET", "/nodes/i-aaaa/cloud-init-output.log") == (
        200,
        b"cloud-init\n",
    )
    assert raw_request(nodes_server, "GET", "/nodes/i-aaaa/memverge/pagent.log") == (
        200,
        b"pagent\n",
    )


def test_attack_target_listing(client, attack_target):
    assert client.get("/api/v1/nodes/i-aaaa/files").json() == [
        "/nodes/i-aaaa/cloud-init-output.log",
        "/nodes/i-aaaa/memverge/pagent.log",
    ]


@pytest.mark.parametrize("template", ATTACKS)
def test_attack_read_404(nodes_server, attack_target, template):
    status, body = raw_request(nodes_server, "GET", template.format(**attack_target))
    assert status == 404
    assert b"SECRET-1" not in body
    assert json.loads(body)["statusCode"] == 404


# `/api/v1/nodes/%2e%2e/files` names the listing route, where PUT and POST are 405.
WRITE_ATTACKS = [target for target in ATTACKS if target != "/api/v1/nodes/%2e%2e/files"]


@pytest.mark.parametrize("method", ["PUT", "POST"])
@pytest.mark.parametrize("template", WRITE_ATTACKS)
def test_attack_write_404(nodes_server, attack_target, template, method):
    before = data_tree(nodes_server.data_dir)
    target = template.format(**attack_target)
    status, body = raw_request(nodes_server, method, target, b"SECRET-2 overwritten\n")
    assert status == 404
    assert b"SECRET-1" not in body
    assert data_tree(nodes_server.data_dir) == before
    assert (nodes_server.data_dir / "secret.txt").read_bytes() == b"SECRET-1\n"


@pytest.fixture(scope="module")
def link_node(nodes_server: ServerProcess, attack_target: dict[str, str]) -> str:
    """Register `i-link` and plant symlinks in its folder that point outside it."""
    with nodes_server.client() as http:
        assert http.post("/api/v1/node", json=node("i-link")).status_code == 200
        assert upload(http, "i-link", "real.log", b"real\n").status_code == 204
    folder = nodes_server.data_dir / "nodes" / "i-link"
    os.symlink(attack_target["P"], folder / "secret.log")
    os.symlink(nodes_server.data_dir, folder / "up")
    os.symlink("../i-aaaa", folder / "sibling")
    return "i-link"


@pytest.mark.parametrize(
    "path", ["secret.log", "up/secret.txt", "sibling/cloud-init-output.log"]
)
def test_symlink_read_404(nodes_server, link_node, path):
    status, body = raw_request(nodes_server, "GET", f"/nodes/{link_node}/{path}")
    assert status == 404
    assert b"SECRET-1" not in body
    assert b"cloud-init" not in body


@pytest.mark.parametrize("method", ["PUT", "POST"])
@pytest.mark.parametrize(
    "path",
    [
        "secret.log",
        "up/secret.txt",
        "up/planted.txt",
        "up/nodes/planted.txt",
        "sibling/x.log",
    ],
)
def test_symlink_write_404(nodes_server, link_node, method, path):
    before = data_tree(nodes_server.data_dir)
    status, _ = raw_request(
        nodes_server, method, f"/nodes/{link_node}/{path}", b"planted\n"
    )
    assert status == 404
    assert data_tree(nodes_server.data_dir) == before
    assert (nodes_server.data_dir / "secret.txt").read_bytes() == b"SECRET-1\n"


def test_symlinks_not_listed(client, link_node):
    assert client.get(f"/api/v1/nodes/{link_node}/files").json() == [
        f"/nodes/{link_node}/real.log"
    ]


LONG_PATHS = [
    "/nodes/i-aaaa/" + "a" * 300,
    "/nodes/i-aaaa/memverge/" + "b" * 256,
    "/nodes/i-aaaa/" + "/".join(["c" * 249] * 20),
]


@pytest.mark.parametrize("method", ["GET", "PUT", "POST"])
@pytest.mark.parametrize(
    "target", LONG_PATHS, ids=["segment300", "segment256", "path5000"]
)
def test_overlong_path_404(nodes_server, attack_target, method, target):
    before = data_tree(nodes_server.data_dir)
    body = None if method == "GET" else b"long\n"
    status, _ = raw_request(nodes_server, method, target, body)
    assert status == 404
    assert data_tree(nodes_server.data_dir) == before


def test_server_log_served(client, attack_target):
    response = client.get("/mmab.log")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "node registered node=i-aaaa" in response.text
    assert "SECRET-1" not in response.text


def test_server_log_is_log_file(client, nodes_server):
    text = client.get("/mmab.log").text
    on_disk = (nodes_server.data_dir / "logs" / "mmab.log").read_text()
    assert on_disk.startswith(text)


# Size caps: a server of its own, since the caps are global settings.


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("caps"), now=NOW).start()
    with server.client() as http:
        caps = {"node.maxPerLogSizeMB": "1", "node.maxNodeLogTotalMB": "2"}
        assert http.put("/api/v1/configKV", json={"kvMap": caps}).status_code == 200
    yield server
    server.stop()


@pytest.fixture
def capped_client(capped: ServerProcess) -> Iterator[httpx.Client]:
    with capped.client() as http:
        yield http


@pytest.mark.parametrize("append", [False, True], ids=["put", "post"])
def test_upload_over_file_cap_413(capped_client, append):
    capped_client.post("/api/v1/node", json=node("cap-413"))
    response = upload(
        capped_client, "cap-413", f"big-{append}.log", b"a" * (MB + 1), append=append
    )
    assert response.status_code == 413
    assert response.json()["statusCode"] == 413
    assert response.json()["limit"] == "node.maxPerLogSizeMB"
    assert "node.maxPerLogSizeMB" in response.json()["message"]
    assert capped_client.get(f"/nodes/cap-413/big-{append}.log").status_code == 404


def test_upload_over_cap_keeps_old(capped_client):
    capped_client.post("/api/v1/node", json=node("cap-keep"))
    upload(capped_client, "cap-keep", "kept.log", b"old\n")
    upload(capped_client, "cap-keep", "kept.log", b"a" * (MB + 1))
    assert capped_client.get("/nodes/cap-keep/kept.log").content == b"old\n"


def test_upload_at_file_cap_204(capped_client):
    capped_client.post("/api/v1/node", json=node("cap-exact"))
    assert upload(capped_client, "cap-exact", "exact.log", b"e" * MB).status_code == 204
    assert len(capped_client.get("/nodes/cap-exact/exact.log").content) == MB


def test_append_past_cap_keeps_newest(capped_client):
    capped_client.post("/api/v1/node", json=node("cap-tail"))
    upload(capped_client, "cap-tail", "tail.log", b"a" * MB)
    assert (
        upload(
            capped_client, "cap-tail", "tail.log", b"b" * 10, append=True
        ).status_code
        == 204
    )
    content = capped_client.get("/nodes/cap-tail/tail.log").content
    assert len(content) == MB
    assert content == (b"a" * MB + b"b" * 10)[-MB:]


def test_append_past_cap_whole_lines(capped_client):
    capped_client.post("/api/v1/node", json=node("cap-lines"))
    line = b"x" * 99 + b"\n"
    sent = b"".join(line.replace(b"x", b"%d" % (i % 10)) for i in range(12000))
    for start in range(0, len(sent), 400 * 1024):
        chunk = sent[start : start + 400 * 1024]
        assert (
            upload(
                capped_client, "cap-lines", "lines.log", chunk, append=True
            ).status_code
            == 204
        )
    content = capped_client.get("/nodes/cap-lines/lines.log").content
    assert len(content) <= MB
    assert len(content) > MB - len(line)
    assert sent.endswith(content)
    # Every line sent is whole and `sent` ends with a newline, so a suffix
    # whose length is a multiple of the line length starts at a line.
    assert len(content) % len(line) == 0


def test_node_cap_trims_oldest_modified(capped_client, capped):
    capped_client.post("/api/v1/node", json=node("cap-node"))
    upload(capped_client, "cap-node", "first.log", b"1" * MB)
    upload(capped_client, "cap-node", "second.log", b"2" * MB)
    folder = capped.data_dir / "nodes" / "cap-node"
    # `second.log`, written last, is made the oldest-modified file.
    os.utime(folder / "first.log", ns=(parse_time(NOW), parse_time(NOW)))
    os.utime(
        folder / "second.log", ns=(parse_time(NOW) - 10**9, parse_time(NOW) - 10**9)
    )
    assert upload(capped_client, "cap-node", "third.log", b"3" * 10).status_code == 204
    assert capped_client.get("/api/v1/nodes/cap-node/files").json() == [
        "/nodes/cap-node/first.log",
        "/nodes/cap-node/third.log",
    ]
    assert capped_client.get("/nodes/cap-node/first.log").content == b"1" * MB
    assert capped_client.get("/nodes/cap-node/third.log").content == b"3" * 10


def test_node_cap_at_limit_keeps_all(capped_client):
    capped_client.post("/api/v1/node", json=node("cap-full"))
    upload(capped_client, "cap-full", "a.log", b"a" * MB)
    upload(capped_client, "cap-full", "b.log", b"b" * MB)
    assert capped_client.get("/api/v1/nodes/cap-full/files").json() == [
        "/nodes/cap-full/a.log",
        "/nodes/cap-full/b.log",
    ]


def test_node_cap_is_per_node(capped_client):
    capped_client.post("/api/v1/node", json=node("cap-other"))
    capped_client.post("/api/v1/node", json=node("cap-busy"))
    upload(capped_client, "cap-other", "other.log", b"o" * MB)
    for name in ["x.log", "y.log", "z.log"]:
        upload(capped_client, "cap-busy", name, b"b" * MB)
    assert capped_client.get("/nodes/cap-other/other.log").content == b"o" * MB
    assert len(capped_client.get("/api/v1/nodes/cap-busy/files").json()) == 2


# Heartbeats against a running clock


def test_heartbeat_updates_last_heartbeat(server_factory):
    server = server_factory(NOW, frozen=False)
    with server.client() as http:
        before = parse_time(http.get("/health").json()["time"])
        http.post("/api/v1/node", json=node("hb-1"))
        first = parse_time(listed(http, "hb-1")["lastHeartbeat"])
        http.post("/api/v1/node", json=node("hb-1"))
        second = parse_time(listed(http, "hb-1")["lastHeartbeat"])
        after = parse_time(http.get("/health").json()["time"])
    assert before <= first
    assert first < second
    assert second <= after
    # The server clock started at NOW, far from this machine's own clock.
    assert after - parse_time(NOW) < 60 * 10**9


# Persistence


@pytest.fixture(scope="module")
def restarted(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dict, httpx.Client]]:
    """Record nodes and files, restart the server, and yield what was recorded."""
    server = ServerProcess(tmp_path_factory.mktemp("restart"), now=NOW).start()
    node_id = SPEC_NODE["id"]
    with server.client() as http:
        http.post("/api/v1/node", json=SPEC_NODE)
        http.post("/api/v1/node", json=node("gone-1"))
        http.delete("/api/v1/node/gone-1")
        upload(http, node_id, "var/log/memverge/pagent.log", b"before restart\n")
        recorded = {
            "live": http.get("/api/v1/node").json(),
            "finished": http.get("/api/v1/node?finished=true").json(),
            "files": http.get(f"/api/v1/nodes/{node_id}/files").json(),
        }
    server.restart()
    with server.client() as http:
        yield recorded, http
    server.stop()


def test_live_nodes_survive_restart(restarted):
    recorded, http = restarted
    assert [row["id"] for row in recorded["live"]] == [SPEC_NODE["id"]]
    assert http.get("/api/v1/node").json() == recorded["live"]


def test_finished_nodes_survive_restart(restarted):
    recorded, http = restarted
    assert [row["id"] for row in recorded["finished"]] == ["gone-1"]
    assert http.get("/api/v1/node?finished=true").json() == recorded["finished"]


def test_file_list_survives_restart(restarted):
    recorded, http = restarted
    node_id = SPEC_NODE["id"]
    assert recorded["files"] == [f"/nodes/{node_id}/var/log/memverge/pagent.log"]
    assert http.get(f"/api/v1/nodes/{node_id}/files").json() == recorded["files"]


def test_file_content_survives_restart(restarted):
    _, http = restarted
    content = http.get(f"/nodes/{SPEC_NODE['id']}/var/log/memverge/pagent.log").content
    assert content == b"before restart\n"
