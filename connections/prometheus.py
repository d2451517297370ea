"""A small Prometheus HTTP API client and the PromQL templates RCA and forecasting use.

Synchronous (tools run it through `Runtime.call`). Errors are the catalogue's: `Unsupported` when no
Prometheus is configured, `Unreachable` when it does not answer (naming the URL), `InvalidInput` quoting
Prometheus's own message when it rejects a query.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

import httpx
import numpy as np

from connections.http import ApiClient
from errors import InvalidInput, Unreachable, Unsupported
from settings import PrometheusSettings

logger = logging.getLogger(__name__)

MAX_POINTS = 11_000  # Prometheus refuses more than 11,000 points per series

# Per-workload series for a namespace. `$ns` is the namespace, `$rate` the rate window. Each query returns
# one series per pod (`pod` label) or per workload (`destination_workload`); edge queries return one per
# (source_workload, destination_workload) pair.
_CONTAINERS = 'namespace="$ns", container!="", container!="POD"'
_ISTIO_IN = 'reporter="destination", destination_workload_namespace="$ns"'
_ISTIO_OUT = 'reporter="source", destination_workload_namespace="$ns"'


def _quantile(q: str, by: str, selector: str) -> str:
    bucket = "istio_request_duration_milliseconds_bucket{" + selector + "}"
    return f"histogram_quantile(0.{q}, sum by ({by}, le) (rate({bucket}[$rate])))"


TEMPLATES: dict[str, str] = {
    "cpu": "sum by (pod) (rate(container_cpu_usage_seconds_total{" + _CONTAINERS + "}[$rate]))",
    "memory": "sum by (pod) (container_memory_working_set_bytes{" + _CONTAINERS + "})",
    "restarts": 'sum by (pod) (kube_pod_container_status_restarts_total{namespace="$ns"})',
    "network_rx": 'sum by (pod) (rate(container_network_receive_bytes_total{namespace="$ns"}[$rate]))',
    "network_tx": 'sum by (pod) (rate(container_network_transmit_bytes_total{namespace="$ns"}[$rate]))',
    "requests": "sum by (destination_workload) (rate(istio_requests_total{" + _ISTIO_IN + "}[$rate]))",
    "errors": (
        "sum by (destination_workload) (rate(istio_requests_total{" + _ISTIO_IN + ', response_code=~"5.."}[$rate]))'
    ),
    **{f"latency_p{q}": _quantile(q, "destination_workload", _ISTIO_IN) for q in ("50", "90", "99")},
}
EDGE_TEMPLATES: dict[str, str] = {
    "latency_p90": _quantile("90", "source_workload, destination_workload", _ISTIO_OUT),
}
_POD_SUFFIX = re.compile(r"^(?P<name>.+?)(-[bcdfghjklmnpqrstvwxz2456789]{6,10})?-[bcdfghjklmnpqrstvwxz2456789]{5}$")
_ORDINAL = re.compile(r"^(?P<name>.+)-\d+$")


@dataclass
class Series:
    """One range-query result: its labels and its samples."""

    labels: dict[str, str]
    times: np.ndarray
    values: np.ndarray


def workload_of(pod: str) -> str:
    """The Deployment/StatefulSet/DaemonSet name behind a pod name (best effort, from its suffixes)."""
    for pattern in (_POD_SUFFIX, _ORDINAL):
        match = pattern.match(pod)
        if match:
            return match.group("name")
    return pod


def render(template: str, namespace: str, rate_seconds: float) -> str:
    """A template with its namespace and rate window filled in."""
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", namespace):
        raise InvalidInput(f"{namespace!r} is not a valid namespace name.")
    return template.replace("$ns", namespace).replace("$rate", f"{max(60, int(rate_seconds))}s")


class Prometheus(ApiClient):
    """The Prometheus HTTP API at `settings.url`."""

    def __init__(self, settings: PrometheusSettings, transport: httpx.BaseTransport | None = None) -> None:
        if not settings.url:
            raise Unsupported(
                "No Prometheus is configured, so metrics cannot be queried.",
                hint="Set CLOUDPILOT_PROMETHEUS__URL (e.g. http://prometheus.monitoring:9090) or "
                "prometheus.url in the config file; or pass the series as CSV to rca_from_csv.",
            )
        super().__init__(settings, transport)

    def _get(self, path: str, params: dict[str, str]) -> dict:
        try:
            response = self._client.get(path, params=params)
        except httpx.TimeoutException:
            raise Unreachable(
                f"Prometheus at {self.shown} did not answer in time.",
                hint="Narrow the window, raise the step, or raise prometheus.timeout_seconds.",
                delay=5.0,
            ) from None
        except httpx.HTTPError as e:
            raise Unreachable(
                f"Prometheus at {self.shown} is unreachable: {e}.",
                hint="Check prometheus.url and that the server is up.",
                delay=5.0,
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code in (400, 422) or (body.get("status") == "error" and response.status_code < 500):
            message = body.get("error") or response.text[:300]
            raise InvalidInput(
                f"Prometheus rejected the query: {message}", hint="Fix the PromQL (see the quoted error) and try again."
            )
        if response.status_code >= 400:
            raise Unreachable(
                f"Prometheus at {self.shown} answered HTTP {response.status_code}: "
                f"{body.get('error') or response.text[:200]}",
                delay=5.0,
            )
        return body.get("data", {})

    def query(self, expr: str, time: float | None = None) -> list[tuple[dict[str, str], float]]:
        """An instant query: (labels, value) per series."""
        params = {"query": expr}
        if time is not None:
            params["time"] = f"{time:.3f}"
        data = self._get("/api/v1/query", params)
        if data.get("resultType") == "scalar":
            return [({}, float(data["result"][1]))]
        return [(item.get("metric", {}), float(item["value"][1])) for item in data.get("result", [])]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        """A range query: one `Series` per result series.

        Raises:
            InvalidInput: end before start, a non-positive step, too many points, or bad PromQL.
        """
        if end <= start:
            raise InvalidInput("The window's end must be after its start.")
        if step <= 0:
            raise InvalidInput("The step must be positive.")
        points = math.floor((end - start) / step) + 1
        if points > MAX_POINTS:
            raise InvalidInput(
                f"{points} points per series is more than Prometheus allows ({MAX_POINTS}).",
                hint=f"Use a step of at least {math.ceil((end - start) / MAX_POINTS)} s.",
            )
        data = self._get(
            "/api/v1/query_range", {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        )
        out = []
        for item in data.get("result", []):
            pairs = np.array([(float(t), float(v)) for t, v in item.get("values", [])], dtype=float)
            if len(pairs):
                out.append(Series(item.get("metric", {}), pairs[:, 0], pairs[:, 1]))
        return out
