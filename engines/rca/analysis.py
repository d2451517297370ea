"""Root-cause ranking: which service (and which of its metrics) most likely started the trouble.

Steps:
1. Split the window at the anomaly time: baseline before, anomalous after. When none is given, the three
   strongest change points are each analysed, and every service keeps its best result.
2. Score every metric with the detectors (median/IQR, Z-score, Isolation Forest, DBSCAN), averaged.
3. When the call graph is known (edge columns `<callee>_<metric>@<caller>`, or `calls`), slowness is looked for
   at the bottom of the call chain (`callgraph.py`): a caller's client-side latency counts for its callees, and
   a caller's latency/errors are capped just below a callee whose latency/errors moved too.
4. A service scores its best metric; Warning events of the service in the window raise it (noisy-or).
5. Evidence (metric moves, trends, onsets, events) and a propagation chain from lagged cross-correlation.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import numpy as np

from engines.rca import callgraph
from engines.rca import detectors as det
from engines.rca.chain import Link, propagation_chain
from engines.rca.frame import Frame, FrameError, caller_of, metric_of
from engines.rca.kinds import direction, kind_of
from engines.rca.onset import cusum_statistics, detect_onsets
from engines.rca.trend import Trend, trend

logger = logging.getLogger(__name__)

EVENT_WEIGHT = 0.5  # a Warning event of the service in the window counts like a 3-sigma move
EVIDENCE_PER_CANDIDATE = 3
CHAIN_SERVICES = 6
ONSET_CANDIDATES = 3  # change points analysed when no anomaly time is given


@dataclass(frozen=True)
class Event:
    """Something the cluster reported about a service (a Kubernetes event, a restart, a log burst)."""

    time: float
    service: str
    reason: str
    message: str = ""
    warning: bool = True


@dataclass(frozen=True)
class MetricEvidence:
    """How one metric of a candidate moved."""

    column: str
    metric: str
    kind: str
    score: float  # combined detector score after the call-graph cap, in [0, 1)
    raw_score: float  # before the cap
    baseline: float  # median before the anomaly
    peak: float  # most extreme value after it
    change_pct: float | None  # (peak - baseline) / |baseline|, None when baseline is 0
    z: float  # signed robust distance of the peak, in noise units
    onset: float  # time the metric changed most (single-series CUSUM)
    trend: Trend  # over the anomalous part
    detectors: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Candidate:
    """A possible root cause."""

    service: str
    score: float  # in [0, 1); compare with the threshold
    confidence: float  # share of the evidence among all services, in [0, 1]
    onset: float
    metrics: list[MetricEvidence]
    events: list[Event]
    explained_by: str | None  # a callee whose anomaly accounts for this service's latency/errors


@dataclass(frozen=True)
class Report:
    """The outcome of one analysis."""

    anomaly_time: float
    onset_detected: bool
    threshold: float
    candidates: list[Candidate]  # every service, best first
    chain: list[Link]
    analysed_metrics: int
    dropped_metrics: int  # constant or empty in the window
    notes: list[str]

    @property
    def reported(self) -> list[Candidate]:
        """Candidates at or above the threshold."""
        return [c for c in self.candidates if c.score >= self.threshold]

    def ranking(self) -> list[str]:
        """Service names, most likely root cause first."""
        return [c.service for c in self.candidates]


def analyse(
    frame: Frame,
    anomaly_time: float | None = None,
    *,
    threshold: float = 0.65,
    calls: set[tuple[str, str]] | None = None,
    events: list[Event] | None = None,
    detectors: tuple[str, ...] = tuple(det.DETECTORS),
    use_graph: bool = True,
) -> Report:
    """Rank the services of `frame` by how likely each is the root cause of an anomaly.

    Args:
        frame: the window to analyse, covering time before and after the anomaly.
        anomaly_time: when the anomaly started (seconds, same clock as `frame.time`); None to detect it.
        threshold: candidates scoring below this are not `reported`.
        calls: known (caller, callee) pairs, added to those named by edge columns.
        events: cluster events of the window, matched to candidates by service.
        detectors: which detectors to combine (names from `detectors.DETECTORS`).
        use_graph: use the call graph (step 3; `callgraph.py`).

    Raises:
        FrameError: nothing to analyse, or the anomaly time leaves no baseline or no anomalous samples.
    """
    cleaned = frame.cleaned()
    dropped = len(frame.columns) - len(cleaned.columns)
    if not cleaned.columns:
        raise FrameError("every metric is constant or empty in this window; nothing moved to analyse")
    options = Options(  # what does not depend on where the window is split: computed once
        threshold,
        events or [],
        detectors,
        dropped,
        directions=np.array([direction(metric_of(c)) for c in cleaned.columns]),
        graph=(cleaned.calls() | (calls or set())) if use_graph else set(),
        onsets=_metric_onsets(cleaned),
    )
    if anomaly_time is not None:
        return _analyse_at(cleaned, anomaly_time, options, onset_detected=False)
    # No time given: the strongest few separated change points are each a hypothesis; every service keeps
    # its best evidence across them (a small code-level fault may not be the window's largest change).
    times = [float(cleaned.time[o.index]) for o in detect_onsets(cleaned.values, ONSET_CANDIDATES)]
    reports = [_analyse_at(cleaned, t, options, onset_detected=True) for t in times]
    return _merge(reports, times, threshold)


@dataclass(frozen=True)
class Options:
    """What every analysis of one window shares, whatever the split."""

    threshold: float
    events: list[Event]
    detectors: tuple[str, ...]
    dropped: int
    directions: np.ndarray  # each column's bad direction
    graph: set[tuple[str, str]]  # (caller, callee) used for the cap; empty without the graph
    onsets: np.ndarray  # each column's own change time


def _merge(reports: list[Report], times: list[float], threshold: float) -> Report:
    """One report from analyses at several candidate onsets: each service at its best."""
    best: dict[str, Candidate] = {}
    for report in reports:
        for c in report.candidates:
            if c.service not in best or c.score > best[c.service].score:
                best[c.service] = c
    candidates = _with_confidence(sorted(best.values(), key=lambda c: (-c.score, -_tail(c))))
    top = candidates[0].service if candidates else None
    winner = next((r for r in reports if r.candidates and r.candidates[0].service == top), reports[0])
    listed = ", ".join(f"t={t:g}" for t in times)
    notes = [f"no anomaly time given: candidate onsets {listed}; the strongest evidence at t={winner.anomaly_time:g}"]
    if not any(c.score >= threshold for c in candidates):
        notes.append(f"no service reaches the threshold {threshold:g}; the top ones are listed anyway")
    return Report(
        winner.anomaly_time,
        True,
        threshold,
        candidates,
        winner.chain,
        winner.analysed_metrics,
        winner.dropped_metrics,
        notes,
    )


def _analyse_at(cleaned: Frame, anomaly_time: float, o: Options, *, onset_detected: bool) -> Report:
    """The analysis with the split at `anomaly_time`."""
    notes: list[str] = []
    split = int(np.searchsorted(cleaned.time, anomaly_time, side="left"))
    if split < 2 or split >= len(cleaned):
        raise FrameError(
            f"the anomaly time {anomaly_time:g} leaves {split} baseline and "
            f"{len(cleaned) - split} anomalous samples; the window must cover both "
            f"(it spans {cleaned.time[0]:g}..{cleaned.time[-1]:g})"
        )
    baseline, anomalous = cleaned.values[:split], cleaned.values[split:]
    columns = cleaned.columns
    combined, per_detector = det.combine(baseline, anomalous, o.directions, o.detectors)
    moved = det.shift(baseline, anomalous, o.directions)
    by_service = cleaned.by_service()
    graph = callgraph.apply(columns, by_service, combined, o.graph)

    candidates = []
    for service, idx in by_service.items():
        best = graph.best(service, idx)
        score = best
        own_events = _events_for(service, o.events, cleaned.time[0], cleaned.time[-1])
        for _ in (e for e in own_events if e.warning):
            score = 1.0 - (1.0 - score) * (1.0 - EVENT_WEIGHT)
        idx = sorted(idx, key=lambda j: -graph.adjusted[j])[:EVIDENCE_PER_CANDIDATE]
        seen = [_evidence(j, cleaned, split, combined, graph.adjusted, moved, per_detector, o.onsets) for j in idx]
        heard = graph.heard.get(service)
        if heard is not None:
            seen.append(_heard(heard, cleaned, split, combined, moved, per_detector, o.onsets))
        evidence = sorted(seen, key=lambda e: -e.score)[:EVIDENCE_PER_CANDIDATE]
        onset = min(e.onset for e in evidence if e.score >= 0.5 * best)
        candidates.append(
            Candidate(service, round(score, 4), 0.0, onset, evidence, own_events, graph.explained_by.get(service))
        )
    candidates = _with_confidence(sorted(candidates, key=lambda c: (-c.score, -_tail(c))))

    chain_services = [c.service for c in candidates if c.score >= o.threshold][:CHAIN_SERVICES]
    series = {c.service: _standardised(cleaned, c.metrics[0].column) for c in candidates if c.service in chain_services}
    chain = propagation_chain(chain_services, series, {c.service: c.onset for c in candidates}, cleaned.step, o.graph)
    if not any(c.score >= o.threshold for c in candidates):
        notes.append(f"no service reaches the threshold {o.threshold:g}; the top ones are listed anyway")
    return Report(anomaly_time, onset_detected, o.threshold, candidates, chain, len(columns), o.dropped, notes)


def _metric_onsets(frame: Frame) -> np.ndarray:
    """Per column, the time of its own strongest change point."""
    n = len(frame)
    if n < 4:
        return np.full(len(frame.columns), frame.time[0])
    stats = cusum_statistics(frame.values, min(max(2, n // 20), n // 2))
    return frame.time[np.argmax(stats, axis=0)]


def _evidence(
    j: int,
    frame: Frame,
    split: int,
    combined: np.ndarray,
    adjusted: np.ndarray,
    moved: det.Shift,
    per_detector: dict[str, np.ndarray],
    onsets: np.ndarray,
) -> MetricEvidence:
    column = frame.columns[j]
    base, peak = float(moved.baseline[j]), float(moved.peak[j])
    metric = metric_of(column)
    caller = caller_of(column)
    return MetricEvidence(
        column=column,
        metric=f"{metric} (from {caller})" if caller else metric,
        kind=kind_of(metric),
        score=round(float(adjusted[j]), 4),
        raw_score=round(float(combined[j]), 4),
        baseline=base,
        peak=peak,
        change_pct=round(100.0 * (peak - base) / abs(base), 1) if base != 0 else None,
        z=round(float(moved.z[j]), 2),
        onset=float(onsets[j]),
        trend=trend(frame.time[split:], frame.values[split:, j]),
        detectors={name: round(float(s[j]), 3) for name, s in per_detector.items()},
    )


def _heard(
    heard: callgraph.Heard,
    frame: Frame,
    split: int,
    combined: np.ndarray,
    moved: det.Shift,
    per_detector: dict[str, np.ndarray],
    onsets: np.ndarray,
) -> MetricEvidence:
    """The callers' client-side evidence credited to their callee: the loudest caller's metric, the mean score."""
    seen = _evidence(heard.column, frame, split, combined, combined, moved, per_detector, onsets)
    who = ", ".join(heard.callers)
    return dataclasses.replace(seen, metric=f"{seen.metric} of its callers ({who})", score=round(heard.score, 4))


def _events_for(service: str, events: list[Event], start: float, end: float) -> list[Event]:
    return [e for e in events if e.service == service and start <= e.time <= end]


def _tail(candidate: Candidate) -> float:
    """Tie-breaker: the evidence beyond the best metric."""
    return sum(m.score for m in candidate.metrics[1:])


def _with_confidence(candidates: list[Candidate]) -> list[Candidate]:
    """Confidence = squared evidence share: z_i^2 / sum z_j^2, with z recovered from the [0, 1) score."""
    z = np.array([3.0 * c.score / max(1e-9, 1.0 - c.score) for c in candidates])
    total = float((z * z).sum()) or 1.0
    return [
        Candidate(c.service, c.score, round(float(zi * zi / total), 3), c.onset, c.metrics, c.events, c.explained_by)
        for c, zi in zip(candidates, z, strict=True)
    ]


def _standardised(frame: Frame, column: str) -> np.ndarray:
    x = frame.values[:, frame.columns.index(column)]
    scale = float(det.noise_scale(x[:, None])[0])
    return (x - np.median(x)) / scale
