"""Per-metric anomaly detectors: how far each metric moved, the bad way, after the anomaly time.

Every detector takes the baseline rows (before the anomaly), the anomalous rows (from it on) and each
column's bad direction (+1 up, -1 down, 0 either; see `kinds.direction`), and returns one score per column
in [0, 1]. `combine` averages them into one ranking.

- robust: median/IQR distance of the worst anomalous sample (BARO's RobustScorer idea);
- zscore: mean/standard-deviation distance of the worst anomalous sample (N-sigma), the baseline's last sample
  left out: a told time is often a little late, and one anomalous sample at the end of the baseline wrecks a
  mean and a standard deviation (not a median, an IQR or a forest);
- isolation: share of anomalous samples an Isolation Forest of normal deviations calls outliers;
- dbscan: share of anomalous samples outside every DBSCAN cluster of the baseline.

Distances are in units of each column's noise (`noise_scale`), floored at 1 % of the metric's level: with
few baseline samples, or a series that was flat before, a rounding wobble must not look like an earthquake.
The distance detectors are mapped to [0, 1) with z / (z + 3): the 3-sigma rule lands on 0.5. The share
detectors reward a move that lasts; the distance detectors, a move that is large.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import IsolationForest

logger = logging.getLogger(__name__)

Z_HALF = 3.0  # the distance that maps to a score of 0.5
RELATIVE_FLOOR = 0.01  # moves smaller than 1 % of a metric's level are treated as measurement noise
LATE_GUARD_MIN = 4  # zscore leaves out the baseline's last sample when it has more samples than this
_NORMAL_IQR = 1.349  # IQR of a standard normal
_NORMAL_DIFF = 0.954  # median |x1 - x2| of two standard normal samples
_TINY = 1e-9

Detector = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Shift:
    """How each metric moved: the baseline level and noise, and the worst anomalous value."""

    baseline: np.ndarray  # median before, per column
    scale: np.ndarray  # noise scale, per column
    peak: np.ndarray  # the anomalous value furthest the bad way, per column
    z: np.ndarray  # signed distance of that value from the baseline, in noise units


def noise_scale(baseline: np.ndarray) -> np.ndarray:
    """Each column's noise in standard-deviation units, estimated robustly from the baseline.

    The largest of: the IQR; the spread of successive differences (a step moves only one of them); 1 % of
    the level; a tiny constant.
    """
    q75, q25 = np.percentile(baseline, [75, 25], axis=0)
    parts = [
        (q75 - q25) / _NORMAL_IQR,
        np.full(baseline.shape[1], _TINY),
        RELATIVE_FLOOR * np.abs(np.median(baseline, axis=0)),
    ]
    if len(baseline) > 2:
        parts.append(np.median(np.abs(np.diff(baseline, axis=0)), axis=0) / _NORMAL_DIFF)
    return np.maximum.reduce(parts)


def directed(z: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Distances turned so that positive is bad: z for UP, -z for DOWN, |z| for EITHER."""
    return np.where(directions == 0, np.abs(z), z * np.where(directions < 0, -1.0, 1.0))


