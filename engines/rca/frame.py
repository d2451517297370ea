"""A time-indexed set of metric series in the RCAEval layout: a `time` column plus `<service>_<metric>` columns.

Column names carry the service: everything before the first `_`, with a `-db` suffix folded into its
service (`carts-db_cpu` belongs to `carts`). A column may also be an *edge* metric, measured by a caller on
its calls to a service: `<callee>_<metric>@<caller>` (e.g. `cartservice_latency_p50@frontend`, what Istio
reports as `reporter="source"`). Edge columns belong to the callee and give the engine the call graph.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)


MAX_TIME = 1e15  # seconds: any clock a CSV may use (epoch seconds or relative), far from overflow
MAX_ABS = 1e18  # samples beyond this magnitude are treated as gaps: no metric means them, and they overflow


class FrameError(ValueError):
    """The series cannot be analysed as given (the message says why)."""


def service_of(column: str) -> str:
    """The service a column belongs to: the name up to the first `_`, without a `-db` suffix."""
    service = column.split("_", 1)[0]
    return service.removesuffix("-db")


def metric_of(column: str) -> str:
    """The metric part of a column: after the first `_`, without an `@caller` suffix."""
    metric = column.split("_", 1)[1] if "_" in column else column
    return metric.split("@", 1)[0]


def caller_of(column: str) -> str | None:
    """For an edge column `<callee>_<metric>@<caller>`, the caller; otherwise None."""
    return column.rsplit("@", 1)[1] if "@" in column else None


@dataclass
class Frame:
    """Metric series on a common time axis.

    Attributes:
        time: sample times in seconds (epoch or relative), shape (n,), increasing.
        columns: `<service>_<metric>` names, one per column of `values`.
        values: shape (n, len(columns)), float; NaN marks a missing sample.
    """

    time: np.ndarray
    columns: list[str]
    values: np.ndarray

    def __post_init__(self) -> None:
        self.time = np.asarray(self.time, dtype=float)
        self.values = np.asarray(self.values, dtype=float).reshape(len(self.time), len(self.columns))

    def __len__(self) -> int:
        return len(self.time)

    @property
    def step(self) -> float:
        """The typical spacing of samples in seconds (1.0 for fewer than two samples)."""
        return float(np.median(np.diff(self.time))) if len(self.time) > 1 else 1.0

    def between(self, start: float, end: float) -> Frame:
        """The rows with start <= time < end."""
        keep = (self.time >= start) & (self.time < end)
        return Frame(self.time[keep], list(self.columns), self.values[keep])

    def select(self, keep: list[int]) -> Frame:
        """A frame with only the columns at these indices."""
        return Frame(self.time, [self.columns[i] for i in keep], self.values[:, keep])

    def filled(self) -> Frame:
        """Gaps filled forward (then backward); infinities and samples beyond MAX_ABS count as gaps."""
        with np.errstate(invalid="ignore"):
            usable = np.isfinite(self.values) & (np.abs(self.values) <= MAX_ABS)
        return Frame(self.time, list(self.columns), _fill_gaps(np.where(usable, self.values, np.nan)))

    def cleaned(self) -> Frame:
        """`filled()`, then columns that are empty or constant dropped."""
        values = self.filled().values
        varying = [i for i in range(values.shape[1]) if np.isfinite(values[:, i]).all() and np.ptp(values[:, i]) > 0]
        return Frame(self.time, [self.columns[i] for i in varying], values[:, varying])

    def services(self) -> list[str]:
        """The services present, in column order."""
        return list(dict.fromkeys(service_of(c) for c in self.columns))

    def by_service(self) -> dict[str, list[int]]:
        """Each service's column indices, services in column order."""
        found: dict[str, list[int]] = {}
        for j, column in enumerate(self.columns):
            found.setdefault(service_of(column), []).append(j)
        return found

    def calls(self) -> set[tuple[str, str]]:
        """The (caller, callee) pairs named by edge columns."""
        return {(caller, service_of(c)) for c in self.columns if (caller := caller_of(c)) is not None}


def _fill_gaps(values: np.ndarray) -> np.ndarray:
    out = values.copy()
    for j in range(out.shape[1]):
        col = out[:, j]
        ok = np.isfinite(col)
        if not ok.any():
            continue
        idx = np.where(ok, np.arange(len(col)), 0)
        np.maximum.accumulate(idx, out=idx)
        first = int(np.argmax(ok))
        filled = col[idx]
        filled[:first] = col[first]
        out[:, j] = filled
    return out


def from_csv(text: str, max_rows: int = 100_000, max_columns: int = 2_000) -> Frame:
    """Parse CSV text in the RCAEval layout: a `time` column (seconds) and numeric metric columns.

    Args:
        text: the CSV, with a header row.
        max_rows: refuse more data rows than this.
        max_columns: refuse more metric columns than this.

    Raises:
        FrameError: no `time` column, too many rows or columns, or non-numeric cells.
    """
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise FrameError("the CSV is empty; expected a header row with `time` and metric columns") from None
    if "time" not in header:
        raise FrameError(f"the CSV has no `time` column (columns: {', '.join(header[:8])}…)")
    if len(header) - 1 > max_columns:
        raise FrameError(f"the CSV has {len(header) - 1} metric columns; at most {max_columns} are accepted")
    t_index = header.index("time")
    rows: list[list[float]] = []
    for line_no, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(rows) >= max_rows:
            raise FrameError(f"the CSV has more than {max_rows} rows; send a shorter window")
        if len(row) != len(header):
            raise FrameError(f"line {line_no} has {len(row)} cells, the header has {len(header)}")
        rows.append([_number(cell, line_no) for cell in row])
    if not rows:
        raise FrameError("the CSV has a header but no data rows")
    data = np.array(rows, dtype=float)
    times = data[:, t_index]
    if not (np.isfinite(times).all() and np.abs(times).max() <= MAX_TIME):
        raise FrameError(f"every `time` must be a number of seconds within ±{MAX_TIME:g}")
    columns = [h for i, h in enumerate(header) if i != t_index]
    values = np.delete(data, t_index, axis=1)
    order = np.argsort(data[:, t_index], kind="stable")
    return Frame(data[order, t_index], columns, values[order])


def _number(cell: str, line_no: int) -> float:
    cell = cell.strip()
    if cell == "" or cell.lower() in {"nan", "null", "none"}:
        return math.nan
    try:
        return float(cell)
    except ValueError:
        raise FrameError(f"line {line_no}: {cell[:30]!r} is not a number") from None
