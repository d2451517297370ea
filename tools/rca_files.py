"""RCA tools over uploaded evidence: spans (OTLP JSON, Jaeger JSON or CSV), logs (CSV or JSON lines) and metric
series (CSV), for incidents exported from elsewhere and offline bundles. Nothing is read from the server's disk:
every input is an argument, bounded in size. The normal period is each input's time before `anomaly_time`."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from engines.rca import Report
from engines.rca.formats import FormatError, log_lines_from_text, spans_from_text
from engines.rca.logs import LogLine
from engines.rca.spans import Span
from errors import InvalidInput
from runtime import current
from tools.catalogue import tool
from tools.rca import MAX_CSV_CHARS, RcaResult, csv_report, modality_ranking, to_result

MAX_UPLOAD_CHARS = 5_000_000  # per input (and the server's argument limit)

Spans = Annotated[
    str | None,
    Field(
        description="Spans as OTLP JSON (or JSON lines), Jaeger JSON, or CSV with trace id, span id, parent id, "
        f"service (or pod), operation, start and end; at most {MAX_UPLOAD_CHARS:,} characters, 200,000 spans."
    ),
]
Logs = Annotated[
    str | None,
    Field(
        description="Log lines as CSV (time, service or pod, message or log, optional trace id and span id) or "
        f"JSON lines ({{time, service, message, trace_id, span_id}}); ids written in the text are read too. At most "
        f"{MAX_UPLOAD_CHARS:,} characters, 500,000 lines."
    ),
]
Anomaly = Annotated[
    float | None,
    Field(ge=0, le=4_102_444_800, description="Unix seconds when trouble began; required without metrics."),
]


def _sized(name: str, text: str | None, limit: int) -> None:
    if text is not None and len(text) > limit:
        raise InvalidInput(
            f"{name} has {len(text):,} characters; at most {limit:,} are accepted.",
            hint="Send a shorter window: a few minutes of normal period before the anomaly and a few after.",
        )


def _parsed(spans: str | None, logs: str | None) -> tuple[list[Span], list[LogLine], list[str]]:
    notes: list[str] = []
    found_spans: list[Span] = []
    found_lines: list[LogLine] = []
    try:
        if spans:
            found_spans, dropped = spans_from_text(spans)
            if dropped:
                notes.append(f"spans: {dropped} dropped (malformed or past the limit)")
        if logs:
            found_lines, dropped = log_lines_from_text(logs)
            if dropped:
                notes.append(f"logs: {dropped} lines dropped (malformed or past the limit)")
    except FormatError as e:
        raise InvalidInput(f"Cannot read the upload: {e}") from None
    return found_spans, found_lines, notes


@tool("rca", title="Root cause analysis (uploaded spans, logs, metrics)")
async def rca_from_files(
    spans: Spans = None,
    logs: Logs = None,
    metrics_csv: Annotated[
        str | None, Field(description="Metric series as in rca_from_csv (`time` + `<service>_<metric>` columns).")
    ] = None,
    anomaly_time: Anomaly = None,
    limit: Annotated[int, Field(ge=1, le=20)] = 5,
) -> RcaResult:
    """Rank root-cause services from an uploaded bundle of spans, logs and/or metric series (any of them),
    comparing each against its own time before anomaly_time. Use for incidents exported from another system
    or offline analysis. Returns candidates with evidence per modality (span operation, log template with a
    masked example line, metrics) and the modalities used."""
    rt = current()
    if not (spans or logs or metrics_csv):
        raise InvalidInput("Nothing to analyse.", hint="Send spans, logs or metrics_csv (any of them).")
    _sized("spans", spans, MAX_UPLOAD_CHARS)
    _sized("logs", logs, MAX_UPLOAD_CHARS)
    _sized("metrics_csv", metrics_csv, MAX_CSV_CHARS)
    if metrics_csv is None and anomaly_time is None:
        raise InvalidInput(
            "anomaly_time is required when no metrics_csv is sent.",
            hint="Give the Unix time trouble began; spans and logs before it are the normal period.",
        )
    found_spans, found_lines, notes = await rt.call(_parsed, spans, logs)
    if metrics_csv:
        report, _ = await csv_report(metrics_csv, anomaly_time, "metrics_csv")
    else:
        assert anomaly_time is not None
        report = Report(anomaly_time, False, rt.settings.rca.threshold, [], [], 0, 0, [])
    ranking = await rt.call(modality_ranking, report, found_spans, found_lines, notes)
    if not ranking.ranked:
        raise InvalidInput(
            "No service could be compared: " + "; ".join(notes or ["the upload holds no usable records"]),
            hint="Include a normal period before anomaly_time (at least a few dozen spans or log lines).",
        )
    return to_result(report, limit, notes, ranking=ranking)


@tool("rca", title="Root cause analysis (uploaded spans)")
async def rca_from_spans(
    spans: Annotated[str, Field(description="As rca_from_files' spans.")],
    anomaly_time: Annotated[float, Field(ge=0, le=4_102_444_800, description="Unix seconds when trouble began.")],
    limit: Annotated[int, Field(ge=1, le=20)] = 5,
) -> RcaResult:
    """Rank root-cause services from uploaded trace spans alone: per operation, own time (children excluded),
    downstream calls and errors after anomaly_time against before it. Returns candidates quoting the span
    operation that moved most."""
    return await rca_from_files(spans=spans, anomaly_time=anomaly_time, limit=limit)
