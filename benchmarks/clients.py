"""HTTP clients of the two servers: ingest, the four queries, answer parsing, timing.

Both clients build each request path before the timer starts, and the timer
stops once the whole response body is read. JSON is parsed only to check
answers, never inside a timed request.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from pathlib import Path

import numpy as np
from servers import Http, log
from workload import (
    DEFINITIONS,
    SUM_DEFINITION,
    Workload,
    check_answer,
    object_id,
    object_name,
    rfc3339,
)

ARROW_STREAM = "application/vnd.apache.arrow.stream"
AGENT_TOKEN_FILE = "agent.token"
VALIDATED_QUERIES = 3


class QueryError(RuntimeError):
    """A query that returned an error status."""


def summarize_latencies(seconds: list[float]) -> dict:
    """Return the count, median, p95, mean and max of latencies, in milliseconds."""
    if not seconds:
        return {"n": 0}
    ms = np.array(seconds) * 1000.0
    return {
        "n": len(ms),
        "median_ms": float(np.median(ms)),
        "p95_ms": float(np.percentile(ms, 95)),
        "mean_ms": float(ms.mean()),
        "max_ms": float(ms.max()),
    }


def _with_query(path: str, params: dict) -> str:
    return path + "?" + urllib.parse.urlencode(params)


class OursClient:
    """The mmab-metrics API: definitions, Arrow bulk ingest, metricValue and summary."""

    name = "mmab-metrics"

    def __init__(self, http: Http, data_dir: Path) -> None:
        self.http = http
        self.data_dir = data_dir

    def _ingest_headers(self) -> dict:
        """Return the headers of a bulk ingest, with the agent token if the server has one.

        Metric ingestion is an agent route, so a server that keeps an
        `agent.token` file in its data directory rejects it without the token.
        """
        headers = {"Content-Type": ARROW_STREAM}
        token_file = self.data_dir / AGENT_TOKEN_FILE
        if token_file.exists():
            headers["X-Agent-Token"] = token_file.read_text(encoding="ascii").strip()
        return headers

    def register_definitions(self) -> None:
        for definition in DEFINITIONS:
            body = json.dumps(
                {
                    "description": definition.description,
                    "labels": [],
                    "aggregate": definition.aggregate,
                }
            ).encode()
            status, answer = self.http.request(
                "PUT",
                f"/api/v1/metricDef/metricDef-{definition.short}",
                body=body,
                headers={"Content-Type": "application/json"},
            )
            if status != 200:
                raise QueryError(
                    f"registering {definition.short} failed with {status}: {answer[:300]!r}"
                )

    def post_points(self, body: bytes) -> int:
        """Send one Arrow IPC stream and return the points the server accepted."""
        status, answer = self.http.request(
            "POST",
            "/api/v1/metricValue",
            body=body,
            headers=self._ingest_headers(),
        )
        if status != 200:
            raise QueryError(f"bulk ingest failed with {status}: {answer[:300]!r}")
        return json.loads(answer)["accepted"]

    def query_path(self, kind: str, query: dict) -> str:
        if kind == "d":
            short = DEFINITIONS[SUM_DEFINITION].short
            return _with_query(
                "/api/v1/metrics/summary",
                {
                    "start": rfc3339(query["start"]),
                    "end": rfc3339(query["end"]),
                    "definition": f"metricDef-{short}",
                },
            )
        interval = {"a": "1m", "b": "30m", "c": "24h"}[kind]
        return _with_query(
            f"/api/v1/metricValue/{object_id(query['object'])}/"
            f"metricDef-{query['definition'].short}",
            {
                "interval": interval,
                "start": rfc3339(query["start"]),
                "end": rfc3339(query["end"]),
            },
        )

    @staticmethod
    def parse(kind: str, body: bytes) -> tuple[int, float]:
        document = json.loads(body)
        if kind == "d":
            short = DEFINITIONS[SUM_DEFINITION].short
            items = document["items"].get(short, [])
            return len(items), float(sum(item["point"]["value"] for item in items))
        points = document["points"]
        return len(points), float(sum(point["value"] for point in points))

    def check_complete(self, workload: Workload) -> list[dict]:
        """Check the summary of every definition over the whole workload against numpy.

        A missing or doubled point moves some queue's value, so five
        summaries that match show that every point is queryable.
        """
        checks = []
        for index, definition in enumerate(DEFINITIONS):
            path = _with_query(
                "/api/v1/metrics/summary",
                {
                    "start": rfc3339(workload.start_s),
                    "end": rfc3339(workload.end_s),
                    "definition": f"metricDef-{definition.short}",
                },
            )
            status, body = self.http.get(path)
            if status != 200:
                raise QueryError(f"summary failed with {status}: {body[:300]!r}")
            items = json.loads(body)["items"].get(definition.short, [])
            got = (len(items), float(sum(item["point"]["value"] for item in items)))
            lo = index * workload.objects
            rows = workload.values[lo : lo + workload.objects]
            per_queue = rows.sum(axis=1)
            if definition.aggregate == "avg":
                per_queue = per_queue / rows.shape[1]
            checks.append(check_answer((workload.objects, float(per_queue.sum())), got))
        return checks


class VictoriaMetricsClient:
    """VictoriaMetrics: `/api/v1/import` JSON lines and PromQL with `nocache=1`.

    Evaluation times are chosen so that VictoriaMetrics' windows `(t - w, t]`
    select exactly the points of each epoch-aligned bucket `[B, B + w)`: a
    bucket of w seconds is evaluated at `B + w - 1`.
    """

    name = "VictoriaMetrics"

    def __init__(self, http: Http) -> None:
        self.http = http

    def post_points(self, body: bytes) -> None:
        status, answer = self.http.request("POST", "/api/v1/import", body=body)
        if status >= 300:
            raise QueryError(f"import failed with {status}: {answer[:300]!r}")

    def query_path(self, kind: str, query: dict) -> str:
        if kind == "d":
            short = DEFINITIONS[SUM_DEFINITION].short
            # One series per queue, as the summary returns one item per queue.
            return _with_query(
                "/api/v1/query",
                {
                    "query": f"sum_over_time({short}[1d])",
                    "time": query["end"] - 1,
                    "nocache": 1,
                },
            )
        definition = query["definition"]
        selector = f'{definition.short}{{obj="{object_name(query["object"])}"}}'
        if kind == "a":
            expression = selector
            start, end, step = query["start"], query["end"] - 60, 60
        else:
            step = query["bucket"]
            window = "30m" if kind == "b" else "1d"
            function = (
                "sum_over_time" if definition.aggregate == "sum" else "avg_over_time"
            )
            expression = f"{function}({selector}[{window}])"
            start = query["start"] // step * step + step - 1
            end = (query["end"] - 1) // step * step + step - 1
        return _with_query(
            "/api/v1/query_range",
            {
                "query": expression,
                "start": start,
                "end": end,
                "step": step,
                "nocache": 1,
            },
        )

    @staticmethod
    def parse(kind: str, body: bytes) -> tuple[int, float]:
        result = json.loads(body)["data"]["result"]
        if kind == "d":
            return len(result), float(sum(float(r["value"][1]) for r in result))
        values = [float(v) for _, v in result[0]["values"]] if result else []
        return len(values), float(np.sum(values))

    def count_points(self, workload: Workload) -> int:
        names = "|".join(d.short for d in DEFINITIONS)
        status, body = self.http.get(
            "/api/v1/query",
            {
                "query": f'sum(count_over_time({{__name__=~"{names}"}}[{workload.days + 1}d]))',
                "time": workload.end_s,
                "nocache": 1,
            },
        )
        if status != 200:
            raise QueryError(f"count query failed with {status}: {body[:300]!r}")
        result = json.loads(body)["data"]["result"]
        return int(float(result[0]["value"][1])) if result else 0

    def metric_sum(self, text_prefix: str) -> float:
        """Sum the samples of `/metrics` whose names start with `text_prefix`."""
        _, body = self.http.get("/metrics")
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith(text_prefix):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def wait_idle(self, timeout_s: float = 120.0) -> float:
        """Wait until no rows are pending and no merge runs; return the seconds waited."""
        started = time.perf_counter()
        quiet = 0
        while time.perf_counter() - started < timeout_s and quiet < 3:
            busy = self.metric_sum("vm_active_merges") + self.metric_sum(
                "vm_pending_rows"
            )
            quiet = quiet + 1 if busy == 0 else 0
            time.sleep(0.3)
        return time.perf_counter() - started


def get_checked(http: Http, path: str) -> bytes:
    status, body = http.get(path)
    if status != 200:
        raise QueryError(f"GET {path} failed with {status}: {body[:300]!r}")
    return body


def run_queries(
    workload: Workload,
    client: OursClient | VictoriaMetricsClient,
    kinds: str,
    count: int,
    max_seconds: float,
) -> dict:
    """Validate, then time, each query kind on one keep-alive connection.

    The first queries of each kind are checked against numpy and also warm
    the server up. Then up to `count` queries, or `max_seconds` per kind, are
    timed. A wrong answer is logged loudly and recorded, and the kind is
    still timed so that the figures show which answers they belong to.
    """
    results = {}
    for kind in kinds:
        plan = workload.query_plan(kind, count + VALIDATED_QUERIES)
        paths = [client.query_path(kind, query) for query in plan]
        checks = []
        for query, path in zip(
            plan[:VALIDATED_QUERIES], paths[:VALIDATED_QUERIES], strict=True
        ):
            got = client.parse(kind, get_checked(client.http, path))
            checks.append(check_answer(workload.expected(kind, query), got))
        latencies = []
        deadline = time.perf_counter() + max_seconds
        for path in paths[VALIDATED_QUERIES:]:
            started = time.perf_counter()
            status, _ = client.http.get(path)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                raise QueryError(f"GET {path} failed with {status}")
            if time.perf_counter() > deadline:
                break
        summary = summarize_latencies(latencies)
        summary["valid"] = all(check["ok"] for check in checks)
        summary["checks"] = checks
        results[kind] = summary
        marker = "" if summary["valid"] else "  *** WRONG ANSWER: " + json.dumps(checks)
        timing = (
            f"n={summary['n']} median {summary['median_ms']:.3f} ms "
            f"p95 {summary['p95_ms']:.3f} ms"
            if summary["n"]
            else "checked only"
        )
        log(
            f"    {client.name} query {kind}: {timing} valid={summary['valid']}{marker}"
        )
    return results


def time_health(http: Http, count: int = 200, max_seconds: float = 5.0) -> dict:
    """Time `GET /health`: the cost of any request before the query itself."""
    latencies = []
    deadline = time.perf_counter() + max_seconds
    for _ in range(count):
        started = time.perf_counter()
        get_checked(http, "/health")
        latencies.append(time.perf_counter() - started)
        if time.perf_counter() > deadline:
            break
    return summarize_latencies(latencies)
