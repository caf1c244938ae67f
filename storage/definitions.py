"""Metric definitions: the built-in ones and those registered through the API."""

from __future__ import annotations

import json
import threading

from mmab_metrics.metrics import BUILTINS, Definition
from storage.database import Database


class DefinitionConflict(ValueError):
    """Another aggregate for a definition that already has data."""


class DefinitionStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._by_short: dict[str, Definition] = {d.short: d for d in BUILTINS}
        with db.cursor() as con:
            rows = con.execute(
                "SELECT short, description, labels, aggregate FROM metric_defs"
            ).fetchall()
        for short, description, labels, aggregate in rows:
            self._by_short[short] = Definition(
                short, description, tuple(json.loads(labels)), aggregate
            )

    def get(self, short: str) -> Definition | None:
        return self._by_short.get(short)

    def all(self) -> list[Definition]:
        return list(self._by_short.values())

    def register(self, definition: Definition, has_data: bool) -> bool:
        """Store a definition; return False if it was already registered as is.

        Raises `DefinitionConflict` for a changed aggregate when the
        definition has data, whose buckets were summarised for the old one.
        """
        with self._lock:
            current = self._by_short.get(definition.short)
            if current is not None and current.document() == definition.document():
                return False
            if current is not None and current.builtin:
                msg = (
                    f"`{definition.id}` is a built-in definition and cannot be changed"
                )
                raise DefinitionConflict(msg)
            if (
                current is not None
                and current.aggregate != definition.aggregate
                and has_data
            ):
                msg = (
                    f"`{definition.id}` has data aggregated with `{current.aggregate}`; "
                    f"it cannot change to `{definition.aggregate}`"
                )
                raise DefinitionConflict(msg)
            with self.db.cursor() as con:
                con.execute(
                    "INSERT OR REPLACE INTO metric_defs VALUES (?, ?, ?, ?)",
                    [
                        definition.short,
                        definition.description,
                        json.dumps(list(definition.labels)),
                        definition.aggregate,
                    ],
                )
            self._by_short[definition.short] = definition
            return True
