"""Uploaded trace and log files read into the RCA engine's records: OTLP JSON, Jaeger JSON, CSV, JSON lines, pod logs.

Every input is treated as hostile: documents and fields are bounded, ids and names cleaned and clipped, times
checked (finite, in 1970..2100). A record that cannot be read is dropped and counted, never fatal; a file
that is not one of the layouts raises `FormatError`, saying what to send instead. Pure: no disk, no network.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

from engines.rca.logs import MAX_CHARS, LogLine
from engines.rca.spans import Span

MAX_SPANS = 200_000
MAX_LINES = 500_000
MAX_FIELD = 2_000  # chars kept of a service, operation or id
MAX_JSON_CHARS = 50_000_000  # the largest text document read
MAX_LINE_CHARS = 100_000  # a longer CSV or JSON line is clipped (CSV) or dropped (JSON lines)
MAX_TIME = 4_133_980_800.0  # 2101-01-01T00:00:00Z: times must lie in 1970..2100
UNKNOWN = "unknown"
TRACES = "OTLP JSON, Jaeger JSON or CSV"
T = TypeVar("T")
Time = float | None

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,12}))?\s*(?:([Zz])|([+-])(\d\d):?(\d\d))?"
)
ERROR_VALUES = {"true", "1", "error", "status_code_error"}
TAGS = ("error", "otel.status_code")

SPAN_COLUMNS = {
    "trace id": ("TraceID", "trace_id"),
    "span id": ("SpanID", "span_id"),
    "service": ("service", "ServiceName", "PodName"),
    "operation": ("OperationName", "operation", "name"),
}
SPAN_TIMES = (("StartTimeUnixNano", "EndTimeUnixNano", 1e9), ("start", "end", 1.0), ("StartTime", "Duration", 1e6))
TIMES_NOTE = "start and end: StartTimeUnixNano + EndTimeUnixNano (ns), start + end (s) or StartTime + Duration (µs)"
LOG_COLUMNS = {
    "time": ("TimeUnixNano", "Timestamp", "time"),
    "service": ("service", "PodName"),
    "text": ("Log", "message", "line", "text"),
}


class FormatError(ValueError):
    """The input is not a layout this module reads; the message says what to send instead."""


# -- values


def _clean(value: object, limit: int = MAX_FIELD) -> str:
    """A string without control characters, clipped; "" for anything that is not a string."""
    if not isinstance(value, str):
        return ""
    return CONTROL.sub("", value[: limit * 4])[:limit].strip()


def _id(value: object, parent: bool = False) -> str | None:
    """A lowercased id; None when missing, empty or not a string, and for a parent "root" or all zeros."""
    text = _clean(value).lower()
    return None if not text or (parent and (text == "root" or not text.strip("0"))) else text


def _number(value: object) -> float | None:
    """An int, float or short decimal string as a float; None for anything else (bools, huge ints)."""
    if (isinstance(value, int | float) and not isinstance(value, bool)) or (
        isinstance(value, str) and len(value) <= 40
    ):
        try:
            return float(value)
        except (ValueError, OverflowError):
            pass
    return None


def _checked(seconds: float) -> float | None:
    return seconds if math.isfinite(seconds) and 0.0 <= seconds < MAX_TIME else None


def _seconds(value: object, per_second: float = 1.0) -> float | None:
    """A number of 1/per_second units as Unix seconds, or None when it is not one or out of range."""
    number = _number(value)
    return None if number is None else _checked(number / per_second)


def _rfc3339(text: str) -> float | None:
    match = RFC3339.fullmatch(text.strip()) if len(text) <= 64 else None
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, _, sign, off_h, off_m = match.groups()
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC)
    except ValueError:
        return None
    offset = (int(off_h) * 3600 + int(off_m) * 60) * (1 if sign == "+" else -1) if sign else 0
    return _checked(moment.timestamp() - offset + (float("0." + fraction) if fraction else 0.0))


def _time(value: object) -> float | None:
    """RFC 3339 or Unix seconds."""
    seconds = _seconds(value)
    return seconds if seconds is not None or not isinstance(value, str) else _rfc3339(value)


def _span(
    trace: object, span: object, parent: object, service: str, op: object, start: Time, end: Time, error: bool
) -> Span | None:
    """A Span, or None when an id is missing or not a string, or the times are missing or reversed."""
    trace_id, span_id = _id(trace), _id(span)
    if trace_id is None or span_id is None or (parent is not None and not isinstance(parent, str)):
        return None
    if start is None or end is None or end < start:
        return None
    return Span(trace_id, span_id, _id(parent, parent=True), service or UNKNOWN, _clean(op), start, end, error)


def _bounded(items: Iterable[T | None], limit: int, dropped: int = 0) -> tuple[list[T], int]:
    """The first `limit` readable items, and how many were unreadable or past the limit."""
    out: list[T] = []
    for item in items:
        if item is None or len(out) >= limit:
            dropped += 1
        else:
            out.append(item)
    return out, dropped


def _split(text: str) -> Iterator[str]:
    """The lines of a text, ends kept, split at "\\n" only (str.splitlines also splits at \\u2028 and others)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


