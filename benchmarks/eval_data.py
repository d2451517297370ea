"""Loaders for the public evaluation data in `../shared/eval` (never copied into the project).

The location is `<repo>/../shared/eval`, or `$CLOUDPILOT_EVAL_DIR` when set.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from engines.rca.frame import Frame

EVAL_DIR = Path(os.environ.get("CLOUDPILOT_EVAL_DIR") or Path(__file__).resolve().parents[1].parent / "shared" / "eval")


@dataclass(frozen=True)
class Case:
    """One labelled RCA case: a frame covering the fault, the true root-cause service and fault time."""

    name: str
    fault: str
    service: str
    inject_time: float
    frame: Frame
    calls: frozenset[tuple[str, str]] = frozenset()  # (caller, callee), where the data set publishes its call graph


def _read_numeric_csv(path: Path) -> tuple[list[str], np.ndarray]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], np.array(rows[1:], dtype=float)


def sock_shop_cases(root: Path | None = None) -> list[Case]:
    """Sock Shop 1: normal.csv then anomalous.csv, concatenated and re-indexed at 1 s per row."""
    root = root or EVAL_DIR / "rca" / "sock-shop-1"
    cases = []
    for case_dir in sorted(p for p in root.glob("*/*") if p.is_dir()):
        header, normal = _read_numeric_csv(case_dir / "normal.csv")
        header_a, anomalous = _read_numeric_csv(case_dir / "anomalous.csv")
        if header != header_a:
            raise ValueError(f"{case_dir}: normal and anomalous columns differ")
        values = np.vstack([normal, anomalous])
        t = header.index("time")
        start = normal[0, t]
        time = start + np.arange(len(values), dtype=float)
        columns = [h for i, h in enumerate(header) if i != t]
        service, fault = case_dir.parent.name.split("-", 1)
        cases.append(
            Case(
                f"{case_dir.parent.name}/{case_dir.name}",
                fault,
                service,
                start + len(normal),
                Frame(time, columns, np.delete(values, t, axis=1)),
            )
        )
    return cases


def _minute(stamp: str) -> int:
    """`2022-08-22 03:51:19.799087274 +0000 UTC m=+0.3` -> the epoch second of its minute (UTC)."""
    moment = datetime.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    return int(moment.timestamp()) // 60 * 60


def _by_minute(path: Path, time_field: str, skip: set[str]) -> dict[str, dict[int, float]]:
    out: dict[str, dict[int, float]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            minute = _minute(row[time_field])
            for key, value in row.items():
                if key in skip or key == time_field or value in ("", None):
                    continue
                out.setdefault(key, {}).setdefault(minute, float(value))
    return out


def nezha_day(day_dir: Path, edges: bool) -> tuple[Frame, list[tuple[float, str, str]], frozenset[tuple[str, str]]]:
    """One Nezha Online Boutique fault day as a frame (1 row per minute) and its (time, service, fault) labels.

    Pod metrics become `<service>_<metric>` (service = pod name before the first `-`); node-level metrics
    (`Node*`) describe the node, not the service, and are left out. With `edges`, the per-call latency
    medians become edge columns of the callee: `<callee>_latency_p50_source@<caller>` (measured by the
    caller) and `<callee>_latency_p50_destination@<caller>` (measured by the callee). Times come from the
    `Time` text (one file's `TimeStamp` column is corrupt). The call graph is `dependency.csv` (calls to
    IP addresses, i.e. outside the mesh, left out) — what Istio's telemetry gives a live cluster.
    """
    metric_dir = next(day_dir.glob("rca_data/*/metric"))
    series: dict[str, dict[int, float]] = {}
    for path in sorted(metric_dir.glob("*_metric.csv")):
        service = path.name.split("-", 1)[0]
        for metric, points in _by_minute(path, "Time", {"TimeStamp", "PodName"}).items():
            if not metric.startswith("Node"):
                series[f"{service}_{metric}"] = points
    if edges:
        for side in ("source", "destination"):
            for pair, points in _by_minute(metric_dir / f"{side}_50.csv", "time", {"timestamp"}).items():
                caller, callee = pair.split("_", 1)
                series[f"{callee}_latency_p50_{side}@{caller}"] = points
    minutes = sorted({m for points in series.values() for m in points})
    columns = sorted(series)
    values = np.array([[series[c].get(m, np.nan) for c in columns] for m in minutes], dtype=float)
    labels_path = next(day_dir.glob("rca_data/*/*fault_list.json"))
    labels = []
    for faults in json.loads(labels_path.read_text()).values():
        for fault in faults:
            moment = datetime.strptime(fault["inject_time"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
            labels.append((moment.timestamp(), fault["inject_pod"].split("-", 1)[0], fault["inject_type"]))
    services = {c.split("_", 1)[0] for c in columns}
    with (metric_dir / "dependency.csv").open(newline="") as f:
        calls = frozenset(
            (row["Source"], row["Target"]) for row in csv.DictReader(f) if {row["Source"], row["Target"]} <= services
        )
    return Frame(np.array(minutes, dtype=float), columns, values), labels, calls


def nezha_cases(edges: bool, root: Path | None = None) -> list[Case]:
    """All Nezha Online Boutique cases; each case's frame is the whole day (the harness cuts the window)."""
    root = root or EVAL_DIR / "rca" / "nezha-ob"
    cases = []
    for day_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        frame, labels, calls = nezha_day(day_dir, edges)
        for time, service, fault in sorted(labels):
            stamp = datetime.fromtimestamp(time, UTC).strftime("%Y-%m-%dT%H:%M")
            cases.append(Case(f"{stamp} {service}", fault, service, time, frame, calls))
    return cases


