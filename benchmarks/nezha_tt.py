"""Trace-only root-cause ranking on Nezha Train Ticket, 2023-01-29 (28 labelled faults), with engines/rca/spans.py.

Data: `../shared/eval/rca/nezha-tt/2023-01-29/` (read in place, streamed one minute file at a time). Two
baselines: "before", the spans in the 5 minutes before t (the files hold about 1 minute of it), and "normal",
Nezha's normal-period sample (`normal/trace/`, 3 minutes at 08:48, the same for every case; the order tables
grow during the day, so their queries drift slower and the morning sample goes stale). The window is
[t + offset, t + offset + 4 min) of spans by start time, where t is the labelled `inject_time`
(read as UTC) and offset is 0 s or 60 s. The trace files only reach about 2 minutes past each fault, so the
window holds what there is. AC@k = share of faults whose true service is in the top k; Avg@5 = mean AC@1..5.
Random ranking, analytic: AC@k = k / N, Avg@5 = 3 / N for N candidate services.

    python -m benchmarks.nezha_tt
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.eval_data import EVAL_DIR
from benchmarks.rca_accuracy import ac, avg5
from engines.rca.formats import spans_from_csv
from engines.rca.spans import GraphUse, Span, SpanBaseline, score_services

DAY = "2023-01-29"
ROOT = EVAL_DIR / "rca" / "nezha-tt" / DAY
WINDOW = 240.0  # seconds after the window start
OFFSETS = {"true time": 0.0, "true + 60 s": 60.0}
ALL_SERVICES = 46  # Train Ticket services, the candidate count the published random baseline uses


@dataclass(frozen=True)
class Fault:
    time: float  # Unix seconds, UTC
    service: str
    type: str
    pod: str


def service_of_pod(pod: str) -> str:
    """ts-contacts-service-866bd68c97-xcqfx -> ts-contacts-service."""
    parts = pod.split("-")
    return "-".join(parts[:-2]) if len(parts) > 2 else pod


def _utc(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()


def faults(root: Path = ROOT) -> list[Fault]:
    """The labelled faults, by time (`inject_time` as UTC; `inject_timestamp` is 8 h off and not used)."""
    listed = json.loads((root / f"{DAY}-fault_list.json").read_text())
    out = [
        Fault(_utc(f["inject_time"]), service_of_pod(f["inject_pod"]), f["inject_type"], f["inject_pod"])
        for hour in listed.values()
        for f in hour
    ]
    return sorted(out, key=lambda f: f.time)


def _read(path: Path) -> Iterator[Span]:
    """One minute file, through the same CSV reader `rca_from_files` uses."""
    with gzip.open(path, "rt", newline="", encoding="utf-8", errors="replace") as f:
        yield from spans_from_csv(f)[0]


def _file_minute(path: Path) -> float:
    """`08_43_trace.csv.gz` -> Unix seconds of 08:43 on the day (the file holds about the minute before)."""
    hh, mm = path.name.split("_")[:2]
    return _utc(f"{DAY} {hh}:{mm}:00")


def spans_between(start: float, end: float, root: Path = ROOT) -> Iterator[Span]:
    """Spans starting in [start, end), streamed from the minute files that can hold them, duplicates dropped."""
    seen: set[tuple[str, str]] = set()
    for path in sorted((root / "trace").glob("*_trace.csv.gz")):
        minute = _file_minute(path)
        if minute + 60 < start or minute - 180 > end:  # a file reaches ~3 min back and ~10 s past its name
            continue
        for span in _read(path):
            key = (span.trace_id, span.span_id)
            if start <= span.start < end and key not in seen:
                seen.add(key)
                yield span


def normal_spans(root: Path = ROOT) -> Iterator[Span]:
    """Nezha's normal-period sample."""
    for path in sorted((root / "normal" / "trace").glob("*_trace.csv.gz")):
        yield from _read(path)


BEFORE = 300.0  # seconds before the fault for the "before" baseline