def _first(text: str, send: str = "") -> str:
    """The first character that is not blank; FormatError for text too long, not text, or empty (with `send`)."""
    if not isinstance(text, str):
        raise FormatError(f"expected text, got {type(text).__name__}: send the file's contents as a string.")
    if len(text) > MAX_JSON_CHARS:
        raise FormatError(f"the document has {len(text):,} characters, over {MAX_JSON_CHARS:,}: send a smaller one.")
    if not (head := text.lstrip("\ufeff \t\r\n")[:1]) and send:
        raise FormatError(f"the file is empty: send {send}.")
    return head


# -- JSON traces


def _documents(text: str) -> tuple[list[Any], int]:
    """The JSON document, or each line's of a JSON-lines file (most must read), and the count of unreadable lines."""
    _first(text, TRACES)
    try:
        return [json.loads(text)], 0
    except RecursionError:
        raise FormatError("the JSON is nested too deeply to be a trace file: send OTLP or Jaeger JSON.") from None
    except ValueError as e:
        whole = e
    docs, bad = [], 0
    for line in _split(text):
        if line.strip():
            try:
                docs.append(json.loads(line))
            except (ValueError, RecursionError):
                bad += 1
    if not docs or bad > len(docs):
        raise FormatError(f"not valid JSON ({whole}): send OTLP JSON, Jaeger JSON or CSV.")
    return docs, bad


