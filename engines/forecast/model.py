"""Request-rate forecasting: gradient-boosted trees on lags and calendar features, conformal intervals.

One model per horizon h ("direct" strategy; long horizons fit models at doubling anchors only, see
`anchor_horizons`): the features are what is known at the forecast origin
(the last values, the recent level, the value one day and one week before the target time) and the target's
calendar position (time of day, day of week, as sine/cosine pairs). The target is log(1 + y), so the model
predicts a typical (median-like) rate and cannot go negative.

Intervals are split-conformal: the model is fitted on the older 80 % of the history, its absolute log
residuals on the newest 20 % give the quantile for the requested level, and the model is refitted on all
of the history for the point forecast. A forecaster that keeps running (the benchmark) updates the
quantile from its most recent residuals instead (`rolling_half_widths`), which keeps coverage under drift.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

logger = logging.getLogger(__name__)

DAY = 86_400.0
WEEK = 7 * DAY
MIN_HISTORY = 24  # samples; below this the forecast falls back to the recent level
CALIBRATION_SHARE = 0.2


@dataclass(frozen=True)
class Forecast:
    """Predicted values for the next steps, with a central prediction interval."""

    times: np.ndarray  # target times, seconds
    mean: np.ndarray  # point forecast
    lower: np.ndarray
    upper: np.ndarray
    level: float  # interval coverage aimed at, e.g. 0.9
    step: float  # seconds between samples
    method: str  # "gradient boosting" or "recent level (short history)"


def median_step(times: np.ndarray) -> float:
    """The typical spacing of samples, in seconds."""
    if len(times) < 2:
        raise ValueError("need at least two samples to know their spacing")
    return float(np.median(np.diff(times)))


def features(
    times: np.ndarray, values: np.ndarray, origins: np.ndarray, horizon: int | np.ndarray, step: float
) -> np.ndarray:
    """The feature rows for forecasting index origin + horizon from what is known at each origin (`horizon` one
    number, or one per origin)."""
    logs = np.log1p(np.maximum(values, 0.0))
    n = len(values)
    target_time = times[origins] + horizon * step

    def at(index: np.ndarray) -> np.ndarray:
        ok = (index >= 0) & (index <= origins)  # never look past the origin
        out = np.full(len(index), np.nan)
        out[ok] = logs[np.clip(index[ok], 0, n - 1)]
        return out

    day_lag = round(DAY / step)
    week_lag = round(WEEK / step)
    target = origins + horizon
    csum = np.concatenate([[0.0], np.cumsum(logs)])
    start = np.maximum(0, origins - 5)
    recent = (csum[origins + 1] - csum[start]) / (origins + 1 - start)
    hour = (target_time % DAY) / DAY * 2 * math.pi
    weekday = ((target_time // DAY + 3) % 7) / 7 * 2 * math.pi  # 1970-01-01 was a Thursday
    return np.column_stack(
        [
            at(origins),
            at(origins - 1),
            at(origins - 2),
            recent,
            at(target - day_lag),
            at(target - week_lag),
            at(origins - day_lag),
            np.sin(hour),
            np.cos(hour),
            np.sin(weekday),
            np.cos(weekday),
        ]
    )


@dataclass
class HorizonModel:
    """A fitted model for one horizon step and its conformal half-width in log space."""

    horizon: int
    step: float
    model: HistGradientBoostingRegressor
    half_width: float
    usable: np.ndarray  # feature columns with data (a week's lag needs a week of history)

    def predict_log(self, times: np.ndarray, values: np.ndarray, origins: np.ndarray) -> np.ndarray:
        """The forecast of log1p(value) at index origin + horizon, per origin."""
        return self.model.predict(features(times, values, origins, self.horizon, self.step)[:, self.usable])

    def predict(
        self, times: np.ndarray, values: np.ndarray, origins: np.ndarray, half_width: np.ndarray | float | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(point, lower, upper) for index origin + horizon, per origin.

        `half_width` (log space) defaults to the one calibrated at fit time.
        """
        centre = self.predict_log(times, values, origins)
        width = self.half_width if half_width is None else half_width
        return (np.expm1(centre), np.maximum(0.0, np.expm1(centre - width)), np.expm1(centre + width))


def rolling_half_widths(log_residuals: np.ndarray, level: float, window: int, delay: int = 1) -> np.ndarray:
    """Adaptive conformal half-widths for an online forecaster.

    `log_residuals[k]` is |log1p(actual) - predicted log| of the k-th forecast, in time order; it is known
    `delay` forecasts later (the horizon, in steps). The half-width of forecast k is the conformal quantile
    of the last `window` residuals known by then, so a drifting series widens (or narrows) its intervals.
    """
    out = np.full(len(log_residuals), np.inf)
    for k in range(len(log_residuals)):
        known = np.sort(log_residuals[max(0, k - delay - window + 1) : max(0, k - delay + 1)])
        if len(known):
            rank = min(len(known), math.ceil((len(known) + 1) * level))
            out[k] = known[rank - 1]
    return out


