"""Onset detection, lagged cross-correlation and chains, trends."""

from __future__ import annotations

import numpy as np
import pytest

from engines.rca.chain import correlation, correlation_matrix, lagged, propagation_chain
from engines.rca.onset import detect_onset, detect_onsets
from engines.rca.trend import trend

rng = np.random.default_rng(2)


@pytest.mark.parametrize("at", [40, 150, 260])
def test_onset_found_at_a_known_step(at: int) -> None:
    values = rng.normal(0, 1, size=(300, 30))
    values[at:, :3] += 8.0
    found = detect_onset(values)
    assert abs(found.index - at) <= 1
    assert set(found.columns[:3]) == {0, 1, 2}


def test_onset_ignores_a_lone_spike() -> None:
    values = rng.normal(0, 1, size=(200, 10))
    values[50, 4] += 500.0
    values[120:, :2] += 6.0
    assert abs(detect_onset(values).index - 120) <= 1


def test_several_onsets_cover_both_changes() -> None:
    values = rng.normal(0, 1, size=(300, 20))
    values[80:, :3] += 4.0
    values[200:, 3:6] += 9.0
    found = detect_onsets(values, 3)
    indexes = [o.index for o in found]
    assert all(any(abs(i - change) <= 1 for i in indexes) for change in (80, 200))
    assert found[0].strength == max(o.strength for o in found)
    assert [o.index for o in detect_onsets(values, 1)] == [detect_onset(values).index] == indexes[:1]


def test_onset_needs_four_samples() -> None:
    with pytest.raises(ValueError):
        detect_onset(np.zeros((3, 2)))


def test_lagged_finds_the_lag() -> None:
    a = rng.normal(0, 1, 400)
    b = np.concatenate([np.zeros(7), a[:-7]]) + rng.normal(0, 0.1, 400)
    found = lagged(a, b, 20)
    assert found.lag == 7
    assert found.correlation > 0.9
    assert lagged(b, a, 20).lag == -7


def test_correlation_of_constant_is_zero() -> None:
    assert correlation(np.ones(10), np.arange(10.0)) == 0.0
    m = correlation_matrix(np.column_stack([np.arange(10.0), -np.arange(10.0)]))
    assert m[0, 1] == pytest.approx(-1.0)


def test_chain_follows_the_lag_and_prefers_calls() -> None:
    root = np.concatenate([np.zeros(100), np.ones(100)]) + rng.normal(0, 0.05, 200)
    mid = np.roll(root, 5)
    top = np.roll(root, 10)
    series = {"db": root, "api": mid, "web": top}
    onsets = {"db": 100.0, "api": 105.0, "web": 110.0}
    links = propagation_chain(["db", "api", "web"], series, onsets, 1.0, {("web", "api"), ("api", "db")})
    assert [(link.source, link.target) for link in links] == [("db", "api"), ("api", "web")]
    assert all(link.via_call for link in links)
    assert links[0].lag_seconds >= 0


def test_trend_directions() -> None:
    t = np.arange(0.0, 600.0, 10.0)
    assert trend(t, 2.0 * t / 60 + rng.normal(0, 0.5, len(t))).direction == "rising"
    falling = trend(t, -t + rng.normal(0, 1, len(t)))
    assert falling.direction == "falling"
    assert falling.slope_per_minute == pytest.approx(-60.0, rel=0.1)
    assert trend(t, rng.normal(0, 1, len(t))).direction == "flat"
