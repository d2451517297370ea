"""Per-metric anomaly detectors: how far each metric moved after the anomaly time, compared with before.

Every detector takes the baseline rows (before the anomaly) and the anomalous rows (from it on) of the same
columns and returns one score per column in [0, 1]. `combine` averages them into one ranking.

- robust: median/IQR distance (BARO's RobustScorer idea), with a noise floor so that a series that was
  flat before the anomaly does not get an infinite score from a rounding wobble;
- zscore: mean/standard-deviation distance (N-sigma);
- isolation: share of anomalous samples an Isolation Forest trained on the baseline calls outliers;
- dbscan: share of anomalous samples that fall outside every DBSCAN cluster holding baseline samples.

The two distance detectors are mapped to [0, 1] with z / (z + 3): the 3-sigma rule lands on 0.5.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import DBSCAN
from sklearn.ensemble import IsolationForest

logger = logging.getLogger(__name__)

Z_HALF = 3.0  # the distance that maps to a score of 0.5
_NORMAL = 1.349  # IQR of a standard normal
_DIFF = 0.954  # median |x1 - x2| of two standard normal samples
_TINY = 1e-9


@dataclass(frozen=True)
class Shift:
    """How one metric moved: the baseline level and scale, and the most extreme anomalous deviation."""

    baseline: np.ndarray  # median before, per column
    scale: np.ndarray  # robust noise scale, per column
    peak: np.ndarray  # anomalous value furthest from the baseline, per column
    z: np.ndarray  # signed robust distance of that value, per column


def noise_scale(baseline: np.ndarray, window: np.ndarray) -> np.ndarray:
    """A robust estimate of each column's noise, in standard-deviation units.

    The larger of the baseline's IQR and the spread of successive differences over the whole window
    (a level shift moves one difference only, so this stays a noise estimate), floored at a millionth of
    the level so that rounding noise on a flat series does not count as a change.
    """
    q75, q25 = np.percentile(baseline, [75, 25], axis=0)
    iqr = (q75 - q25) / _NORMAL
    diffs = np.abs(np.diff(window, axis=0)) if len(window) > 1 else np.zeros((1, window.shape[1]))
    jitter = np.median(diffs, axis=0) / _DIFF
    level = np.abs(np.median(baseline, axis=0))
    return np.maximum.reduce([iqr, jitter, 1e-6 * level, np.full_like(level, _TINY)])


def shift(baseline: np.ndarray, anomalous: np.ndarray) -> Shift:
    """Baseline level, noise scale and the peak robust deviation of each column."""
    window = np.vstack([baseline, anomalous])
    median = np.median(baseline, axis=0)
    scale = noise_scale(baseline, window)
    z_all = (anomalous - median) / scale
    at = np.argmax(np.abs(z_all), axis=0)
    cols = np.arange(anomalous.shape[1])
    return Shift(median, scale, anomalous[at, cols], z_all[at, cols])


def to_unit(z: np.ndarray) -> np.ndarray:
    """Map distances >= 0 to [0, 1): z / (z + 3)."""
    z = np.abs(z)
    return z / (z + Z_HALF)


def robust(baseline: np.ndarray, anomalous: np.ndarray) -> np.ndarray:
    """Median/IQR distance of the most extreme anomalous sample, per column, in [0, 1)."""
    return to_unit(shift(baseline, anomalous).z)


def zscore(baseline: np.ndarray, anomalous: np.ndarray) -> np.ndarray:
    """Mean/standard-deviation distance of the most extreme anomalous sample, per column, in [0, 1)."""
    window = np.vstack([baseline, anomalous])
    sd = np.maximum(baseline.std(axis=0), noise_scale(baseline, window))
    z = np.abs(anomalous - baseline.mean(axis=0)) / sd
    return to_unit(z.max(axis=0))


def isolation(baseline: np.ndarray, anomalous: np.ndarray, seed: int = 0) -> np.ndarray:
    """Share of anomalous samples that an Isolation Forest of normal behaviour flags, per column.

    Each column is put on its own noise scale first, so one forest, fitted on the pooled baseline
    deviations of all columns, describes what "normal" looks like for every metric.
    """
    window = np.vstack([baseline, anomalous])
    scaled_b, scaled_a = _standardise(baseline, anomalous, window)
    forest = IsolationForest(n_estimators=100, max_samples=256, random_state=seed)
    forest.fit(np.abs(scaled_b).reshape(-1, 1))
    flagged = forest.predict(np.abs(scaled_a).reshape(-1, 1)).reshape(scaled_a.shape) == -1
    # An outlier must also lie outside its own column's baseline range: inside it, it is not new.
    outside = (scaled_a > scaled_b.max(axis=0)) | (scaled_a < scaled_b.min(axis=0))
    return (flagged & outside).mean(axis=0)


def dbscan(baseline: np.ndarray, anomalous: np.ndarray, eps: float = Z_HALF) -> np.ndarray:
    """Share of anomalous samples outside every DBSCAN cluster that holds baseline samples, per column.

    Values are in noise-scale units, so `eps` is a distance in standard deviations.
    """
    window = np.vstack([baseline, anomalous])
    scaled_b, scaled_a = _standardise(baseline, anomalous, window)
    nb = len(baseline)
    min_samples = max(2, min(5, nb // 3))
    out = np.zeros(baseline.shape[1])
    for j in range(baseline.shape[1]):
        points = np.concatenate([scaled_b[:, j], scaled_a[:, j]])[:, None]
        labels = DBSCAN(eps=eps, min_samples=min_samples).fit_predict(points)
        normal = set(labels[:nb].tolist()) - {-1}
        out[j] = float(np.mean([label not in normal for label in labels[nb:]]))
    return out


def _standardise(baseline: np.ndarray, anomalous: np.ndarray, window: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    median = np.median(baseline, axis=0)
    scale = noise_scale(baseline, window)
    return (baseline - median) / scale, (anomalous - median) / scale


DETECTORS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "robust": robust,
    "zscore": zscore,
    "isolation": isolation,
    "dbscan": dbscan,
}


def combine(baseline: np.ndarray, anomalous: np.ndarray, use: tuple[str, ...] = tuple(DETECTORS)
            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run the chosen detectors and average their scores.

    Returns:
        (combined score per column, {detector name: its scores}).
    """
    if len(baseline) < 2 or len(anomalous) < 1:
        raise ValueError("need at least two baseline samples and one anomalous sample")
    scores = {name: DETECTORS[name](baseline, anomalous) for name in use}
    return np.mean(list(scores.values()), axis=0), scores
