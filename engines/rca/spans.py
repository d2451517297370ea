"""Root-cause ranking from trace spans: which service's own behaviour changed against a normal period.

Each (service, operation) is compared on OWN time (duration minus its children), on the shape of its spans
(how many children they have) and on error spans, each as an effect size in nats (a log-ratio, not a p-value,
so a busy operation's small drift does not outweigh a quiet one's large change); a service scores by its most
moved operation. A callee that answers late while its own spans did not slow (queued in a starved pod) is seen
through its callers' exit calls (`_waiting`). Pure: numpy only; no I/O, MCP or Kubernetes.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from engines.rca.fusion import score_of

MAX_OPERATIONS = 5_000  # distinct (service, operation) pairs kept; more are counted as dropped
RESERVOIR = 512  # own-time samples kept per operation
MAX_SHAPES = 32  # distinct child counts kept per operation
MIN_SAMPLES = 3  # own times needed in both periods to compare an operation's medians
OWN_PRIOR = 0.001  # seconds added to both medians: sub-millisecond moves are noise, not slowness
SLOW_FLOOR = 0.001  # seconds: a span counts as far slower past 2 x the normal median + this (for the share shown)
ERROR_PRIOR = 2.0  # pseudo-spans added to both error counts
TIE = 0.02  # scores closer than this are ties, broken by the call graph
ERROR_NAME = re.compile(r"error|exception", re.IGNORECASE)

GraphUse = Literal["tiebreak", "none"]


@dataclass(frozen=True)
class Span:
    """One span; times in seconds. `error` is the source's own status where it has one (e.g. OTLP)."""

    trace_id: str
    span_id: str
    parent_id: str | None
    service: str
    operation: str
    start: float
    end: float
    error: bool = False


@dataclass(frozen=True)
class SpanEvidence:
    """Why a service ranks where it does, for an operator to read."""

    service: str
    score: float  # in [0, 1): 1 - exp(-size / 2)
    size: float  # nats: the log-ratio of the operation that moved most (what the fusion adds)
    operation: str  # the operation that moved most
    baseline_ms: float  # its normal median own time
    observed_ms: float  # its median own time in the window
    slow_share: float  # share of its spans far slower than normal
    errors: int  # error spans of the service in the window
    example_trace: str
    note: str
    signal: str = ""  # which comparison moved most: slow, waiting, shape or errors


def _duration(span: Span) -> float:
    d = span.end - span.start
    return d if math.isfinite(d) and d > 0 else 0.0


def _children(spans: Sequence[Span]) -> list[list[int]]:
    """Indices of each span's direct children (same trace, parent id = span id; self-parents ignored)."""
    index: dict[tuple[str, str], int] = {}
    for i, s in enumerate(spans):
        index.setdefault((s.trace_id, s.span_id), i)
    kids: list[list[int]] = [[] for _ in spans]
    for i, s in enumerate(spans):
        if s.parent_id is None or s.parent_id == s.span_id:
            continue
        j = index.get((s.trace_id, s.parent_id))
        if j is not None and j != i:
            kids[j].append(i)
    return kids


def _covered(lo: float, hi: float, intervals: list[tuple[float, float]]) -> float:
    """Length of the union of intervals, clipped to [lo, hi]."""
    total, cur_lo, cur_hi = 0.0, lo, lo
    for a, b in sorted((max(a, lo), min(b, hi)) for a, b in intervals):
        if b <= a:
            continue
        if a > cur_hi:
            total += cur_hi - cur_lo
            cur_lo, cur_hi = a, b
        else:
            cur_hi = max(cur_hi, b)
    return total + (cur_hi - cur_lo)


def _own(spans: Sequence[Span], kids: list[list[int]]) -> list[float]:
    out = []
    for s, k in zip(spans, kids, strict=True):
        d = _duration(s)
        if k and d > 0:
            d = max(0.0, d - _covered(s.start, s.start + d, [(spans[i].start, spans[i].end) for i in k]))
        out.append(d)
    return out


