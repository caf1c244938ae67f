"""The DuckDB database file, its schema migrations and its one connection."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
from loguru import logger

# Each entry upgrades the schema by one version; never edit a released entry.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        id VARCHAR PRIMARY KEY,
        queue VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        created_ns BIGINT NOT NULL,
        updated_ns BIGINT NOT NULL,
        doc VARCHAR NOT NULL
    );
    CREATE TABLE nodes (
        id VARCHAR PRIMARY KEY,
        descriptor VARCHAR NOT NULL,
        registered_ns BIGINT NOT NULL,
        last_heartbeat_ns BIGINT NOT NULL,
        left_ns BIGINT
    );
    """,
    """
    CREATE TABLE metric_defs (
        short VARCHAR PRIMARY KEY,
        description VARCHAR NOT NULL,
        labels VARCHAR NOT NULL,
        aggregate VARCHAR NOT NULL
    );
    CREATE TABLE series (
        series_id INTEGER PRIMARY KEY,
        short VARCHAR NOT NULL,
        object VARCHAR NOT NULL
    );
    CREATE TABLE raw (
        series_id INTEGER NOT NULL,
        time_ns BIGINT NOT NULL,
        value DOUBLE NOT NULL,
        source VARCHAR NOT NULL
    );
    """,
)

FILE_NAME = "mmab.duckdb"


class Database:
    """One read-write DuckDB connection, shared under a lock.

    DuckDB allows one read-write process per file and its Python connection
    is not safe for concurrent use, so every caller takes `lock` (through
    `transaction` or `cursor`) for the span of its statements.
    """

    def __init__(self, path: Path, *, memory_limit_mb: int) -> None:
        self.path = path
        self.lock = threading.RLock()
        self._con = duckdb.connect(
            str(path), config={"memory_limit": f"{memory_limit_mb}MB"}
        )
        # Instants are BIGINT nanoseconds, but keep DuckDB's own session zone
        # fixed too, so no conversion can depend on the process zone.
        self._con.execute("SET TimeZone = 'UTC'")
        self._migrate()

    def _migrate(self) -> None:
        with self.lock:
            con = self._con
            con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)")
            row = con.execute("SELECT max(version) FROM schema_version").fetchone()
            current = row[0] if row and row[0] is not None else 0
            if current > len(MIGRATIONS):
                msg = (
                    f"{self.path} has schema version {current}, newer than this "
                    f"server's {len(MIGRATIONS)}; upgrade mmab-metrics"
                )
                raise RuntimeError(msg)
            for version in range(current + 1, len(MIGRATIONS) + 1):
                con.execute("BEGIN")
                try:
                    con.execute(MIGRATIONS[version - 1])
                    con.execute("INSERT INTO schema_version VALUES (?)", [version])
                    con.execute("COMMIT")
                except Exception:
                    con.execute("ROLLBACK")
                    raise
                logger.bind(version=version).info("database schema migrated")

    def set_memory_limit(self, megabytes: int) -> None:
        with self.lock:
            self._con.execute(f"SET memory_limit = '{int(megabytes)}MB'")

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Hold the lock and yield the connection, outside a transaction."""
        with self.lock:
            started = time.perf_counter()
            # A previous `execute(...).fetchone()` that found a row leaves its
            # result open, and DuckDB 2.0 then rejects `sql()` and `register()`
            # on the connection until that result is run to its end.
            self._con.complete()
            yield self._con
            logger.bind(ms=round((time.perf_counter() - started) * 1e3, 3)).trace("sql")

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Hold the lock and run the body in one transaction."""
        with self.lock:
            con = self._con
            con.execute("BEGIN")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def close(self) -> None:
        with self.lock:
            self._con.execute("CHECKPOINT")
            self._con.close()
