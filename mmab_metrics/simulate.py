"""Fleet simulator: drives a server through the same HTTP API real agents use.

`main` builds a fleet plan (see `mmab_metrics.fleet_plan`), sends its requests
to the server in order over one HTTP client, and can write a manifest of what
the server should then hold.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import ssl
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

from mmab_metrics.durations import format_duration, parse_duration
from mmab_metrics.fleet_plan import (
    JSON_CONTENT_TYPE,
    LOG_FILES,
    MAX_NODES,
    MIN_SPAN_NS,
    Action,
    ActionKind,
    FileDigest,
    Plan,
    PlannedEvent,
    PlannedJob,
    PlannedNode,
    Reclaim,
    build_plan,
)
from mmab_metrics.timecodec import format_time, parse_time

__all__ = [
    "LOG_FILES",
    "Action",
    "ActionKind",
    "FileDigest",
    "Plan",
    "PlannedEvent",
    "PlannedJob",
    "PlannedNode",
    "Reclaim",
    "add_arguments",
    "build_manifest",
    "build_plan",
    "main",
]

HTTP_TIMEOUT_S = 30.0
# Well under the server's default node TTL of 5 minutes.
KEEPALIVE_S = 60.0

# ---------------------------------------------------------------------------
# The manifest


def build_manifest(plan: Plan, server: str) -> dict[str, Any]:
    """Build the JSON document of what the server should hold after the run.

    File digests cover the whole content uploaded. A server that trims a file
    to its newest `node.maxPerLogSizeMB` holds only the tail of a larger one.
    """
    return {
        "server": server,
        "seed": plan.seed,
        "end": format_time(plan.end_ns),
        "span": format_duration(plan.span_ns),
        "queues": list(plan.queues),
        "nodes": [
            {
                "id": node.id,
                "descriptor": node.descriptor,
                "state": node.state,
                "files": {
                    path: {"size": digest.size, "sha256": digest.sha256}
                    for path, digest in node.files.items()
                },
            }
            for node in plan.nodes
        ],
        "jobs": [
            {
                "id": job.id,
                "queueName": job.queue_name,
                "status": job.status,
                "spotProtCount": job.spot_prot_count,
                "events": [event.to_json() for event in job.events],
            }
            for job in plan.jobs
        ],
    }


def _write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`."""
    descriptor, temp_name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------
# Command line


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"invalid count {text!r}: expected a whole number of at least 1"
        raise argparse.ArgumentTypeError(msg)
    return value


def _node_count(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_NODES:
        msg = f"invalid node count {text!r}: at most {MAX_NODES} nodes are supported"
        raise argparse.ArgumentTypeError(msg)
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        msg = f"invalid rate {text!r}: expected a number from 0 to 1, such as 0.3"
        raise argparse.ArgumentTypeError(msg)
    return value


def _span(text: str) -> int:
    try:
        value = parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if value < MIN_SPAN_NS:
        msg = f"invalid span {text!r}: must be at least {format_duration(MIN_SPAN_NS)}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _timestamp(text: str) -> int:
    try:
        return parse_time(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _server_url(text: str) -> str:
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        msg = f"invalid server URL {text!r}: expected http(s)://HOST[:PORT]"
        raise argparse.ArgumentTypeError(msg)
    if url.query or url.fragment:
        msg = f"invalid server URL {text!r}: remove the query or fragment"
        raise argparse.ArgumentTypeError(msg)
    return text.rstrip("/")


def _manifest_path(text: str) -> Path:
    path = Path(text)
    if not path.parent.is_dir():
        msg = f"invalid manifest path {text!r}: folder {str(path.parent)!r} not found"
        raise argparse.ArgumentTypeError(msg)
    return path


def _existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        msg = f"file not found: {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's options to `parser`."""
    parser.add_argument(
        "--server",
        required=True,
        type=_server_url,
        metavar="URL",
        help="base URL of the server, such as https://127.0.0.1:8081",
    )
    parser.add_argument(
        "--nodes",
        required=True,
        type=_node_count,
        metavar="N",
        help="number of worker nodes live at any time; each reclaimed node is "
        "replaced by a new one",
    )
    parser.add_argument(
        "--jobs", required=True, type=_positive_int, metavar="N", help="number of jobs"
    )
    parser.add_argument(
        "--queues",
        type=_positive_int,
        default=3,
        metavar="N",
        help="number of job queues, named sim-q1, sim-q2, ... (default: 3)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=1,
        metavar="S",
        help="seed of the random generator; the same seed and options give the "
        "same events (default: 1)",
    )
    parser.add_argument(
        "--spot-rate",
        type=_rate,
        default=0.3,
        metavar="R",
        help="share of jobs, from 0 to 1, whose node is reclaimed while they run "
        "(default: 0.3)",
    )
    parser.add_argument(
        "--span",
        type=_span,
        default="24h",
        metavar="D",
        help="length of the simulated window as a Go duration such as 24h or 90m, "
        f"at least {format_duration(MIN_SPAN_NS)} (default: 24h)",
    )
    parser.add_argument(
        "--end",
        type=_timestamp,
        metavar="T",
        help="end of the simulated window as an RFC 3339 timestamp (default: the "
        "server's time from GET /health)",
    )
    parser.add_argument(
        "--manifest",
        type=_manifest_path,
        metavar="FILE",
        help="write a JSON manifest of the nodes, files and jobs the server should "
        "hold after the run",
    )
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument(
        "--cacert",
        type=_existing_file,
        metavar="FILE",
        help="PEM file of the CA certificate that verifies an https server",
    )
    tls.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify the certificate of an https server",
    )
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        help="agent token, sent as X-Agent-Token on every write "
        "(default: $MMAB_AGENT_TOKEN, else the agent.token file of --data-dir)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="data directory of the server, to read its agent.token file from",
    )


