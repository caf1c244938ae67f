"""Benchmark mmab-metrics against VictoriaMetrics and in-process DuckDB.

Each repetition starts fresh servers on throwaway data directories, on
127.0.0.1 only, and measures bulk ingest (series-major and time-major), disk
bytes per point, query latency (a to d), peak RSS, the full rollup and the
10,000-point write. The results of the first queries of each kind are
checked against numpy before any query is timed. Raw figures go to `.work/runs/<stamp>/`, and the report to
`RESULTS.md` (`.work/RESULTS-quick.md` for `--quick`).

Usage: .venv/bin/python benchmarks/run.py [--repeat 3] [--days 7] [--queries 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import inprocess
import report
from clients import (
    OursClient,
    QueryError,
    VictoriaMetricsClient,
    run_queries,
    summarize_latencies,
    time_health,
)
from servers import (
    BENCH_DIR,
    VM_PACKAGE,
    WORK,
    Http,
    assert_loopback_only,
    ensure_victoria_metrics,
    file_bytes,
    fresh_dir,
    log,
    peak_rss_bytes,
    start_ours,
    start_victoria_metrics,
)
from workload import DAY_S, Workload, arrow_stream, floor_minute

ORDERS = ("series", "time")
QUERYABLE_TIMEOUT_S = 120.0
# An ingest that takes longer stops early, and its checks then fail.
INGEST_TIMEOUT_S = 900.0
ROLLUP_PROBE_MAX_QUERIES = 100_000
ROLLUP_TIMEOUT_S = 600.0

# `timeout` and a plain `kill` send SIGTERM: raise SystemExit so that the
# `finally` blocks stop the servers this run started.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeat", type=int, default=3, help="repetitions, at least 3 (default 3)"
    )
    parser.add_argument(
        "--days",
        type=int,
        default=7,
        choices=range(1, 8),
        metavar="1..7",
        help="days of data per series at one point a minute (default 7)",
    )
    parser.add_argument(
        "--queries", type=int, default=200, help="timed queries per kind (default 200)"
    )
    parser.add_argument(
        "--query-seconds",
        type=float,
        default=30.0,
        help="time cap per query kind, in seconds (default 30)",
    )
    parser.add_argument(
        "--minutes-per-request",
        type=int,
        default=10,
        help="minutes of all 500 series per time-major request (default 10)",
    )
    parser.add_argument(
        "--batches",
        type=int,
        default=20,
        help="10,000-point writes timed per system (default 20)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 day, 30 queries per kind, 5 batches, 1 repetition",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.days, args.queries, args.batches, args.repeat = 1, 30, 5, 1
    elif args.repeat < 3:
        parser.error("--repeat must be at least 3 (medians of fewer runs mislead here)")
    return args


# ------------------------------------------------------------ environment --


def machine_info() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    fields = dict(line.split(":", 1) for line in lscpu.splitlines() if ":" in line)
    memory = next(
        line.split(":", 1)[1].strip()
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return {
        "cpu": fields.get("Model name", "").strip(),
        "cores": os.cpu_count(),
        "memory": memory,
        "kernel": platform.release(),
        "os": platform.freedesktop_os_release().get("PRETTY_NAME", ""),
    }


def versions() -> dict:
    from importlib import metadata

    found = {"python": platform.python_version()}
    for name in (
        "duckdb",
        "polars",
        "pyarrow",
        "numpy",
        "litestar",
        "uvicorn",
        "msgspec",
        "httptools",
        "uvloop",
    ):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "missing"
    found["mmab_metrics"] = metadata.version("mmab-metrics")
    found["victoria-metrics"] = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", VM_PACKAGE],
        capture_output=True,
        text=True,
        timeout=20,
    ).stdout.strip()
    found.update(code_state())
    return found


def code_state() -> dict:
    """Name the commit and the server files changed but not committed."""
    found = {}
    found["git"] = subprocess.run(
        ["git", "-C", str(BENCH_DIR.parent), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        timeout=20,
    ).stdout.strip()
    # Server files changed but not committed make the measured code differ
    # from the commit named above.
    changed = subprocess.run(
        [
            "git",
            "-C",
            str(BENCH_DIR.parent),
            "status",
            "--porcelain",
            "--",
            "api",
            "storage",
            "mmab_metrics",
        ],
        capture_output=True,
        text=True,
        timeout=20,
    ).stdout.split("\n")
    found["uncommitted"] = (
        " ".join(line[3:] for line in changed if line.strip()) or "none"
    )
    return found


# --------------------------------------------------------- VictoriaMetrics --


def measure_victoria_metrics(
    workload: Workload, order: str, payloads: list[bytes], base: Path, args
) -> dict:
    """Ingest, compact, measure disk, then query a fresh VictoriaMetrics."""
    data_dir = fresh_dir(base / f"vm-{order}")
    log_path = base / f"vm-{order}.log"
    result: dict = {}
    server, port = start_victoria_metrics(data_dir, log_path)
    http = Http(port)
    client = VictoriaMetricsClient(http)
    try:
        result["sockets"] = assert_loopback_only(server.pid)
        result["ingest"] = ingest_victoria_metrics(workload, client, payloads, order)
        result["peak_rss_ingest"] = peak_rss_bytes(server.pid)

        client.wait_idle()
        http.close()
        server.stop()
        server, port = start_victoria_metrics(data_dir, log_path)
        http.port = port
        http.get("/internal/force_merge")
        time.sleep(1.0)
        client.wait_idle()
        http.close()
        server.stop()
        parts = {name: file_bytes(data_dir / name) for name in ("data", "indexdb")}
        allocated = sum(part["allocated"] for part in parts.values())
        result["disk"] = {
            "parts": parts,
            "bytes_per_point": allocated / workload.point_count,
        }
        log(f"  VictoriaMetrics disk: {result['disk']['bytes_per_point']:.2f} B/pt")

        server, port = start_victoria_metrics(data_dir, log_path)
        http.port = port
        result["health"] = time_health(http)
        result["queries"] = run_queries(
            workload, client, "abcd", args.queries, args.query_seconds
        )
        if order == "series":
            bodies = [workload.small_batch_jsonl(i) for i in range(args.batches)]
            latencies = []
            for body in bodies:
                started = time.perf_counter()
                client.post_points(body)
                latencies.append(time.perf_counter() - started)
            result["small_batch_accepted"] = summarize_latencies(latencies)
        result["sockets_end"] = assert_loopback_only(server.pid)
        result["peak_rss"] = peak_rss_bytes(server.pid)
    finally:
        http.close()
        result["stop_rc"] = server.stop()
    return result


def ingest_victoria_metrics(
    workload: Workload, client: VictoriaMetricsClient, payloads: list[bytes], order: str
) -> dict:
    """Send every payload, flush, and poll a count query until it sees every point."""
    started = time.perf_counter()
    for sent, body in enumerate(payloads, 1):
        client.post_points(body)
        if time.perf_counter() - started > INGEST_TIMEOUT_S:
            log(
                f"  *** ingest stopped after {INGEST_TIMEOUT_S:.0f} s, {sent} of {len(payloads)} requests"
            )
            break
    accepted = time.perf_counter() - started
    client.http.get("/internal/force_flush")
    seen = 0
    deadline = time.perf_counter() + QUERYABLE_TIMEOUT_S
    while time.perf_counter() < deadline:
        seen = client.count_points(workload)
        if seen >= workload.point_count:
            break
        time.sleep(0.1)
    queryable = time.perf_counter() - started

    if seen != workload.point_count:
        log(
            f"  *** VictoriaMetrics holds {seen:,} points, expected {workload.point_count:,}"
        )
    result = _ingest_figures(workload, payloads, accepted, queryable)
    result["points_seen"] = seen
    result["points_expected"] = workload.point_count
    log(
        f"  VictoriaMetrics {order}-major ingest: "
        f"{result['queryable_points_per_s']:,.0f} pts/s until queryable"
    )
    return result


def _ingest_figures(workload, payloads, accepted: float, queryable: float) -> dict:
    return {
        "requests": len(payloads),
        "payload_bytes": sum(len(body) for body in payloads),
        "accepted_s": accepted,
        "queryable_s": queryable,
        "accepted_points_per_s": workload.point_count / accepted,
        "queryable_points_per_s": workload.point_count / queryable,
    }


# ------------------------------------------------------------- our server --


def measure_ours(
    workload: Workload, order: str, payloads: list[bytes], base: Path, args
) -> dict:
    """Ingest into a fresh mmab-metrics server, query it, roll up, and measure disk."""
    data_dir = fresh_dir(base / f"ours-{order}")
    log_path = base / f"ours-{order}.log"
    result: dict = {}
    server, port = start_ours(data_dir, workload.end_s, log_path)
    http = Http(port)
    client = OursClient(http, data_dir)
    try:
        result["sockets"] = assert_loopback_only(server.pid)
        client.register_definitions()
        result["ingest"] = ingest_ours(workload, client, payloads, order)
        result["peak_rss_ingest"] = peak_rss_bytes(server.pid)

        result["health"] = time_health(http)
        result["queries"] = run_queries(
            workload, client, "abcd", args.queries, args.query_seconds
        )
        if order == "series":
            result["rollup"] = measure_rollup(workload, client, port)
            result["after_rollup"] = run_queries(workload, client, "abcd", 0, 1.0)
        result["sockets_end"] = assert_loopback_only(server.pid)
        result["peak_rss"] = peak_rss_bytes(server.pid)
    finally:
        http.close()
        result["stop_rc"] = server.stop()
    result["disk"] = measure_duckdb_file(
        data_dir / "mmab.duckdb", workload, base / f"ours-{order}-copies"
    )
    log(
        f"  mmab-metrics disk: {result['disk']['raw_bytes_per_point']:.2f} B/pt raw, "
        f"{result['disk']['file_bytes_per_point']:.2f} B/pt file with levels"
    )
    if order == "series":
        result["small_batch"] = measure_small_batch(workload, data_dir, log_path, args)
    return result


def ingest_ours(
    workload: Workload, client: OursClient, payloads: list[bytes], order: str
) -> dict:
    """Send every payload, then check that the summaries match numpy.

    The server makes points queryable before it returns, so "queryable" is
    the last response plus the time of the check.
    """
    started = time.perf_counter()
    accepted_points = 0
    for sent, body in enumerate(payloads, 1):
        accepted_points += client.post_points(body)
        if time.perf_counter() - started > INGEST_TIMEOUT_S:
            log(
                f"  *** ingest stopped after {INGEST_TIMEOUT_S:.0f} s, {sent} of {len(payloads)} requests"
            )
            break
    accepted = time.perf_counter() - started
    complete = client.check_complete(workload)
    queryable = time.perf_counter() - started

    result = _ingest_figures(workload, payloads, accepted, queryable)
    result["points_accepted"] = accepted_points
    result["complete"] = all(check["ok"] for check in complete)
    result["complete_checks"] = complete
    marker = "" if result["complete"] else f"  *** INCOMPLETE: {complete}"
    log(
        f"  mmab-metrics {order}-major ingest: "
        f"{result['queryable_points_per_s']:,.0f} pts/s until queryable{marker}"
    )
    return result


def measure_rollup(workload: Workload, client: OursClient, port: int) -> dict:
    """Time the full rollup alone, then again while a second connection queries.

    The probe cycles through queries a to d and records every latency; only
    queries that overlap the second rollup count for the maximum.
    """
    status, body = client.http.request(
        "POST",
        "/api/v1/metrics/rollup",
        body=b"{}",
        headers={"Content-Type": "application/json"},
    )
    if status != 200:
        log(f"  *** full rollup failed with {status}: {body[:200]!r}")
        return {
            "available": False,
            "status": status,
            "body": body[:300].decode(errors="replace"),
        }
    started = time.perf_counter()
    status, body = client.http.request(
        "POST",
        "/api/v1/metrics/rollup",
        body=b"{}",
        headers={"Content-Type": "application/json"},
    )
    alone_s = time.perf_counter() - started
    reported = json.loads(body)

    paths = []
    for kind in "abcd":
        paths += [
            (kind, client.query_path(kind, q)) for q in workload.query_plan(kind, 50)
        ]
    probes: list[tuple[float, float, str]] = []
    done = threading.Event()

    def probe() -> None:
        probe_http = Http(port)
        try:
            index = 0
            limit = time.perf_counter() + ROLLUP_TIMEOUT_S
            while not done.is_set() and index < ROLLUP_PROBE_MAX_QUERIES:
                kind, path = paths[index % len(paths)]
                sent = time.perf_counter()
                probe_http.get(path)
                probes.append((sent, time.perf_counter(), kind))
                index += 1
                if sent > limit:
                    break
        finally:
            probe_http.close()

    thread = threading.Thread(target=probe, name="rollup-probe")
    thread.start()
    time.sleep(0.3)
    rollup_started = time.perf_counter()
    status, body = client.http.request(
        "POST",
        "/api/v1/metrics/rollup",
        body=b"{}",
        headers={"Content-Type": "application/json"},
    )
    rollup_ended = time.perf_counter()
    done.set()
    thread.join(timeout=ROLLUP_TIMEOUT_S)
    during = [
        (end - sent, kind)
        for sent, end, kind in probes
        if end >= rollup_started and sent <= rollup_ended
    ]
    result = {
        "available": True,
        "alone_s": alone_s,
        "alone_server_s": reported["seconds"],
        "series": reported["series"],
        "with_probe_s": rollup_ended - rollup_started,
        "probe_queries": len(during),
        "probe_max_ms": max((d for d, _ in during), default=0.0) * 1000,
        "probe_max_kind": max(during, default=(0.0, "-"))[1],
        "probe": summarize_latencies([d for d, _ in during]),
    }
    log(
        f"  mmab-metrics full rollup: {alone_s:.2f} s alone; longest query while it ran "
        f"{result['probe_max_ms']:.1f} ms over {len(during)} queries"
    )
    return result


def measure_duckdb_file(path: Path, workload: Workload, copies: Path) -> dict:
    """Measure the store's DuckDB file, and copies of its raw and of all its tables.

    The raw copy contains the `raw` and `series` tables alone, rewritten into
    a fresh file, because DuckDB reports no table's bytes on disk. The
    compacted copy contains every metric table, without the free blocks that
    replaced level rows leave in the server's file.
    """
    directory = fresh_dir(copies)
    source = file_bytes(path)
    sizes = {}
    with duckdb.connect(str(path), read_only=True) as con:
        levels = [
            name
            for (name,) in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'level_%'"
            ).fetchall()
        ]
    for name, tables in (
        ("raw", ["raw", "series"]),
        ("compacted", ["raw", "series", *levels]),
    ):
        target = directory / f"{name}.duckdb"
        con = duckdb.connect(str(target))
        con.execute(f"ATTACH '{path}' AS source (READ_ONLY)")
        for table in tables:
            con.execute(f"CREATE TABLE {table} AS SELECT * FROM source.{table}")
        con.execute("DETACH source")
        con.execute("CHECKPOINT")
        con.close()
        sizes[name] = file_bytes(target)
    wal = path.with_name(path.name + ".wal")
    return {
        "file": source,
        "wal_left": wal.exists(),
        "raw_copy": sizes["raw"],
        "compacted_copy": sizes["compacted"],
        "file_bytes_per_point": source["allocated"] / workload.point_count,
        "raw_bytes_per_point": sizes["raw"]["allocated"] / workload.point_count,
        "compacted_bytes_per_point": sizes["compacted"]["allocated"]
        / workload.point_count,
        "level_tables": levels,
    }


def measure_small_batch(
    workload: Workload, data_dir: Path, log_path: Path, args
) -> dict:
    """Restart the server on its data and time 10,000-point writes over HTTP."""
    bodies = [arrow_stream(workload.small_batch(i)) for i in range(args.batches)]
    started = time.perf_counter()
    server, port = start_ours(data_dir, workload.end_s, log_path)
    restart_s = time.perf_counter() - started
    http = Http(port)
    client = OursClient(http, data_dir)
    try:
        time_health(http, count=20)
        latencies = []
        for body in bodies:
            sent = time.perf_counter()
            client.post_points(body)
            latencies.append(time.perf_counter() - sent)
        result = summarize_latencies(latencies)
        result["restart_s"] = restart_s
        result["peak_rss"] = peak_rss_bytes(server.pid)
        assert_loopback_only(server.pid)
    finally:
        http.close()
        server.stop()
    log(
        f"  mmab-metrics 10k-point write over HTTP: median {result['median_ms']:.2f} ms"
    )
    return result


# ------------------------------------------------------------------ main --


def run_repetition(
    index: int, workload: Workload, payloads: dict, run_dir: Path, args
) -> dict:
    log(f"repetition {index + 1} of {args.repeat}")
    base = fresh_dir(WORK / "data")
    result: dict = {"repetition": index + 1, "loadavg_start": os.getloadavg()}
    # Each server start imports the working tree, which may change during a run.
    result["code"] = code_state()
    for order in ORDERS:
        result[f"vm_{order}"] = measure_victoria_metrics(
            workload, order, payloads["vm"][order], base, args
        )
    for order in ORDERS:
        result[f"ours_{order}"] = measure_ours(
            workload, order, payloads["ours"][order], base, args
        )
    result["duckdb"] = inprocess.measure_duckdb(
        workload, base, args.queries, args.query_seconds, args.batches
    )
    result["pointstore_series"] = inprocess.measure_point_store(
        workload, base, "series", args.minutes_per_request, args.batches
    )
    # The first day of time-major writes is enough for a rate, and the whole
    # week would add minutes to every repetition.
    result["pointstore_time"] = inprocess.measure_point_store(
        workload,
        base,
        "time",
        args.minutes_per_request,
        0,
        max_writes=-(-DAY_S // (60 * args.minutes_per_request)),
    )
    result["loadavg_end"] = os.getloadavg()
    (run_dir / f"repetition-{index + 1}.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    ensure_victoria_metrics()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    run_dir = WORK / "runs" / (stamp + ("-quick" if args.quick else ""))
    run_dir.mkdir(parents=True)
    workload = Workload(days=args.days, end_s=floor_minute(time.time()))
    log(
        f"workload: {workload.point_count:,} points, {workload.series_count} series, "
        f"{args.days} d ending {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(workload.end_s))}"
    )
    meta = {
        "args": vars(args),
        "machine": machine_info(),
        "versions": versions(),
        "loadavg_start": os.getloadavg(),
        "workload": {
            "days": workload.days,
            "end_s": workload.end_s,
            "points": workload.point_count,
            "series": workload.series_count,
            "fingerprint": workload.fingerprint(),
        },
    }
    prep = time.perf_counter()
    payloads = {
        "ours": {
            order: workload.arrow_payloads(
                order, minutes_per_request=args.minutes_per_request
            )
            for order in ORDERS
        },
        "vm": {
            order: workload.jsonl_payloads(
                order, minutes_per_request=args.minutes_per_request
            )
            for order in ORDERS
        },
    }
    meta["payload_prep_s"] = time.perf_counter() - prep
    repetitions = []
    try:
        for index in range(args.repeat):
            repetitions.append(run_repetition(index, workload, payloads, run_dir, args))
    except QueryError as exc:
        log(f"*** benchmark stopped: {exc}")
        raise
    meta["loadavg_end"] = os.getloadavg()
    meta["seconds"] = time.perf_counter() - started
    (run_dir / "meta.json").write_text(json.dumps(meta, indent=1))
    target = WORK / "RESULTS-quick.md" if args.quick else BENCH_DIR / "RESULTS.md"
    report.write_report(meta, repetitions, target)
    log(f"wrote {target} and {run_dir}; {meta['seconds']:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
