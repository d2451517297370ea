"""Root-cause candidates from whatever evidence there is: the metrics report, span evidence, log evidence.
Which modalities were used is part of the answer; the ranking is `fusion.fuse`'s."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from engines.rca import paths
from engines.rca.analysis import Candidate, Report
from engines.rca.fusion import METRICS, fuse, score_of
from engines.rca.logs import LogBaseline, LogEvidence, LogLine, Templates
from engines.rca.logs import score_services as score_templates
from engines.rca.spans import Span, SpanBaseline, SpanEvidence, score_services


@dataclass(frozen=True)
class Ranked:
    service: str
    score: float
    by_modality: dict[str, float]
    metrics: Candidate | None = None
    trace: SpanEvidence | None = None
    log: LogEvidence | None = None


@dataclass
class Ranking:
    modalities: list[str]  # those that had evidence, in the order metrics, traces, logs
    ranked: list[Ranked] = field(default_factory=list)

    def services(self) -> list[str]:
        return [r.service for r in self.ranked]


def rank(
    report: Report | None, traces: list[SpanEvidence] | None = None, logs: list[LogEvidence] | None = None
) -> Ranking:
    """One ranking; a modality given as None or empty is not used (and not listed)."""
    scores: dict[str, dict[str, float]] = {}
    if report is not None and report.candidates:
        scores[METRICS] = {c.service: c.score for c in report.candidates}
    if traces:
        scores["traces"] = {e.service: e.size for e in traces}
    if logs:
        scores["logs"] = {e.service: e.size for e in logs}
    by_metrics = {c.service: c for c in report.candidates} if report is not None else {}
    by_trace = {e.service: e for e in traces or []}
    by_log = {e.service: e for e in logs or []}
    ranked = [
        Ranked(
            f.service, f.score, f.by_modality, by_metrics.get(f.service), by_trace.get(f.service), by_log.get(f.service)
        )
        for f in fuse(scores)
    ]
    return Ranking(list(scores), ranked)


MIN_NORMAL_SPANS = 20  # spans before the split needed to know an operation's normal
MIN_NORMAL_LINES = 20


def trace_evidence(spans: list[Span], split: float) -> tuple[list[SpanEvidence], str]:
    """Spans before `split` are the normal period, spans from it on the window. Returns the evidence (empty
    when there is too little to compare) and a note saying what was compared."""
    before = [s for s in spans if s.start < split]
    after = [s for s in spans if s.start >= split]
    if len(before) < MIN_NORMAL_SPANS or not after:
        return [], f"traces: {len(before)} spans before and {len(after)} after the anomaly time, too few to compare"
    evidence = score_services(SpanBaseline.from_spans(before), after)
    return evidence, f"traces: {len(before)} spans before the anomaly time against {len(after)} after"


@dataclass
class LogNormal:
    """The logs' normal period: template counts (logs.py) and code-path rules (paths.py), read in one pass."""

    templates: Templates
    counts: LogBaseline
    rules: paths.PathRules

    @classmethod
    def learn(cls, lines: Iterable[LogLine]) -> LogNormal:
        templates = Templates()
        normal = cls(templates, LogBaseline(templates), paths.PathRules())
        for line in lines:
            normal.counts.add(line)
            normal.rules.add(line)
        return normal


def score_logs(normal: LogNormal, lines: Sequence[LogLine], spans: Sequence[Span] = ()) -> list[LogEvidence]:
    """Per service, the larger of its template moves (logs.py) and its most broken code path (paths.py). Error
    lines that echo a failure elsewhere (they name another service; with spans, a service below them in the same
    trace failed) are left out first. The templates mined from the window are added to `normal.templates` (copy
    it to score several windows alike)."""
    calls = paths.window_calls(lines)
    broken = paths.broken_calls(normal.rules, calls)
    services = set(normal.counts.services) | {line.service for line in lines} | {span.service for span in spans}
    kept, echoes = paths.echo_lines(lines, spans, broken, services)
    found = paths.score(normal.rules, calls, echoes)
    out = []
    for evidence in score_templates(normal.counts, kept, normal.templates):
        path = found.pop(evidence.service, None)
        out.append(_with_path(evidence, path) if path is not None else evidence)
    out += [_with_path(_empty(service), path) for service, path in found.items()]
    return sorted(out, key=lambda e: (-e.score, e.service))


def _empty(service: str) -> LogEvidence:
    return LogEvidence(service, 0.0, 0.0, "", "", 0, 0, 0.0, 0.0, f"{service}: no log lines")


def _with_path(evidence: LogEvidence, path: paths.PathFinding) -> LogEvidence:
    """The evidence, told by the code path when that moved more; echoes are named either way."""
    if path.size > evidence.size:
        return replace(evidence, score=score_of(path.size), size=path.size, template="", example="", note=path.note)
    if path.echoes:
        return replace(evidence, note=f"{evidence.note}; {path.echoes} error line(s) left out as echoes")
    return evidence


def log_evidence(lines: list[LogLine], split: float, spans: Sequence[Span] = ()) -> tuple[list[LogEvidence], str]:
    """Log lines before `split` are the normal period, lines from it on the window (templates mined afresh);
    the spans, when there are any, tell which error lines echo a failure below them."""
    before = [line for line in lines if line.time < split]
    after = [line for line in lines if line.time >= split]
    if len(before) < MIN_NORMAL_LINES or not after:
        return [], f"logs: {len(before)} lines before and {len(after)} after the anomaly time, too few to compare"
    evidence = score_logs(LogNormal.learn(before), after, [s for s in spans if s.start >= split])
    return evidence, f"logs: {len(before)} lines before the anomaly time against {len(after)} after"
