"""The `mmab-metrics` command: the one place that wires domain, storage and API."""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import platform
import signal
import socket
import ssl
import sys
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mmab_metrics import __version__
from mmab_metrics.timecodec import TimeFormatError, parse_time

LOCK_FILE = "serve.lock"


def data_dir_of(option: str | None) -> Path:
    """Pick the data directory: the option, else `MMAB_DATA_DIR`, else `./mmab-data`."""
    chosen = option or os.environ.get("MMAB_DATA_DIR") or "mmab-data"
    return Path(chosen).expanduser().resolve()


class ServerLock:
    """An exclusive lock on a data directory, naming the server that holds it."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._handle: Any = None

    def acquire(self) -> str | None:
        """Take the lock; return None, or a description of the running holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held open
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            return holder
        self._handle = handle
        return None

    def describe(self, text: str) -> None:
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(text + "\n")
        self._handle.flush()

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class _InterceptHandler(logging.Handler):
    """Forward the standard `logging` records of uvicorn to loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        from loguru import logger

        level = (
            record.levelname
            if record.levelname in ("DEBUG", "INFO", "ERROR")
            else "WARNING"
        )
        logger.opt(exception=record.exc_info).bind(source=record.name).log(
            level, record.getMessage()
        )


def versions() -> dict[str, str]:
    """Name the versions of Python and of the libraries the server is built on."""
    found = {"mmab_metrics": __version__, "python": platform.python_version()}
    for name in ("litestar", "uvicorn", "duckdb", "polars", "pyarrow", "msgspec"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "missing"
    return found


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose
    # protocol says TCP, and without it each keep-alive answer waits ~40 ms
    # for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(args: argparse.Namespace) -> int:
    import uvicorn
    from loguru import logger

    from api.app import create_asgi
    from api.services import Services
    from mmab_metrics.clock import Clock
    from mmab_metrics.config import KEY_BY_PATH, ConfigError, check_value
    from mmab_metrics.tls import ensure_self_signed

    data_dir = data_dir_of(args.data_dir)
    lock = ServerLock(data_dir)
    holder = lock.acquire()
    if holder is not None:
        print(
            f"mmab-metrics: another server is already running on {data_dir}: {holder}; "
            "stop it first",
            file=sys.stderr,
        )
        return 1

    start_ns = None
    if args.now is not None:
        try:
            start_ns = parse_time(args.now)
        except TimeFormatError as exc:
            print(f"mmab-metrics: invalid --now: {exc}", file=sys.stderr)
            return 2
    clock = Clock(start_ns, frozen=args.frozen)

    try:
        services = Services.open(data_dir, clock)
    except ConfigError as exc:
        print(f"mmab-metrics: invalid configuration: {exc.message}", file=sys.stderr)
        lock.release()
        return 1

    addr = args.addr or services.config.get("addr")
    try:
        check_value(KEY_BY_PATH["addr"], addr)
    except ConfigError as exc:
        logger.error("invalid --addr: {}", exc.message)
        return 2
    parts = urlsplit(addr)
    host = parts.hostname or "0.0.0.0"
    port = (
        parts.port
        if parts.port is not None
        else (443 if parts.scheme == "https" else 80)
    )

    ssl_options: dict[str, Any] = {}
    if parts.scheme == "https":
        cert_file = Path(services.config.get("security.certFile"))
        key_file = Path(services.config.get("security.keyFile"))
        if ensure_self_signed(cert_file, key_file, clock.now_ns()):
            logger.bind(cert=str(cert_file), key=str(key_file)).info(
                "generated a self-signed certificate"
            )
        ssl_options = {"ssl_certfile": str(cert_file), "ssl_keyfile": str(key_file)}

    try:
        sock = _bind(host, port)
    except OSError as exc:
        logger.error("cannot listen on {}: {}", addr, exc)
        services.close()
        return 1
    bound_port = sock.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    url = f"{parts.scheme}://{shown_host}:{bound_port}"
    lock.describe(json.dumps({"pid": os.getpid(), "addr": url}))

    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.INFO, force=True)
    config = uvicorn.Config(
        create_asgi(services),
        log_config=None,
        access_log=False,
        lifespan="on",
        # Clients count as loopback by their socket address alone, so no
        # X-Forwarded-For header may rewrite it.
        proxy_headers=False,
        http="httptools",
        loop="uvloop",
        timeout_graceful_shutdown=10,
        **ssl_options,
    )
    config.load()
    if config.ssl is not None:
        config.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
    server = uvicorn.Server(config)

    logger.bind(**versions()).info("starting")
    logger.bind(
        data_dir=str(data_dir), clock="frozen" if clock.frozen else "running"
    ).info("data directory {}", data_dir)
    logger.info("listening on {}", url)
    # uvicorn re-raises the stop signal once it has shut down; with handlers
    # of our own in place that re-raise returns here, so the store is closed.
    stop_signals: list[int] = []
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda received, _frame: stop_signals.append(received))
    try:
        server.run(sockets=[sock])
    finally:
        services.close()
        logger.bind(
            signal=",".join(signal.Signals(n).name for n in stop_signals) or "-"
        ).info("stopped cleanly")
        services.logs.close()
        lock.release()
    return 0


def rotate_agent_token(args: argparse.Namespace) -> int:
    """Write a new agent token; a running server switches to it within seconds."""
    from api.tokens import AGENT_TOKEN_FILE, write_token

    data_dir = data_dir_of(args.data_dir)
    if not (data_dir / "config.json").exists():
        print(f"mmab-metrics: {data_dir} is not a data directory", file=sys.stderr)
        return 1
    write_token(data_dir / AGENT_TOKEN_FILE)
    print(
        f"wrote a new agent token to {data_dir / AGENT_TOKEN_FILE}; a running server "
        "keeps accepting the previous one for 10 minutes"
    )
    return 0


def cognito_off(args: argparse.Namespace) -> int:
    """Turn Cognito off in a stopped server's configuration."""
    from mmab_metrics.config import ConfigStore, apply_kv

    data_dir = data_dir_of(args.data_dir)
    lock = ServerLock(data_dir)
    holder = lock.acquire()
    if holder is not None:
        print(
            f"mmab-metrics: a server is running on {data_dir}: {holder}; stop it "
            "first, or call DELETE /api/v1/security/cognito as an administrator",
            file=sys.stderr,
        )
        return 1
    try:
        store, _ = ConfigStore.open(data_dir)
        store.update(
            lambda values: apply_kv(values, {"security.cognito.enabled": "false"})
        )
    finally:
        lock.release()
    print(f"Cognito is off in {data_dir / 'config.json'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmab-metrics",
        description="Management server of a checkpoint/restore service for AWS Batch.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve_parser = commands.add_parser("serve", help="run the server")
    serve_parser.add_argument(
        "--addr",
        help="listen address for this run, e.g. https://0.0.0.0:8081 "
        "(default: the config's `addr`; port 0 picks a free port)",
    )
    serve_parser.add_argument(
        "--data-dir",
        help="data directory (default: $MMAB_DATA_DIR, else ./mmab-data)",
    )
    serve_parser.add_argument(
        "--now", metavar="T", help="start the server clock at RFC 3339 instant T"
    )
    serve_parser.add_argument(
        "--frozen", action="store_true", help="hold the server clock at --now"
    )
    serve_parser.set_defaults(run=serve)

    for name, run, text in (
        ("rotate-agent-token", rotate_agent_token, "write a new agent token"),
        ("cognito-off", cognito_off, "turn Cognito off while the server is stopped"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument(
            "--data-dir",
            help="data directory (default: $MMAB_DATA_DIR, else ./mmab-data)",
        )
        command.set_defaults(run=run)

    from mmab_metrics import simulate

    simulate_parser = commands.add_parser(
        "simulate", help="drive a server with a simulated fleet of worker nodes"
    )
    simulate.add_arguments(simulate_parser)
    simulate_parser.set_defaults(run=simulate.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "frozen", False) and args.now is None:
        parser.error("--frozen needs --now")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
