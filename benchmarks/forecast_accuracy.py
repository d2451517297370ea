"""Forecast accuracy on the load series in `../shared/eval/load/`, against last-value and seasonal-naive.

Each series: the first 80 % is history (the model is fitted once on it, less a calibration stretch at its
end), the last 20 % is the test. Every
test point is forecast from the data up to its origin, one step ahead and one hour ahead; its 90 % interval
comes from the residuals of the week of forecasts before it (adaptive conformal). Reported: sMAPE
of our forecast and of the two baselines (last value; the value one week before), and how often the 90 %
interval holds the actual value.

    python benchmarks/forecast_accuracy.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.eval_data import load_series
from engines.forecast.model import WEEK, fit_horizon, median_step, rolling_half_widths

SERIES = ["nyc_taxi", "elb_request_count_8c0756"]
TEST_SHARE = 0.2
LEVEL = 0.9


def smape(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Symmetric MAPE in percent; a pair of zeros counts as a perfect forecast."""
    denom = np.abs(actual) + np.abs(predicted)
    ratio = np.where(denom > 0, 2 * np.abs(predicted - actual) / np.where(denom > 0, denom, 1), 0.0)
    return float(100 * ratio.mean())


def evaluate(name: str, horizon_seconds: float | None) -> list[str]:
    times, values = load_series(name)
    step = median_step(times)
    horizon = 1 if horizon_seconds is None else max(1, round(horizon_seconds / step))
    cut = int(len(values) * (1 - TEST_SHARE))
    # The model is fitted on the history up to a calibration stretch (a week, at most a fifth of the
    # history) whose out-of-sample residuals seed the intervals; from there on, every forecast's interval
    # comes from the residuals already observed at its origin (adaptive conformal).
    calibration = min(round(WEEK / step), cut // 5)
    started = time.perf_counter()
    model = fit_horizon(times[: cut - calibration], values[: cut - calibration], horizon, LEVEL, step)
    fitted = time.perf_counter() - started
    origins = np.arange(cut - horizon - calibration, len(values) - horizon)
    logs = model.predict_log(times, values, origins)
    residuals = np.abs(np.log1p(values[origins + horizon]) - logs)
    widths = rolling_half_widths(residuals, LEVEL, window=calibration, delay=horizon)
    test = slice(calibration, None)
    origins, logs, widths = origins[test], logs[test], widths[test]
    target = origins + horizon
    point = np.expm1(logs)
    lower, upper = np.maximum(0.0, np.expm1(logs - widths)), np.expm1(logs + widths)
    actual = values[target]
    seasonal = values[target - round(WEEK / step)]
    label = "1 step" if horizon_seconds is None else f"1 hour ({horizon} steps)"
    ours = smape(actual, point)
    last = smape(actual, values[origins])
    naive = smape(actual, seasonal)
    coverage = float(np.mean((actual >= lower) & (actual <= upper)))
    verdict = "yes" if ours < min(last, naive) and 0.85 <= coverage <= 0.95 else "no"
    return [
        name,
        label,
        str(len(actual)),
        f"{ours:.1f} %",
        f"{last:.1f} %",
        f"{naive:.1f} %",
        f"{100 * coverage:.1f} %",
        verdict,
        f"{fitted:.1f}",
    ]


def main() -> None:
    head = [
        "series",
        "horizon",
        "test points",
        "sMAPE ours",
        "last value",
        "seasonal naive (1 week)",
        "90 % interval coverage",
        "target met",
        "fit s",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name in SERIES:
        for horizon in (None, 3600.0):
            print("| " + " | ".join(evaluate(name, horizon)) + " |")


if __name__ == "__main__":
    main()
