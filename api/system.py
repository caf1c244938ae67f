"""Routes for the server itself: health, its two log files, the dashboard."""

from __future__ import annotations

import mimetypes
import os
import re
from pathlib import Path
from typing import Any

from litestar import Request, Response, get
from litestar.params import FromPath

from api.errors import ApiError
from api.responses import json_response, services_of
from mmab_metrics.timecodec import format_time

_STATIC_SEGMENT = re.compile(r"[A-Za-z0-9._@+=,~-]{1,255}", re.ASCII)


@get("/health", sync_to_thread=False)
def health(request: Request[Any, Any, Any]) -> Response[bytes]:
    now = services_of(request).clock.now_ns()
    return json_response({"status": "ok", "time": format_time(now)})


def _log_file(request: Request[Any, Any, Any], name: str) -> Response[bytes] | None:
    """Serve `/<fileName>.log` and `/<fileName>-access.log`, the active files."""
    logs = services_of(request).logs
    if name == logs.server_log.name:
        path = logs.server_log
    elif name == logs.access_log.name:
        path = logs.access_log
    else:
        return None
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        content = b""
    return Response(content=content, media_type="text/plain; charset=utf-8")


def _static_file(request: Request[Any, Any, Any], relative: str) -> Response[bytes]:
    """Serve a file of the dashboard folder (`staticFolder`), confined to it."""
    services = services_of(request)
    folder = Path(services.config.get("staticFolder"))
    if not folder.is_absolute():
        folder = services.data_dir / folder
    root = Path(os.path.realpath(folder))
    segments = relative.split("/") if relative else ["index.html"]
    not_found = ApiError(404, f"not found: {request.method} {request.url.path}")
    if any(
        not _STATIC_SEGMENT.fullmatch(part) or part in (".", "..") for part in segments
    ):
        raise not_found
    target = Path(os.path.realpath(root.joinpath(*segments)))
    if not target.is_relative_to(root) or not target.is_file():
        raise not_found
    media_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    return Response(content=target.read_bytes(), media_type=media_type)


@get("/", sync_to_thread=False)
def dashboard(request: Request[Any, Any, Any]) -> Response[bytes]:
    return _static_file(request, "")


@get("/{file_path:path}", sync_to_thread=False)
def root_file(
    request: Request[Any, Any, Any], file_path: FromPath[str]
) -> Response[bytes]:
    """Serve the server's log files, else the dashboard's static files."""
    relative = file_path.lstrip("/")
    if "/" not in relative:
        log = _log_file(request, relative)
        if log is not None:
            return log
    return _static_file(request, relative)


ROUTES = [health, dashboard, root_file]