def rank_case(
    baseline: SpanBaseline | None, fault: Fault, offset: float, graph_use: GraphUse
) -> tuple[int, int, float]:
    """(rank of the true service, candidates, seconds to score) for one fault; no baseline = "before"."""
    start = fault.time + offset
    spans = list(spans_between(start, start + WINDOW))
    began = time.perf_counter()
    if baseline is None:
        baseline = SpanBaseline.from_spans(spans_between(fault.time - BEFORE, fault.time))
    ranking = score_services(baseline, spans, graph_use=graph_use)
    spent = time.perf_counter() - began
    names = [e.service for e in ranking]
    rank = names.index(fault.service) + 1 if fault.service in names else 99
    return rank, len(names), spent


def evaluate(
    baseline: SpanBaseline | None, cases: list[Fault], offset: float, graph_use: GraphUse, verbose: bool
) -> dict:
    ranks: dict[str, list[int]] = defaultdict(list)
    spent, candidates = 0.0, []
    for fault in cases:
        rank, n, seconds = rank_case(baseline, fault, offset, graph_use)
        ranks["all"].append(rank)
        ranks[fault.type].append(rank)
        spent += seconds
        candidates.append(n)
        if verbose:
            stamp = datetime.fromtimestamp(fault.time, UTC).strftime("%H:%M:%S")
            print(f"  {stamp} {fault.service:32} {fault.type:15} rank {rank}")
    return {"ranks": ranks, "seconds": spent / max(1, len(cases)), "candidates": sum(candidates) / len(candidates)}


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def print_table(results: dict[str, dict], types: list[str]) -> None:
    head = ["method", "window", "AC@1", "AC@3", "AC@5", "Avg@5", *[f"{t} AC@1 / Avg@5" for t in types], "s/case"]
    print(_row(head))
    print("|" + "---|" * len(head))
    for name, result in results.items():
        r = result["ranks"]
        per_type = [f"{ac(r[t], 1):.2f} / {avg5(r[t]):.2f}" for t in types]
        cells = [*name.split(" @ "), *(f"{ac(r['all'], k):.2f}" for k in (1, 3, 5)), f"**{avg5(r['all']):.2f}**"]
        print(_row([*cells, *per_type, f"{result['seconds']:.3f}"]))
    for n, what in ((ALL_SERVICES, "all Train Ticket services"), (_candidates(results), "services seen in traces")):
        cells = ["random", f"N = {n} ({what})", f"{1 / n:.3f}", f"{3 / n:.3f}", f"{5 / n:.3f}", f"{3 / n:.3f}"]
        print(_row([*cells, *["-"] * len(types), "-"]))


def _candidates(results: dict[str, dict]) -> int:
    return round(max(r["candidates"] for r in results.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="print the rank of every case")
    args = parser.parse_args()
    cases = faults()
    began = time.perf_counter()
    baseline = SpanBaseline.from_spans(normal_spans())
    spent = time.perf_counter() - began
    print(f"normal baseline: {baseline.total} spans, {len(baseline.ops)} operations, {spent:.2f} s")
    types = sorted({f.type for f in cases})
    results = {}
    runs: list[tuple[str, SpanBaseline | None, GraphUse]] = [
        ("before", None, "tiebreak"),
        ("before", None, "none"),
        ("normal", baseline, "tiebreak"),
    ]
    for base_name, base, graph_use in runs:
        for setting, offset in OFFSETS.items():
            name = f"spans, {base_name} baseline, graph {graph_use} @ {setting}"
            if args.verbose:
                print(f"{name}:")
            results[name] = evaluate(base, cases, offset, graph_use, args.verbose)
    print(f"\n## Nezha Train Ticket {DAY}, traces only ({len(cases)} faults, window {WINDOW:.0f} s)\n")
    print("s/case: scoring, and building the 'before' baseline where used (reading files not counted)\n")
    print_table(results, types)


if __name__ == "__main__":
    main()
