"""The outermost ASGI layer: admission, credentials, and the access log.

It wraps the whole Litestar app rather than running as route middleware.
Credentials are then checked before routing, so a caller without the right
gets 401 or 403, never a 404 that reveals a path. Requests that match no
route are logged too. It also caps concurrent requests at
`security.limits.maxInFlight`, returning 503 with `Retry-After` past it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec
from loguru import logger

from api.guard import Guard
from api.logfiles import LogFiles
from mmab_metrics.clock import Clock
from mmab_metrics.timecodec import format_time

Scope = dict[str, Any]
RETRY_AFTER_S = 1


async def _send_error(
    send: Any, status: int, message: str, headers: dict[str, str] | None = None
) -> int:
    body = msgspec.json.encode({"statusCode": status, "message": message})
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    raw_headers += [
        (k.lower().encode(), v.encode()) for k, v in (headers or {}).items()
    ]
    await send(
        {"type": "http.response.start", "status": status, "headers": raw_headers}
    )
    await send({"type": "http.response.body", "body": body})
    return len(body)


class AccessLog:
    def __init__(
        self,
        app: Any,
        logs: LogFiles,
        clock: Clock,
        guard: Guard,
        max_in_flight: Callable[[], int],
    ) -> None:
        self.app = app
        self.logs = logs
        self.clock = clock
        self.guard = guard
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        sent = 0
        user = "-"

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        self.in_flight += 1
        try:
            if self.in_flight > self.max_in_flight():
                status = 503
                sent = await _send_error(
                    send,
                    503,
                    "too many requests in flight (`security.limits.maxInFlight`); "
                    "retry shortly",
                    {"Retry-After": str(RETRY_AFTER_S)},
                )
                return
            decision = self.guard.check(scope)
            user = decision.user
            if decision.status:
                status = decision.status
                headers = (
                    {"WWW-Authenticate": decision.challenge}
                    if decision.challenge
                    else {}
                )
                sent = await _send_error(
                    send, decision.status, decision.message, headers
                )
                return
            await self.app(scope, receive, send_wrapper)
        finally:
            self.in_flight -= 1
            duration_ms = round((time.perf_counter() - started) * 1e3, 3)
            client = scope.get("client")
            entry = {
                "time": format_time(self.clock.now_ns()),
                "client": client[0] if client else "-",
                "user": user,
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
