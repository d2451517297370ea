"""A real Prometheus holding a synthetic incident in namespace `shop`: at FAULT the `cart` workload's CPU
saturates, its latency and 5xx rate rise, and `frontend`, which calls it, gets slower too."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from runtime import Runtime, use
from settings import Settings
from tests.prom.harness import PrometheusServer, openmetrics

STEP = 15.0
LENGTH = 220  # samples: 55 minutes
FAULT_AT = 160  # sample index where the fault starts
PODS = {"frontend": "frontend-7d9f8b6c5d-x2x4k", "cart": "cart-5b7c9d8f6b-q9w8z", "payment": "payment-6c8d7f9b5c-m4n5p"}
BUCKETS = (10, 50, 100, 500, 1000, "+Inf")


@dataclass(frozen=True)
class Incident:
    url: str
    start: float
    end: float
    fault: float


def _counter(rates: np.ndarray) -> np.ndarray:
    return np.cumsum(rates * STEP)


def _histogram(
    name: str,
    labels: str,
    times: np.ndarray,
    requests: np.ndarray,
    slow_share: np.ndarray,
    fast_ms: float,
    slow_ms: float,
) -> list[tuple[str, list[tuple[float, float]]]]:
    """Cumulative buckets where `slow_share` of the requests take slow_ms and the rest fast_ms."""
    total = _counter(requests)
    slow = _counter(requests * slow_share)
    fast = total - slow
    out = []
    for le in BUCKETS:
        bound = float("inf") if le == "+Inf" else float(le)
        count = (fast if fast_ms <= bound else 0) + (slow if slow_ms <= bound else 0)
        count = count + np.zeros_like(total)
        out.append((f'{name}_bucket{{{labels},le="{le}"}}', list(zip(times, count, strict=True))))
    out.append((f"{name}_count{{{labels}}}", list(zip(times, total, strict=True))))
    spent = _counter(requests * (fast_ms * (1 - slow_share) + slow_ms * slow_share))
    out.append((f"{name}_sum{{{labels}}}", list(zip(times, spent, strict=True))))
    return out


def incident_data(start: float) -> str:
    rng = np.random.default_rng(7)
    times = start + STEP * np.arange(LENGTH)
    after = np.arange(LENGTH) >= FAULT_AT
    cpu, memory, requests, errors, latency = [], [], [], [], []
    base_cpu = {"frontend": 0.10, "cart": 0.20, "payment": 0.05}
    rps = {"frontend": 10.0, "cart": 5.0, "payment": 2.0}
    for workload, pod in PODS.items():
        rate = base_cpu[workload] * (1 + 0.05 * rng.standard_normal(LENGTH))
        if workload == "cart":
            rate = np.where(after, 0.9 + 0.02 * rng.standard_normal(LENGTH), rate)
        cpu.append(
            (
                f'container_cpu_usage_seconds_total{{namespace="shop",pod="{pod}",container="{workload}"}}',
                list(zip(times, _counter(rate), strict=True)),
            )
        )
        mem = 2e8 * (1 + 0.002 * rng.standard_normal(LENGTH))
        memory.append(
            (
                f'container_memory_working_set_bytes{{namespace="shop",pod="{pod}",container="{workload}"}}',
                list(zip(times, mem, strict=True)),
            )
        )
        dest = f'reporter="destination",destination_workload_namespace="shop",destination_workload="{workload}"'
        load = rps[workload] * (1 + 0.03 * rng.standard_normal(LENGTH))
        requests.append(
            (f'istio_requests_total{{{dest},response_code="200"}}', list(zip(times, _counter(load), strict=True)))
        )
        if workload == "cart":
            errors.append(
                (
                    f'istio_requests_total{{{dest},response_code="503"}}',
                    list(zip(times, _counter(np.where(after, 1.0, 0.0)), strict=True)),
                )
            )
        slow = np.full(LENGTH, 0.05)
        if workload in ("cart", "frontend"):
            slow = np.where(after, 0.8, 0.05)
        latency += _histogram(
            "istio_request_duration_milliseconds",
            dest,
            times,
            load,
            slow,
            40 if workload != "frontend" else 80,
            400 if workload == "cart" else 900,
        )
    edge = (
        'reporter="source",destination_workload_namespace="shop",source_workload="frontend",destination_workload="cart"'
    )
    latency += _histogram(
        "istio_request_duration_milliseconds", edge, times, 5.0 * np.ones(LENGTH), np.where(after, 0.8, 0.05), 40, 400
    )
    return openmetrics(
        {
            "container_cpu_usage_seconds": ("counter", cpu),
            "container_memory_working_set_bytes": ("gauge", memory),
            "istio_requests": ("counter", requests + errors),
            "istio_request_duration_milliseconds": ("histogram", latency),
        }
    )


@pytest.fixture(scope="session")
def incident() -> Iterator[Incident]:
    start = float(int(time.time() // 60 * 60) - 2 * 3600)
    with PrometheusServer(incident_data(start)) as server:
        yield Incident(server.url, start, start + STEP * (LENGTH - 1), start + STEP * FAULT_AT)


def incident_runtime(incident: Incident, tmp_path: Path, **settings: object) -> Iterator[Runtime]:
    """A runtime on the incident's Prometheus, with no reachable cluster; `settings` adds sections."""
    rt = Runtime(
        Settings(
            prometheus={"url": incident.url},
            store={"path": tmp_path / "db.sqlite"},
            k8s={"kubeconfig": tmp_path / "missing-kubeconfig"},
            **settings,  # type: ignore[arg-type]
        )
    )
    with use(rt):
        yield rt
    rt.close()


@pytest.fixture
def runtime(incident: Incident, tmp_path: Path) -> Iterator[Runtime]:
    yield from incident_runtime(incident, tmp_path)