def standardise(baseline: np.ndarray, anomalous: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both parts in noise units around the baseline median."""
    median = np.median(baseline, axis=0)
    scale = noise_scale(baseline)
    return (baseline - median) / scale, (anomalous - median) / scale


def shift(baseline: np.ndarray, anomalous: np.ndarray, directions: np.ndarray) -> Shift:
    """Baseline level, noise and the worst anomalous value of each column."""
    median = np.median(baseline, axis=0)
    scale = noise_scale(baseline)
    z_all = (anomalous - median) / scale
    at = np.argmax(directed(z_all, directions), axis=0)
    cols = np.arange(anomalous.shape[1])
    return Shift(median, scale, anomalous[at, cols], z_all[at, cols])


def to_unit(z: np.ndarray) -> np.ndarray:
    """Map distances to [0, 1): z / (z + 3), negative distances to 0."""
    z = np.maximum(z, 0.0)
    return z / (z + Z_HALF)


def robust(baseline: np.ndarray, anomalous: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Median/IQR distance of the worst anomalous sample, per column, in [0, 1)."""
    _, scaled = standardise(baseline, anomalous)
    return to_unit(directed(scaled, directions).max(axis=0))


def zscore(baseline: np.ndarray, anomalous: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Mean/standard-deviation distance of the worst anomalous sample, per column, in [0, 1); the baseline's last
    sample is left out when there are enough (see the module's note)."""
    if len(baseline) > LATE_GUARD_MIN:
        baseline = baseline[:-1]
    sd = np.maximum(baseline.std(axis=0), noise_scale(baseline))
    z = (anomalous - baseline.mean(axis=0)) / sd
    return to_unit(directed(z, directions).max(axis=0))


def isolation(baseline: np.ndarray, anomalous: np.ndarray, directions: np.ndarray, seed: int = 0) -> np.ndarray:
    """Share of anomalous samples that an Isolation Forest of normal deviations flags, per column.

    Columns are in noise units, so one forest, fitted on the pooled baseline deviations of all columns,
    describes "normal" for every metric; only deviations the bad way count.
    """
    scaled_b, scaled_a = standardise(baseline, anomalous)
    normal = directed(scaled_b, directions).reshape(-1, 1)
    forest = IsolationForest(n_estimators=100, max_samples=min(256, len(normal)), random_state=seed)
    forest.fit(normal)
    bad = directed(scaled_a, directions)
    flagged = forest.predict(bad.reshape(-1, 1)).reshape(bad.shape) == -1
    return (flagged & (bad > 0)).mean(axis=0)


def dbscan(baseline: np.ndarray, anomalous: np.ndarray, directions: np.ndarray, eps: float = Z_HALF) -> np.ndarray:
    """Share of anomalous samples, on the bad side, outside every DBSCAN cluster of the baseline.

    Values are in noise units, so `eps` is a distance in standard deviations.
    """
    scaled_b, scaled_a = standardise(baseline, anomalous)
    bad = directed(scaled_a, directions) > 0
    nb = len(baseline)
    min_samples = max(2, min(5, nb // 3))
    out = np.zeros(baseline.shape[1])
    for j in range(baseline.shape[1]):
        labels = dbscan_1d(np.concatenate([scaled_b[:, j], scaled_a[:, j]]), eps, min_samples)
        outside = ~np.isin(labels[nb:], list(_normal_clusters(labels[:nb])))
        out[j] = float(np.mean(outside & bad[:, j]))
    return out


def dbscan_1d(points: np.ndarray, eps: float, min_samples: int) -> np.ndarray:
    """scikit-learn's DBSCAN labels (same clusters, same numbering, -1 for noise) for points on a line.

    On a line, neighbourhoods are intervals of the sorted points, and two core points are density-connected
    exactly when no gap wider than `eps` separates them, so one sort gives the clusters in O(n log n) instead of
    a neighbour search per column (scikit-learn's per-call overhead was nine tenths of an analysis with hundreds
    of metrics). Clusters are numbered in order of their lowest-index core point, and a border point within reach
    of two clusters joins the lower-numbered one: the order in which scikit-learn expands them.
    """
    n = len(points)
    labels = np.full(n, -1)
    order = np.argsort(points, kind="stable")
    s = points[order]
    core = np.searchsorted(s, s + eps, "right") - np.searchsorted(s, s - eps, "left") >= min_samples
    at = np.flatnonzero(core)  # sorted positions of the core points
    if len(at) == 0:
        return labels
    component = np.concatenate([[0], np.cumsum(np.diff(s[at]) > eps)])
    first = np.full(component[-1] + 1, n)
    np.minimum.at(first, component, order[at])
    number = np.argsort(np.argsort(first))[component]  # each core's cluster number
    # a border point can reach only the nearest core on either side (the others are in the same clusters)
    right = np.searchsorted(at, np.arange(n))
    left = np.clip(right - 1, 0, None)
    right = np.clip(right, None, len(at) - 1)
    reach_left = np.where(np.abs(s - s[at[left]]) <= eps, number[left], n)
    reach_right = np.where(np.abs(s[at[right]] - s) <= eps, number[right], n)
    nearest = np.minimum(reach_left, reach_right)
    in_sorted = np.where(nearest < n, nearest, -1)
    in_sorted[at] = number
    labels[order] = in_sorted
    return labels


def _normal_clusters(baseline_labels: np.ndarray) -> set[int]:
    """Clusters holding the most baseline samples, or at least a third of them.

    A cluster holding only a few baseline samples may be the anomaly itself leaking into the baseline
    (an anomaly time given late), so it does not make those values normal.
    """
    found, counts = np.unique(baseline_labels[baseline_labels != -1], return_counts=True)
    if len(found) == 0:
        return set()
    return {int(c) for c, k in zip(found, counts, strict=True) if k == counts.max() or k >= len(baseline_labels) / 3}


DETECTORS: dict[str, Detector] = {
    "robust": robust,
    "zscore": zscore,
    "isolation": isolation,
    "dbscan": dbscan,
}


def combine(
    baseline: np.ndarray, anomalous: np.ndarray, directions: np.ndarray, use: tuple[str, ...] = tuple(DETECTORS)
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run the chosen detectors and average their scores.

    Returns:
        (combined score per column, {detector name: its scores}).

    Raises:
        ValueError: fewer than two baseline samples or no anomalous sample.
    """
    if len(baseline) < 2 or len(anomalous) < 1:
        raise ValueError("need at least two baseline samples and one anomalous sample")
    scores = {name: DETECTORS[name](baseline, anomalous, directions) for name in use}
    return np.mean(list(scores.values()), axis=0), scores
