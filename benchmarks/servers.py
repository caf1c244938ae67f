"""Server processes of the benchmark: start, loopback check, memory, stop by PID.

Every server listens on 127.0.0.1 only and is started by this process in its
own session. Its PID is written to `.work/<name>.pid` so that a later run can
stop a server left behind by a run that was killed, and it is stopped by that
PID alone: SIGTERM, then SIGKILL after a deadline.
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
WORK = BENCH_DIR / ".work"
REPO = BENCH_DIR.parent
LOOPBACK = "127.0.0.1"
STOP_TIMEOUT_S = 60.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Http:
    """A keep-alive HTTP/1.1 connection to 127.0.0.1:port."""

    def __init__(self, port: int, timeout_s: float = 300.0) -> None:
        self.port = port
        self.timeout_s = timeout_s
        self._connection: http.client.HTTPConnection | None = None

    def request(
        self,
        method: str,
        path: str,
        params: dict | None = None,
        body: bytes | None = None,
        headers: dict | None = None,
    ) -> tuple[int, bytes]:
        """Send one request and return the status and the whole body.

        A connection that the server closed is opened again once, so that a
        keep-alive timeout between two phases does not fail the run.
        """
        if params:
            path = path + "?" + urllib.parse.urlencode(params)
        for attempt in (0, 1):
            if self._connection is None:
                self._connection = http.client.HTTPConnection(
                    LOOPBACK, self.port, timeout=self.timeout_s
                )
            try:
                self._connection.request(method, path, body=body, headers=headers or {})
                response = self._connection.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, ConnectionError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str, params: dict | None = None) -> tuple[int, bytes]:
        return self.request("GET", path, params=params)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def wait_http(port: int, path: str, timeout_s: float = 60.0) -> float:
    """Poll `GET path` until it returns 2xx; return the seconds waited."""
    started = time.perf_counter()
    client = Http(port, timeout_s=5)
    try:
        while time.perf_counter() - started < timeout_s:
            try:
                status, _ = client.get(path)
                if 200 <= status < 300:
                    return time.perf_counter() - started
            except OSError:
                client.close()
            time.sleep(0.1)
    finally:
        client.close()
    raise TimeoutError(f"127.0.0.1:{port}{path} not ready after {timeout_s} s")


class Server:
    """One server process started by the benchmark and stopped by its PID."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.argv = [str(part) for part in argv]
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self.pid_file = WORK / f"{name}.pid"
        self._log = None

    def _stop_leftover(self) -> None:
        """Stop the PID of an earlier, killed run if it still runs the same program."""
        if not self.pid_file.exists():
            return
        try:
            pid = int(self.pid_file.read_text().strip())
            command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (ValueError, OSError):
            self.pid_file.unlink(missing_ok=True)
            return
        # Our servers keep their data under WORK, so a reused PID never matches.
        if command.startswith(self.argv[0]) and str(WORK) in command:
            log(f"stopping {self.name} PID {pid} left by an earlier run")
            _terminate(pid, STOP_TIMEOUT_S)
        self.pid_file.unlink(missing_ok=True)

    def start(self) -> int:
        self._stop_leftover()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=REPO,
        )
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(str(self.process.pid))
        return self.process.pid

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """Send SIGTERM to this PID, wait up to `timeout_s`, then SIGKILL it."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log(
                    f"{self.name} PID {self.process.pid} ignored SIGTERM; sending SIGKILL"
                )
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        self.pid_file.unlink(missing_ok=True)
        return self.process.returncode


def _terminate(pid: int, timeout_s: float) -> None:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


# ----------------------------------------------------------- our server --

_LISTENING = re.compile(rb"listening on http://127\.0\.0\.1:(\d+)")


def start_ours(data_dir: Path, now_s: int, log_path: Path) -> tuple[Server, int]:
    """Start `mmab-metrics serve` on a free loopback port with a clock frozen at `now_s`.

    Returns the server and its port once `/health` returns 200.
    """
    from workload import rfc3339

    data_dir.mkdir(parents=True, exist_ok=True)
    python = REPO / ".venv" / "bin" / "python"
    server = Server(
        "mmab",
        [
            python if python.exists() else sys.executable,
            "-m",
            "mmab_metrics.cli",
            "serve",
            "--addr",
            f"http://{LOOPBACK}:0",
            "--data-dir",
            data_dir,
            "--now",
            rfc3339(now_s),
            "--frozen",
        ],
        log_path,
    )
    log_offset = log_path.stat().st_size if log_path.exists() else 0
    server.start()
    try:
        port = _wait_for_port(server, log_path, log_offset, timeout_s=60)
        wait_http(port, "/health", 60)
    except BaseException:
        server.stop()
        raise
    return server, port


def _wait_for_port(
    server: Server, log_path: Path, offset: int, timeout_s: float
) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with open(log_path, "rb") as handle:
            handle.seek(offset)
            match = _LISTENING.search(handle.read())
        if match:
            return int(match.group(1))
        if not server.alive():
            raise RuntimeError(f"mmab-metrics serve exited early; see {log_path}")
        time.sleep(0.1)
    raise TimeoutError(f"mmab-metrics serve did not log its port within {timeout_s} s")


# ------------------------------------------------------ VictoriaMetrics --

VM_BINARY = "victoria-metrics"
VM_PACKAGE = "victoria-metrics"


def ensure_victoria_metrics() -> str:
    """Return the VictoriaMetrics binary, installing the Debian package if missing.

    A policy-rc.d that returns 101 keeps the package from starting its own
    service, which would listen on all interfaces.
    """
    found = shutil.which(VM_BINARY)
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit(
            f"{VM_BINARY} not found and not root: run `apt-get install "
            f"--no-install-recommends {VM_PACKAGE}` first"
        )
    policy = Path("/usr/sbin/policy-rc.d")
    if not policy.exists():
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    log(f"installing {VM_PACKAGE} with apt-get")
    subprocess.run(["apt-get", "update"], check=True, timeout=600)
    subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", VM_PACKAGE],
        check=True,
        timeout=600,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    found = shutil.which(VM_BINARY)
    if not found:
        raise SystemExit(f"{VM_PACKAGE} installed but {VM_BINARY} is not on PATH")
    return found


def start_victoria_metrics(data_dir: Path, log_path: Path) -> tuple[Server, int]:
    """Start VictoriaMetrics on a free loopback port with its response cache off."""
    binary = ensure_victoria_metrics()
    port = free_port()
    server = Server(
        "victoriametrics",
        [
            binary,
            f"-httpListenAddr={LOOPBACK}:{port}",
            f"-storageDataPath={data_dir}",
            "-retentionPeriod=100y",
            "-search.disableCache",
            "-loggerLevel=WARN",
        ],
        log_path,
    )
    server.start()
    try:
        wait_http(port, "/health", 60)
    except BaseException:
        server.stop()
        raise
    return server, port


# ----------------------------------------------------- process metrics --


def peak_rss_bytes(pid: int) -> int:
    """Return `VmHWM` of `pid`: the peak resident set size since it started."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmHWM line")


def listening_sockets(pid: int) -> list[str]:
    """Return the local addresses of the TCP sockets that `pid` listens on (`ss -tlnp`)."""
    output = subprocess.run(
        ["ss", "-tlnpH"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    return [line.split()[3] for line in output.splitlines() if f"pid={pid}," in line]


def _is_loopback(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    return host.startswith("127.") or host in ("::1", "::ffff:127.0.0.1")


def assert_loopback_only(pid: int) -> list[str]:
    """Raise unless every listening socket of `pid` is bound to a loopback address."""
    addresses = listening_sockets(pid)
    if not addresses:
        raise RuntimeError(f"PID {pid} listens on no TCP socket")
    outside = [address for address in addresses if not _is_loopback(address)]
    if outside:
        raise RuntimeError(f"PID {pid} listens beyond loopback: {outside}")
    return addresses


def file_bytes(path: Path) -> dict[str, int]:
    """Return the apparent and allocated (as `du` counts) bytes of a file or a tree."""
    paths = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    apparent = allocated = 0
    for item in paths:
        stat = item.lstat()
        apparent += stat.st_size
        allocated += stat.st_blocks * 512
    return {"apparent": apparent, "allocated": allocated}


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path
