"""Correlation, lagged cross-correlation and the propagation chain they suggest.

Two series that move together with a lag suggest that the leader's trouble travels to the follower. The
chain starts at the top candidate and links each further anomalous service to the service it follows most
closely (largest |correlation| at a non-negative lag), preferring real calls when a call graph is known.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lag:
    """How series b follows series a."""

    correlation: float  # Pearson correlation at the best lag, in [-1, 1]
    lag: int  # samples by which b trails a (negative: b leads)


@dataclass(frozen=True)
class Link:
    """One step of a propagation chain: trouble at `source` reaching `target`."""

    source: str
    target: str
    correlation: float
    lag_seconds: float
    via_call: bool  # the call graph has target calling source (the usual way latency travels)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; 0 when either series is constant."""
    a = a - a.mean()
    b = b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0


def lagged(a: np.ndarray, b: np.ndarray, max_lag: int) -> Lag:
    """The lag in [-max_lag, max_lag] at which b best (anti-)correlates with a shifted a.

    A positive lag means b's movement comes after a's. At least four overlapping samples are required at
    each lag considered.
    """
    n = min(len(a), len(b))
    best = Lag(0.0, 0)
    for lag in range(-max_lag, max_lag + 1):
        if n - abs(lag) < 4:
            continue
        x, y = (a[: n - lag], b[lag:n]) if lag >= 0 else (a[-lag:n], b[: n + lag])
        r = correlation(x, y)
        if abs(r) > abs(best.correlation) + 1e-9:
            best = Lag(r, lag)
    return best


def correlation_matrix(values: np.ndarray) -> np.ndarray:
    """Pearson correlations between the columns of `values`; constant columns correlate 0."""
    x = values - values.mean(axis=0)
    norms = np.sqrt((x * x).sum(axis=0))
    norms[norms == 0] = np.inf
    x = x / norms
    return x.T @ x


def propagation_chain(
    services: list[str],
    series: dict[str, np.ndarray],
    onsets: dict[str, float],
    step: float,
    calls: set[tuple[str, str]] | None = None,
    max_lag: int | None = None,
) -> list[Link]:
    """Link anomalous services into a chain that starts at the first (the most likely root cause).

    Args:
        services: anomalous services, most likely root cause first.
        series: one representative series per service (its most anomalous metric), same length.
        onsets: onset time of each service, in seconds.
        step: seconds between samples.
        calls: known (caller, callee) pairs, if any.
        max_lag: largest lag searched, in samples (default a tenth of the series, at least 2).

    Returns:
        One link per service after the first, each from an earlier service in the chain.
    """
    if len(services) < 2:
        return []
    n = len(next(iter(series.values())))
    max_lag = max_lag if max_lag is not None else max(2, n // 10)
    calls = calls or set()
    placed = [services[0]]
    links: list[Link] = []
    for target in sorted(services[1:], key=lambda s: onsets.get(s, 0.0)):
        best: tuple[tuple[bool, float], Link] | None = None
        for source in placed:
            found = lagged(series[source], series[target], max_lag)
            via_call = (target, source) in calls
            link = Link(source, target, round(found.correlation, 3), found.lag * step, via_call)
            key = (via_call, abs(found.correlation) if found.lag >= 0 else abs(found.correlation) / 2)
            if best is None or key > best[0]:
                best = (key, link)
        if best is not None:
            links.append(best[1])
        placed.append(target)
    return links
