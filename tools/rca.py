"""RCA tools: rank root-cause candidates from Prometheus metrics or uploaded series, find anomalies in one
query, correlate series. The analysis itself is `engines.rca`; this module fetches and presents.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import numpy as np
from pydantic import BaseModel, Field

from connections import namespaces
from connections.jaeger import Jaeger
from connections.prometheus import EDGE_TEMPLATES, MAX_POINTS, TEMPLATES, Prometheus, Series, render, workload_of
from engines.rca import Candidate, Event, Frame, FrameError, Report, analyse, from_csv
from engines.rca import detectors as det
from engines.rca.chain import lagged
from engines.rca.formats import log_lines_from_pod_log
from engines.rca.logs import LogEvidence, LogLine
from engines.rca.multimodal import Ranked, Ranking, log_evidence, rank, trace_evidence
from engines.rca.onset import detect_onset
from engines.rca.spans import Span, SpanEvidence
from engines.rca.trend import trend
from errors import CloudPilotError, InvalidInput, NotFound
from runtime import current
from settings import Settings
from tools.catalogue import tool
from tools.clusters import ClusterArg
from tools.events import event_time
from tools.results import Result, clip, table

logger = logging.getLogger(__name__)
T = TypeVar("T")

MAX_CSV_CHARS = 5_000_000
MAX_SERIES = 12  # correlate_series compares at most this many series
MAX_QUERY_SERIES = 200  # anomalies_in_query scores at most this many series
MAX_EXTRA_QUERIES = 10  # rca_namespace's own `queries`
MAX_CELLS = 2_000_000  # series x samples analysed in one call
LOG_PODS = 10
MAX_LOG_LINES = 50_000  # per pod (each pod's log is read up to 2 MB)
EARLIEST, LATEST = 0.0, 4_102_444_800.0  # times given to the Prometheus tools: 1970 to 2100
_ERROR_LINE = re.compile(r"\b(error|exception|fatal|panic|traceback)\b", re.I)
_QUERY_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")

When = Annotated[str | None, Field(description="ISO 8601 time or Unix seconds (1970 to 2100); default now.")]
Minutes = Annotated[
    int | None,
    Field(
        ge=1,
        le=1440,
        description=f"Window length, at most 1440 and at most {MAX_POINTS} samples at the step; default "
        "rca.window_minutes.",
    ),
]


class Move(BaseModel):
    """One metric's move, as evidence."""

    metric: str
    baseline: float
    peak: float
    change_pct: float | None = Field(description="None when the baseline is zero (no percentage exists).")
    z: float
    trend: str


class CandidateOut(BaseModel):
    service: str
    score: float
    confidence: float
    onset: str
    evidence: list[Move]
    events: list[str] = []
    explained_by: str | None = None
    traces: str | None = Field(None, description="What the service's spans show, when traces were used.")
    logs: str | None = Field(None, description="What the service's logs show (template, masked example).")
    fused_score: float | None = Field(
        None, description="With traces or logs: the larger of their effect sizes (nats) + the metrics score."
    )


class Hop(BaseModel):
    source: str
    target: str
    correlation: float
    lag_seconds: float
    via_call: bool


class RcaResult(Result):
    """Ranked root-cause candidates with their evidence and the propagation chain."""

    anomaly_time: str
    onset_detected: bool
    threshold: float
    candidates: list[CandidateOut]
    chain: list[Hop]
    metrics_analysed: int
    modalities: list[str] = Field(["metrics"], description="The evidence the ranking used.")
    notes: list[str] = []

    def render(self) -> str:
        how = "detected" if self.onset_detected else "given"
        lines = [
            f"anomaly at {self.anomaly_time} ({how}); {self.metrics_analysed} metrics; threshold {self.threshold:g}; "
            f"evidence: {', '.join(self.modalities) or 'none'}"
        ]
        rows = [
            [
                c.service,
                f"{c.score:.2f}" if c.fused_score is None else f"{c.fused_score:.2f}",  # fused: nats + metrics
                f"{c.confidence:.2f}",
                c.onset[11:19] if "T" in c.onset else c.onset,  # clock time of an ISO stamp, else as given
                "; ".join(_move_text(m) for m in c.evidence[:2]),
                c.explained_by and f"callee {c.explained_by}",
            ]
            for c in self.candidates
        ]
        lines.append(table(["SERVICE", "SCORE", "CONF", "ONSET", "TOP EVIDENCE", "NOTE"], rows))
        for c in self.candidates:
            if c.events:
                lines.append(f"{c.service} events: " + "; ".join(c.events[:3]))
            if c.traces:
                lines.append(f"{c.service} traces: {c.traces}")
            if c.logs:
                lines.append(f"{c.service} logs: {c.logs}")
        if self.chain:
            lines.append(
                "chain: "
                + ", ".join(
                    f"{h.source} -> {h.target} (r={h.correlation:+.2f}, lag {h.lag_seconds:g}s"
                    f"{', calls' if h.via_call else ''})"
                    for h in self.chain
                )
            )
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _move_text(m: Move) -> str:
    change = f"{m.change_pct:+.0f}%" if m.change_pct is not None else f"{m.baseline:.3g}->{m.peak:.3g}"
    return f"{m.metric} {change} (z {m.z:+.1f}, {m.trend})"