def own_times(spans: Sequence[Span]) -> list[float]:
    """Each span's own time in seconds: its duration minus the union of its children's intervals, ≥ 0."""
    return _own(spans, _children(spans))


def _exits(spans: Sequence[Span], kids: list[list[int]]) -> list[str]:
    """For each span, the callee service when it is an exit call, else "". An exit call is a span inside a
    service (its parent is in the same service) whose children all run in one other service, e.g. an HTTP
    client span around the callee's server span. Its own time is spent between the two: on the wire, and
    queued in the callee before the callee's own span starts (a CPU-starved callee accepts late while its
    spans look normal) — or in a starved caller that reads the answer late. Exit calls are kept per callee."""
    where = {(s.trace_id, s.span_id): s.service for s in spans}
    out = []
    for s, k in zip(spans, kids, strict=True):
        callees = {spans[i].service for i in k if not is_error(spans[i])}
        inside = s.parent_id is not None and where.get((s.trace_id, s.parent_id)) == s.service
        out.append(next(iter(callees)) if inside and len(callees) == 1 and s.service not in callees else "")
    return out


def call_graph(spans: Iterable[Span]) -> set[tuple[str, str]]:
    """(caller service, callee service) for every parent → child span pair that crosses services."""
    items = list(spans)
    by_id = {(s.trace_id, s.span_id): s.service for s in items}
    edges = set()
    for s in items:
        if s.parent_id is None:
            continue
        caller = by_id.get((s.trace_id, s.parent_id))
        if caller is not None and caller != s.service:
            edges.add((caller, s.service))
    return edges


def is_error(span: Span) -> bool:
    """An error span: the source says so, or the operation is an error handler (e.g. Spring's /error)."""
    return span.error or bool(ERROR_NAME.search(span.operation))


@dataclass
class OperationStats:
    """Streaming statistics of one (service, operation): count, own-time reservoir, child counts, errors."""

    count: int = 0
    errors: int = 0
    own: list[float] = field(default_factory=list)
    shapes: Counter[int] = field(default_factory=Counter)
    traces: list[str] = field(default_factory=list)  # a few trace ids to quote
    callee: str = ""  # an exit call's callee service (see _exits)

    def add(self, own: float, children: int, error: bool, trace: str, rng: random.Random) -> None:
        self.count += 1
        self.errors += int(error)
        if len(self.own) < RESERVOIR:
            self.own.append(own)
        else:
            j = rng.randrange(self.count)
            if j < RESERVOIR:
                self.own[j] = own
        if children in self.shapes or len(self.shapes) < MAX_SHAPES:
            self.shapes[children] += 1
        if len(self.traces) < 3:
            self.traces.append(trace)


@dataclass
class SpanStats:
    """Per (service, operation) statistics of a set of spans, with bounded memory."""

    ops: dict[tuple[str, str], OperationStats] = field(default_factory=dict)
    total: int = 0
    dropped: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(0))  # nosec B311: reservoir sampling, not security

    def add_batch(self, spans: Sequence[Span]) -> None:
        """Add spans; a span's children are only known within the same batch (give whole traces)."""
        kids = _children(spans)
        own = _own(spans, kids)
        callees = _exits(spans, kids)
        for s, k, o, callee in zip(spans, kids, own, callees, strict=True):
            key = (s.service, f"{s.operation} → {callee}" if callee else s.operation)
            stats = self.ops.get(key)
            if stats is None:
                if len(self.ops) >= MAX_OPERATIONS:
                    self.dropped += 1
                    continue
                stats = self.ops[key] = OperationStats(callee=callee)
            self.total += 1
            stats.add(o, sum(not is_error(spans[i]) for i in k), is_error(s), s.trace_id, self.rng)

    def services(self) -> set[str]:
        return {service for service, _ in self.ops}


