"""Load prediction tools: forecast a series, recommend replicas for a workload. The models are in
`engines.forecast`; this module fetches history (Prometheus) and the workload's current set-up (cluster).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, Field

from connections.prometheus import MAX_POINTS, Prometheus, render
from engines.forecast import Autoscaler, Forecast, forecast, recommend
from errors import InvalidInput
from runtime import current
from tools.catalogue import tool
from tools.clusters import ClusterArg
from tools.rca import _iso
from tools.results import Result, table

logger = logging.getLogger(__name__)
HISTORY_STEP_SECONDS = 300
HISTORY_POINTS = 4_000

MAX_ROWS = 12  # forecast rows shown; longer horizons are thinned evenly
MAX_VALUE = 1e15  # larger values are no load a replica carries, and their intervals would overflow
MAX_STEP = 7 * 86_400.0
LATEST = 4_102_444_800.0  # 2100-01-01
MAX_REPLICAS_NEEDED = 1_000_000  # a per_replica this small against the peak is a unit mistake
LEVEL = 0.9


class Point(BaseModel):
    time: str
    mean: float
    lower: float
    upper: float


class ForecastResult(Result):
    """A forecast with its 90 % interval."""

    source: str
    history_points: int
    step_seconds: float
    method: str
    level: float
    peak_mean: float
    peak_upper: float
    points: list[Point]

    def render(self) -> str:
        head = (
            f"{self.source}: {self.history_points} points of history, step {self.step_seconds:g}s, "
            f"{self.method}; peak {self.peak_mean:.4g} (upper {self.peak_upper:.4g}, {self.level:.0%})"
        )
        rows = [[p.time, f"{p.mean:.4g}", f"{p.lower:.4g}", f"{p.upper:.4g}"] for p in self.points]
        return head + "\n" + table(["TIME", "FORECAST", "LOWER", "UPPER"], rows)


def _result(source: str, history: int, fc: Forecast, iso: bool) -> ForecastResult:
    if not (np.isfinite(fc.mean).all() and np.isfinite(fc.lower).all() and np.isfinite(fc.upper).all()):
        raise InvalidInput(  # cannot happen within MAX_VALUE; said plainly rather than answered as null
            "The forecast came out too large to represent.", hint=f"Give values within ±{MAX_VALUE:g}."
        )
    keep = np.unique(np.linspace(0, len(fc.mean) - 1, min(MAX_ROWS, len(fc.mean))).astype(int))
    points = [
        Point(
            time=_iso(float(fc.times[i])) if iso else f"{fc.times[i]:g}",
            mean=round(float(fc.mean[i]), 4),
            lower=round(float(fc.lower[i]), 4),
            upper=round(float(fc.upper[i]), 4),
        )
        for i in keep
    ]
    return ForecastResult(
        source=source,
        history_points=history,
        step_seconds=fc.step,
        method=fc.method,
        level=fc.level,
        peak_mean=round(float(fc.mean.max()), 4),
        peak_upper=round(float(fc.upper.max()), 4),
        points=points,
    )


def _steps(horizon_minutes: int, step: float) -> int:
    """Points to predict; refused beyond limits.forecast_points."""
    cap = current().settings.limits.forecast_points
    steps = max(1, math.ceil(horizon_minutes * 60 / step))
    if steps > cap:
        raise InvalidInput(
            f"horizon_minutes={horizon_minutes} at a {step:g}s step is {steps} points to predict; at most {cap} "
            "(limits.forecast_points).",
            hint=f"Use a step of at least {math.ceil(horizon_minutes * 60 / cap)}s or a shorter horizon_minutes.",
        )
    return steps


def _history_step(days: float, step: int | None) -> float:
    """The query step for `days` of history: `step` if given (refused if it makes too many points), else
    5 minutes, coarser when needed to stay within HISTORY_POINTS and limits.forecast_points."""
    cap = current().settings.limits.forecast_points
    span = 86_400 * days
    if step is None:
        return float(max(HISTORY_STEP_SECONDS, math.ceil(span / min(HISTORY_POINTS, cap))))
    points = math.floor(span / step) + 1
    if points > min(cap, MAX_POINTS):
        most = min(cap, MAX_POINTS)
        raise InvalidInput(
            f"history_days={days:g} at step_seconds={step} is {points} points of history; at most {most} are read.",
            hint=f"Use step_seconds of at least {math.ceil(span / (most - 1))} or fewer history_days.",
        )
    return float(step)


def _check_values(values: np.ndarray, what: str) -> None:
    if len(values) and not (np.isfinite(values).all() and np.abs(values).max() <= MAX_VALUE):
        raise InvalidInput(
            f"{what} must be finite numbers within ±{MAX_VALUE:g}; got {float(np.abs(values).max()):g}.",
            hint="Forecast a rate or a level (e.g. requests per second), not a huge counter.",
        )


async def _history(query: str, days: int | None, step: int | None) -> tuple[np.ndarray, np.ndarray]:
    rt = current()
    stop = time.time()
    span_days = days or rt.settings.forecast.history_days
    start = stop - 86_400 * span_days
    # load follows the day and the week: 5-minute samples (coarser past ~2 weeks) carry the pattern, and keep
    # the fit to a few thousand rows per model
    step_s = _history_step(span_days, step)

    def fetch() -> tuple[np.ndarray, np.ndarray]:
        with Prometheus(rt.settings.prometheus) as prom:
            found = prom.query_range(query, start, stop, step_s)
        if len(found) != 1:
            raise InvalidInput(
                f"The query must return exactly one series, it returned {len(found)}: {query}",
                hint="Wrap it in sum(...) or filter labels.",
            )
        ok = np.isfinite(found[0].values)
        return found[0].times[ok], found[0].values[ok]

    times, values = await rt.call(fetch)
    _check_values(values, "The query's values")
    return times, values


@tool("rca", title="Forecast a series")
async def forecast_series(
    query: Annotated[str | None, Field(description="PromQL returning one series (e.g. a request rate).")] = None,
    values: Annotated[
        list[float] | None,
        Field(
            description="Or the history itself, oldest first: at most limits.forecast_points (default 20,000) "
            f"finite values within ±{MAX_VALUE:g}."
        ),
    ] = None,
    step_seconds: Annotated[
        float | None,
        Field(
            gt=0,
            le=MAX_STEP,
            description="Spacing of `values`, or the query step, in seconds (at most a week). horizon/step and "
            "history/step may each be at most limits.forecast_points.",
        ),
    ] = None,
    end: Annotated[
        float | None, Field(ge=0, le=LATEST, description="Unix time of the last of `values` (1970..2100); default now.")
    ] = None,
    horizon_minutes: Annotated[int, Field(ge=1, le=10_080, description="At most a week (10,080).")] = 60,
    history_days: Annotated[int | None, Field(ge=1, le=90, description="Default forecast.history_days.")] = None,
) -> ForecastResult:
    """Forecast a series (a request rate, from Prometheus or given values) for a horizon, with time-of-day
    and weekly patterns and a 90 % prediction interval. Use for capacity questions. Returns the forecast
    path (thinned), its peak and interval."""
    rt = current()
    if (query is None) == (values is None):
        raise InvalidInput("Pass either query or values (not both).")
    if step_seconds is not None and not 0 < step_seconds <= MAX_STEP:
        raise InvalidInput(f"step_seconds must be above 0 and at most {MAX_STEP:g} (a week), got {step_seconds:g}.")
    if end is not None and not 0 <= end <= LATEST:
        raise InvalidInput(f"end must be a Unix time between 1970 and 2100, got {end:g}.")
    if values is not None:
        if not step_seconds:
            raise InvalidInput("With values, give step_seconds (their spacing).")
        cap = rt.settings.limits.forecast_points
        if len(values) > cap:
            raise InvalidInput(
                f"values has {len(values)} points; at most {cap} are accepted (limits.forecast_points).",
                hint="Send the most recent part, or average neighbouring values to a coarser step.",
            )
        history = np.asarray(values, dtype=float)
        _check_values(history, "values")
        _steps(horizon_minutes, step_seconds)  # refused before any work
        times = (end or time.time()) - step_seconds * np.arange(len(history))[::-1]
        source = f"{len(history)} given values"
    else:
        assert query is not None
        step_s = _history_step(history_days or rt.settings.forecast.history_days, _whole(step_seconds))
        _steps(horizon_minutes, step_s)  # refused before any query is sent
        times, history = await _history(query, history_days, _whole(step_seconds))
        source = query
    if len(history) < 2:
        raise InvalidInput("Need at least two points of history.")
    step = float(np.median(np.diff(times)))
    steps = _steps(horizon_minutes, step)
    fc = await rt.call(forecast, times, history, steps, LEVEL)
    return _result(source, len(history), fc, iso=True)


def _whole(step: float | None) -> int | None:
    """A query step in whole seconds (at least 1)."""
    return None if step is None else max(1, round(step))


class ReplicaResult(Result):
    """Replicas needed for the forecast peak, against the current replicas and HPA."""

    deployment: str
    query: str
    per_replica: float
    peak_mean: float
    peak_upper: float
    needed: int
    recommended: int
    current: int | None
    hpa: str | None
    notes: list[str]

    def render(self) -> str:
        lines = [
            f"{self.deployment}: forecast peak {self.peak_mean:.4g} (90% upper {self.peak_upper:.4g}) "
            f"at {self.per_replica:g} per replica",
            f"recommended {self.recommended} replicas (needed {self.needed}); current {self.current}; "
            f"HPA {self.hpa or 'none'}",
        ]
        return "\n".join(lines + [f"- {n}" for n in self.notes])


def _autoscaler(items: list[dict[str, Any]], name: str) -> Autoscaler | None:
    for hpa in items:
        target = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        if target.get("kind") == "Deployment" and target.get("name") == name:
            spec = hpa["spec"]
            return Autoscaler(hpa["metadata"]["name"], int(spec.get("minReplicas") or 1), int(spec["maxReplicas"]))
    return None


@tool("rca", title="Recommend replicas")
async def recommend_replicas(
    namespace: str,
    deployment: str,
    per_replica: Annotated[
        float, Field(gt=0, description="Load one replica should carry, in the query's unit (e.g. requests/s).")
    ],
    query: Annotated[
        str | None, Field(description="PromQL for the load (one series); default: Istio requests/s to the deployment.")
    ] = None,
    horizon_minutes: Annotated[int, Field(ge=1, le=10_080, description="At most a week (10,080).")] = 60,
    history_days: Annotated[int | None, Field(ge=1, le=90)] = None,
    cluster: ClusterArg = None,
) -> ReplicaResult:
    """Recommend how many replicas a Deployment needs over a horizon: forecast its load, divide the 90 %
    upper peak by the per-replica throughput, clamp to forecast.min/max_replicas, and compare with its
    current replicas and HPA. Returns the numbers and what to change."""
    rt = current()
    rt.check_namespace(namespace)
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", deployment):
        raise InvalidInput(f"{deployment!r} is not a valid Deployment name.")
    template = (
        'sum(rate(istio_requests_total{reporter="destination", destination_workload_namespace="$ns", '
        f'destination_workload="{deployment}"}}[$rate]))'
    )
    expr = query or render(template, namespace, 300)
    conn = await rt.connect(cluster)
    dep, (hpas, _), (times, history) = await asyncio.gather(
        rt.call(conn.get, f"/apis/apps/v1/namespaces/{namespace}/deployments/{deployment}"),
        rt.call(conn.list_items, f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers"),
        _history(expr, history_days, None),
    )
    if len(history) < 2:
        raise InvalidInput(f"No load history for {deployment}: the query returned too few points: {expr}")
    step = float(np.median(np.diff(times)))
    fc = await rt.call(forecast, times, history, _steps(horizon_minutes, step), LEVEL)
    peak_upper = float(fc.upper.max())
    if not (per_replica > 0 and math.isfinite(peak_upper) and peak_upper / per_replica <= MAX_REPLICAS_NEEDED):
        raise InvalidInput(
            f"per_replica={per_replica:g} against a forecast peak of {peak_upper:.4g} would need more than "
            f"{MAX_REPLICAS_NEEDED:,} replicas.",
            hint="Give per_replica in the query's unit (e.g. requests per second one replica should serve).",
        )
    limits = rt.settings.forecast
    hpa = _autoscaler(hpas, deployment)
    current_replicas = (dep.get("spec") or {}).get("replicas")
    rec = recommend(
        float(fc.upper.max()),
        per_replica,
        min_replicas=limits.min_replicas,
        max_replicas=limits.max_replicas,
        current=current_replicas,
        autoscaler=hpa,
    )
    return ReplicaResult(
        deployment=f"{namespace}/{deployment}",
        query=expr,
        per_replica=per_replica,
        peak_mean=round(float(fc.mean.max()), 4),
        peak_upper=round(float(fc.upper.max()), 4),
        needed=rec.needed,
        recommended=rec.recommended,
        current=current_replicas,
        hpa=f"{hpa.name} {hpa.min_replicas}-{hpa.max_replicas}" if hpa else None,
        notes=rec.notes,
    )