def _iso(seconds: float) -> str:
    """ISO 8601 in UTC; times no calendar can show (beyond year 9999) as plain seconds."""
    try:
        return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return f"{seconds:g}"


def _finite(value: float, digits: int) -> float | None:
    """`value` rounded, or None when it is not a finite number (no value is the honest answer then)."""
    return round(value, digits) if math.isfinite(value) else None


def parse_when(value: str | None, default: float | None = None) -> float | None:
    """ISO 8601 (Z or offset) or Unix seconds -> Unix seconds."""
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{value!r} is not a time: use ISO 8601 (2024-05-01T12:00:00Z) or Unix seconds.") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def given_time(value: str | None, name: str, default: float | None = None) -> float | None:
    """A time argument of the Prometheus tools, in Unix seconds, refused outside 1970..2100."""
    moment = parse_when(value, default)
    if moment is not None and not (math.isfinite(moment) and EARLIEST <= moment <= LATEST):
        raise InvalidInput(f"{name}={value!r} is outside 1970..2100; give an ISO 8601 time or Unix seconds.")
    return moment


def check_samples(start: float, stop: float, step: float, hint: str) -> None:
    """Refuse a window with more samples per series than Prometheus returns (and RCA analyses)."""
    samples = math.floor((stop - start) / step) + 1
    if samples > MAX_POINTS:
        raise InvalidInput(
            f"The window is {samples} samples per series at a {step:g}s step; at most {MAX_POINTS} are analysed.",
            hint=hint.format(step=math.ceil((stop - start) / (MAX_POINTS - 1))),
        )


def check_cells(frame: Frame, hint: str) -> None:
    """Refuse more series x samples than one analysis takes (MAX_CELLS)."""
    cells = len(frame) * len(frame.columns)
    if cells > MAX_CELLS:
        raise InvalidInput(
            f"{len(frame.columns)} series of {len(frame)} samples is {cells} values; at most {MAX_CELLS} are "
            "analysed at once.",
            hint=hint,
        )


def _candidate(c: Candidate, stamp: Callable[[float], str]) -> CandidateOut:
    return CandidateOut(
        service=c.service,
        score=c.score,
        confidence=c.confidence,
        onset=stamp(c.onset),
        evidence=[
            Move(
                metric=m.metric,
                baseline=round(m.baseline, 6),
                peak=round(m.peak, 6),
                change_pct=_finite(m.change_pct, 1) if m.change_pct is not None else None,
                z=m.z,
                trend=m.trend.direction,
            )
            for m in c.metrics
        ],
        events=[f"{e.reason}: {e.message[:120]}" for e in c.events],
        explained_by=c.explained_by,
    )


def _ranked(r: Ranked, stamp: Callable[[float], str]) -> CandidateOut:
    out = (
        _candidate(r.metrics, stamp)
        if r.metrics
        else CandidateOut(service=r.service, score=0.0, confidence=0.0, onset="", evidence=[])
    )
    out.fused_score = round(r.score, 4)
    if r.trace and r.trace.size > 0:
        out.traces = f"{r.trace.note} [{r.trace.size:.2f} nats]"
    if r.log and r.log.size > 0:
        example = f"; e.g. {r.log.example!r}" if r.log.example else ""
        out.logs = f"{r.log.note}; template {r.log.template!r}{example} [{r.log.size:.2f} nats]"
    return out


