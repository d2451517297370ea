"""How many replicas a workload needs for a forecast load, and how that compares with what it has."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Autoscaler:
    """The parts of a HorizontalPodAutoscaler that bound the replica count."""

    name: str
    min_replicas: int
    max_replicas: int


@dataclass(frozen=True)
class Recommendation:
    """Replicas needed for the forecast peak, clamped, and how they compare with the current set-up."""

    peak_load: float
    per_replica: float
    needed: int  # before clamping
    recommended: int  # clamped to [min, max]
    current: int | None
    autoscaler: Autoscaler | None
    notes: list[str] = field(default_factory=list)


def recommend(
    peak_load: float,
    per_replica: float,
    *,
    min_replicas: int = 1,
    max_replicas: int = 20,
    current: int | None = None,
    autoscaler: Autoscaler | None = None,
) -> Recommendation:
    """Replicas for `peak_load` when one replica handles `per_replica` (same unit, e.g. requests/s).

    Args:
        peak_load: the load to plan for (e.g. the upper bound of the forecast interval).
        per_replica: sustainable load per replica (the target, not the breaking point).
        min_replicas: never recommend fewer.
        max_replicas: never recommend more (the seeds' ceiling is 20).
        current: the Deployment's replicas now, if known.
        autoscaler: the HPA that scales it, if any.

    Raises:
        ValueError: a non-positive per-replica throughput, negative load, or min above max.
    """
    if per_replica <= 0:
        raise ValueError("per-replica throughput must be positive")
    if peak_load < 0:
        raise ValueError("load cannot be negative")
    if min_replicas > max_replicas:
        raise ValueError(f"min_replicas {min_replicas} is above max_replicas {max_replicas}")
    needed = math.ceil(peak_load / per_replica - 1e-9)
    recommended = min(max(needed, min_replicas), max_replicas)
    notes = []
    if needed > max_replicas:
        notes.append(
            f"needs {needed} replicas but the ceiling is {max_replicas}: expect saturation "
            "unless each replica can take more load"
        )
    if autoscaler is not None:
        if autoscaler.max_replicas < recommended:
            notes.append(
                f"HPA {autoscaler.name} caps at {autoscaler.max_replicas}, below the "
                f"{recommended} needed: raise maxReplicas"
            )
        elif autoscaler.min_replicas > recommended:
            notes.append(
                f"HPA {autoscaler.name} keeps at least {autoscaler.min_replicas}, more than the "
                f"{recommended} needed: minReplicas could be lowered"
            )
        else:
            notes.append(
                f"HPA {autoscaler.name} ({autoscaler.min_replicas}-{autoscaler.max_replicas}) can reach {recommended}"
            )
    elif current is not None:
        if current < recommended:
            notes.append(f"scale up from {current} to {recommended} (no HPA)")
        elif current > recommended:
            notes.append(f"{current} replicas run; {recommended} would do (no HPA)")
        else:
            notes.append(f"the current {current} replicas fit the forecast")
    return Recommendation(round(peak_load, 6), per_replica, needed, recommended, current, autoscaler, notes)