class SpanBaseline(SpanStats):
    """The normal period: built once from normal spans, then compared against windows."""

    @classmethod
    def from_spans(cls, spans: Iterable[Span], batch: int = 50_000) -> SpanBaseline:
        """Streams spans in batches; spans of one trace should arrive together (as exporters write them)."""
        baseline = cls()
        pending: list[Span] = []
        last_trace = None
        for s in spans:
            if len(pending) >= batch and s.trace_id != last_trace:
                baseline.add_batch(pending)
                pending = []
            pending.append(s)
            last_trace = s.trace_id
        if pending:
            baseline.add_batch(pending)
        return baseline


def shift(observed: float, expected: float, prior: float = 1.0) -> float:
    """Shrunk log-ratio (nats): large only when both the ratio and the counts are."""
    return math.log((observed + prior) / (expected + prior))


@dataclass(frozen=True)
class _Finding:
    size: float  # nats
    signal: str
    operation: str
    baseline_ms: float
    observed_ms: float
    slow_share: float
    trace: str


def _slow(base: OperationStats, seen: OperationStats) -> tuple[float, float, float, float]:
    """(size, slow share, baseline median ms, observed median ms) of the own times. The size is the log-ratio of
    the medians with OWN_PRIOR added to both, so a sub-millisecond drift of a fast query stays small while a
    call that went from 2 ms to 80 ms stands out whatever its volume."""
    if len(base.own) < MIN_SAMPLES or len(seen.own) < MIN_SAMPLES:
        return 0.0, 0.0, 0.0, 0.0
    ref, obs = np.asarray(base.own), np.asarray(seen.own)
    before, now = float(np.median(ref)), float(np.median(obs))
    limit = max(float(np.quantile(ref, 0.99)), 2 * before + SLOW_FLOOR)
    share = float(np.mean(obs > limit))
    size = math.log((now + OWN_PRIOR) / (before + OWN_PRIOR))
    return max(0.0, size), share, before * 1e3, now * 1e3


def _shape(base: OperationStats, seen: OperationStats) -> float:
    """Spans with a child count the normal period never showed (missing or extra downstream calls), against
    the rule of succession's expectation for a count not seen in `n` normal spans."""
    base_n = sum(base.shapes.values())
    if not base_n or not seen.count:
        return 0.0
    odd = sum(c for n, c in seen.shapes.items() if n not in base.shapes)
    expected = sum(seen.shapes.values()) / (base_n + 2)
    return max(0.0, shift(odd, expected))


def _errors(base: OperationStats | None, seen: OperationStats) -> float:
    """Error spans beyond the operation's normal error share (smoothed, so an operation with few normal spans,
    or none, is not judged on a zero)."""
    if not seen.errors:
        return 0.0
    rate = ((base.errors if base else 0) + 0.5) / ((base.count if base else 0) + 1)
    return max(0.0, shift(seen.errors, rate * seen.count, ERROR_PRIOR))


def _findings(baseline: SpanStats, window: SpanStats) -> dict[str, list[_Finding]]:
    out: dict[str, list[_Finding]] = {}
    for (service, op), seen in window.ops.items():
        base = baseline.ops.get((service, op))
        trace = seen.traces[0] if seen.traces else ""
        found = out.setdefault(service, [])
        found.append(_Finding(_errors(base, seen), "errors", op, 0.0, 0.0, 0.0, trace))
        if base is None:
            continue
        slow, share, b_ms, o_ms = _slow(base, seen)
        found.append(_Finding(slow, "slow", op, b_ms, o_ms, share, trace))
        found.append(_Finding(_shape(base, seen), "shape", op, b_ms, o_ms, share, trace))
    for service in baseline.services() - set(out):
        out[service] = []
    _waiting(window, out)
    return out