def tt_service(pod: str) -> str:
    """Train Ticket: the service is the pod name without its last two dash-separated parts."""
    return pod.rsplit("-", 2)[0]


def tt_cases(root: Path | None = None) -> list[Case]:
    """Nezha Train Ticket, one fault day: pod metrics (1 row per minute) as `<service>_<metric>`, node metrics left
    out; one case per labelled fault, its frame the whole day (the harness cuts the window). No call graph is
    published: derive one from spans where a method reads them."""
    day = root or EVAL_DIR / "rca" / "nezha-tt" / "2023-01-29"
    series: dict[str, dict[int, float]] = {}
    for path in sorted((day / "metric").glob("*_metric.csv.gz")):
        service = tt_service(path.name.removesuffix("_metric.csv.gz"))
        with gzip.open(path, "rt", newline="") as f:
            for row in csv.DictReader(f):
                minute = _minute(row["Time"])
                for key, value in row.items():
                    if key in ("Time", "TimeStamp", "PodName") or key.startswith("Node") or value in ("", None):
                        continue
                    series.setdefault(f"{service}_{key}", {}).setdefault(minute, float(value))
    minutes = sorted({m for points in series.values() for m in points})
    columns = sorted(series)
    values = np.array([[series[c].get(m, np.nan) for c in columns] for m in minutes], dtype=float)
    frame = Frame(np.array(minutes, dtype=float), columns, values)
    cases = []
    for faults in json.loads((day / f"{day.name}-fault_list.json").read_text()).values():
        for fault in faults:  # inject_time is UTC; inject_timestamp is 8 h off for most of this day
            moment = datetime.strptime(fault["inject_time"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
            service = tt_service(fault["inject_pod"])
            stamp = moment.strftime("%Y-%m-%dT%H:%M")
            cases.append(Case(f"{stamp} {service}", fault["inject_type"], service, moment.timestamp(), frame))
    return sorted(cases, key=lambda c: c.inject_time)


def load_series(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A load series from `load/<name>.csv`: (epoch seconds, values)."""
    times, values = [], []
    with (EVAL_DIR / "load" / f"{name}.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            moment = datetime.strptime(row["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
            times.append(moment.timestamp())
            values.append(float(row["value"]))
    return np.array(times), np.array(values)
