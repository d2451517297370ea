"""Forecast model and intervals on synthetic seasonal series; replica clamping."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engines.forecast import Autoscaler, fit_horizon, forecast, recommend
from engines.forecast.model import anchor_horizons, rolling_half_widths

STEP = 1800.0


def seasonal(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    t = 1_600_000_000 + STEP * np.arange(n)
    day = np.sin(2 * math.pi * (t % 86_400) / 86_400)
    weekend = ((t // 86_400 + 3) % 7 >= 5) * -30.0
    y = 200 + 80 * day + weekend + np.random.default_rng(seed).normal(0, 8, n)
    return t, y


def test_one_step_forecast_beats_last_value_and_covers() -> None:
    t, y = seasonal(48 * 28)
    cut = 48 * 21
    model = fit_horizon(t[:cut], y[:cut], 1, 0.9)
    origins = np.arange(cut - 1, len(y) - 1)
    point, lower, upper = model.predict(t, y, origins)
    actual = y[origins + 1]
    ours = np.mean(np.abs(point - actual))
    last = np.mean(np.abs(y[origins] - actual))
    assert ours < last
    coverage = np.mean((actual >= lower) & (actual <= upper))
    assert 0.8 <= coverage <= 0.98


def test_forecast_path_shape_and_order() -> None:
    t, y = seasonal(48 * 14)
    fc = forecast(t, y, 4, 0.9)
    assert len(fc.mean) == 4
    assert fc.method == "gradient boosting"
    assert np.all(fc.lower <= fc.mean) and np.all(fc.mean <= fc.upper)
    assert fc.times[0] == pytest.approx(t[-1] + STEP)
    truth = 200 + 80 * np.sin(2 * math.pi * (fc.times % 86_400) / 86_400)
    assert np.all(np.abs(fc.mean - truth) < 60)


def test_anchor_horizons_double_and_end_at_the_horizon() -> None:
    assert anchor_horizons(3) == [1, 2, 3]
    assert anchor_horizons(12) == [1, 2, 3, 4, 8, 12]
    assert anchor_horizons(1440) == [1, 2, 3, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 1440]


def test_a_day_ahead_follows_the_cycle_between_anchors() -> None:
    t, y = seasonal(48 * 21)
    fc = forecast(t, y, 48, 0.9)  # a day at 30-minute steps: 9 models, 39 steps in between
    truth = 200 + 80 * np.sin(2 * math.pi * (fc.times % 86_400) / 86_400)
    truth += ((fc.times // 86_400 + 3) % 7 >= 5) * -30.0
    assert np.mean(np.abs(fc.mean - truth)) < 15  # the noise alone is 8
    assert np.all(fc.lower <= fc.mean) and np.all(fc.mean <= fc.upper)
    widths = fc.upper - fc.lower
    assert widths[-1] >= widths[0]  # farther is less certain
    assert np.mean((truth >= fc.lower) & (truth <= fc.upper)) >= 0.9


def test_short_history_falls_back_to_recent_level() -> None:
    fc = forecast(np.arange(10.0) * 60, np.full(10, 5.0), 3)
    assert fc.method.startswith("recent level")
    assert np.allclose(fc.mean, 5.0)
    with pytest.raises(ValueError):
        forecast(np.arange(10.0), np.ones(10), 0)


def test_rolling_widths_follow_recent_residuals() -> None:
    residuals = np.concatenate([np.full(50, 0.1), np.full(50, 1.0)])
    widths = rolling_half_widths(residuals, 0.9, window=20, delay=1)
    assert widths[0] == np.inf
    assert widths[30] == pytest.approx(0.1)
    assert widths[99] == pytest.approx(1.0)


def test_replicas_clamped_to_max_and_min() -> None:
    high = recommend(1000.0, 10.0, min_replicas=2, max_replicas=20)
    assert (high.needed, high.recommended) == (100, 20)
    assert "ceiling is 20" in high.notes[0]
    low = recommend(1.0, 10.0, min_replicas=2, max_replicas=20)
    assert (low.needed, low.recommended) == (1, 2)
    exact = recommend(30.0, 10.0)
    assert exact.recommended == 3


def test_replicas_compared_with_hpa_and_current() -> None:
    capped = recommend(80.0, 10.0, autoscaler=Autoscaler("web", 2, 5))
    assert "caps at 5" in capped.notes[-1]
    generous = recommend(10.0, 10.0, autoscaler=Autoscaler("web", 4, 10))
    assert "minReplicas could be lowered" in generous.notes[-1]
    fits = recommend(45.0, 10.0, autoscaler=Autoscaler("web", 2, 10))
    assert "can reach 5" in fits.notes[-1]
    up = recommend(45.0, 10.0, current=2)
    assert "scale up from 2 to 5" in up.notes[-1]
    with pytest.raises(ValueError):
        recommend(1.0, 0.0)
    with pytest.raises(ValueError):
        recommend(1.0, 1.0, min_replicas=5, max_replicas=2)