def _waiting(window: SpanStats, found: dict[str, list[_Finding]]) -> None:
    """An exit call that slowed more than the caller's exit calls to other services (their median) is the
    callee's slowness: the callee gets the excess as "waiting" and the caller keeps only the common part (a
    starved caller slows all its exit calls alike and keeps all of it). A caller with one callee cannot tell:
    both get it, and the call graph's tie-break puts the callee first."""
    by_caller: dict[str, list[tuple[str, _Finding]]] = {}
    for (service, op), stats in window.ops.items():
        if stats.callee:
            slow = [f for f in found.get(service, []) if f.signal == "slow" and f.operation == op]
            if slow:
                by_caller.setdefault(service, []).append((stats.callee, slow[0]))
    for caller, exits in by_caller.items():
        for i, (callee, f) in enumerate(exits):
            others = [g.size for j, (c, g) in enumerate(exits) if j != i and c != callee]
            common = float(np.median(others)) if others else 0.0
            size = f.size - common
            if size > 0:
                if others:
                    mine = found[caller]
                    mine[mine.index(f)] = replace(f, size=common)
                where = f"{caller} {f.operation.rsplit(' → ', 1)[0]}"
                found.setdefault(callee, []).append(
                    _Finding(size, "waiting", where, f.baseline_ms, f.observed_ms, f.slow_share, f.trace)
                )


def _note(service: str, f: _Finding, errors: int) -> str:
    trace = f" (trace {f.trace[:12]}…)" if f.trace else ""
    if f.signal == "slow":
        return (
            f"{service} {f.operation} own time {f.baseline_ms:.1f} ms → {f.observed_ms:.1f} ms median, "
            f"{f.slow_share:.0%} of calls far slower than normal{trace}"
        )
    if f.signal == "waiting":
        return (
            f"{service} answers {f.operation} late: the call's own time {f.baseline_ms:.1f} ms → "
            f"{f.observed_ms:.1f} ms median while {service}'s spans did not slow (queued before they start){trace}"
        )
    if f.signal == "shape":
        return f"{service} {f.operation}: spans have an unusual number of downstream calls{trace}"
    if f.signal == "errors":
        return f"{service} {f.operation}: {errors} error spans, more than normal{trace}"
    return f"{service}: no change against the normal period"


def _evidence(service: str, found: list[_Finding], errors: int) -> SpanEvidence:
    best = max(found, key=lambda f: f.size, default=_Finding(0.0, "", "", 0.0, 0.0, 0.0, ""))
    return SpanEvidence(
        service,
        score_of(best.size),
        round(best.size, 6),
        best.operation,
        best.baseline_ms,
        best.observed_ms,
        best.slow_share,
        errors,
        best.trace,
        _note(service, best, errors),
        best.signal,
    )


def _tiebreak(ranked: list[SpanEvidence], graph: set[tuple[str, str]]) -> list[SpanEvidence]:
    """Within a run of near-equal scores, a callee goes before its caller; scores are not changed."""
    out = list(ranked)
    for _ in range(len(out)):
        moved = False
        for i in range(len(out) - 1):
            a, b = out[i], out[i + 1]
            if a.score - b.score < TIE and (a.service, b.service) in graph and (b.service, a.service) not in graph:
                out[i], out[i + 1] = b, a
                moved = True
        if not moved:
            break
    return out


def score_services(
    baseline: SpanStats,
    spans: Sequence[Span],
    *,
    graph_use: GraphUse = "tiebreak",
) -> list[SpanEvidence]:
    """Every service seen in `spans` (and in the baseline), best root-cause candidate first."""
    window = SpanStats()
    window.add_batch(spans)
    found = _findings(baseline, window)
    errors = Counter[str]()
    for (service, _), stats in window.ops.items():
        errors[service] += stats.errors
    ranked = sorted(
        (_evidence(service, f, errors[service]) for service, f in found.items()),
        key=lambda e: (-e.score, e.service),
    )
    if graph_use == "tiebreak":
        ranked = _tiebreak(ranked, call_graph(spans))
    return ranked
