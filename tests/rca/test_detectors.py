"""Each detector on synthetic series with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from engines.rca import detectors as det

rng = np.random.default_rng(1)
UP = np.array([1, 1, 1])


def _case() -> tuple[np.ndarray, np.ndarray]:
    """Column 0 steps up by 20 sigma and stays; column 1 has one spike; column 2 is noise."""
    baseline = rng.normal(10.0, 1.0, size=(120, 3))
    anomalous = rng.normal(10.0, 1.0, size=(60, 3))
    anomalous[:, 0] += 20.0
    anomalous[5, 1] += 20.0
    return baseline, anomalous


@pytest.mark.parametrize("name", list(det.DETECTORS))
def test_detector_ranks_the_lasting_step_first(name: str) -> None:
    baseline, anomalous = _case()
    scores = det.DETECTORS[name](baseline, anomalous, UP)
    assert scores.shape == (3,)
    assert ((scores >= 0) & (scores <= 1)).all()
    assert int(np.argmax(scores)) == 0
    assert scores[0] > scores[2]


@pytest.mark.parametrize("name", ["isolation", "dbscan"])
def test_share_detectors_discount_a_lone_spike(name: str) -> None:
    baseline, anomalous = _case()
    scores = det.DETECTORS[name](baseline, anomalous, UP)
    assert scores[0] > 0.9
    assert scores[1] < 0.25  # about the false-alarm rate on plain noise


def test_distance_detectors_score_a_spike_by_size() -> None:
    baseline, anomalous = _case()
    assert det.robust(baseline, anomalous, UP)[1] > 0.8
    assert det.zscore(baseline, anomalous, UP)[1] > 0.8


def test_direction_ignores_a_move_the_good_way() -> None:
    baseline = rng.normal(10.0, 1.0, size=(100, 2))
    anomalous = rng.normal(10.0, 1.0, size=(50, 2)) - 15.0  # both drop
    scores = det.robust(baseline, anomalous, np.array([1, 0]))
    assert scores[0] < 0.5  # CPU-like: lower is not worse
    assert scores[1] > 0.8  # traffic-like: either way counts


def test_flat_baseline_needs_a_real_move() -> None:
    baseline = np.full((30, 2), 5.0)
    anomalous = np.array([[5.0 + 1e-12, 9.0]] * 10)
    scores = det.robust(baseline, anomalous, np.array([1, 1]))
    assert scores[0] < 0.01
    assert scores[1] > 0.9


def test_robust_survives_a_late_split() -> None:
    """A tenth of the anomaly leaking into the baseline barely moves the median/IQR scores."""
    baseline = rng.normal(1.0, 0.1, size=(100, 2))
    baseline[-10:, 0] += 5.0
    anomalous = rng.normal(1.0, 0.1, size=(50, 2))
    anomalous[:, 0] += 5.0
    assert det.robust(baseline, anomalous, UP[:2])[0] > 0.9
    assert det.zscore(baseline, anomalous, UP[:2])[0] < det.robust(baseline, anomalous, UP[:2])[0]


def test_combine_averages_and_validates() -> None:
    baseline, anomalous = _case()
    combined, parts = det.combine(baseline, anomalous, UP)
    assert set(parts) == set(det.DETECTORS)
    assert np.allclose(combined, np.mean(list(parts.values()), axis=0))
    with pytest.raises(ValueError):
        det.combine(baseline[:1], anomalous, UP)


def test_zscore_survives_a_told_time_one_sample_late() -> None:
    """One minute samples, the fault told 60 s late: its first sample ends the baseline. Left in, it would
    inflate the standard deviation several times over and hide the step; zscore leaves that sample out."""
    baseline = rng.normal(10.0, 1.0, size=(10, 1))
    baseline[-1, 0] += 30.0  # the fault's first sample
    anomalous = rng.normal(40.0, 1.0, size=(4, 1))
    assert det.zscore(baseline, anomalous, np.array([1]))[0] > 0.8
    inflated = (40.0 - baseline.mean()) / baseline.std()  # what a mean and deviation over all ten would give
    assert inflated / (inflated + det.Z_HALF) < 0.5


def _samples(seed: int) -> np.ndarray:
    """A line of 1 to 40 points: normal noise, a few clumps far apart, and repeated values."""
    r = np.random.default_rng(seed)
    n = int(r.integers(1, 41))
    kind = seed % 3
    if kind == 0:
        return r.normal(0.0, 3.0, n)
    if kind == 1:
        return r.choice([-20.0, 0.0, 7.0, 30.0], n) + r.normal(0.0, 1.5, n)
    return r.integers(-6, 6, n).astype(float) + 0.5  # ties, and gaps exactly one apart


@pytest.mark.parametrize("min_samples", [2, 3, 5])
def test_dbscan_on_a_line_labels_points_as_scikit_learn_does(min_samples: int) -> None:
    from sklearn.cluster import DBSCAN

    for seed in range(300):
        points = _samples(seed)
        expected = DBSCAN(eps=det.Z_HALF, min_samples=min_samples).fit_predict(points[:, None])
        assert det.dbscan_1d(points, det.Z_HALF, min_samples).tolist() == expected.tolist(), (seed, points)


@pytest.mark.parametrize("points", [[-5, -4, -2.9, 0, 2.9, 4, 5], [5, 4, 2.9, 0, -2.9, -4, -5]])
def test_dbscan_on_a_line_gives_a_point_two_clusters_reach_to_the_first_expanded(points: list[float]) -> None:
    from sklearn.cluster import DBSCAN

    line = np.array(points, dtype=float)  # 0 is within reach of the cores -2.9 and 2.9, which are not of one cluster
    expected = DBSCAN(eps=3.0, min_samples=4).fit_predict(line[:, None])
    assert det.dbscan_1d(line, 3.0, 4).tolist() == expected.tolist()
    assert len(set(expected) - {-1}) == 2