def _regressor(seed: int = 0) -> HistGradientBoostingRegressor:
    return HistGradientBoostingRegressor(
        max_iter=200, learning_rate=0.05, max_leaf_nodes=31, min_samples_leaf=20, random_state=seed
    )


def fit_horizon(
    times: np.ndarray, values: np.ndarray, horizon: int, level: float = 0.9, step: float | None = None
) -> HorizonModel:
    """Fit the model for one horizon on a history and calibrate its interval.

    Args:
        times: sample times in seconds, increasing, evenly spaced.
        values: the series (e.g. requests per second), >= 0.
        horizon: steps ahead (1 = the next sample).
        level: interval coverage to aim for, in (0, 1).
        step: seconds between samples; default the median spacing.

    Raises:
        ValueError: too short a history for this horizon.
    """
    step = step or median_step(times)
    origins = np.arange(0, len(values) - horizon)
    if len(origins) < MIN_HISTORY:
        raise ValueError(f"need at least {MIN_HISTORY + horizon} samples to forecast {horizon} steps ahead")
    x = features(times, values, origins, horizon, step)
    y = np.log1p(np.maximum(values[origins + horizon], 0.0))
    cut = int(len(origins) * (1 - CALIBRATION_SHARE))
    usable = np.isfinite(x[:cut]).any(axis=0)
    x = x[:, usable]
    # One OpenMP thread: the fits are small, and on a busy machine (a server next to its cluster) OpenMP's
    # spinning threads made them ten times slower than one thread.
    with threadpool_limits(limits=1, user_api="openmp"):
        calibration = _regressor().fit(x[:cut], y[:cut])
        residuals = np.abs(y[cut:] - calibration.predict(x[cut:]))
        final = _regressor().fit(x, y)
    # Split-conformal quantile with the finite-sample correction.
    k = min(len(residuals), math.ceil((len(residuals) + 1) * level))
    half_width = float(np.sort(residuals)[k - 1])
    return HorizonModel(horizon, step, final, half_width, usable)


def forecast(times: np.ndarray, values: np.ndarray, horizon_steps: int, level: float = 0.9) -> Forecast:
    """Forecast the next `horizon_steps` samples after the history, with `level` prediction intervals.

    Short histories (fewer than MIN_HISTORY samples past the horizon) get the recent level with an
    interval from the recent spread.

    Raises:
        ValueError: fewer than two samples, or a horizon below 1.
    """
    if horizon_steps < 1:
        raise ValueError("the horizon must be at least one step")
    times = np.asarray(times, dtype=float)
    values = np.asarray(values, dtype=float)
    step = median_step(times)
    target_times = times[-1] + step * np.arange(1, horizon_steps + 1)
    if len(values) - horizon_steps < MIN_HISTORY:
        recent = values[-12:]
        centre = float(np.median(recent))
        spread = float(np.quantile(np.abs(recent - centre), level)) if len(recent) > 1 else 0.0
        flat = np.full(horizon_steps, centre)
        return Forecast(
            target_times,
            flat,
            np.maximum(0.0, flat - spread),
            flat + spread,
            level,
            step,
            "recent level (short history)",
        )
    last = len(values) - 1
    anchors = anchor_horizons(horizon_steps)
    models = {a: fit_horizon(times, values, a, level, step) for a in anchors}
    steps = np.arange(1, horizon_steps + 1)
    marks = np.array(anchors)
    below = np.searchsorted(marks, steps, side="right") - 1  # index of the anchor at or before each step
    above = np.searchsorted(marks, steps, side="left")  # and at or after it
    span = marks[above] - marks[below]
    share = np.where(span == 0, 0.0, (steps - marks[below]) / np.maximum(span, 1))
    half = np.array([models[a].half_width for a in anchors])
    width = (1 - share) * half[below] + share * half[above]
    centres = np.zeros(horizon_steps)
    for i, anchor in enumerate(anchors):
        group = below == i
        if group.any():
            # the model of the nearest shorter anchor, fed the features of each target (its time of day, lags):
            # one prediction call per anchor, not one per step
            fitted = models[anchor]
            rows = features(times, values, np.full(int(group.sum()), last), steps[group], step)
            centres[group] = fitted.model.predict(rows[:, fitted.usable])
    mean, lower, upper = np.expm1(centres), np.maximum(0.0, np.expm1(centres - width)), np.expm1(centres + width)
    return Forecast(target_times, mean, lower, upper, level, step, "gradient boosting")


def anchor_horizons(steps: int) -> list[int]:
    """The horizons that get a model of their own: 1 to 4, then doubling, and `steps` itself.

    A day ahead at one-minute steps needs 13 models, not 1,440; the steps in between use the nearest shorter
    anchor's model with their own target features, and an interval interpolated between the two anchors.
    """
    anchors = list(range(1, min(steps, 4) + 1))
    while anchors[-1] < steps:
        anchors.append(min(steps, anchors[-1] * 2))
    return anchors
