"""Log-only RCA on Nezha Train Ticket (2023-01-29, 28 labelled faults): `engines.rca.logs` with drain3 templates.

Each fault is scored at the true time: the window is [t, t + 4 min] (the per-minute files around a fault reach
about t + 2 min, so this takes all that follows t), the baseline is Nezha's normal-period sample (`normal/log`).
Also with the window starting at t + 60 s. The data is streamed from `../shared/eval` and never copied.

    python -m benchmarks.nezha_tt_logs
"""

from __future__ import annotations

import gzip
import json
import sys
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.eval_data import EVAL_DIR
from benchmarks.rca_accuracy import ac, avg5
from engines.rca.formats import iter_log_lines_csv
from engines.rca.logs import LogBaseline, LogLine, Templates, score_services
from engines.rca.multimodal import LogNormal, score_logs

DAY = EVAL_DIR / "rca" / "nezha-tt" / "2023-01-29"
WINDOW = 240.0
SETTINGS = {"true time": 0.0, "true + 60 s": 60.0}
SERVICES = 46  # Train Ticket services, for the random baseline


@dataclass(frozen=True)
class Fault:
    time: float  # Unix seconds, UTC
    service: str
    kind: str


def service_of(pod: str) -> str:
    """`ts-travel-service-64469b5b48-25zj6` -> `ts-travel-service`."""
    parts = pod.split("-")
    return "-".join(parts[:-2]) if len(parts) > 2 else pod


def faults(day: Path = DAY) -> list[Fault]:
    """The labels; `inject_time` is read as UTC (`inject_timestamp` is 8 h off on this day)."""
    data = json.loads(next(day.glob("*fault_list.json")).read_text())
    out = []
    for hour in data.values():
        for fault in hour:
            moment = datetime.strptime(fault["inject_time"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
            out.append(Fault(moment.timestamp(), service_of(fault["inject_pod"]), fault["inject_type"]))
    return sorted(out, key=lambda f: f.time)


def read_file(path: Path) -> Iterator[LogLine]:
    """One minute file, streamed through the same CSV reader `rca_from_files` uses."""
    with gzip.open(path, "rt", newline="", encoding="utf-8", errors="replace") as f:
        yield from iter_log_lines_csv(f)


def _minute_of(path: Path, day: Path) -> float:
    """`log/08_43_log.csv.gz` -> the Unix time of 08:43 on the day (a file holds about the minute before it)."""
    hour, minute = path.name.split("_")[:2]
    moment = datetime.strptime(day.name, "%Y-%m-%d").replace(hour=int(hour), minute=int(minute), tzinfo=UTC)
    return moment.timestamp()


def lines_between(start: float, end: float, day: Path = DAY) -> Iterator[LogLine]:
    """Lines with start <= time < end, streamed from the minute files covering it. Files overlap: a line is
    taken only past the latest time of the files read before it."""
    files = sorted(p for p in (day / "log").glob("*_log.csv.gz") if start - 60 <= _minute_of(p, day) <= end + 120)
    done = -float("inf")
    for path in files:
        latest = done
        for line in read_file(path):
            latest = max(latest, line.time)
            if line.time > done and start <= line.time < end:
                yield line
        done = latest


def normal_lines(day: Path = DAY) -> Iterator[LogLine]:
    for path in sorted((day / "normal" / "log").glob("*_log.csv.gz")):
        yield from read_file(path)


def rank_of(service: str, ranking: list[str]) -> int:
    return ranking.index(service) + 1 if service in ranking else 99


def evaluate(offset: float) -> dict:
    ranks: dict[str, list[int]] = defaultdict(list)
    spent = 0.0
    for fault in faults():
        started = time.perf_counter()
        normal = LogNormal.learn(normal_lines())
        start = fault.time + offset
        evidence = score_logs(normal, list(lines_between(start, start + WINDOW)))
        spent += time.perf_counter() - started
        rank = rank_of(fault.service, [e.service for e in evidence])
        ranks["all"].append(rank)
        ranks[fault.kind].append(rank)
        if "-v" in sys.argv:
            top = evidence[0]
            print(f"{fault.kind:15} {fault.service:30} rank {rank:2}  top {top.service} {top.score:.2f} {top.note}")
    return {"ranks": ranks, "seconds": spent / max(1, len(faults()))}


def random_ac(k: int, n: int = SERVICES) -> float:
    return min(k, n) / n


def print_table(results: dict[str, dict], kinds: list[str]) -> None:
    head = ["method", "window", "AC@1", "AC@3", "AC@5", "Avg@5", *[f"{k} Avg@5 (n)" for k in kinds], "s/case"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for setting, result in results.items():
        r = result["ranks"]
        cells = [
            "logs (drain3)",
            f"[t{SETTINGS[setting]:+.0f} s, +{WINDOW:.0f} s]",
            f"{ac(r['all'], 1):.2f}",
            f"{ac(r['all'], 3):.2f}",
            f"{ac(r['all'], 5):.2f}",
            f"**{avg5(r['all']):.2f}**",
            *[f"{avg5(r[k]):.2f} ({len(r[k])})" for k in kinds],
            f"{result['seconds']:.2f}",
        ]
        print("| " + " | ".join(cells) + " |")
    rand = [random_ac(k) for k in range(1, 6)]
    cells = ["random (analytic)", f"{SERVICES} services", f"{rand[0]:.2f}", f"{rand[2]:.2f}", f"{rand[4]:.2f}"]
    cells += [f"{sum(rand) / 5:.2f}", *["" for _ in kinds], ""]
    print("| " + " | ".join(cells) + " |")


def whole_day() -> None:
    """Every log file of the day streamed, (1) as one window's template counts against the normal sample and
    (2) as a normal period, code-path rules included: the memory held is counts, one example per template and
    the calls still open, not the lines."""
    tracemalloc.start()
    began = time.perf_counter()
    templates = Templates()
    baseline = LogBaseline.from_lines(normal_lines(), templates)
    ranked = score_services(baseline, lines_between(0.0, float("inf")), templates)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    day = LogNormal.learn(lines_between(0.0, float("inf")))
    rules = sum(len(r) for r in day.rules.rules().values())
    _, learned_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    lines = sum(1 for _ in lines_between(0.0, float("inf")))
    print(
        f"whole day: {lines} lines, {len(templates)} templates, {len(ranked)} services, "
        f"{time.perf_counter() - began:.1f} s, peak traced memory {peak / 2**20:.1f} MiB as a window; "
        f"as a normal period {len(day.templates)} templates and {rules} code-path rules, "
        f"peak {learned_peak / 2**20:.1f} MiB"
    )


def main() -> None:
    if "--whole-day" in sys.argv:
        whole_day()
        return
    tracemalloc.start()
    kinds = sorted({f.kind for f in faults()})
    results = {setting: evaluate(offset) for setting, offset in SETTINGS.items()}
    _, peak = tracemalloc.get_traced_memory()
    print(f"\n## Nezha Train Ticket 2023-01-29, logs only ({len(faults())} faults, baseline: normal/log)\n")
    print_table(results, kinds)
    print(f"\npeak traced memory: {peak / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
