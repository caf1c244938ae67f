"""Routes for the server itself: health and its two log files."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.params import FromPath

from api.errors import ApiError
from api.responses import json_response, services_of
from mmab_metrics.timecodec import format_time


@get("/health", sync_to_thread=False)
def health(request: Request[Any, Any, Any]) -> Response[bytes]:
    now = services_of(request).clock.now_ns()
    return json_response({"status": "ok", "time": format_time(now)})


@get("/{name:str}", sync_to_thread=False)
def log_file(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
    """Serve `/<fileName>.log` and `/<fileName>-access.log`, the active files."""
    logs = services_of(request).logs
    if name == logs.server_log.name:
        path = logs.server_log
    elif name == logs.access_log.name:
        path = logs.access_log
    else:
        raise ApiError(404, f"not found: {request.method} {request.url.path}")
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        content = b""
    return Response(content=content, media_type="text/plain; charset=utf-8")


ROUTES = [health, log_file]
