"""Routes for worker nodes: registration and heartbeats, departures, log files."""

from __future__ import annotations

import csv
import io
from typing import Any
from urllib.parse import unquote

from litestar import Request, Response, delete, get, post, put
from litestar.params import FromPath
from loguru import logger

from api.errors import ApiError, read_body
from api.responses import (
    json_response,
    query_bool,
    query_int,
    query_value,
    read_json,
    services_of,
)
from mmab_metrics.config import section
from mmab_metrics.nodes import CSV_COLUMNS, NodeError, finished_at, parse_descriptor
from mmab_metrics.timecodec import format_time

_MB = 1024 * 1024


def _unknown_node(node_id: str) -> ApiError:
    return ApiError(404, f"node {node_id!r} not found", field="nodeID", value=node_id)


def _not_found_path(request: Request[Any, Any, Any]) -> ApiError:
    return ApiError(404, "not found")


@post("/api/v1/node", status_code=200)
async def register_node(request: Request[Any, Any, Any]) -> Response[bytes]:
    services = services_of(request)
    try:
        descriptor = parse_descriptor(await read_json(request))
    except NodeError as exc:
        raise ApiError(400, exc.message, field=exc.field) from None
    previous = services.nodes.get(descriptor["id"])
    services.nodes.heartbeat(descriptor, services.clock.now_ns())
    if previous is None:
        logger.bind(node=descriptor["id"], host=descriptor["hostName"]).info(
            "node registered"
        )
    values = services.config.values
    return json_response(
        {"node": section(values, "node"), "ckpt": section(values, "ckpt")}
    )


@delete("/api/v1/node/{node_id:str}", status_code=204)
async def leave_node(request: Request[Any, Any, Any], node_id: FromPath[str]) -> None:
    services = services_of(request)
    if not services.nodes.leave(node_id, services.clock.now_ns()):
        raise _unknown_node(node_id)
    logger.bind(node=node_id).info("node left")


def _node_rows(request: Request[Any, Any, Any], finished: bool) -> list[dict[str, Any]]:
    services = services_of(request)
    now = services.clock.now_ns()
    ttl = services.config.get("node.ttl")
    rows = []
    for node in services.nodes.all():
        at = finished_at(node.last_heartbeat_ns, node.left_ns, ttl)
        if (now >= at) != finished:
            continue
        row = dict(node.descriptor)
        row["lastHeartbeat"] = format_time(node.last_heartbeat_ns)
        if finished:
            row["finishedAt"] = format_time(at)
        rows.append(row)
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        cells = []
        for column in CSV_COLUMNS:
            if column.startswith("instance."):
                value = row.get("instance", {}).get(column.split(".", 1)[1], "")
            elif column == "ips":
                value = " ".join(row.get("ips", []))
            else:
                value = row.get(column, "")
            cells.append(value)
        writer.writerow(cells)
    return out.getvalue()


@get("/api/v1/node", sync_to_thread=False)
def list_nodes(request: Request[Any, Any, Any]) -> Response[Any]:
    finished = query_bool(request, "finished")
    output = query_value(request, "format") or "json"
    if output not in ("json", "csv"):
        raise ApiError(
            400, f"invalid `format` {output!r}: expected json or csv", field="format"
        )
    if output == "csv" and not finished:
        raise ApiError(400, "`format=csv` needs `finished=true`", field="format")
    limit, offset = query_int(request, "limit"), query_int(request, "offset") or 0
    rows = _node_rows(request, finished)
    total = len(rows)
    rows = rows[offset:] if limit is None else rows[offset : offset + limit]
    headers = {"X-Total-Count": str(total)}
    if output == "csv":
        return Response(
            content=_csv(rows).encode(),
            media_type="text/csv",  # Litestar appends "; charset=utf-8" to text types
            headers=headers,
        )
    return json_response(rows, headers=headers)


@get("/api/v1/nodes/{node_id:str}/files", sync_to_thread=False)
def list_node_files(
    request: Request[Any, Any, Any], node_id: FromPath[str]
) -> Response[bytes]:
    services = services_of(request)
    if (
        services.node_files.node_dir(node_id) is None
        or services.nodes.get(node_id) is None
    ):
        raise _unknown_node(node_id)
    paths = [f"/nodes/{node_id}/{path}" for path in services.node_files.list(node_id)]
    return json_response(paths)


def _node_file_target(request: Request[Any, Any, Any]) -> tuple[str, str]:
    """Split the request target, as the client sent it, into node id and file path.

    Litestar routes on the percent-decoded path with repeated and trailing
    slashes collapsed, so `/nodes/a//etc/x` and `/nodes/a/%2Fetc%2Fx` would
    both reach a handler as `etc/x`. Reading `raw_path` instead rejects
    empty segments and encoded slashes. The ASGI spec makes `raw_path`
    optional: uvicorn sends it, and under a server that omits it every node
    file path is 404.
    """
    raw = request.scope.get("raw_path")
    root = request.scope.get("root_path", "").encode("ascii", "replace")
    if not isinstance(raw, bytes):
        raise _not_found_path(request)
    # Some ASGI clients (Litestar's TestClient) leave the query in `raw_path`.
    raw = raw.split(b"?", 1)[0]
    if not raw.startswith(root + b"/nodes/"):
        raise _not_found_path(request)
    try:
        encoded = raw[len(root) + len(b"/nodes/") :].decode("ascii").split("/")
        segments = [unquote(part, errors="strict") for part in encoded]
    except UnicodeDecodeError:
        raise _not_found_path(request) from None
    if len(segments) < 2 or any(not part or "/" in part for part in segments):
        raise _not_found_path(request)
    return segments[0], "/".join(segments[1:])


@get("/nodes/{node_id:str}/{file_path:path}", sync_to_thread=False)
def read_node_file(request: Request[Any, Any, Any]) -> Response[bytes]:
    node_id, file_path = _node_file_target(request)
    content = services_of(request).node_files.read(node_id, file_path)
    if content is None:
        raise _not_found_path(request)
    return Response(content=content, media_type="text/plain")


async def _write_node_file(request: Request[Any, Any, Any], *, append: bool) -> None:
    services = services_of(request)
    node_id, file_path = _node_file_target(request)
    target = services.node_files.resolve(node_id, file_path)
    if target is None:
        raise _not_found_path(request)
    if services.nodes.get(node_id) is None:
        raise _unknown_node(node_id)
    values = services.config.values
    max_file = values["node.maxPerLogSizeMB"] * _MB
    data = await read_body(request, max_file, "node.maxPerLogSizeMB")
    try:
        services.node_files.write(
            node_id,
            target,
            data,
            append=append,
            max_file_bytes=max_file,
            max_total_bytes=values["node.maxNodeLogTotalMB"] * _MB,
        )
    except (IsADirectoryError, NotADirectoryError, FileExistsError):
        raise ApiError(
            409,
            f"file path {file_path!r} of node {node_id!r} conflicts with an existing"
            " folder or file of that node. Use another path.",
            field="filePath",
            value=file_path,
        ) from None


@post("/nodes/{node_id:str}/{file_path:path}", status_code=204)
async def append_node_file(request: Request[Any, Any, Any]) -> None:
    await _write_node_file(request, append=True)


@put("/nodes/{node_id:str}/{file_path:path}", status_code=204)
async def replace_node_file(request: Request[Any, Any, Any]) -> None:
    await _write_node_file(request, append=False)


ROUTES = [
    register_node,
    leave_node,
    list_nodes,
    list_node_files,
    read_node_file,
    append_node_file,
    replace_node_file,
]
