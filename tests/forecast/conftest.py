"""A real Prometheus holding three days of a request rate with a daily cycle, 5-minute samples."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from runtime import Runtime, use
from settings import Settings
from tests.prom.harness import PrometheusServer, openmetrics

STEP = 300.0
DAYS = 3


def daily_rate(t: np.ndarray) -> np.ndarray:
    """100 requests/s on average, 150 at the daily peak, 50 at the trough."""
    return 100.0 + 50.0 * np.sin(2 * math.pi * (t % 86_400) / 86_400)


@pytest.fixture(scope="session")
def load_url() -> Iterator[str]:
    end = float(int(time.time() // STEP * STEP) - STEP)
    times = end - STEP * np.arange(DAYS * 288)[::-1]
    values = daily_rate(times) + np.random.default_rng(5).normal(0, 3, len(times))
    data = openmetrics(
        {
            "shop_requests_rate": (
                "gauge",
                [('shop_requests_rate{service="web"}', list(zip(times, values, strict=True)))],
            )
        }
    )
    with PrometheusServer(data) as server:
        yield server.url


@pytest.fixture
def runtime(load_url: str, tmp_path: Path) -> Iterator[Runtime]:
    rt = Runtime(Settings(prometheus={"url": load_url}, store={"path": tmp_path / "db.sqlite"}))
    with use(rt):
        yield rt
    rt.close()
