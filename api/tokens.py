"""The agent token and the admin token: files of the data directory, 0600.

Both are generated on first start. `mmab-metrics rotate-agent-token` writes
a new agent token while the server runs. The server notices the change
within seconds and keeps accepting the previous token for `GRACE_NS` of
server time, so agents can pick up the new one without failing writes.
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
from pathlib import Path

from loguru import logger

AGENT_TOKEN_FILE = "agent.token"
ADMIN_TOKEN_FILE = "admin.token"
GRACE_NS = 10 * 60 * 1_000_000_000


def write_token(path: Path, token: str | None = None) -> str:
    """Write a token file with mode 0600, atomically; return the token."""
    if token is None:
        token = secrets.token_urlsafe(32)
        # A leading `-` would read as an option on a command line.
        while token.startswith("-"):
            token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(token + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return token


def read_token(path: Path) -> str:
    return path.read_text(encoding="ascii").strip()


def ensure_token(path: Path) -> str:
    if path.exists():
        token = read_token(path)
        if token:
            return token
    return write_token(path)


def matches(given: str | None, expected: str) -> bool:
    """Compare in constant time; an empty or missing token never matches."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())


class Tokens:
    """The current tokens, and the previous agent token during its grace period."""

    def __init__(self, data_dir: Path) -> None:
        self.agent_path = data_dir / AGENT_TOKEN_FILE
        self.admin_path = data_dir / ADMIN_TOKEN_FILE
        self.agent = ensure_token(self.agent_path)
        self.admin = ensure_token(self.admin_path)
        self._previous: str | None = None
        self._previous_until_ns = 0
        self._lock = threading.Lock()

    def is_agent(self, given: str | None, now_ns: int) -> bool:
        if matches(given, self.agent):
            return True
        previous = self._previous
        return (
            previous is not None
            and now_ns < self._previous_until_ns
            and matches(given, previous)
        )

    def is_admin(self, given: str | None) -> bool:
        return matches(given, self.admin)

    def check_rotation(self, now_ns: int) -> bool:
        """Reload the agent token file; return True if the token changed."""
        try:
            current = read_token(self.agent_path)
        except OSError as exc:
            logger.bind(path=str(self.agent_path), error=str(exc)).warning(
                "cannot read the agent token file; keeping the loaded token"
            )
            return False
        with self._lock:
            if not current or current == self.agent:
                return False
            self._previous, self._previous_until_ns = self.agent, now_ns + GRACE_NS
            self.agent = current
        logger.info("agent token rotated; the previous one is accepted for 10 minutes")
        return True
