"""One ranking from every kind of evidence there is: metrics, traces, logs.

Traces and logs measure the same thing — how far a service's own behaviour moved from its normal period — in
the same unit, nats of a shrunk log-ratio (own time, child calls, error spans; template counts, error lines).
A fault shows in one of them and not the other (a CPU fault slows spans and leaves logs alone; an exception
changes logs and may leave spans alone), so a service counts by the larger of the two, not their sum: a
modality with nothing to say cannot drown the one that saw the fault. Metrics scores (the engine's anomaly
score in [0, 1)) are added with weight METRICS_WEIGHT: they order services the other modalities leave close,
and with metrics alone the ranking is the metrics engine's. Nothing is learned from labels."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

METRICS = "metrics"
METRICS_WEIGHT = 1.0  # a metrics score in [0, 1) adds at most one nat
MAX_SIZE = 20.0  # one modality's say is bounded: a wild value cannot outvote the others without limit


def score_of(size: float) -> float:
    """A modality's effect size (nats) as a score in [0, 1): 1 - exp(-size / 2), so 2 nats give about 0.63."""
    return round(min(1.0 - math.exp(-size / 2.0), 0.999999), 6)


@dataclass(frozen=True)
class Fused:
    service: str
    score: float
    by_modality: dict[str, float]  # modality → what it gave this service (metrics score, or nats)


def _value(v: float) -> float:
    return float(np.clip(v, 0.0, MAX_SIZE)) if np.isfinite(v) else 0.0


def fuse(scores: Mapping[str, Mapping[str, float]]) -> list[Fused]:
    """`scores`: modality → service → value ("metrics": score in [0, 1); any other: effect size in nats).
    Every service any modality saw is ranked, best first; one a modality did not see gets 0 from it."""
    services = sorted({s for by_service in scores.values() for s in by_service})
    fused = []
    for service in services:
        given = {m: _value(by_service[service]) for m, by_service in scores.items() if service in by_service}
        moved = max((v for m, v in given.items() if m != METRICS), default=0.0)
        total = moved + METRICS_WEIGHT * min(given.get(METRICS, 0.0), 1.0)
        fused.append(Fused(service, round(total, 6), given))
    first = _first_seen(scores)
    return sorted(fused, key=lambda f: (-f.score, first.get(f.service, len(first))))


def _first_seen(scores: Mapping[str, Mapping[str, float]]) -> dict[str, int]:
    """Ties keep the order of the first modality given (metrics: the engine's historic ranking)."""
    order: dict[str, int] = {}
    for by_service in scores.values():
        for service, _ in sorted(by_service.items(), key=lambda kv: -_value(kv[1])):
            order.setdefault(service, len(order))
    return order
