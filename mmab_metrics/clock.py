"""The server clock: the one source of "now" for every time-dependent rule.

TTLs, retention, heartbeats, query defaults and caches all ask this object,
never `time` or SQL `now()`, so that a server can run at any date
(`serve --now T`), stand still (`--frozen`), and be moved by tests.
"""

from __future__ import annotations

import threading
import time


class Clock:
    """Nanoseconds since the epoch, UTC, optionally offset or frozen.

    Running, the clock is the system clock plus a fixed offset, read through
    `time.time_ns()` so that freezegun can pin it in-process. Frozen, it stays
    at its instant until `set` or `advance` moves it.
    """

    def __init__(self, start_ns: int | None = None, *, frozen: bool = False) -> None:
        self._lock = threading.Lock()
        self._frozen_ns: int | None = None
        self._offset_ns = 0
        if start_ns is not None:
            if frozen:
                self._frozen_ns = start_ns
            else:
                self._offset_ns = start_ns - time.time_ns()
        elif frozen:
            self._frozen_ns = time.time_ns()

    @property
    def frozen(self) -> bool:
        return self._frozen_ns is not None

    def now_ns(self) -> int:
        frozen = self._frozen_ns
        if frozen is not None:
            return frozen
        return time.time_ns() + self._offset_ns

    def set(self, ns: int) -> None:
        """Freeze the clock at `ns`."""
        with self._lock:
            self._frozen_ns = ns

    def advance(self, ns: int) -> None:
        """Move the clock forward by `ns`, frozen or running."""
        with self._lock:
            if self._frozen_ns is not None:
                self._frozen_ns += ns
            else:
                self._offset_ns += ns