class _RunError(Exception):
    """A failed request that stops the run."""


def main(args: argparse.Namespace) -> int:
    """Run the simulation against `args.server` and return the exit code.

    Returns 0 on success, 1 when a request fails or the manifest cannot be
    written, 2 for invalid options and 130 when interrupted. The manifest is
    written only after every request succeeded.
    """
    token = args.token if args.token is not None else os.environ.get("MMAB_AGENT_TOKEN")
    if token is None and args.data_dir is not None:
        token_file = args.data_dir / "agent.token"
        try:
            token = token_file.read_text(encoding="ascii").strip()
        except OSError as error:
            print(f"simulate: cannot read {token_file}: {error}", file=sys.stderr)
            return 2
    try:
        verify = _tls_verification(args)
    except (OSError, ssl.SSLError) as error:
        _print_error(f"cannot load the CA certificate {args.cacert}: {error}")
        return 2

    try:
        with httpx.Client(
            base_url=args.server, timeout=HTTP_TIMEOUT_S, verify=verify
        ) as client:
            end_ns = (
                args.end if args.end is not None else _server_time(client, args.server)
            )
            try:
                plan = build_plan(
                    nodes=args.nodes,
                    jobs=args.jobs,
                    queues=args.queues,
                    seed=args.seed,
                    spot_rate=args.spot_rate,
                    span_ns=args.span,
                    end_ns=end_ns,
                )
            except ValueError as error:
                _print_error(str(error))
                return 2
            started = time.monotonic()
            _Sender(client, args.server, token or None).send_all(plan.actions)
            elapsed_s = time.monotonic() - started
    except _RunError as error:
        _print_error(str(error))
        return 1
    except KeyboardInterrupt:
        _print_error("interrupted; the server holds part of the simulated fleet")
        return 130

    if args.manifest is not None:
        manifest = build_manifest(plan, args.server)
        try:
            _write_atomically(args.manifest, json.dumps(manifest, indent=2).encode())
        except OSError as error:
            _print_error(f"cannot write the manifest {args.manifest}: {error}")
            return 1
    print(_summary(plan, elapsed_s))
    return 0


def _print_error(message: str) -> None:
    print(f"simulate: error: {message}", file=sys.stderr)


def _tls_verification(args: argparse.Namespace) -> ssl.SSLContext | bool:
    if args.insecure:
        return False
    if args.cacert is not None:
        return ssl.create_default_context(cafile=str(args.cacert))
    return True


def _excerpt(text: str, limit: int = 500) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "..."