def to_result(
    report: Report, limit: int, notes: list[str], iso_times: bool = True, ranking: Ranking | None = None
) -> RcaResult:
    """The engine's report, trimmed to `limit` candidates, as a tool result; with a multi-modal `ranking`, the
    candidates are in its order and carry their trace and log evidence."""
    stamp = _iso if iso_times else (lambda s: f"{s:g}")
    if ranking is not None and set(ranking.modalities) - {"metrics"}:
        candidates = [_ranked(r, stamp) for r in ranking.ranked[:limit]]
        modalities = ranking.modalities
    else:
        candidates = [_candidate(c, stamp) for c in report.candidates[:limit]]
        modalities = ["metrics"]
    chain = [
        Hop(
            source=link.source,
            target=link.target,
            correlation=link.correlation,
            lag_seconds=link.lag_seconds,
            via_call=link.via_call,
        )
        for link in report.chain
    ]
    return RcaResult(
        anomaly_time=stamp(report.anomaly_time),
        onset_detected=report.onset_detected,
        threshold=report.threshold,
        candidates=candidates,
        chain=chain,
        metrics_analysed=report.analysed_metrics,
        modalities=modalities,
        notes=[*report.notes, *notes],
    )


# --- Prometheus -> frame ---------------------------------------------------------------------------------


def _grid(start: float, end: float, step: float) -> np.ndarray:
    return np.arange(start, end + step / 2, step)


def namespace_frame(
    prom: Prometheus, namespace: str, start: float, end: float, step: float, extra: dict[str, str] | None = None
) -> tuple[Frame, list[str]]:
    """Every template (and extra query) for the namespace as one frame of `<workload>_<metric>` columns.

    Pods are folded into their workload (values summed). Templates whose metrics the server lacks just add
    nothing; the notes say which returned no data.
    """
    grid = _grid(start, end, step)
    columns: dict[str, np.ndarray] = {}
    empty = []

    def put(name: str, s: Series, add: bool) -> None:
        row = np.full(len(grid), np.nan)
        idx = np.clip(np.round((s.times - start) / step).astype(int), 0, len(grid) - 1)
        row[idx] = s.values
        if add and name in columns:
            columns[name] = np.where(np.isnan(columns[name]), row, columns[name] + np.nan_to_num(row))
        else:
            columns[name] = row

    for metric, template in TEMPLATES.items():
        found = prom.query_range(render(template, namespace, 4 * step), start, end, step)
        if not found:
            empty.append(metric)
        for s in found:
            workload = s.labels.get("destination_workload") or workload_of(s.labels.get("pod", "unknown"))
            put(f"{workload}_{metric}", s, add="pod" in s.labels)
    for metric, template in EDGE_TEMPLATES.items():
        for s in prom.query_range(render(template, namespace, 4 * step), start, end, step):
            caller, callee = s.labels.get("source_workload"), s.labels.get("destination_workload")
            if caller and callee and caller != "unknown":
                put(f"{callee}_{metric}@{caller}", s, add=False)
    for name, expr in (extra or {}).items():
        for s in prom.query_range(expr, start, end, step):
            service = (
                s.labels.get("service")
                or s.labels.get("destination_workload")
                or workload_of(s.labels.get("pod", "custom"))
            )
            put(f"{service}_{name}", s, add=False)
        if len(columns) * len(grid) > MAX_CELLS:
            break  # check_cells below says so
    notes = [f"no data for: {', '.join(empty)}"] if empty else []
    names = sorted(columns)
    values = np.column_stack([columns[c] for c in names]) if names else np.zeros((len(grid), 0))
    return Frame(grid, names, values), notes


# --- cluster evidence (best effort) ----------------------------------------------------------------------


