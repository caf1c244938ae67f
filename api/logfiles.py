"""The server log and the access log: two loguru file sinks and stderr.

Both files live in `logs/` of the data directory, rotate at `log.maxSizeMB`
and keep `log.maxBackups` rotated files (0 keeps all). The access log holds
one JSON object per line and ignores `log.level`. Changing any `log.*` key
re-creates the sinks at once.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
from loguru import logger

from mmab_metrics.clock import Clock
from mmab_metrics.timecodec import format_time

_LEVELS = {"debug": "DEBUG", "info": "INFO", "warn": "WARNING", "error": "ERROR"}
_MB = 1024 * 1024
# Control characters and the other code points that str.splitlines() breaks on.
_LINE_BREAKING = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")


def _escape(text: str) -> str:
    """Escape line breaks and control characters, as `\\n` or `\\x1b`.

    Messages and bound values carry request input (paths, configuration
    keys), and a raw newline in them would forge a log line.
    """
    return _LINE_BREAKING.sub(
        lambda match: match.group().encode("unicode_escape").decode("ascii"), text
    )


def _format(record: Mapping[str, Any]) -> str:
    extra = record["extra"]
    fields = " ".join(
        f"{name}={value}"
        for name, value in extra.items()
        if name not in ("now", "access")
    )
    tail = f" {fields}" if fields else ""
    line = _escape(record["message"] + tail)
    return (
        "{extra[now]} {level: <7} "
        + line.replace("{", "{{").replace("}", "}}")
        + "\n{exception}"
    )


class LogFiles:
    """Owns every loguru sink of the server process."""

    def __init__(self, log_dir: Path, clock: Clock, *, stderr: bool = True) -> None:
        self.log_dir = log_dir
        self.clock = clock
        self.stderr = stderr
        self._lock = threading.Lock()
        self._sink_ids: list[int] = []
        self._settings: tuple[Any, ...] | None = None
        self.file_name = "mmab"
        log_dir.mkdir(parents=True, exist_ok=True)
        logger.remove()
        logger.configure(patcher=self._patch)

    def _patch(self, record: dict[str, Any]) -> None:
        record["extra"].setdefault("now", format_time(self.clock.now_ns()))

    @property
    def server_log(self) -> Path:
        return self.log_dir / f"{self.file_name}.log"

    @property
    def access_log(self) -> Path:
        return self.log_dir / f"{self.file_name}-access.log"

    def apply(self, values: Mapping[str, Any]) -> None:
        """(Re)create the sinks for the `log.*` values given."""
        settings = (
            values["log.level"],
            values["log.maxSizeMB"],
            values["log.maxBackups"],
            values["log.fileName"],
        )
        with self._lock:
            if settings == self._settings:
                return
            level_name, max_size_mb, max_backups, file_name = settings
            level = _LEVELS[level_name]
            retention = max_backups if max_backups > 0 else None
            old_ids, self._sink_ids = self._sink_ids, []
            self.file_name = file_name

            def not_access(record: Mapping[str, Any]) -> bool:
                return not record["extra"].get("access")

            def is_access(record: Mapping[str, Any]) -> bool:
                return bool(record["extra"].get("access"))

            self._sink_ids.append(
                logger.add(
                    self.server_log,
                    level=level,
                    format=_format,
                    filter=not_access,
                    backtrace=False,
                    diagnose=False,
                    rotation=max_size_mb * _MB,
                    retention=retention,
                    encoding="utf-8",
                )
            )
            self._sink_ids.append(
                logger.add(
                    self.access_log,
                    level="INFO",
                    format="{message}",
                    filter=is_access,
                    rotation=max_size_mb * _MB,
                    retention=retention,
                    encoding="utf-8",
                )
            )
            if self.stderr:
                self._sink_ids.append(
                    logger.add(
                        sys.stderr,
                        level=level,
                        format=_format,
                        filter=not_access,
                        backtrace=False,
                        diagnose=False,
                    )
                )
            for sink_id in old_ids:
                logger.remove(sink_id)
            self._settings = settings

    def access(self, entry: Mapping[str, Any]) -> None:
        """Write one access log line."""
        line = msgspec.json.encode(entry).decode()
        logger.bind(access=True).info(line)

    def close(self) -> None:
        with self._lock:
            for sink_id in self._sink_ids:
                logger.remove(sink_id)
            self._sink_ids = []
            self._settings = None