def _describe_transport_error(error: httpx.TransportError) -> str:
    detail = str(error) or type(error).__name__
    if "CERTIFICATE_VERIFY_FAILED" in detail:
        detail += "; pass --cacert FILE for a self-signed certificate, or --insecure"
    return detail


def _server_time(client: httpx.Client, server: str) -> int:
    """Read the server's clock from `GET /health`."""
    try:
        response = client.get("/health")
    except httpx.TransportError as error:
        detail = _describe_transport_error(error)
        msg = f"GET {server}/health failed: {detail}"
        raise _RunError(msg) from error
    if not response.is_success:
        msg = (
            f"GET /health failed with {response.status_code} "
            f"{response.reason_phrase}: {_excerpt(response.text)}"
        )
        raise _RunError(msg)
    try:
        return parse_time(response.json()["time"])
    except (ValueError, KeyError, TypeError):
        msg = (
            "GET /health returned no valid RFC 3339 `time`: "
            f"{_excerpt(response.text)}; pass --end to set the window's end"
        )
        raise _RunError(msg) from None


class _Sender:
    """Send planned requests over one client and stop at the first failure.

    A slow server can take longer than its node TTL to get through the
    requests between two planned heartbeats, so every live node also posts
    its descriptor again after `KEEPALIVE_S` of wall-clock time without one.
    These extra posts change no job event and no file.
    """

    def __init__(self, client: httpx.Client, server: str, token: str | None) -> None:
        self.client = client
        self.server = server
        self.token = token
        self._live: dict[str, bytes] = {}  # node id to descriptor body
        self._last_heartbeat_s = time.monotonic()

    def send_all(self, actions: tuple[Action, ...]) -> None:
        with tqdm(
            total=len(actions),
            unit="req",
            file=sys.stderr,
            disable=not sys.stderr.isatty(),
        ) as progress:
            for action in actions:
                self.send(action)
                self._track_live_nodes(action)
                if time.monotonic() - self._last_heartbeat_s > KEEPALIVE_S:
                    self._post_heartbeats()
                progress.update()

    def send(self, action: Action) -> None:
        headers = {"X-Node-ID": action.node_id}
        if action.content_type is not None:
            headers["Content-Type"] = action.content_type
        if self.token is not None:
            headers["X-Agent-Token"] = self.token
        try:
            response = self.client.request(
                action.method, action.path, content=action.body or None, headers=headers
            )
        except httpx.TransportError as error:
            detail = _describe_transport_error(error)
            msg = f"{action.method} {self.server}{action.path} failed: {detail}"
            raise _RunError(msg) from error
        if not response.is_success:
            msg = (
                f"{action.method} {action.path} failed with {response.status_code} "
                f"{response.reason_phrase}: {_excerpt(response.text)}"
            )
            raise _RunError(msg)

    def _track_live_nodes(self, action: Action) -> None:
        if action.kind is ActionKind.REGISTER:
            self._live[action.node_id] = action.body
        elif action.kind is ActionKind.LEAVE:
            del self._live[action.node_id]
        elif action.kind is ActionKind.HEARTBEAT:
            self._last_heartbeat_s = time.monotonic()

    def _post_heartbeats(self) -> None:
        for node_id, body in self._live.items():
            self.send(
                Action(
                    at_ns=0,
                    kind=ActionKind.HEARTBEAT,
                    method="POST",
                    path="/api/v1/node",
                    node_id=node_id,
                    body=body,
                    content_type=JSON_CONTENT_TYPE,
                )
            )
        self._last_heartbeat_s = time.monotonic()


def _count(value: int, noun: str) -> str:
    return f"{value:,} {noun}" if value == 1 else f"{value:,} {noun}s"


def _summary(plan: Plan, elapsed_s: float) -> str:
    initial = sum(node.replaces is None for node in plan.nodes)
    return (
        f"simulated {_count(initial, 'node')} "
        f"(+{_count(len(plan.reclaims), 'replacement')}), "
        f"{_count(len(plan.jobs), 'job')} over {_count(len(plan.queues), 'queue')}, "
        f"{_count(plan.event_count, 'event')}, "
        f"{_count(plan.spot_protection_count, 'spot protection')} in {elapsed_s:.1f} s"
    )