def _items(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _otlp_span(raw: object, service: str) -> Span | None:
    if not isinstance(raw, dict):
        return None
    status = raw.get("status")
    code = status.get("code") if isinstance(status, dict) else None
    start, end = _seconds(raw.get("startTimeUnixNano"), 1e9), _seconds(raw.get("endTimeUnixNano"), 1e9)
    error = isinstance(code, int | str) and code in (2, "2", "STATUS_CODE_ERROR")
    return _span(
        raw.get("traceId"), raw.get("spanId"), raw.get("parentSpanId"), service, raw.get("name"), start, end, error
    )


def _otlp_spans(docs: list[Any]) -> Iterator[Span | None] | None:
    """The spans of the OTLP documents among `docs` (a top-level list is looked into), or None when there are none."""
    found = [d for doc in docs for d in (doc if isinstance(doc, list) else [doc])]
    found = [d for d in found if isinstance(d, dict) and "resourceSpans" in d]
    if not found:
        return None

    def spans() -> Iterator[Span | None]:
        for doc in found:
            for group in _items(doc["resourceSpans"]):
                if not isinstance(group, dict):
                    continue
                resource = group.get("resource")
                attributes = _items(resource.get("attributes") if isinstance(resource, dict) else None)
                names = [a.get("value") for a in attributes if isinstance(a, dict) and a.get("key") == "service.name"]
                service = _clean(names[0].get("stringValue") if names and isinstance(names[0], dict) else None)
                for scope in _items(group.get("scopeSpans") or group.get("instrumentationLibrarySpans")):
                    for raw in _items(scope.get("spans") if isinstance(scope, dict) else None):
                        yield _otlp_span(raw, service)

    return spans()


def _json_spans(text: str, limit: int, readers: tuple[Any, ...], refusal: str) -> tuple[list[Span], int]:
    docs, bad = _documents(text)
    spans = next((found for read in readers if (found := read(docs)) is not None), None)
    if spans is None:
        raise FormatError(refusal)
    return _bounded(spans, limit, bad)


def spans_from_otlp_json(text: str, limit: int = MAX_SPANS) -> tuple[list[Span], int]:
    """OTLP/JSON (one document, or JSON lines as the collector's file exporter writes): (spans, dropped)."""
    refusal = "not OTLP JSON: no `resourceSpans` found; send OTLP JSON, Jaeger JSON or CSV."
    return _json_spans(text, limit, (_otlp_spans,), refusal)


def span_from_jaeger(span: dict[str, Any], processes: dict[str, Any]) -> Span | None:
    """One span of Jaeger's JSON (UI download or query API), or None when it is malformed."""
    if not isinstance(span, dict):
        return None
    parent = span.get("parentSpanID")
    refs = [r for r in _items(span.get("references")) if isinstance(r, dict) and isinstance(r.get("spanID"), str)]
    for kind in ("FOLLOWS_FROM", "CHILD_OF"):  # CHILD_OF wins
        parent = next((r["spanID"] for r in refs if r.get("refType") == kind), parent)
    process, key = span.get("process"), span.get("processID")
    if not isinstance(process, dict) and isinstance(processes, dict) and isinstance(key, str):
        process = processes.get(key)
    service = _clean(process.get("serviceName")) if isinstance(process, dict) else ""
    start, duration = _seconds(span.get("startTime"), 1e6), _seconds(span.get("duration"), 1e6)
    end = None if start is None or duration is None else _checked(start + duration)
    tags = {t["key"]: t.get("value") for t in _items(span.get("tags")) if isinstance(t, dict) and t.get("key") in TAGS}
    flag, status = tags.get("error"), tags.get("otel.status_code")
    error = flag is True or (isinstance(flag, str) and flag.lower() == "true")
    error = error or (isinstance(status, str) and status.upper() == "ERROR")
    return _span(span.get("traceID"), span.get("spanID"), parent, service, span.get("operationName"), start, end, error)


def _jaeger_spans(docs: list[Any]) -> Iterator[Span | None] | None:
    """The spans of the Jaeger traces among `docs` (`{"data": [...]}`, a list of traces or one), or None."""
    traces: list[Any] = []
    for doc in docs:
        if isinstance(doc, dict) and "data" in doc:
            traces += _items(doc["data"])
        else:
            traces += [t for t in (doc if isinstance(doc, list) else [doc]) if isinstance(t, dict) and "spans" in t]
    found = [t for t in traces if isinstance(t, dict)]
    if not found:
        return None
    return (span_from_jaeger(s, t.get("processes") or {}) for t in found for s in _items(t.get("spans")))


def spans_from_jaeger_json(text: str, limit: int = MAX_SPANS) -> tuple[list[Span], int]:
    """Jaeger JSON (`{"data": [trace, ...]}`, as the UI downloads it): (spans, dropped)."""
    refusal = "not Jaeger JSON: no `data` list of traces found; send OTLP JSON, Jaeger JSON or CSV."
    return _json_spans(text, limit, (_jaeger_spans,), refusal)


# -- CSV


def _physical(lines: Iterable[str]) -> Iterator[str]:
    """The lines, each clipped to MAX_LINE_CHARS with its quote parity kept, so csv never meets a huge field."""
    for line in _split(lines) if isinstance(lines, str) else lines:
        if isinstance(line, str) and len(line) > MAX_LINE_CHARS:
            body = line.rstrip("\r\n")
            kept = body[:MAX_LINE_CHARS]
            if kept.count('"') % 2 != body.count('"') % 2:
                kept += '"'
            line = kept + line[len(body) :]
        yield line


def _rows(lines: Iterable[str]) -> Iterator[list[str] | None]:
    """CSV rows, one at a time; None for a row csv could not read (it goes on with the next line)."""
    reader = csv.reader(_physical(lines))
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error:
            row = None
        if row != []:
            yield row


def _index(names: dict[str, int], *aliases: str) -> int:
    return next((names[a.lower()] for a in aliases if a.lower() in names), -1)


def _columns(
    rows: Iterator[list[str] | None], wanted: dict[str, tuple[str, ...]], extra: str = ""
) -> tuple[dict[str, int], dict[str, int]]:
    """The header (lowercased name -> first index) and each wanted column's index, or FormatError naming what lacks."""
    names: dict[str, int] = {}
    header = next(rows, None)
    for i, name in enumerate(header or []):
        names.setdefault(name.strip().lstrip("\ufeff").lower(), i)
    found = {key: _index(names, *aliases) for key, aliases in wanted.items()}
    missing = [f"{key} ({' or '.join(wanted[key])})" for key, i in found.items() if i < 0]
    if missing:
        needed = "; ".join(f"{k} ({' or '.join(v)})" for k, v in wanted.items()) + (f"; {extra}" if extra else "")
        raise FormatError(f"the CSV lacks {', '.join(missing)}: send CSV with a header naming {needed}.")
    return names, found


def _service(row: list[str], index: int, names: dict[str, int]) -> str:
    """The service cell; a pod name of more than two parts loses the last two (ts-a-866bd68c97-xcqfx -> ts-a)."""
    name = _clean(row[index])
    return name.rsplit("-", 2)[0] if names.get("podname") == index and name.count("-") >= 2 else name


def _csv_spans(lines: Iterable[str]) -> Iterator[Span | None]:
    rows = _rows(lines)
    names, at = _columns(rows, SPAN_COLUMNS, TIMES_NOTE)
    times = ((_index(names, first), _index(names, second), unit) for first, second, unit in SPAN_TIMES)
    start_at, end_at, unit = next((t for t in times if min(t[:2]) >= 0), (-1, -1, 0.0))
    if start_at < 0:
        raise FormatError(f"the CSV lacks {TIMES_NOTE}.")
    parent, error = _index(names, "ParentID", "parent_id", "ParentSpanID"), _index(names, "error", "status")
    width = max(*at.values(), start_at, end_at, parent, error) + 1
    for row in rows:
        if row is None or len(row) < width:
            yield None
            continue
        start, end = _seconds(row[start_at], unit), _seconds(row[end_at], unit)
        if unit == 1e6 and start is not None and end is not None:  # StartTime + Duration
            end = _checked(start + end)
        ids = row[at["trace id"]], row[at["span id"]], row[parent] if parent >= 0 else None
        failed = error >= 0 and row[error].strip().lower() in ERROR_VALUES
        yield _span(*ids, _service(row, at["service"], names), row[at["operation"]], start, end, failed)


def spans_from_csv(lines: Iterable[str], limit: int = MAX_SPANS) -> tuple[list[Span], int]:
    """Spans from CSV with a header (Nezha's layout among others): (spans, dropped)."""
    return _bounded(_csv_spans(lines), limit)


def spans_from_text(text: str, limit: int = MAX_SPANS) -> tuple[list[Span], int]:
    """Spans from OTLP JSON, Jaeger JSON or CSV, told apart by their content: (spans, dropped)."""
    if _first(text, TRACES) not in "{[":
        return spans_from_csv(text, limit)
    needed = "; ".join(f"{k} ({' or '.join(v)})" for k, v in SPAN_COLUMNS.items())
    refusal = (
        "the JSON is neither OTLP (`resourceSpans`) nor Jaeger (`data`): send OTLP JSON, Jaeger JSON "
        f"or CSV with columns {needed}; {TIMES_NOTE}."
    )
    return _json_spans(text, limit, (_otlp_spans, _jaeger_spans), refusal)


# -- logs


def _text(raw: str, docker: bool = False) -> str:
    """Log text, clipped; with `docker`, a Docker JSON log line (`{"log": ..., "stream": ...}`) gives its `log`."""
    if docker and raw.startswith("{") and len(raw) <= MAX_LINE_CHARS:
        try:
            value = json.loads(raw)
        except (ValueError, RecursionError):
            value = None
        raw = value["log"] if isinstance(value, dict) and isinstance(value.get("log"), str) else raw
    return raw[: MAX_CHARS + 2].rstrip("\r\n")[:MAX_CHARS]


IDS_IN_TEXT = re.compile(r"(?i)\b(trace|span)[_-]?id[\"']?\s*[:=]\s*[\"']?([0-9a-f]{8,64})\b")


def _line(moment: float, service: str, text: str, trace_id: str = "", span_id: str = "") -> LogLine:
    """A log line. Ids the source did not give as fields are taken from the text when a logging library wrote
    them there ("TraceID: 4bf9…", "trace_id=4bf9…", '"spanId": "00f0…"'); a span id only with its own trace's."""
    if not trace_id or not span_id:
        found = {kind.lower(): value.lower() for kind, value in IDS_IN_TEXT.findall(text[:MAX_CHARS])}
        same_trace = not trace_id or found.get("trace", trace_id) == trace_id
        trace_id = trace_id or found.get("trace", "")
        span_id = span_id or (found.get("span", "") if same_trace else "")
    return LogLine(moment, service, text, trace_id, span_id if trace_id else "")


def _csv_logs(lines: Iterable[str]) -> Iterator[LogLine | None]:
    rows = _rows(lines)
    names, at = _columns(rows, LOG_COLUMNS)
    nanos = names.get("timeunixnano") == at["time"]
    trace, span = _index(names, "TraceID", "trace_id"), _index(names, "SpanID", "span_id")
    width = max(*at.values(), trace, span) + 1
    for row in rows:
        if row is None or len(row) < width:
            yield None
            continue
        moment = _seconds(row[at["time"]], 1e9) if nanos else _time(row[at["time"]])
        service = _service(row, at["service"], names) or UNKNOWN
        ids = [(_id(row[i]) or "") if i >= 0 else "" for i in (trace, span)]
        yield None if moment is None else _line(moment, service, _text(row[at["text"]], docker=True), *ids)


def iter_log_lines_csv(lines: Iterable[str]) -> Iterator[LogLine]:
    """Log lines from CSV with a header, read one row at a time as they are taken; unreadable rows are skipped."""
    return (line for line in _csv_logs(lines) if line is not None)


def log_lines_from_csv(lines: Iterable[str], limit: int = MAX_LINES) -> tuple[list[LogLine], int]:
    """Log lines from CSV with a header (Nezha's layout among others): (lines, dropped)."""
    return _bounded(_csv_logs(lines), limit)


def _json_logs(lines: Iterable[str]) -> Iterator[LogLine | None]:
    objects = seen = 0
    for line in _split(lines) if isinstance(lines, str) else lines:
        if not isinstance(line, str) or not line.strip():
            continue
        seen += 1
        try:
            record = json.loads(line) if len(line) <= MAX_LINE_CHARS else None
        except (ValueError, RecursionError):
            record = None
        if not isinstance(record, dict):
            yield None
            continue
        objects += 1
        moment = _time(record.get("time", record.get("timestamp")))
        text = next((v for k in ("message", "log", "msg") if isinstance(v := record.get(k), str)), None)
        service = _clean(record.get("service")) or UNKNOWN
        ids = [_id(record.get(key)) or "" for key in ("trace_id", "span_id")]
        yield None if moment is None or text is None else _line(moment, service, _text(text), *ids)
    if seen and not objects:
        raise FormatError("no line is a JSON object: send JSON lines with time, service and message, or CSV.")


def log_lines_from_jsonl(lines: Iterable[str], limit: int = MAX_LINES) -> tuple[list[LogLine], int]:
    """Log lines from JSON lines with `time`, `service`, `message` (or `log`, `msg`), `trace_id`, `span_id`:
    (lines, dropped)."""
    return _bounded(_json_logs(lines), limit)


def log_lines_from_text(text: str, limit: int = MAX_LINES) -> tuple[list[LogLine], int]:
    """Log lines from CSV or JSON lines, told apart by their content: (lines, dropped)."""
    jsonl = _first(text, "CSV or JSON lines with time, service and message") == "{"
    return log_lines_from_jsonl(text, limit) if jsonl else log_lines_from_csv(text, limit)


def log_lines_from_pod_log(text: str, service: str, limit: int = MAX_LINES) -> tuple[list[LogLine], int]:
    """`kubectl logs --timestamps` output of one service; an unstamped line takes the time of the line before."""
    _first(text)
    name = _clean(service) or UNKNOWN

    def lines() -> Iterator[LogLine | None]:
        moment = None
        for line in _split(text):
            if not line.strip():
                continue
            stamp, _, rest = line.partition(" ")
            stamped = _rfc3339(stamp)
            if stamped is not None:
                moment, line = stamped, rest
            yield None if moment is None else _line(moment, name, _text(line))

    return _bounded(lines(), limit)
