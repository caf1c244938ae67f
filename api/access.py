"""The outermost ASGI layer: one access log line for every HTTP request.

It wraps the whole Litestar app rather than running as route middleware, so
requests that match no route (404, 405) are logged too.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from loguru import logger

from api.logfiles import LogFiles
from mmab_metrics.clock import Clock
from mmab_metrics.jobs import ID_PATTERN
from mmab_metrics.timecodec import format_time

Scope = dict[str, Any]


def is_loopback(host: str | None) -> bool:
    """Tell whether a socket peer address is on the loopback network."""
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def user_of(scope: Scope) -> str:
    """Name the caller for the access log: `agent:<id>`, `loopback` or `-`."""
    node_id = _header(scope, b"x-node-id")
    if node_id is not None:
        return f"agent:{node_id}" if ID_PATTERN.fullmatch(node_id) else "agent:?"
    client = scope.get("client")
    if client and is_loopback(client[0]):
        return "loopback"
    return "-"


class AccessLog:
    def __init__(self, app: Any, logs: LogFiles, clock: Clock) -> None:
        self.app = app
        self.logs = logs
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        sent = 0

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            duration_ms = round((time.perf_counter() - started) * 1e3, 3)
            client = scope.get("client")
            entry = {
                "time": format_time(self.clock.now_ns()),
                "client": client[0] if client else "-",
                "user": user_of(scope),
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "bytes": sent,
                "durationMs": duration_ms,
            }
            self.logs.access(entry)
            logger.bind(
                method=entry["method"],
                path=entry["path"],
                status=status,
                ms=duration_ms,
            ).debug("request")
