"""Per-metric trend: is a series rising, falling or flat over a window?

Theil–Sen slope (median of pairwise slopes, robust to outliers) and the Mann–Kendall S statistic with its
normal approximation; a trend counts when |Z| > 1.96 (two-sided 5 %).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAX_POINTS = 400  # longer series are thinned evenly: pairwise work grows with the square


@dataclass(frozen=True)
class Trend:
    """The direction and robust slope of one series."""

    direction: str  # "rising", "falling" or "flat"
    slope_per_minute: float
    z: float  # Mann–Kendall statistic, standard normal under "no trend"


def trend(times: np.ndarray, values: np.ndarray) -> Trend:
    """Theil–Sen slope and Mann–Kendall test of `values` against `times` (seconds)."""
    n = len(values)
    if n < 3:
        return Trend("flat", 0.0, 0.0)
    if n > MAX_POINTS:
        keep = np.linspace(0, n - 1, MAX_POINTS).astype(int)
        times, values, n = times[keep], values[keep], MAX_POINTS
    i, j = np.triu_indices(n, k=1)
    dt = times[j] - times[i]
    dv = values[j] - values[i]
    ok = dt > 0
    slope = float(np.median(dv[ok] / dt[ok])) if ok.any() else 0.0
    s = float(np.sign(dv).sum())
    var = n * (n - 1) * (2 * n + 5) / 18.0
    z = 0.0 if s == 0 else (s - math.copysign(1.0, s)) / math.sqrt(var)
    direction = "flat" if abs(z) <= 1.96 or slope == 0 else ("rising" if slope > 0 else "falling")
    return Trend(direction, slope * 60.0, round(z, 2))
