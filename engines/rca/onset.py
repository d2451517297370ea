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
    """The single most likely change point of a multivariate series (see `detect_onsets`)."""
    return detect_onsets(values, 1, min_segment)[0]


def detect_onsets(values: np.ndarray, count: int, min_segment: int | None = None) -> list[Onset]:
    """Candidate change points of a multivariate series: the `count` strongest splits at least `min_segment`
    rows apart (mostly the strongest change and splits near it: where a change starts is uncertain in coarse
    data), then up to `count - 1` other distinct change points (local maxima of the strength), each group
    strongest first.

    Args:
        values: shape (n, m), rows in time order, no NaN.
        count: see above; 1 gives the single strongest split.
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
    strength = (-np.sort(-stats, axis=1)[:, :top]).mean(axis=1)
    ranked = [int(i) for i in np.argsort(-strength, kind="stable")]
    # the strongest splits, a little way apart...
    picked: list[int] = []
    for index in ranked:
        if len(picked) == count or (picked and strength[index] <= 0):
            break
        if all(abs(index - j) >= min_segment for j in picked):
            picked.append(index)
    # ...and the other distinct change points (local maxima), strongest first
    peaks = [
        i
        for i in ranked
        if strength[i] > 0
        and strength[i] >= strength[max(0, i - min_segment) : i + min_segment + 1].max()
        and all(abs(i - j) > 2 * min_segment for j in picked)
    ]
    picked += peaks[: max(0, count - 1)]
    onsets = []
    for index in picked:
        voters = np.argsort(-stats[index])[:top]
        onsets.append(Onset(index=index, strength=float(strength[index]), columns=[int(j) for j in voters]))
    return onsets
