"""The maintenance sweep: every periodic rule, run against a given instant.

The server calls `Sweeper.run` on its schedules; tests call it in-process
with the clock wherever they want it, instead of waiting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from loguru import logger

from mmab_metrics.config import ConfigStore
from mmab_metrics.nodes import finished_at
from mmab_metrics.timecodec import format_time
from storage.jobs import JobStore
from storage.nodefiles import NodeFiles
from storage.nodes import NodeStore
from storage.points import PointStore

RULES = ("jobs", "metrics", "nodes", "node_files")


@dataclass
class SweepReport:
    """The outcome of one sweep."""

    jobs_deleted: int = 0
    metrics_deleted: dict[str, int] = field(default_factory=dict)
    nodes_finished: list[str] = field(default_factory=list)
    node_files_deleted: list[str] = field(default_factory=list)


class Sweeper:
    def __init__(
        self,
        config: ConfigStore,
        jobs: JobStore,
        nodes: NodeStore,
        node_files: NodeFiles,
        points: PointStore,
        extra_rules: dict[str, Callable[[int], object]] | None = None,
    ) -> None:
        self.config = config
        self.points = points
        # Rules owned by other layers, such as the agent token file check.
        self.extra_rules = dict(extra_rules or {})
        self.jobs = jobs
        self.nodes = nodes
        self.node_files = node_files
        self._last_node_check_ns: int | None = None

    def ttls(self) -> dict[str, int]:
        values = self.config.values
        return {key: values[key] for key in ("job.successTTL", "job.failureTTL")}

    def run(self, now_ns: int, rules: Iterable[str] | None = None) -> SweepReport:
        """Apply the named rules at `now_ns`, or every rule."""
        report = SweepReport()
        rules = set(RULES) | set(self.extra_rules) if rules is None else set(rules)
        if "jobs" in rules:
            report.jobs_deleted = self.jobs.delete_expired(self.ttls(), now_ns)
            if report.jobs_deleted:
                logger.bind(count=report.jobs_deleted).info("expired jobs deleted")
        if "metrics" in rules:
            report.metrics_deleted = self.points.apply_retention(now_ns)
        if "nodes" in rules:
            report.nodes_finished = self._log_finished_nodes(now_ns)
        if "node_files" in rules:
            report.node_files_deleted = self._clean_node_files(now_ns)
        for name, rule in self.extra_rules.items():
            if name in rules:
                rule(now_ns)
        return report

    def _log_finished_nodes(self, now_ns: int) -> list[str]:
        """Log each node that finished since the previous check, once."""
        ttl = self.config.get("node.ttl")
        since = self._last_node_check_ns
        self._last_node_check_ns = now_ns
        finished = []
        for node in self.nodes.all():
            at = finished_at(node.last_heartbeat_ns, node.left_ns, ttl)
            if at <= now_ns and (since is None or at > since):
                finished.append(node.id)
                reason = (
                    "left" if node.left_ns is not None and node.left_ns <= at else "ttl"
                )
                logger.bind(node=node.id, at=format_time(at), reason=reason).info(
                    "node finished"
                )
        return finished

    def _clean_node_files(self, now_ns: int) -> list[str]:
        """Delete the files of nodes finished at least `cleanLogInterval` ago."""
        values = self.config.values
        ttl, delay = values["node.ttl"], values["node.cleanLogInterval"]
        deleted = []
        for node in self.nodes.all():
            at = finished_at(node.last_heartbeat_ns, node.left_ns, ttl)
            if at + delay <= now_ns and self.node_files.delete_node(node.id):
                deleted.append(node.id)
                logger.bind(node=node.id).info("node files deleted")
        return deleted
