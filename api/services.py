"""The objects a running server is made of, opened from one data directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from api.cognito import CognitoVerifier
from api.logfiles import LogFiles
from api.tokens import Tokens
from mmab_metrics.clock import Clock
from mmab_metrics.config import ConfigStore
from mmab_metrics.rollup import levels_from_config
from storage.database import FILE_NAME, Database
from storage.definitions import DefinitionStore
from storage.jobs import JobStore
from storage.nodefiles import NodeFiles
from storage.nodes import NodeStore
from storage.points import PointStore
from storage.sweep import Sweeper


@dataclass
class Services:
    data_dir: Path
    clock: Clock
    config: ConfigStore
    logs: LogFiles
    db: Database
    jobs: JobStore
    nodes: NodeStore
    node_files: NodeFiles
    definitions: DefinitionStore
    points: PointStore
    sweeper: Sweeper
    tokens: Tokens
    cognito: CognitoVerifier

    @classmethod
    def open(cls, data_dir: Path, clock: Clock, *, stderr_log: bool = True) -> Services:
        """Open the configuration, the logs and the store of `data_dir`."""
        data_dir.mkdir(parents=True, exist_ok=True)
        logs = LogFiles(data_dir / "logs", clock, stderr=stderr_log)
        config, warnings = ConfigStore.open(data_dir)
        logs.apply(config.values)
        for warning in warnings:
            logger.warning(warning)
        db = Database(
            data_dir / FILE_NAME, memory_limit_mb=config.get("storage.memoryLimitMB")
        )
        jobs = JobStore(db)
        nodes = NodeStore(db)
        node_files = NodeFiles(data_dir / "nodes")
        definitions = DefinitionStore(db)
        points = PointStore(
            db,
            levels_from_config(config.get("metrics.levels")),
            lambda: config.get("metrics.rawRetention"),
            lambda short: getattr(definitions.get(short), "aggregate", "sum"),
        )
        if points.new_levels and points.all_series():
            logger.bind(
                levels=",".join(level.name for level in points.new_levels)
            ).info("building new metric levels from raw points")
            points.rebuild(clock.now_ns())
        tokens = Tokens(data_dir)
        cognito = CognitoVerifier(lambda: config.values, clock)
        sweeper = Sweeper(
            config,
            jobs,
            nodes,
            node_files,
            points,
            extra_rules={"tokens": tokens.check_rotation},
        )
        services = cls(
            data_dir,
            clock,
            config,
            logs,
            db,
            jobs,
            nodes,
            node_files,
            definitions,
            points,
            sweeper,
            tokens,
            cognito,
        )
        config.subscribe(services._on_config_change)
        return services

    def _on_config_change(
        self, values: dict[str, Any], changed: tuple[str, ...]
    ) -> None:
        logger.bind(keys=",".join(changed)).info("configuration changed")
        if any(path.startswith("log.") for path in changed):
            self.logs.apply(values)
        if "storage.memoryLimitMB" in changed:
            self.db.set_memory_limit(values["storage.memoryLimitMB"])

    def close(self) -> None:
        self.db.close()
