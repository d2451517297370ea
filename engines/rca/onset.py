"""Onset (change-point) detection: when did the system start to misbehave, if nobody said?

A single multivariate change point by CUSUM: every metric is put on its own noise scale (robust to the
change itself) and log-compressed (sign(z) * log(1 + |z|)), so a lone spike cannot dominate yet a larger
move still counts for more; for each candidate split the standardised difference of means before and after
is computed. The metrics that moved most at that split vote: the
split with the largest mean statistic over the top tenth of metrics (at least three) wins.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from engines.rca.detectors import noise_scale

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Onset:
    """A detected change point."""

    index: int  # first row after the change
    strength: float  # mean CUSUM statistic of the voting metrics at that split
    columns: list[int]  # the metrics that voted, strongest first


def cusum_statistics(values: np.ndarray, min_segment: int) -> np.ndarray:
    """Per-split, per-column standardised difference of means; shape (n, m), zero outside valid splits."""
    n, m = values.shape
    median = np.median(values, axis=0)
    scale = noise_scale(values)
    z = (values - median) / scale
    x = np.sign(z) * np.log1p(np.abs(z))
    csum = np.vstack([np.zeros(m), np.cumsum(x, axis=0)])
    total = csum[-1]
    stats = np.zeros((n, m))
    for k in range(min_segment, n - min_segment + 1):
        before = csum[k] / k
        after = (total - csum[k]) / (n - k)
        stats[k] = np.abs(after - before) * np.sqrt(k * (n - k) / n)
    return stats


def detect_onset(values: np.ndarray, min_segment: int | None = None) -> Onset:
    """Find the single most likely change point of a multivariate series.

    Args:
        values: shape (n, m), rows in time order, no NaN.
        min_segment: fewest rows on either side; default max(2, n // 20).

    Raises:
        ValueError: fewer than four rows.
    """
    n, m = values.shape
    if n < 4:
        raise ValueError(f"need at least 4 samples to find an onset, got {n}")
    min_segment = min_segment or max(2, n // 20)
    min_segment = min(min_segment, n // 2)
    stats = cusum_statistics(values, min_segment)
    top = max(3, m // 10)
    ranked = -np.sort(-stats, axis=1)[:, :top]
    strength = ranked.mean(axis=1)
    index = int(np.argmax(strength))
    voters = np.argsort(-stats[index])[:top]
    return Onset(index=index, strength=float(strength[index]), columns=[int(j) for j in voters])
