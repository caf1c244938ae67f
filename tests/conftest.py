"""Fixtures: the real server in a subprocess on 127.0.0.1, and the real app in-process.

`server` starts `mmab-metrics serve` on a free loopback port with its own data
directory and talks HTTP to it. `app` builds the same ASGI app in this
process, on a real DuckDB file, with a frozen clock that tests move by hand
and no background sweeps, so time-dependent rules run without sleeping.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from litestar.testing import TestClient

from api.app import create_asgi
from api.services import Services
from mmab_metrics.clock import Clock
from mmab_metrics.timecodec import parse_time

_LISTENING = re.compile(r"listening on (\S+)")


def credential_headers(data_dir: Path) -> dict[str, str]:
    """Read the tokens a server wrote into `data_dir` as request headers."""
    return {
        "X-Agent-Token": (data_dir / "agent.token").read_text().strip(),
        "X-Admin-Token": (data_dir / "admin.token").read_text().strip(),
    }


START_TIMEOUT_S = 120
FLEET_NOW = "2025-03-16T12:00:00Z"


@dataclass
class ServerProcess:
    """One `mmab-metrics serve` subprocess and what it printed."""

    data_dir: Path
    now: str | None = None
    frozen: bool = True
    env: dict[str, str] = field(default_factory=dict)
    scheme: str = "http"
    pass_data_dir: bool = True
    url: str = ""
    process: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)

    def start(self) -> ServerProcess:
        command = [
            sys.executable,
            "-m",
            "mmab_metrics.cli",
            "serve",
            "--addr",
            f"{self.scheme}://127.0.0.1:0",
        ]
        if self.pass_data_dir:
            command += ["--data-dir", str(self.data_dir)]
        if self.now is not None:
            command += ["--now", self.now]
            if self.frozen:
                command.append("--frozen")
        self.output = []
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **self.env},
        )
        found = threading.Event()

        def drain() -> None:
            assert self.process is not None and self.process.stdout is not None
            for line in self.process.stdout:
                self.output.append(line)
                match = _LISTENING.search(line)
                if match and not found.is_set():
                    self.url = match.group(1)
                    found.set()
            found.set()

        threading.Thread(target=drain, daemon=True).start()
        if not found.wait(START_TIMEOUT_S) or not self.url:
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.output))
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                with self.client(auth=False) as probe:
                    if probe.get("/health").status_code == 200:
                        return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("server never answered /health:\n" + "".join(self.output))

    def tokens(self) -> dict[str, str]:
        """Return the credential headers of this server's agent and admin tokens."""
        return credential_headers(self.data_dir)

    def client(self, *, auth: bool = True, **kwargs: object) -> httpx.Client:
        """Return a client; with `auth`, it sends the agent and admin tokens."""
        headers = self.tokens() if auth else {}
        return httpx.Client(
            base_url=self.url, timeout=30, verify=False, headers=headers, **kwargs
        )

    def stop(self) -> int:
        """Stop the server with SIGTERM and return its exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        code = self.process.returncode
        self.process = None
        return code

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[callable]:
    started: list[ServerProcess] = []

    def make(
        now: str | None = "2025-03-16T12:00:00Z",
        *,
        frozen: bool = True,
        data_dir: Path | None = None,
        **kwargs: object,
    ) -> ServerProcess:
        directory = data_dir or tmp_path / f"data{len(started)}"
        server = ServerProcess(directory, now=now, frozen=frozen, **kwargs)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def server(server_factory: callable) -> ServerProcess:
    """A server on a fresh data directory, its clock frozen at 2025-03-16T12:00:00Z."""
    return server_factory()


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@dataclass
class InProcess:
    """The app in this process, with its services and a frozen clock."""

    services: Services
    client: TestClient
    clock: Clock

    def set_now(self, text: str) -> None:
        self.clock.set(parse_time(text))

    def sweep(self) -> object:
        return self.services.sweeper.run(self.clock.now_ns())


@pytest.fixture
def app(tmp_path: Path) -> Iterator[InProcess]:
    clock = Clock(parse_time("2025-03-16T12:00:00Z"), frozen=True)
    services = Services.open(tmp_path / "data", clock, stderr_log=False)
    asgi = create_asgi(services, schedule=False)
    with TestClient(app=asgi, base_url="http://127.0.0.1") as client:
        client.headers.update(credential_headers(tmp_path / "data"))
        yield InProcess(services, client, clock)
    services.close()
    services.logs.close()


# The simulation sends about 3,000 requests, each a durable write.
@pytest.fixture(scope="session")
def fleet(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, dict]]:
    """An https server after `simulate --nodes 20 --jobs 200`, and the manifest.

    Tests that use it carry `xdist_group("fleet")`, so that one worker runs
    them all on one simulation.
    """
    root = tmp_path_factory.mktemp("fleet")
    server = ServerProcess(root / "data", now=FLEET_NOW, scheme="https").start()
    manifest_path = root / "m.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mmab_metrics.cli",
            "simulate",
            "--server",
            server.url,
            "--insecure",
            "--nodes",
            "20",
            "--jobs",
            "200",
            "--manifest",
            str(manifest_path),
            f"--token={server.tokens()['X-Agent-Token']}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "simulated 20 nodes" in result.stdout
    manifest = json.loads(manifest_path.read_text())
    yield server, manifest
    server.stop()
