"""One ranking from every kind of evidence there is: metrics, traces, logs. Each modality scores the services on its
own scale, so scores are not added as they are: within a modality, a service counts by how far it stands out from
the others (a robust z-score against that modality's median service). A modality in which nothing stands out — the
metrics of a code-level fault, the logs of a CPU fault — then adds almost nothing, and one in which a service
stands far out decides. Nothing is learned from labels; the only constants are the clip and the floor below."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

CLIP = 8.0  # one modality's say is bounded: a single wild score cannot outvote the others without limit
SPREAD_FLOOR = 0.02  # scores in [0, 1): differences smaller than this are noise, not standing out


@dataclass(frozen=True)
class Fused:
    service: str
    score: float  # sum over modalities of how far the service stands out in each
    by_modality: dict[str, float]  # modality → its standing-out there (0 when not above the median)


def fuse(scores: Mapping[str, Mapping[str, float]]) -> list[Fused]:
    """`scores`: modality → service → score in [0, 1). Every service of any modality is ranked, best first; a
    service a modality did not see gets that modality's median (no evidence either way)."""
    services = sorted({s for by_service in scores.values() for s in by_service})
    if not services:
        return []
    standing: dict[str, dict[str, float]] = {s: {} for s in services}
    for modality, by_service in scores.items():
        if not by_service:
            continue
        values = np.array([float(v) for v in by_service.values()], dtype=float)
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        median = float(np.median(values))
        spread = max(1.4826 * float(np.median(np.abs(values - median))), SPREAD_FLOOR)
        for service in services:
            value = by_service.get(service, median)
            z = (float(value) - median) / spread if np.isfinite(value) else 0.0
            standing[service][modality] = float(np.clip(z, 0.0, CLIP))
    fused = [Fused(s, round(sum(standing[s].values()), 6), standing[s]) for s in services]
    first = _first_seen(scores)
    return sorted(fused, key=lambda f: (-f.score, first.get(f.service, len(first))))


def _first_seen(scores: Mapping[str, Mapping[str, float]]) -> dict[str, int]:
    """Ties keep the order of the first modality given (metrics, the engine's historic ranking)."""
    order: dict[str, int] = {}
    for by_service in scores.values():
        for service, _ in sorted(by_service.items(), key=lambda kv: -kv[1]):
            order.setdefault(service, len(order))
    return order