def cluster_evidence(
    conn: Any, namespace: str, start: float, end: float, step: float, services: list[str]
) -> tuple[list[Event], dict[str, np.ndarray], list[LogLine]]:
    """Warning events and pod state changes of the window, per-step error-log line counts of the namespace's
    pods, and their log lines (for the logs modality)."""
    with ThreadPoolExecutor(max_workers=2) as pool:  # independent lists
        listed_events = pool.submit(conn.list_items, f"/api/v1/namespaces/{namespace}/events", {})
        listed_pods = pool.submit(conn.list_items, f"/api/v1/namespaces/{namespace}/pods", {})
        items, pods = listed_events.result()[0], listed_pods.result()[0]
    events = []
    for e in items:
        moment = parse_when(event_time(e) or None)
        if moment is None or not start <= moment <= end or e.get("type") != "Warning":
            continue
        involved = e.get("involvedObject") or {}
        events.append(
            Event(
                moment, workload_of(involved.get("name") or ""), e.get("reason") or "", (e.get("message") or "").strip()
            )
        )
    events += pod_state_changes(pods, start, end)
    grid = _grid(start, end, step)
    counts: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(len(grid)))
    wanted = [p for p in pods if workload_of(p["metadata"]["name"]) in services][:LOG_PODS]
    since = int(max(1, time.time() - start))

    def log(name: str) -> bytes:
        return conn.request(  # type: ignore[no-any-return]
            "GET",
            f"/api/v1/namespaces/{namespace}/pods/{name}/log",
            query={"sinceSeconds": since, "timestamps": "true", "limitBytes": 2_000_000},
            accept="*/*",
            raw=True,
        )

    names = [p["metadata"]["name"] for p in wanted]
    with ThreadPoolExecutor(max_workers=8) as pool:  # one request per pod, independent
        bodies = list(pool.map(log, names))
    lines: list[LogLine] = []
    for name, raw in zip(names, bodies, strict=True):
        read, _ = log_lines_from_pod_log(raw.decode("utf-8", "replace"), workload_of(name), MAX_LOG_LINES)
        for line in read:
            if start <= line.time <= end:
                lines.append(line)
                if _ERROR_LINE.search(line.text):
                    counts[line.service][min(int((line.time - start) // step), len(grid) - 1)] += 1
    return events, dict(counts), lines


def trace_spans(settings: Settings, services: list[str], start: float, end: float) -> tuple[list[Span], list[str]]:
    """The window's spans from Jaeger (tracing.url) for the services Jaeger knows among `services` (all of
    Jaeger's when it knows none of them), and notes; nothing and no note when no Jaeger is configured."""
    if not settings.tracing.url:
        return [], []
    with Jaeger(settings.tracing) as jaeger:
        known = set(jaeger.services())
        wanted = [s for s in services if s in known]
        spans, truncated = jaeger.spans(wanted or None, start, end)
    notes = [] if wanted else ["traces: no Jaeger service is named like a workload here; all of Jaeger's were read"]
    if truncated:
        notes.append(f"traces: capped at tracing.max_traces / max_spans ({len(spans)} spans read)")
    return spans, notes


def pod_state_changes(pods: list[dict[str, Any]], start: float, end: float) -> list[Event]:
    """Container terminations (OOMKilled, Error, ...) and pods turning unready within the window."""
    changes = []
    for pod in pods:
        name = pod["metadata"]["name"]
        status = pod.get("status") or {}
        for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            ended = (cs.get("lastState") or {}).get("terminated") or {}
            moment = parse_when(ended.get("finishedAt"))
            if moment is not None and start <= moment <= end:
                changes.append(
                    Event(
                        moment,
                        workload_of(name),
                        ended.get("reason") or "Terminated",
                        f"pod {name} container {cs.get('name')} exited with code {ended.get('exitCode')}",
                    )
                )
        for cond in status.get("conditions") or []:
            moment = parse_when(cond.get("lastTransitionTime"))
            if cond.get("type") == "Ready" and cond.get("status") == "False" and moment and start <= moment <= end:
                why = cond.get("reason") or "containers not ready"
                changes.append(Event(moment, workload_of(name), "NotReady", f"pod {name} became unready: {why}"))
    return changes


# --- tools -----------------------------------------------------------------------------------------------


def _window(settings: Settings, minutes: int | None, end: str | None) -> tuple[float, float]:
    stop = given_time(end, "end", time.time())
    assert stop is not None
    return stop - 60 * (minutes or settings.rca.window_minutes), stop


@tool("rca", title="Root cause analysis (Prometheus)")
async def rca_namespace(
    namespace: Annotated[str, Field(description="Namespace whose workloads to analyse.")],
    minutes: Minutes = None,
    end: When = None,
    anomaly_time: Annotated[str | None, Field(description="When trouble began; omit to detect it.")] = None,
    service: Annotated[str | None, Field(description="Workload the symptom was seen on (marked).")] = None,
    queries: Annotated[
        dict[str, str] | None,
        Field(
            description=f"Extra PromQL by metric name (at most {MAX_EXTRA_QUERIES}; names are letters, digits and "
            "'_'); series labelled service/pod/destination_workload."
        ),
    ] = None,
    cluster: ClusterArg = None,
    limit: Annotated[int, Field(ge=1, le=20)] = 5,
) -> RcaResult:
    """Rank the likely root-cause workloads of a namespace's incident from Prometheus metrics (CPU, memory,
    restarts, network, Istio request/error rate and latency, per-call latency), the cluster's Warning events,
    pod state changes (OOM kills, crashes, pods turning unready), the pods' logs (templates that appeared,
    vanished or turned to errors) and, when tracing.url points at Jaeger, trace spans (own time, downstream
    calls, errors per operation), each against the window's time before the anomaly. Use when something in a
    namespace misbehaves and you need where it started.
    Returns candidates with score, confidence, onset, evidence per modality, the modalities used and the chain."""
    rt = current()
    rt.check_namespace(namespace)
    start, stop = _window(rt.settings, minutes, end)
    step = float(rt.settings.rca.step_seconds)
    check_samples(start, stop, step, "Shorten minutes (or raise the server's rca.step_seconds).")
    given = given_time(anomaly_time, "anomaly_time")
    _check_queries(queries)

    def fetch() -> tuple[Frame, list[str]]:
        with Prometheus(rt.settings.prometheus) as prom:
            return namespace_frame(prom, namespace, start, stop, step, queries)

    frame, notes = await rt.call(fetch)
    if not frame.columns:
        await _namespace_exists(namespace, cluster)
        raise InvalidInput(
            f"Prometheus has no series for namespace {namespace!r} in this window.",
            hint="Check the namespace, widen the window, or pass queries.",
        )
    check_cells(frame, "Shorten minutes or pass fewer queries.")
    services = frame.services()

    async def from_cluster() -> tuple[list[Event], dict[str, np.ndarray], list[LogLine]]:
        conn = rt.connection(cluster)
        return await rt.call(cluster_evidence, conn, namespace, start, stop, step, services)  # type: ignore[no-any-return]

    found_cluster, found_traces = await asyncio.gather(  # independent reads: the cluster's API and Jaeger
        from_cluster(), rt.call(trace_spans, rt.settings, services, start, stop), return_exceptions=True
    )
    events: list[Event] = []
    lines: list[LogLine] = []
    spans: list[Span] = []
    cluster_found = _optional(found_cluster, "cluster events/logs unavailable", namespace, notes)
    if cluster_found is not None:
        events, logs, lines = cluster_found
        if logs:
            names = sorted(logs)
            frame = Frame(
                frame.time,
                [*frame.columns, *(f"{s}_error_logs" for s in names)],
                np.column_stack([frame.values, *(logs[s] for s in names)]),
            )
    traces_found = _optional(found_traces, "traces unavailable, answered without them", namespace, notes)
    if traces_found is not None:
        spans, trace_notes = traces_found
        notes += trace_notes
    try:
        report = analyse(frame, given, threshold=rt.settings.rca.threshold, events=events)
    except FrameError as e:
        raise InvalidInput(str(e), hint="Widen the window or move the anomaly time inside it.") from None
    ranking = await rt.call(modality_ranking, report, spans, lines, notes)
    if service:
        order = ranking.services()
        place = order.index(service) + 1 if service in order else None
        notes.append(f"{service} ranks {place} of {len(order)}" if place else f"{service} has no evidence here")
    return to_result(report, limit, notes, ranking=ranking)


def _optional(found: T | BaseException, unavailable: str, namespace: str, notes: list[str]) -> T | None:
    """The result of an optional read, or None with a note when it failed (the other evidence still answers)."""
    if isinstance(found, Exception):
        logger.warning("rca %s: %s: %s", namespace, unavailable, found)
        notes.append(f"{unavailable} ({type(found).__name__}: {str(found)[:150]})")
        return None
    if isinstance(found, BaseException):  # cancellation and the like are not ours to swallow
        raise found
    return found


def modality_ranking(report: Report | None, spans: list[Span], lines: list[LogLine], notes: list[str]) -> Ranking:
    """The traces' and logs' evidence split at the report's anomaly time, ranked with the metrics."""
    split = report.anomaly_time if report is not None else None
    found_spans: list[SpanEvidence] = []
    found_logs: list[LogEvidence] = []
    if spans and split is not None:
        found_spans, note = trace_evidence(spans, split)
        notes.append(note)
    if lines and split is not None:
        found_logs, note = log_evidence(lines, split, spans)
        notes.append(note)
    return rank(report, found_spans, found_logs)


def _check_queries(queries: dict[str, str] | None) -> None:
    if not queries:
        return
    if len(queries) > MAX_EXTRA_QUERIES:
        raise InvalidInput(
            f"queries has {len(queries)} entries; at most {MAX_EXTRA_QUERIES} are accepted.",
            hint="Keep the metrics that matter; the built-in templates already cover CPU, memory and Istio traffic.",
        )
    for name in queries:
        if not _QUERY_NAME.fullmatch(name):
            raise InvalidInput(
                f"queries name {name[:70]!r} is not a metric name: use letters, digits and '_' (at most 63), "
                "starting with a letter."
            )


async def _namespace_exists(namespace: str, cluster: str | None) -> None:
    """NotFound when the cluster says the namespace does not exist; nothing when it cannot say (metrics may
    outlive a namespace, and Prometheus may watch a cluster CloudPilot cannot reach)."""
    rt = current()
    try:
        conn = await rt.connect(cluster)
    except CloudPilotError:
        return
    try:
        await namespaces.require(rt, conn, namespace)
    except NotFound:
        raise
    except CloudPilotError:
        return


@tool("rca", title="Root cause analysis (uploaded series)")
async def rca_from_csv(
    csv_text: Annotated[
        str,
        Field(
            description="CSV: a `time` column (seconds) + `<service>_<metric>` columns; at most 5,000,000 characters "
            "(and the server's argument limit), 100,000 rows, 2,000 columns and 2,000,000 values."
        ),
    ],
    anomaly_time: Annotated[float | None, Field(description="Same clock as `time`; omit to detect.")] = None,
    limit: Annotated[int, Field(ge=1, le=20)] = 5,
) -> RcaResult:
    """Rank root-cause services from uploaded metric series in the RCAEval layout (exported incidents,
    benchmark cases). Columns `<callee>_<metric>@<caller>` add per-call metrics and the call graph. Returns
    candidates with score, confidence, onset, evidence and the propagation chain."""
    if len(csv_text) > MAX_CSV_CHARS:
        raise InvalidInput(
            f"The CSV has {len(csv_text)} characters; at most {MAX_CSV_CHARS} are accepted.",
            hint="Send a shorter window or fewer columns.",
        )
    report, frame = await csv_report(csv_text, anomaly_time, "the CSV")
    return to_result(report, limit, [], iso_times=frame.time[0] > 1e9)


async def csv_report(csv_text: str, anomaly_time: float | None, what: str) -> tuple[Report, Frame]:
    """The metrics engine's report on uploaded series (`what` names the input in errors)."""
    rt = current()
    try:
        frame = from_csv(csv_text)
        check_cells(frame, "Send a shorter window or fewer columns.")
        report = await rt.call(analyse, frame, anomaly_time, threshold=rt.settings.rca.threshold)
    except FrameError as e:
        raise InvalidInput(f"Cannot analyse {what}: {e}.") from None
    return report, frame


class SeriesAnomaly(BaseModel):
    series: str
    score: float
    baseline: float
    peak: float
    z: float
    trend: str
    slope_per_minute: float | None = Field(description="Theil-Sen slope after the split; None if not finite.")


class AnomalyResult(Result):
    """Anomaly scores of each series of one query, worst first."""

    query: str
    split: str
    onset_detected: bool
    series: list[SeriesAnomaly]
    notes: list[str] = []

    def render(self) -> str:
        how = "detected" if self.onset_detected else "given"
        head = f"{self.query}\nsplit at {self.split} ({how})"
        rows = [
            [
                s.series,
                f"{s.score:.2f}",
                f"{s.baseline:.4g}",
                f"{s.peak:.4g}",
                f"{s.z:+.1f}",
                s.trend + ("" if s.slope_per_minute is None else f" {s.slope_per_minute:+.3g}/min"),
            ]
            for s in self.series
        ]
        body = table(["SERIES", "SCORE", "BEFORE", "PEAK", "Z", "TREND"], rows)
        return "\n".join([head, body, *(f"note: {n}" for n in self.notes)])


def _label(labels: dict[str, str]) -> str:
    shown = {k: v for k, v in labels.items() if k != "__name__"}
    return ",".join(f"{k}={v}" for k, v in sorted(shown.items())) or labels.get("__name__", "value")


def _range_window(minutes: int | None, end: str | None, step: int | None) -> tuple[float, float, float]:
    """(start, stop, step) of a query window, checked against the sample cap."""
    rt = current()
    start, stop = _window(rt.settings, minutes, end)
    step_s = float(step or rt.settings.rca.step_seconds)
    check_samples(start, stop, step_s, "Pass step={step} or more, or fewer minutes.")
    return start, stop, step_s


async def _range(query: str, start: float, stop: float, step: float) -> tuple[list[Series], np.ndarray]:
    """The query's series, and their values on the window's grid (one column each, NaN where none)."""
    rt = current()

    def fetch() -> list[Series]:
        with Prometheus(rt.settings.prometheus) as prom:
            return prom.query_range(query, start, stop, step)

    found = await rt.call(fetch)
    if not found:
        raise InvalidInput(
            f"The query returned no series in this window: {query}",
            hint="Check metric names and labels, or widen the window.",
        )
    if len(found) > MAX_QUERY_SERIES:
        raise InvalidInput(
            f"The query returned {len(found)} series; at most {MAX_QUERY_SERIES} are analysed.",
            hint="Aggregate with sum by (...) or filter labels.",
        )
    grid = _grid(start, stop, step)
    values = np.full((len(grid), len(found)), np.nan)
    for j, s in enumerate(found):
        values[np.clip(np.round((s.times - start) / step).astype(int), 0, len(grid) - 1), j] = s.values
    return found, values


def _with_data(grid: np.ndarray, values: np.ndarray, every: bool) -> Frame:
    """The rows from the first to the last where any (or `every`) series has a finite sample."""
    ok = np.isfinite(values)
    seen = np.flatnonzero(ok.all(axis=1) if every else ok.any(axis=1))
    rows = slice(int(seen[0]), int(seen[-1]) + 1) if len(seen) else slice(0, 0)
    return Frame(grid[rows], [f"s{j}_value" for j in range(values.shape[1])], values[rows])


@tool("rca", title="Anomalies in one query")
async def anomalies_in_query(
    query: Annotated[str, Field(description=f"PromQL returning one or more series (at most {MAX_QUERY_SERIES}).")],
    minutes: Minutes = None,
    end: When = None,
    step: Annotated[int | None, Field(ge=1, description="Seconds; default rca.step_seconds.")] = None,
    anomaly_time: Annotated[str | None, Field(description="Split here; omit to detect the onset.")] = None,
    limit: Annotated[int, Field(ge=1, le=50)] = 10,
) -> AnomalyResult:
    """Score how anomalous each series of a PromQL query became (median/IQR, Z-score, Isolation Forest,
    DBSCAN), with the onset and trend. Use to check one metric. Returns series worst first."""
    start, stop, step_s = _range_window(minutes, end, step)
    found, values = await _range(query, start, stop, step_s)
    frame = _with_data(_grid(start, stop, step_s), values, every=False).cleaned()
    keep = [int(c[1:].split("_")[0]) for c in frame.columns]
    if len(frame) < 4 or not keep:
        raise InvalidInput("Too few samples (or only constant series) to judge; widen the window.")
    given = given_time(anomaly_time, "anomaly_time")
    split = int(np.searchsorted(frame.time, given)) if given is not None else detect_onset(frame.values).index
    if not 2 <= split < len(frame):
        raise InvalidInput("The anomaly time leaves no samples on one side; move it inside the window.")
    directions = np.zeros(len(keep), dtype=int)  # either way counts for an arbitrary query
    before, after = frame.values[:split], frame.values[split:]
    combined, _ = det.combine(before, after, directions)
    moved = det.shift(before, after, directions)
    rows = []
    for j, original in enumerate(keep):
        t = trend(frame.time[split:], after[:, j])
        rows.append(
            SeriesAnomaly(
                series=_label(found[original].labels),
                score=round(float(combined[j]), 3),
                baseline=float(moved.baseline[j]),
                peak=float(moved.peak[j]),
                z=round(float(moved.z[j]), 2),
                trend=t.direction,
                slope_per_minute=_finite(t.slope_per_minute, 6),
            )
        )
    rows.sort(key=lambda r: -r.score)
    notes = [f"{len(rows) - limit} more series not shown"] if len(rows) > limit else []
    if len(keep) < len(found):
        notes.append(f"{len(found) - len(keep)} series were constant or empty in the window and are not scored")
    return AnomalyResult(
        query=query,
        split=_iso(float(frame.time[split])),
        onset_detected=given is None,
        series=rows[:limit],
        notes=notes,
    )


class Pair(BaseModel):
    a: str
    b: str
    correlation: float | None = Field(description="Pearson r at lag 0; None when either series is constant or empty.")
    best_lag_correlation: float | None = Field(description="r at the best lag; None when either is constant.")
    lag_seconds: float | None = Field(description="How long B trails A at the best lag; None as above.")


class CorrelationResult(Result):
    """Pairwise correlation and lagged cross-correlation of series."""

    series: list[str]
    pairs: list[Pair]
    notes: list[str] = []

    def render(self) -> str:
        names = "\n".join(f"[{i}] {s}" for i, s in enumerate(self.series))
        rows = [[p.a, p.b, _signed(p.correlation), _signed(p.best_lag_correlation), _lag(p)] for p in self.pairs]
        body = table(["A", "B", "R", "R@LAG", "B LAGS A BY"], rows)
        return clip("\n".join([names, body, *(f"note: {n}" for n in self.notes)]), 8000)


def _signed(r: float | None) -> str:
    return "-" if r is None else f"{r:+.2f}"


def _lag(p: Pair) -> str:
    return "-" if p.lag_seconds is None else f"{p.lag_seconds:+g}s"


@tool("rca", title="Correlate series")
async def correlate_series(
    queries: Annotated[list[str], Field(min_length=1, max_length=6, description="PromQL queries (at most 6).")],
    minutes: Minutes = None,
    end: When = None,
    step: Annotated[int | None, Field(ge=1, description="Seconds; default rca.step_seconds.")] = None,
    max_lag_steps: Annotated[int, Field(ge=0, le=120, description="Largest lag tried, in steps (at most 120).")] = 20,
) -> CorrelationResult:
    """Correlate two or more series (from one or more PromQL queries): Pearson correlation and the lag at
    which one best follows the other. Use to test whether one metric drives another. Returns pairs,
    strongest first; a positive lag means B moves after A.

    At most 12 series in all; a constant series correlates with nothing (its pairs show no value)."""
    start, stop, step_s = _range_window(minutes, end, step)
    found: list[Series] = []
    parts: list[np.ndarray] = []
    for q in queries:
        series, part = await _range(q, start, stop, step_s)
        found += series
        parts.append(part)
        if len(found) > MAX_SERIES:
            raise InvalidInput(
                f"The queries returned more than {MAX_SERIES} series; at most {MAX_SERIES} can be compared.",
                hint="Aggregate with sum by (...) or filter labels.",
            )
    if len(found) < 2:
        raise InvalidInput("Need at least two series to correlate; the queries returned one.")
    # where every series has data; gaps inside that span are filled from the previous sample
    frame = _with_data(_grid(start, stop, step_s), np.column_stack(parts), every=True).filled()
    if len(frame) < 4:
        raise InvalidInput("Fewer than 4 samples where every series has data; widen the window.")
    values = frame.values
    constant = [j for j in range(values.shape[1]) if not np.isfinite(values[:, j]).all() or np.ptp(values[:, j]) == 0]
    pairs = []
    for i in range(values.shape[1]):
        for j in range(i + 1, values.shape[1]):
            if i in constant or j in constant:
                pairs.append(
                    Pair(a=f"[{i}]", b=f"[{j}]", correlation=None, best_lag_correlation=None, lag_seconds=None)
                )
                continue
            best = lagged(values[:, i], values[:, j], max_lag_steps)
            plain = lagged(values[:, i], values[:, j], 0)
            pairs.append(
                Pair(
                    a=f"[{i}]",
                    b=f"[{j}]",
                    correlation=_finite(plain.correlation, 3),
                    best_lag_correlation=_finite(best.correlation, 3),
                    lag_seconds=best.lag * step_s,
                )
            )
    pairs.sort(key=lambda p: 1.0 if p.best_lag_correlation is None else -abs(p.best_lag_correlation))
    notes = [f"[{j}] is constant (or has no usable samples) in the window: no correlation exists" for j in constant]
    return CorrelationResult(series=[_label(s.labels) for s in found], pairs=pairs, notes=notes)
