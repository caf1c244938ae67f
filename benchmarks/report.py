"""Write `RESULTS.md` from the JSON of one benchmark run.

Every figure is the median over repetitions, shown with the run-to-run
spread (min..max of the per-repetition figures). A ratio is ours ÷ the
other system, and it is called a tie when the two spreads overlap, because
this shared 2-core machine moves single figures by more than that.

Usage: .venv/bin/python benchmarks/report.py .work/runs/<stamp> [OUTPUT]
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024


@dataclass(frozen=True)
class Figure:
    """One row of the results: how to read it from a repetition, per system."""

    label: str
    unit: str
    higher_is_better: bool
    ours: Callable[[dict], float | None]
    victoria_metrics: Callable[[dict], float | None] | None = None
    duckdb: Callable[[dict], float | None] | None = None
    note: str = ""


def _get(*keys: str) -> Callable[[dict], float | None]:
    def read(repetition: dict) -> float | None:
        value = repetition
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                return None
            value = value[key]
        return value

    return read


def _scaled(
    reader: Callable[[dict], float | None], factor: float
) -> Callable[[dict], float | None]:
    def read(repetition: dict) -> float | None:
        value = reader(repetition)
        return None if value is None else value * factor

    return read


def _max_of(*readers: Callable[[dict], float | None]) -> Callable[[dict], float | None]:
    def read(repetition: dict) -> float | None:
        values = [r(repetition) for r in readers]
        values = [v for v in values if v is not None]
        return max(values) if values else None

    return read


def _query(
    system: str, kind: str, statistic: str = "median_ms", group: str = "queries"
):
    return _get(system, group, kind, statistic)


def _duckdb_query(order: str, kind: str, group: str, statistic: str = "median_ms"):
    return _get("duckdb", order, group, kind, statistic)


MILLION = 1e-6

FIGURES = (
    Figure(
        "ingest series-major, until queryable",
        "M pts/s",
        True,
        _scaled(_get("ours_series", "ingest", "queryable_points_per_s"), MILLION),
        _scaled(_get("vm_series", "ingest", "queryable_points_per_s"), MILLION),
        _scaled(_get("duckdb", "series", "insert_points_per_s"), MILLION),
        "DuckDB: one INSERT from Arrow into a file, with CHECKPOINT, no levels",
    ),
    Figure(
        "ingest time-major, until queryable",
        "M pts/s",
        True,
        _scaled(_get("ours_time", "ingest", "queryable_points_per_s"), MILLION),
        _scaled(_get("vm_time", "ingest", "queryable_points_per_s"), MILLION),
        _scaled(_get("duckdb", "time", "insert_points_per_s"), MILLION),
    ),
    Figure(
        "PointStore.write series-major, in-process",
        "M pts/s",
        True,
        _scaled(_get("pointstore_series", "points_per_s"), MILLION),
        None,
        _scaled(_get("duckdb", "series", "insert_points_per_s"), MILLION),
    ),
    Figure(
        "PointStore.write time-major, first day of writes, in-process",
        "M pts/s",
        True,
        _scaled(_get("pointstore_time", "points_per_s"), MILLION),
        None,
        _scaled(_get("duckdb", "time", "insert_points_per_s"), MILLION),
    ),
    Figure(
        "disk, raw only (series-major)",
        "B/pt",
        False,
        _get("ours_series", "disk", "raw_bytes_per_point"),
        _get("vm_series", "disk", "bytes_per_point"),
        _get("duckdb", "series", "raw_bytes_per_point"),
        "ours: `raw` and `series` copied into a fresh DuckDB file",
    ),
    Figure(
        "disk, raw + levels, server's file (series-major)",
        "B/pt",
        False,
        _get("ours_series", "disk", "file_bytes_per_point"),
        _get("vm_series", "disk", "bytes_per_point"),
        _get("duckdb", "series", "levels_bytes_per_point"),
        "VictoriaMetrics keeps no levels, so its raw figure is the reference",
    ),
    Figure(
        "disk, raw + levels, compacted copy (series-major)",
        "B/pt",
        False,
        _get("ours_series", "disk", "compacted_bytes_per_point"),
        _get("vm_series", "disk", "bytes_per_point"),
        _get("duckdb", "series", "levels_bytes_per_point"),
    ),
    Figure(
        "disk, raw only (time-major)",
        "B/pt",
        False,
        _get("ours_time", "disk", "raw_bytes_per_point"),
        _get("vm_time", "disk", "bytes_per_point"),
        _get("duckdb", "time", "raw_bytes_per_point"),
    ),
    Figure(
        "disk, raw + levels, server's file (time-major)",
        "B/pt",
        False,
        _get("ours_time", "disk", "file_bytes_per_point"),
        _get("vm_time", "disk", "bytes_per_point"),
        _get("duckdb", "time", "levels_bytes_per_point"),
    ),
    *(
        Figure(
            f"query {kind} median{suffix}",
            "ms",
            False,
            _query(f"ours_{order}", kind),
            _query(f"vm_{order}", kind),
            _duckdb_query(order, kind, "queries_levels"),
            "DuckDB: raw for a, the 30m and 24h tables for b, c and d",
        )
        for order, suffix in (("series", ""), ("time", ", after time-major ingest"))
        for kind in "abcd"
        if order == "series" or kind == "a"
    ),
    *(
        Figure(
            f"query {kind} p95",
            "ms",
            False,
            _query("ours_series", kind, "p95_ms"),
            _query("vm_series", kind, "p95_ms"),
            _duckdb_query("series", kind, "queries_levels", "p95_ms"),
        )
        for kind in "abcd"
    ),
    Figure(
        "GET /health median (HTTP floor)",
        "ms",
        False,
        _get("ours_series", "health", "median_ms"),
        _get("vm_series", "health", "median_ms"),
    ),
    Figure(
        "peak RSS while ingesting and serving (VmHWM)",
        "MiB",
        False,
        _scaled(
            _max_of(
                *(
                    _get(f"ours_{order}", key)
                    for order in ("series", "time")
                    for key in ("peak_rss_ingest", "peak_rss")
                ),
                _get("ours_series", "small_batch", "peak_rss"),
            ),
            1 / MIB,
        ),
        _scaled(
            _max_of(
                *(
                    _get(f"vm_{order}", key)
                    for order in ("series", "time")
                    for key in ("peak_rss_ingest", "peak_rss")
                ),
            ),
            1 / MIB,
        ),
        None,
        "the maximum over every server process of the system in the repetition",
    ),
    Figure(
        "full rollup of every level from raw",
        "s",
        False,
        _get("ours_series", "rollup", "alone_s"),
        None,
        _get("duckdb", "series", "rollup_s"),
        "DuckDB: CREATE TABLE ... AS SELECT ... GROUP BY over raw, for 30m and 24h",
    ),
    Figure(
        "longest query while the full rollup runs",
        "ms",
        False,
        _get("ours_series", "rollup", "probe_max_ms"),
    ),
    Figure(
        "10,000-point write over HTTP, ingest + roll up",
        "ms",
        False,
        _get("ours_series", "small_batch", "median_ms"),
        _get("vm_series", "small_batch_accepted", "median_ms"),
        _get("duckdb", "series", "small_batch", "median_ms"),
        "VictoriaMetrics: until accepted (it makes points queryable about 1 s later)",
    ),
    Figure(
        "10,000-point PointStore.write, in-process",
        "ms",
        False,
        _get("pointstore_series", "small_batch", "median_ms"),
        None,
        _get("duckdb", "series", "small_batch", "median_ms"),
        "DuckDB: INSERT plus UPDATE/INSERT of the touched buckets, one transaction",
    ),
)


@dataclass(frozen=True)
class Target:
    """A goal for one figure: ours against a reference value, or against a constant."""

    label: str
    figure: str
    limit: float
    relative_to_vm: bool
    at_least: bool


TARGETS = (
    Target(
        "ingest series-major ≥ 1.0× VictoriaMetrics",
        "ingest series-major, until queryable",
        1.0,
        True,
        True,
    ),
    Target(
        "ingest time-major ≥ 1.0× VictoriaMetrics",
        "ingest time-major, until queryable",
        1.0,
        True,
        True,
    ),
    *(
        Target(
            f"query {kind} median ≤ 1.0× VictoriaMetrics",
            f"query {kind} median",
            1.0,
            True,
            False,
        )
        for kind in "abcd"
    ),
    Target(
        "raw B/pt ≤ 1.0× VictoriaMetrics",
        "disk, raw only (series-major)",
        1.0,
        True,
        False,
    ),
    Target(
        "raw + levels B/pt ≤ 2.0× VictoriaMetrics",
        "disk, raw + levels, server's file (series-major)",
        2.0,
        True,
        False,
    ),
    Target(
        "full rollup ≤ 1 s", "full rollup of every level from raw", 1.0, False, False
    ),
    Target(
        "10k-point write ≤ 20 ms",
        "10,000-point write over HTTP, ingest + roll up",
        20.0,
        False,
        False,
    ),
    Target(
        "peak RSS ≤ 300 MiB",
        "peak RSS while ingesting and serving (VmHWM)",
        300.0,
        False,
        False,
    ),
)


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float
    runs: int


def spread(values: list[float | None]) -> Spread | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return Spread(statistics.median(present), min(present), max(present), len(present))


def number(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def cell(figure: Spread | None) -> str:
    if figure is None:
        return "—"
    if figure.runs == 1:
        return number(figure.median)
    return f"{number(figure.median)} ({number(figure.low)}..{number(figure.high)})"


def ratio_cell(ours: Spread | None, other: Spread | None) -> str:
    if ours is None or other is None or other.median == 0:
        return "—"
    ratio = ours.median / other.median
    overlap = ours.low <= other.high and other.low <= ours.high
    tie = " tie" if overlap and ours.runs > 1 else ""
    shown = f"{ratio:.2f}" if ratio >= 0.1 else f"{ratio:.2g}"
    return f"{shown}×{tie}"


def collect(repetitions: list[dict]) -> dict[str, dict[str, Spread | None]]:
    table = {}
    for figure in FIGURES:
        table[figure.label] = {
            system: spread([reader(r) for r in repetitions]) if reader else None
            for system, reader in (
                ("ours", figure.ours),
                ("vm", figure.victoria_metrics),
                ("duckdb", figure.duckdb),
            )
        }
    return table


def validity(repetitions: list[dict]) -> list[str]:
    """List every answer check that failed, by repetition, system and query kind."""
    failures = []
    for repetition in repetitions:
        number_ = repetition["repetition"]
        for system, part in repetition.items():
            if not isinstance(part, dict):
                continue
            if "ingest" in part and part["ingest"].get("complete") is False:
                failures.append(f"repetition {number_}: {system} ingest incomplete")
            seen = part.get("ingest", {}).get("points_seen")
            if seen is not None and seen != part["ingest"]["points_expected"]:
                failures.append(
                    f"repetition {number_}: {system} holds {seen:,} points, expected "
                    f"{part['ingest']['points_expected']:,}"
                )
            for group in ("queries", "after_rollup", "queries_raw", "queries_levels"):
                for kind, summary in part.get(group, {}).items():
                    if not summary.get("valid", True):
                        failures.append(
                            f"repetition {number_}: {system} {group} {kind}: "
                            + json.dumps(summary["checks"])
                        )
            for order in ("series", "time"):
                inner = part.get(order)
                if isinstance(inner, dict):
                    for group in ("queries_raw", "queries_levels"):
                        for kind, summary in inner.get(group, {}).items():
                            if not summary.get("valid", True):
                                failures.append(
                                    f"repetition {number_}: {system} {order} {group} {kind}: "
                                    + json.dumps(summary["checks"])
                                )
    return failures


def render(meta: dict, repetitions: list[dict]) -> str:
    table = collect(repetitions)
    machine, versions, workload = meta["machine"], meta["versions"], meta["workload"]
    loads = [r["loadavg_start"] for r in repetitions] + [
        r["loadavg_end"] for r in repetitions
    ]
    lines = [
        "# Benchmark results",
        "",
        f"Run of `benchmarks/run.py` with `{_arguments(meta['args'])}`, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(workload['end_s']))}, "
        f"{len(repetitions)} repetition(s), {meta['seconds'] / 60:.1f} min in all. "
        "How each figure is measured: `benchmarks/README.md`.",
        "",
        "## Machine and versions",
        "",
        f"- CPU: {machine['cpu']}, {machine['cores']} cores; RAM {machine['memory']}; "
        f"kernel {machine['kernel']}; {machine['os']}",
        f"- load average (1, 5, 15 min) at start {_load(meta['loadavg_start'])}, "
        f"at end {_load(meta['loadavg_end'])}; the 1-min figure ranged "
        f"{min(x[0] for x in loads):.2f}..{max(x[0] for x in loads):.2f} "
        "at the starts and ends of repetitions",
        "- " + ", ".join(f"{name} {version}" for name, version in versions.items()),
        f"- workload: {workload['points']:,} points, {workload['series']} series, "
        f"{workload['days']} d at 60 s, values sha256 {workload['fingerprint']}",
        "",
    ]
    failures = validity(repetitions)
    if failures:
        lines += ["## WRONG ANSWERS", "", *[f"- {f}" for f in failures], ""]
    else:
        lines += [
            "Every answer checked (count and sum against numpy, rel. 1e-6) was correct: "
            "the ingests, the first 3 queries of each kind on every system, and the "
            "queries again after the full rollup.",
            "",
        ]
    lines += _targets(table)
    lines += [
        "## All figures",
        "",
        "Median over repetitions (min..max). Ratio = ours ÷ the other; for M pts/s "
        'higher is better, for every other unit lower is better. "tie" = the two '
        "run-to-run spreads overlap.",
        "",
        "| figure | unit | ours | VictoriaMetrics | DuckDB in-process | ours ÷ VM | ours ÷ DuckDB |",
        "|---|---|---|---|---|---|---|",
    ]
    notes: dict[str, int] = {}
    for figure in FIGURES:
        row = table[figure.label]
        mark = ""
        if figure.note:
            mark = f" [{notes.setdefault(figure.note, len(notes) + 1)}]"
        lines.append(
            f"| {figure.label}{mark} | {figure.unit} | {cell(row['ours'])} | {cell(row['vm'])} "
            f"| {cell(row['duckdb'])} | {ratio_cell(row['ours'], row['vm'])} "
            f"| {ratio_cell(row['ours'], row['duckdb'])} |"
        )
    lines += ["", *[f"{i}. {note}" for note, i in notes.items()], ""]
    lines += _details(repetitions)
    return "\n".join(lines) + "\n"


def _targets(table: dict) -> list[str]:
    lines = [
        "## Targets",
        "",
        "| target | ours | reference | value | verdict |",
        "|---|---|---|---|---|",
    ]
    for target in TARGETS:
        row = table[target.figure]
        ours = row["ours"]
        if ours is None:
            lines.append(f"| {target.label} | — | — | — | not measured |")
            continue
        if target.relative_to_vm:
            reference = row["vm"]
            value = ours.median / reference.median
            low = ours.low / reference.high
            high = ours.high / reference.low
            shown = f"{value:.3g}× ({low:.3g}..{high:.3g})"
            reference_text = cell(reference)
        else:
            value, low, high = ours.median, ours.low, ours.high
            shown = cell(ours)
            reference_text = number(target.limit)
        met = value >= target.limit if target.at_least else value <= target.limit
        crosses = low <= target.limit <= high
        verdict = "met" if met else "MISSED"
        if crosses and ours.runs > 1:
            verdict += " (the spread crosses the limit)"
        lines.append(
            f"| {target.label} | {cell(ours)} | {reference_text} | {shown} | {verdict} |"
        )
    return [*lines, ""]


def _details(repetitions: list[dict]) -> list[str]:
    lines = ["## Per-repetition details", ""]
    for repetition in repetitions:
        ours = repetition["ours_series"]
        rollup = ours.get("rollup", {})
        lines.append(
            f"- repetition {repetition['repetition']}: load {_load(repetition['loadavg_start'])} → "
            f"{_load(repetition['loadavg_end'])}; our ingest requests "
            f"{ours['ingest']['requests']} series-major / "
            f"{repetition['ours_time']['ingest']['requests']} time-major; "
            f"rollup alone {rollup.get('alone_s', 0):.2f} s, with the query probe "
            f"{rollup.get('with_probe_s', 0):.2f} s ({rollup.get('probe_queries', 0)} probe "
            f"queries, longest {rollup.get('probe_max_ms', 0):.1f} ms, kind "
            f"{rollup.get('probe_max_kind', '-')}); server restart "
            f"{ours.get('small_batch', {}).get('restart_s', 0):.2f} s; code at start: "
            f"{_code(repetition.get('code'))}"
        )
    return [*lines, ""]


def _code(state: dict | None) -> str:
    if not state:
        return "not recorded"
    return f"commit {state['git']}, uncommitted server files: {state['uncommitted']}"


def _load(values) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def _arguments(args: dict) -> str:
    shown = [f"--{k.replace('_', '-')} {v}" for k, v in args.items() if k != "quick"]
    return " ".join(shown) + (" (--quick)" if args.get("quick") else "")


def write_report(meta: dict, repetitions: list[dict], target: Path) -> None:
    target.write_text(render(meta, repetitions))


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    run_dir = Path(argv[0])
    meta = json.loads((run_dir / "meta.json").read_text())
    repetitions = [
        json.loads(p.read_text())
        for p in sorted(
            run_dir.glob("repetition-*.json"), key=lambda p: int(p.stem.split("-")[1])
        )
    ]
    target = (
        Path(argv[1])
        if len(argv) > 1
        else Path(__file__).resolve().parent / "RESULTS.md"
    )
    write_report(meta, repetitions, target)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
