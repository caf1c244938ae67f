"""`mmab-metrics serve`: start, TLS, the data directory lock, options and clean stop."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import subprocess
import sys
import warnings

import httpx
import pytest

from tests.conftest import ServerProcess


def run_cli(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmab_metrics.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_second_server_names_the_first(server):
    result = run_cli(
        "serve", "--addr", "http://127.0.0.1:0", "--data-dir", str(server.data_dir)
    )
    assert result.returncode == 1
    assert "already running" in result.stderr
    assert str(server.process.pid) in result.stderr
    assert server.url in result.stderr
    with server.client() as http:
        assert http.get("/health").status_code == 200


def test_clean_stop_on_sigterm(server):
    assert server.stop() == 0
    output = "".join(server.output)
    assert "stopped cleanly" in output
    assert "Traceback" not in output


def test_start_logs_versions_and_data_dir(server):
    output = "".join(server.output)
    assert f"listening on {server.url}" in output
    assert f"data directory {server.data_dir}" in output
    assert "duckdb=" in output
    assert "litestar=" in output


def test_addr_option_does_not_change_config(server, http):
    assert http.get("/api/v1/config").json()["addr"] == "https://0.0.0.0:8081"
    stored = json.loads((server.data_dir / "config.json").read_text())
    assert stored["addr"] == "https://0.0.0.0:8081"


def test_https_generates_self_signed_pair(tmp_path):
    server = ServerProcess(tmp_path / "tls", scheme="https").start()
    try:
        cert = server.data_dir / "server.crt"
        key = server.data_dir / "server.pem"
        assert cert.exists()
        assert key.exists()
        assert oct(key.stat().st_mode & 0o777) == "0o600"
        output = "".join(server.output)
        assert "generated a self-signed certificate" in output
        assert str(cert) in output
        context = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=server.url, verify=context) as http:
            assert http.get("/health").status_code == 200
        with httpx.Client(base_url=server.url) as unverified:
            try:
                unverified.get("/health")
                raise AssertionError("an unknown self-signed certificate was accepted")
            except httpx.ConnectError:
                pass
        before = cert.read_bytes()
        server.restart()
        assert cert.read_bytes() == before
    finally:
        server.stop()


def _handshake(port: int, version: ssl.TLSVersion) -> str:
    """Try a handshake capped at `version`; return the protocol or the error."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = version
    with contextlib.suppress(ssl.SSLError):
        context.set_ciphers("ALL:@SECLEVEL=0")
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw) as tls,
        ):
            return tls.version() or "?"
    except (ssl.SSLError, ConnectionResetError) as exc:
        return f"error: {exc}"


def test_tls_below_1_2_is_refused(tmp_path):
    server = ServerProcess(tmp_path / "tls", scheme="https").start()
    try:
        port = int(server.url.rsplit(":", 1)[1])
        assert _handshake(port, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
        old = _handshake(port, ssl.TLSVersion.TLSv1_1)
        if "NO_PROTOCOLS_AVAILABLE" in old:
            pytest.skip("this OpenSSL build cannot offer TLS 1.1 as a client")
        assert old.startswith("error:")
    finally:
        server.stop()


def test_data_dir_from_environment(tmp_path):
    data_dir = tmp_path / "from-env"
    server = ServerProcess(
        data_dir, env={"MMAB_DATA_DIR": str(data_dir)}, pass_data_dir=False
    ).start()
    try:
        assert (data_dir / "config.json").exists()
        assert (data_dir / "mmab.duckdb").exists()
    finally:
        server.stop()


def test_frozen_needs_now(tmp_path):
    result = run_cli("serve", "--data-dir", str(tmp_path / "d"), "--frozen")
    assert result.returncode == 2
    assert "--frozen needs --now" in result.stderr


def test_bad_now_is_rejected(tmp_path):
    result = run_cli(
        "serve", "--data-dir", str(tmp_path / "d"), "--now", "yesterday", "--frozen"
    )
    assert result.returncode == 2
    assert "invalid --now" in result.stderr


def test_running_clock_advances_from_now(server_factory):
    server = server_factory("2030-01-01T00:00:00Z", frozen=False)
    with server.client() as http:
        first = http.get("/health").json()["time"]
        second = http.get("/health").json()["time"]
    assert first.startswith("2030-01-01T00:00:")
    assert second > first


def test_config_persists_across_restart(server):
    with server.client() as http:
        response = http.put("/api/v1/configKV", json={"kvMap": {"node.ttl": "7m"}})
        assert response.status_code == 200
    server.restart()
    with server.client() as http:
        assert http.get("/api/v1/config").json()["node"]["ttl"] == "7m0s"
