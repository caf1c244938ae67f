"""The app factory: routes, error handlers, the access log and the sweep schedule."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from litestar import Litestar
from litestar.datastructures import State
from loguru import logger

from api import config as config_routes
from api import jobs as job_routes
from api import metrics as metric_routes
from api import nodes as node_routes
from api import security as security_routes
from api import system as system_routes
from api.access import AccessLog
from api.errors import EXCEPTION_HANDLERS
from api.guard import Guard
from api.services import Services
from mmab_metrics.durations import SECOND

# How often the schedule loop wakes, in seconds of the process's monotonic clock.
_TICK_SECONDS = 1.0
_NODE_CHECK_NS = 5 * SECOND


class Schedule:
    """Runs each sweep rule when its interval has passed.

    Intervals are measured on the monotonic clock, so a frozen server clock
    still sweeps; each rule itself is evaluated at the server clock's now.
    """

    def __init__(self, services: Services) -> None:
        self.services = services
        self._task: asyncio.Task[None] | None = None
        self._last: dict[str, float] = {}

    def _intervals(self) -> dict[str, float]:
        values = self.services.config.values
        return {
            "jobs": values["job.retentionInterval"] / 1e9,
            "metrics": values["job.retentionInterval"] / 1e9,
            "node_files": values["node.cleanLogInterval"] / 1e9,
            "nodes": _NODE_CHECK_NS / 1e9,
            "tokens": _NODE_CHECK_NS / 1e9,
        }

    def due(self, now: float) -> list[str]:
        rules = []
        for rule, interval in self._intervals().items():
            last = self._last.get(rule)
            if last is None or now - last >= interval:
                rules.append(rule)
                self._last[rule] = now
        return rules

    async def _loop(self) -> None:
        while True:
            rules = self.due(time.monotonic())
            if rules:
                try:
                    await asyncio.to_thread(
                        self.services.sweeper.run, self.services.clock.now_ns(), rules
                    )
                except Exception:
                    logger.opt(exception=True).bind(rules=",".join(rules)).error(
                        "maintenance sweep failed"
                    )
            await asyncio.sleep(_TICK_SECONDS)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def create_app(services: Services, *, schedule: bool = True) -> Litestar:
    """Build the Litestar app on `services`; `schedule=False` leaves sweeps to the caller."""
    scheduler = Schedule(services)

    async def on_startup(app: Litestar) -> None:
        if schedule:
            scheduler.start()

    async def on_shutdown(app: Litestar) -> None:
        await scheduler.stop()

    return Litestar(
        route_handlers=[
            *system_routes.ROUTES,
            *config_routes.ROUTES,
            *node_routes.ROUTES,
            *job_routes.ROUTES,
            *metric_routes.ROUTES,
            *security_routes.ROUTES,
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        state=State({"services": services}),
        on_startup=[on_startup],
        on_shutdown=[on_shutdown],
        request_max_body_size=None,
        logging_config=None,
        debug=False,
    )


def create_asgi(services: Services, *, schedule: bool = True) -> Any:
    """Build the app wrapped in the access log, as the server runs it."""
    guard = Guard(
        services.tokens,
        services.cognito,
        lambda: services.config.values,
        services.clock.now_ns,
    )
    return AccessLog(
        create_app(services, schedule=schedule),
        services.logs,
        services.clock,
        guard,
        lambda: services.config.get("security.limits.maxInFlight"),
    )
