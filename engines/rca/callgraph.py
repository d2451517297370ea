"""The call graph's part in the ranking: slowness travels up a call chain, so look for it at the bottom.

Two rules, both only along known (caller, callee) edges:
1. **A caller's client-side latency/errors are about its callees.** A metric measured where the service calls
   out (`client`/`outbound` in its name: the latency its calls to others take) says that something below it is
   slow, not that it is. It does not count for the caller; each callee is credited with the mean of what its
   callers saw (one that every caller finds slow gets it all, one that only some do, a share). A network delay
   on a callee shows up there first: its own server-side metrics often do not move.
2. **A caller whose callee's latency/errors moved (≥ GRAPH_MIN) ranks just below that callee.** Its
   latency/error scores are capped at the callee's, never scaled down to nothing, so a wrong edge costs the
   caller the places between it and its callee, not its ranking. Caps follow the graph down; two services
   calling each other are left alone. Resource anomalies are never capped.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from engines.rca.frame import metric_of
from engines.rca.kinds import propagates

GRAPH_MIN = 0.5  # a callee this anomalous explains its caller's latency/errors: the caller ranks just below it
_OUTBOUND = re.compile(r"client|outbound", re.I)


def outbound(metric: str) -> bool:
    """A latency/error metric measured on the service's calls to others (about its callees, not itself)."""
    return propagates(metric) and bool(_OUTBOUND.search(metric))


@dataclass(frozen=True)
class Heard:
    """What a service's callers saw of it: the mean of their client-side anomalies."""

    score: float
    column: int  # the strongest of those caller columns, as evidence
    callers: list[str]


@dataclass
class GraphStep:
    adjusted: np.ndarray  # per column, the score after both rules
    explained_by: dict[str, str] = field(default_factory=dict)  # caller -> the callee it is capped below
    heard: dict[str, Heard] = field(default_factory=dict)  # callee -> what its callers saw of it

    def best(self, service: str, idx: list[int]) -> float:
        heard = self.heard.get(service)
        return max(float(self.adjusted[idx].max()), heard.score if heard else 0.0)


def apply(
    columns: list[str], by_service: dict[str, list[int]], scores: np.ndarray, calls: set[tuple[str, str]]
) -> GraphStep:
    """Both rules on the combined detector scores of one split (`by_service`: each service's column indices)."""
    step = GraphStep(scores.copy())
    edges = {(a, b) for a, b in calls if a != b}
    if not edges:
        return step
    metrics = [metric_of(c) for c in columns]
    _credit_callees(step, {j for j, m in enumerate(metrics) if outbound(m)}, scores, edges, by_service)
    propagating = [propagates(m) for m in metrics]
    _cap_callers(step, propagating, {(a, b) for a, b in edges if (b, a) not in edges}, by_service)
    return step


def _credit_callees(
    step: GraphStep,
    outbound_columns: set[int],
    scores: np.ndarray,
    edges: set[tuple[str, str]],
    by_service: dict[str, list[int]],
) -> None:
    """Rule 1: callers' client-side columns count for their callees, not for themselves."""
    seen: dict[str, int] = {}  # caller -> its strongest client-side column
    for caller in {a for a, _ in edges}:
        mine = sorted(outbound_columns.intersection(by_service.get(caller, ())))
        if mine:
            step.adjusted[mine] = 0.0
            seen[caller] = min(mine, key=lambda j: (-scores[j], j))
    callers_of: dict[str, list[str]] = defaultdict(list)
    for caller, callee in sorted(edges):
        if caller in seen and callee in by_service:
            callers_of[callee].append(caller)
    for callee, them in callers_of.items():
        loudest = max(them, key=lambda a: scores[seen[a]])
        mean = float(np.mean([scores[seen[a]] for a in them]))
        step.heard[callee] = Heard(round(mean, 6), seen[loudest], them)


def _cap_callers(
    step: GraphStep,
    propagating: list[bool],
    edges: set[tuple[str, str]],
    by_service: dict[str, list[int]],
) -> None:
    """Rule 2: a caller's latency/errors ranked just below the callee that explains them. Only the callee's own
    metrics count here: what its callers saw of it (rule 1) is the callers' evidence, and must not cap them."""
    own = step.adjusted.copy()  # after rule 1, before any cap
    moved = {s: max((float(own[j]) for j in idx if propagating[j]), default=0.0) for s, idx in by_service.items()}
    callees: dict[str, list[str]] = defaultdict(list)
    for caller, callee in edges:
        if caller in by_service and moved.get(callee, 0.0) >= GRAPH_MIN:
            callees[caller].append(callee)
    for _ in range(len(by_service)):  # enough passes for the longest call chain
        best = {s: float(step.adjusted[idx].max()) for s, idx in by_service.items()}
        changed = False
        for caller, targets in sorted(callees.items()):
            cap, callee = max((best[t], t) for t in targets)
            for j in by_service[caller]:
                if propagating[j]:
                    value = min(float(own[j]), cap * (1.0 - 1e-3))
                    changed |= value != step.adjusted[j]
                    step.adjusted[j] = value
            if moved[caller] >= GRAPH_MIN:  # its own latency/errors moved, and the callee accounts for them
                step.explained_by[caller] = callee
        if not changed:
            break
