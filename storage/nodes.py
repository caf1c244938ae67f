"""Node persistence: descriptors, heartbeats and departures."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from storage.database import Database


@dataclass(frozen=True)
class NodeRecord:
    id: str
    descriptor: dict[str, Any]
    registered_ns: int
    last_heartbeat_ns: int
    left_ns: int | None


class NodeStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def heartbeat(self, descriptor: dict[str, Any], now_ns: int) -> NodeRecord:
        """Register a node or record its heartbeat; a node that left is live again."""
        text = json.dumps(descriptor, ensure_ascii=False, separators=(",", ":"))
        with self.db.cursor() as con:
            row = con.execute(
                "INSERT INTO nodes VALUES (?, ?, ?, ?, NULL) ON CONFLICT (id) DO UPDATE "
                "SET descriptor = excluded.descriptor, "
                "last_heartbeat_ns = excluded.last_heartbeat_ns, left_ns = NULL "
                "RETURNING registered_ns",
                [descriptor["id"], text, now_ns, now_ns],
            ).fetchone()
        return NodeRecord(descriptor["id"], descriptor, row[0], now_ns, None)

    def leave(self, node_id: str, now_ns: int) -> bool:
        with self.db.cursor() as con:
            rows = con.execute(
                "UPDATE nodes SET left_ns = ? WHERE id = ? AND left_ns IS NULL RETURNING id",
                [now_ns, node_id],
            ).fetchall()
            if rows:
                return True
            exists = con.execute(
                "SELECT 1 FROM nodes WHERE id = ?", [node_id]
            ).fetchone()
        return exists is not None

    def get(self, node_id: str) -> NodeRecord | None:
        with self.db.cursor() as con:
            row = con.execute(
                "SELECT id, descriptor, registered_ns, last_heartbeat_ns, left_ns "
                "FROM nodes WHERE id = ?",
                [node_id],
            ).fetchone()
        return self._record(row) if row else None

    def all(self) -> list[NodeRecord]:
        with self.db.cursor() as con:
            rows = con.execute(
                "SELECT id, descriptor, registered_ns, last_heartbeat_ns, left_ns "
                "FROM nodes ORDER BY id"
            ).fetchall()
        return [self._record(row) for row in rows]

    @staticmethod
    def _record(row: tuple[Any, ...]) -> NodeRecord:
        return NodeRecord(row[0], json.loads(row[1]), row[2], row[3], row[4])
