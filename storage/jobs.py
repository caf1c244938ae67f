"""Job persistence: one row per job holding its document as returned."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mmab_metrics.jobs import EXPIRING
from storage.database import Database


@dataclass(frozen=True)
class JobFilter:
    """The filters of `GET /api/v1/job`; `start`/`end` bound `updatedAt`."""

    queue: str | None = None
    status: str | None = None
    start_ns: int | None = None
    end_ns: int | None = None
    limit: int | None = None
    offset: int = 0


def _expiry_condition(ttls: Mapping[str, int], now_ns: int) -> tuple[str, list[Any]]:
    """Build SQL that is true for jobs whose TTL has run out at `now_ns`."""
    parts, params = [], []
    for status, key in EXPIRING.items():
        parts.append("(status = ? AND updated_ns <= ?)")
        params.extend([status, now_ns - ttls[key]])
    return "(" + " OR ".join(parts) + ")", params


class JobStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self.db.cursor() as con:
            row = con.execute("SELECT doc FROM jobs WHERE id = ?", [job_id]).fetchone()
        return json.loads(row[0]) if row else None

    def get_raw(self, job_id: str, ttls: Mapping[str, int], now_ns: int) -> str | None:
        """Return the stored JSON of a job, unless it has expired."""
        expired, params = _expiry_condition(ttls, now_ns)
        with self.db.cursor() as con:
            row = con.execute(
                f"SELECT doc FROM jobs WHERE id = ? AND NOT {expired}",
                [job_id, *params],
            ).fetchone()
        return row[0] if row else None

    def put(self, document: dict[str, Any], created_ns: int, updated_ns: int) -> str:
        text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        with self.db.cursor() as con:
            con.execute(
                "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?)",
                [
                    document["id"],
                    document["queueName"],
                    document["status"],
                    created_ns,
                    updated_ns,
                    text,
                ],
            )
        return text

    def delete(self, job_id: str) -> None:
        with self.db.cursor() as con:
            con.execute("DELETE FROM jobs WHERE id = ?", [job_id])

    def list(
        self, where: JobFilter, ttls: Mapping[str, int], now_ns: int
    ) -> tuple[list[str], int]:
        """Return the ids of the matching jobs in list order, and their total count."""
        expired, params = _expiry_condition(ttls, now_ns)
        conditions = [f"NOT {expired}"]
        if where.queue is not None:
            conditions.append("queue = ?")
            params.append(where.queue)
        if where.status is not None:
            conditions.append("status = ?")
            params.append(where.status)
        if where.start_ns is not None:
            conditions.append("updated_ns >= ?")
            params.append(where.start_ns)
        if where.end_ns is not None:
            conditions.append("updated_ns < ?")
            params.append(where.end_ns)
        sql_where = " AND ".join(conditions)
        page = ""
        page_params: list[Any] = []
        if where.limit is not None:
            page = " LIMIT ?"
            page_params.append(where.limit)
        if where.offset:
            page += " OFFSET ?"
            page_params.append(where.offset)
        with self.db.cursor() as con:
            total = con.execute(
                f"SELECT count(*) FROM jobs WHERE {sql_where}", params
            ).fetchone()[0]
            rows = con.execute(
                f"SELECT id FROM jobs WHERE {sql_where} ORDER BY created_ns, id{page}",
                params + page_params,
            ).fetchall()
        return [row[0] for row in rows], total

    def documents(self, job_ids: list[str]) -> list[str]:
        """Return the stored JSON of these jobs in the order given, skipping gone ones."""
        if not job_ids:
            return []
        with self.db.cursor() as con:
            rows = con.execute(
                "SELECT id, doc FROM jobs WHERE id IN (SELECT unnest(?))", [job_ids]
            ).fetchall()
        found = dict(rows)
        return [found[job_id] for job_id in job_ids if job_id in found]

    def delete_expired(self, ttls: Mapping[str, int], now_ns: int) -> int:
        expired, params = _expiry_condition(ttls, now_ns)
        with self.db.cursor() as con:
            row = con.execute(
                f"DELETE FROM jobs WHERE {expired} RETURNING id", params
            ).fetchall()
        return len(row)
