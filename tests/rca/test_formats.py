"""engines/rca/formats.py: uploaded trace and log files into Span and LogLine records, with hostile inputs."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator

import pytest

from engines.rca import formats
from engines.rca.formats import (
    MAX_FIELD,
    FormatError,
    iter_log_lines_csv,
    log_lines_from_csv,
    log_lines_from_jsonl,
    log_lines_from_pod_log,
    log_lines_from_text,
    span_from_jaeger,
    spans_from_csv,
    spans_from_jaeger_json,
    spans_from_otlp_json,
    spans_from_text,
)
from engines.rca.logs import MAX_CHARS, LogLine
from engines.rca.spans import Span

T0 = 1_674_981_768  # 2023-01-29T08:42:48Z
NS = 1_000_000_000


def otlp_span(span_id: str, parent: str = "", start: object = T0 * NS, end: object = (T0 + 1) * NS, **extra):
    return {
        "traceId": "ABCDEF01",
        "spanId": span_id,
        "parentSpanId": parent,
        "name": "GET /cart",
        "startTimeUnixNano": start,
        "endTimeUnixNano": end,
        **extra,
    }


def otlp(spans: list, service: str | None = "cart", key: str = "scopeSpans") -> dict:
    attributes = [{"key": "service.name", "value": {"stringValue": service}}] if service is not None else []
    return {"resourceSpans": [{"resource": {"attributes": attributes}, key: [{"spans": spans}]}]}


# -- OTLP


def test_otlp_round_trip_with_parents_errors_and_services() -> None:
    doc = otlp(
        [
            otlp_span("AA01", start=str(T0 * NS), end=str(T0 * NS + 500_000_000), status={"code": 2}),
            otlp_span("aa02", parent="AA01", status={"code": "STATUS_CODE_ERROR"}),
            otlp_span("aa03", parent="aa01", status={"code": 1}),
        ]
    )
    spans, dropped = spans_from_otlp_json(json.dumps(doc))
    assert dropped == 0
    assert spans[0] == Span("abcdef01", "aa01", None, "cart", "GET /cart", float(T0), T0 + 0.5, True)
    assert [(s.span_id, s.parent_id, s.error) for s in spans] == [
        ("aa01", None, True),
        ("aa02", "aa01", True),
        ("aa03", "aa01", False),
    ]
    assert spans[1].end - spans[1].start == pytest.approx(1.0)


def test_otlp_old_key_missing_service_and_json_lines() -> None:
    old = otlp([otlp_span("b1")], service=None, key="instrumentationLibrarySpans")
    lines = json.dumps(otlp([otlp_span("c1")], "front")) + "\n\n" + json.dumps(old) + "\n"
    spans, dropped = spans_from_otlp_json(lines)
    assert dropped == 0
    assert [(s.span_id, s.service) for s in spans] == [("c1", "front"), ("b1", "unknown")]


def test_otlp_drops_unreadable_spans_and_counts_them() -> None:
    bad = [
        otlp_span("d1", end=T0 * NS - 1_000_000),  # ends before it starts
        otlp_span("d2", start="NaN"),
        otlp_span("d3", start=1e30 * NS),
        otlp_span("d4", start=float("inf")),
        {**otlp_span("d5"), "traceId": 12345},  # not a string
        {**otlp_span("d6"), "spanId": ""},
        {k: v for k, v in otlp_span("d7").items() if k != "spanId"},
        otlp_span("d8", start=-5),
        otlp_span("d9", start=True),
        {**otlp_span("d10"), "parentSpanId": ["x"]},
        "not a span",
    ]
    spans, dropped = spans_from_otlp_json(json.dumps(otlp([otlp_span("ok"), *bad])))
    assert [s.span_id for s in spans] == ["ok"]
    assert dropped == len(bad)


def test_otlp_limit_counts_the_rest_as_dropped() -> None:
    doc = otlp([otlp_span(f"e{i}") for i in range(10)])
    spans, dropped = spans_from_otlp_json(json.dumps(doc), limit=4)
    assert [s.span_id for s in spans] == ["e0", "e1", "e2", "e3"]
    assert dropped == 6


def test_otlp_wrong_types_do_not_crash() -> None:
    docs = [
        {"resourceSpans": "no"},
        {"resourceSpans": [1, {"resource": [], "scopeSpans": {"spans": []}}]},
        {"resourceSpans": [{"resource": {"attributes": "x"}, "scopeSpans": [{"spans": "x"}, 3]}]},
        {"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", "value": 7}]}, "scopeSpans": []}]},
    ]
    for doc in docs:
        assert spans_from_otlp_json(json.dumps(doc)) == ([], 0)
    weird = otlp([otlp_span("f1", status=["code", 2])], service=None)
    weird["resourceSpans"][0]["resource"]["attributes"] = [{"key": "service.name", "value": {"stringValue": 3}}]
    spans, _ = spans_from_otlp_json(json.dumps(weird))
    assert (spans[0].service, spans[0].error) == ("unknown", False)


def test_otlp_refuses_other_json() -> None:
    with pytest.raises(FormatError, match="resourceSpans"):
        spans_from_otlp_json('{"data": []}')


def test_service_and_ids_lose_control_characters_and_are_clipped() -> None:
    doc = otlp([{**otlp_span("g1\x00\x1b"), "name": "op\n" + "x" * 10_000}], service="ca\rrt\x7f" + "s" * 10_000)
    spans, _ = spans_from_otlp_json(json.dumps(doc))
    assert spans[0].span_id == "g1"
    assert spans[0].service.startswith("carts") and len(spans[0].service) == MAX_FIELD
    assert spans[0].operation.startswith("opxx") and len(spans[0].operation) == MAX_FIELD


# -- Jaeger


JAEGER = {
    "data": [
        {
            "traceID": "t1",
            "spans": [
                {
                    "traceID": "t1",
                    "spanID": "s1",
                    "operationName": "HTTP GET",
                    "references": [],
                    "startTime": T0 * 1_000_000,
                    "duration": 250_000,
                    "processID": "p1",
                    "tags": [{"key": "error", "type": "bool", "value": True}],
                },
                {
                    "traceID": "t1",
                    "spanID": "s2",
                    "operationName": "SELECT",
                    "references": [
                        {"refType": "FOLLOWS_FROM", "traceID": "t1", "spanID": "s9"},
                        {"refType": "CHILD_OF", "traceID": "t1", "spanID": "s1"},
                    ],
                    "startTime": T0 * 1_000_000 + 1000,
                    "duration": 1000,
                    "processID": "p2",
                    "tags": [{"key": "otel.status_code", "type": "string", "value": "ERROR"}],
                },
                {
                    "traceID": "t1",
                    "spanID": "s3",
                    "operationName": "cache",
                    "references": [{"refType": "FOLLOWS_FROM", "traceID": "t1", "spanID": "s2"}],
                    "startTime": T0 * 1_000_000,
                    "duration": 10,
                    "processID": "missing",
                    "tags": [{"key": "error", "value": False}],
                },
            ],
            "processes": {"p1": {"serviceName": "frontend"}, "p2": {"serviceName": "db"}},
        }
    ]
}


def test_jaeger_round_trip() -> None:
    spans, dropped = spans_from_jaeger_json(json.dumps(JAEGER))
    assert dropped == 0
    assert spans[0] == Span("t1", "s1", None, "frontend", "HTTP GET", float(T0), T0 + 0.25, True)
    assert [(s.span_id, s.parent_id, s.service, s.error) for s in spans] == [
        ("s1", None, "frontend", True),
        ("s2", "s1", "db", True),
        ("s3", "s2", "unknown", False),
    ]
    assert spans[1].end - spans[1].start == pytest.approx(0.001, abs=1e-6)


def test_span_from_jaeger_for_a_live_client_and_bad_spans() -> None:
    raw = dict(JAEGER["data"][0]["spans"][0], process={"serviceName": "inline"})
    span = span_from_jaeger(raw, {})
    assert span is not None and span.service == "inline"
    assert span_from_jaeger({**raw, "duration": -1}, {}) is None
    assert span_from_jaeger({**raw, "startTime": "soon"}, {}) is None
    assert span_from_jaeger({**raw, "spanID": None}, {}) is None
    assert span_from_jaeger({**raw, "tags": "error", "references": "x"}, []) is not None  # type: ignore[arg-type]
    assert span_from_jaeger("span", {}) is None  # type: ignore[arg-type]


def test_jaeger_wrong_types_and_limit() -> None:
    doc = {"data": [JAEGER["data"][0], 5, {"spans": "x", "processes": []}, {"spans": [1, {"spanID": "z"}]}]}
    spans, dropped = spans_from_jaeger_json(json.dumps(doc), limit=2)
    assert [s.span_id for s in spans] == ["s1", "s2"]
    assert dropped == 1 + 2  # s3 past the limit, two malformed spans
    with pytest.raises(FormatError, match="Jaeger"):
        spans_from_jaeger_json(json.dumps(otlp([])))


# -- CSV spans

NEZHA_SPANS = (
    "TraceID,SpanID,ParentID,PodName,OperationName,StartTimeUnixNano,EndTimeUnixNano,Duration\n"
    "B0103BB0,520b0673,root,ts-gateway-service-6f6cfc45b-h5m2n,/*,1674981768697000000,1674981769015316530,318316\n"
    "b0103bb0,a4424f20,520b0673,ts-gateway-service-6f6cfc45b-h5m2n,Filter.handle,1674981768697763387,"
    "1674981769015072039,317308\n"
    "b0103bb0,c1,a4424f20,mysql,query,1674981768700000000,1674981768600000000,1\n"
)


def test_nezha_span_csv() -> None:
    spans, dropped = spans_from_csv(NEZHA_SPANS.splitlines(keepends=True))
    assert dropped == 1  # the third ends before it starts
    assert spans[0] == Span(
        "b0103bb0", "520b0673", None, "ts-gateway-service", "/*", 1674981768.697, 1674981769.0153165, False
    )
    assert (spans[1].parent_id, spans[1].service) == ("520b0673", "ts-gateway-service")
    assert spans[1].operation == "Filter.handle"


def test_csv_in_seconds_with_errors_and_aliases() -> None:
    text = (
        "trace_id,span_id,parent_id,service,name,start,end,status\n"
        f"t,a,,cart,op,{T0},{T0 + 2},error\n"
        f"t,b,0,cart,op,{T0},{T0 + 1},ok\n"
        f"t,c,a,pay-ment-x-y,op,{T0}.5,{T0 + 1},TRUE\n"
    )
    spans, dropped = spans_from_csv(iter(text.splitlines()))
    assert dropped == 0
    assert [(s.span_id, s.parent_id, s.service, s.error, s.end - s.start) for s in spans] == [
        ("a", None, "cart", True, 2.0),
        ("b", None, "cart", False, 1.0),
        ("c", "a", "pay-ment-x-y", True, 0.5),  # `service` is not folded; only PodName is
    ]


def test_csv_start_time_and_duration_in_microseconds() -> None:
    text = f"\ufeffTraceID,SpanID,ServiceName,operation,StartTime,Duration\nt,a,cart,op,{T0 * 1_000_000},1500\n"
    spans, dropped = spans_from_csv(text.splitlines())
    assert dropped == 0
    assert (spans[0].start, spans[0].end, spans[0].parent_id) == (T0, pytest.approx(T0 + 0.0015), None)


def test_csv_missing_columns_names_the_accepted_ones() -> None:
    with pytest.raises(FormatError) as error:
        spans_from_csv(["TraceID,PodName,start,end", "t,p,1,2"])
    message = str(error.value)
    assert "span id (SpanID or span_id)" in message
    assert "operation (OperationName or operation or name)" in message
    assert "trace id" not in message.split(":")[0]  # TraceID is there, so not reported missing
    with pytest.raises(FormatError, match="StartTimeUnixNano"):
        spans_from_csv(["TraceID,SpanID,service,name,begin", "t,s,a,b,1"])
    with pytest.raises(FormatError, match="header"):
        spans_from_csv([])


def test_csv_bad_rows_and_times_are_dropped() -> None:
    header = "TraceID,SpanID,service,name,start,end"
    rows = ["t,a,s,o,nan,1", "t,b,s,o,1,inf", f"t,c,s,o,{T0},1e30", "t,d,s,o,-1,0", "t,e,s", "t,f,s,o,x,y"]
    rows += [",g,s,o,1,2", f"t,h,s,o,{T0},{T0}.5e0x"]
    spans, dropped = spans_from_csv([header, *rows, f"t,ok,s,o,{T0},{T0}"])
    assert [s.span_id for s in spans] == ["ok"]
    assert dropped == len(rows)


def test_csv_huge_fields_are_clipped_or_dropped_and_the_rest_read() -> None:
    huge = "x" * 10_000_000
    lines = [
        "TraceID,SpanID,service,start,end,name\n",
        f"{huge},a,s,{T0},{T0 + 1},op\n",  # the clip cuts the row short: dropped
        f"t,b,s,{T0},{T0 + 1},{huge}\n",  # the operation is clipped
        f't,c,s,{T0},{T0 + 1},"quoted {huge}"\n',  # a quoted field clipped: its closing quote is kept
        f"t,d,s,{T0},{T0 + 1},op\n",
    ]
    before = csv.field_size_limit()
    spans, dropped = spans_from_csv(lines)
    assert csv.field_size_limit() == before
    assert dropped == 1
    assert [s.span_id for s in spans] == ["b", "c", "d"]
    assert len(spans[0].operation) == MAX_FIELD and spans[1].operation.startswith("quoted xx")
    assert spans[2].operation == "op"


def test_csv_unreadable_row_does_not_stop_the_reader() -> None:
    field = "y" * 60_000
    multi_line = f't,a,s,{T0},{T0 + 1},"{field}\n' + f"{field}\n" * 3 + 'end"\n'  # a quoted field over 131072 chars
    lines = ["TraceID,SpanID,service,start,end,name\n", *multi_line.splitlines(keepends=True)]
    spans, dropped = spans_from_csv([*lines, f"t,b,s,{T0},{T0 + 1},op\n"])
    assert [s.span_id for s in spans] == ["b"]
    assert dropped == 3  # the row csv refused, then the rest of its field read as two short rows


# -- sniffing


def test_spans_from_text_tells_the_formats_apart() -> None:
    assert [s.span_id for s in spans_from_text(json.dumps(otlp([otlp_span("h1")])))[0]] == ["h1"]
    assert [s.span_id for s in spans_from_text("  \n" + json.dumps(JAEGER))[0]] == ["s1", "s2", "s3"]
    assert [s.span_id for s in spans_from_text(json.dumps(JAEGER["data"]))[0]] == ["s1", "s2", "s3"]
    assert len(spans_from_text(NEZHA_SPANS)[0]) == 2
    with pytest.raises(FormatError, match=r"neither OTLP .* nor Jaeger") as error:
        spans_from_text('{"traces": [1, 2]}')
    assert "TraceID or trace_id" in str(error.value)
    with pytest.raises(FormatError, match="empty"):
        spans_from_text(" \n ")
    with pytest.raises(FormatError, match="not valid JSON"):
        spans_from_text('{"resourceSpans": [')


def test_deeply_nested_json_is_a_format_error() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    for read in (spans_from_text, spans_from_otlp_json, spans_from_jaeger_json):
        with pytest.raises(FormatError, match="nested too deeply"):
            read(deep)
    with pytest.raises(FormatError):
        log_lines_from_jsonl(['{"a":' * 100_000])
    lines, dropped = log_lines_from_jsonl([f'{{"time": {T0}, "service": "a", "message": "m"}}', "[" * 100_000])
    assert (len(lines), dropped) == (1, 1)


def test_documents_over_the_size_bound_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(formats, "MAX_JSON_CHARS", 1_000)
    text = json.dumps(otlp([otlp_span(f"i{n}") for n in range(20)]))
    for read in (spans_from_text, spans_from_otlp_json, log_lines_from_text):
        with pytest.raises(FormatError, match="over 1,000"):
            read(text)
    with pytest.raises(FormatError, match="expected text"):
        spans_from_text(b"{}")  # type: ignore[arg-type]


# -- logs

NEZHA_LOG_HEADER = "Timestamp,TimeUnixNano,Node,PodName,Container,TraceID,SpanID,Log\n"


def nezha_log(ns: int, pod: str, text: str, trace: str = "FFC8CA7E") -> str:
    cell = json.dumps({"log": text + "\n", "stream": "stdout", "time": "2023-01-29T08:42:22.383150913Z"})
    quoted = '"' + cell.replace('"', '""') + '"'
    return f"2023-01-29T08:42:22.383150913Z,{ns},33.33.33.116,{pod},server,{trace},439bc949,{quoted}\n"


def test_nezha_log_csv_with_docker_json_cells() -> None:
    lines = [
        NEZHA_LOG_HEADER,
        nezha_log(1674981742383150913, "ts-travel-service-64469b5b48-25zj6", 'INFO Route is: Route(id=1, "x")'),
        nezha_log(1674981742400000000, "ts-order-service-5d4b6c8d9-abcde", "ERROR boom, again", trace=""),
        "2023-01-29T08:42:22Z,not-a-time,n,p,c,t,s,plain\n",
    ]
    got, dropped = log_lines_from_csv(lines)
    assert dropped == 1
    assert got == [
        LogLine(1674981742.383150913, "ts-travel-service", 'INFO Route is: Route(id=1, "x")', "ffc8ca7e", "439bc949"),
        LogLine(1674981742.4, "ts-order-service", "ERROR boom, again", ""),  # a span id means nothing without a trace
    ]


def test_trace_and_span_ids_written_in_the_text_are_read() -> None:
    pod = (
        "2023-01-29T08:42:22.1Z 16:42:22.382 INFO t.s.TravelServiceImpl#532 TraceID: FFC8CA7E4C8F06C7 "
        "SpanID: 439BC949A9EEB0CC [getRouteByRouteId]\n"
        "2023-01-29T08:42:22.2Z level=info trace_id=0af7651916cd43dd8448eb211c80319c span_id=b7ad6b7169203331 ok\n"
        "2023-01-29T08:42:22.3Z plain line\n"
    )
    got, _ = log_lines_from_pod_log(pod, "travel")
    assert [(line.trace_id, line.span_id) for line in got] == [
        ("ffc8ca7e4c8f06c7", "439bc949a9eeb0cc"),
        ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"),
        ("", ""),
    ]
    jsonl = [
        '{"time": 1, "service": "a", "message": "x", "trace_id": "AB12CD34", "span_id": "EF56"}',
        '{"time": 2, "service": "a", "message": "TraceID: 99999999 SpanID: 11111111", "trace_id": "ab12cd34"}',
        '{"time": 3, "service": "a", "message": "span_id=22222222 only", "trace_id": "ab12cd34"}',
    ]
    got, _ = log_lines_from_jsonl(jsonl)
    # a span id written in the text goes with the trace id written there, not with another trace's
    assert [(line.trace_id, line.span_id) for line in got] == [
        ("ab12cd34", "ef56"),
        ("ab12cd34", ""),
        ("ab12cd34", "22222222"),
    ]


def test_log_csv_with_rfc3339_and_unix_seconds() -> None:
    text = (
        "time,service,message,trace_id\n"
        "2023-01-29T16:42:48.25+08:00,cart,started,\n"
        f"{T0}.5,cart,plain text,abc\n"
        "2023-01-29 08:42:48,cart,naive is UTC,\n"
        "2230-01-01T00:00:00Z,cart,too late,\n"
        "yesterday,cart,no time,\n"
    )
    got, dropped = log_lines_from_text(text)
    assert dropped == 2
    assert [(line.time, line.text, line.trace_id) for line in got] == [
        (T0 + 0.25, "started", ""),
        (T0 + 0.5, "plain text", "abc"),
        (T0, "naive is UTC", ""),
    ]


def test_log_csv_missing_columns_and_limit() -> None:
    with pytest.raises(FormatError) as error:
        log_lines_from_csv(["Timestamp,Node,Log", "x,y,z"])
    assert "service (service or PodName)" in str(error.value) and "time" not in str(error.value).split(":")[0]
    rows = [f"{T0 + i},s,line {i}\n" for i in range(5)]
    got, dropped = log_lines_from_csv(["time,service,text\n", *rows], limit=2)
    assert ([line.text for line in got], dropped) == (["line 0", "line 1"], 3)


def test_log_text_is_clipped_even_from_a_huge_cell() -> None:
    big = "z" * 10_000_000
    lines = [NEZHA_LOG_HEADER, nezha_log(T0 * NS, "a-b-c", big), nezha_log(T0 * NS, "a-b-c", "next")]
    got, dropped = log_lines_from_csv(lines)
    assert dropped == 0
    assert len(got[0].text) == MAX_CHARS and got[0].text.startswith('{"log": "zzz')  # clipped before it was parsed
    assert (got[0].service, got[1].text) == ("a", "next")


def test_streaming_log_reader_is_lazy() -> None:
    taken = 0

    def source() -> Iterator[str]:
        nonlocal taken
        yield NEZHA_LOG_HEADER
        for i in range(10_000):
            taken += 1
            yield nezha_log((T0 + i) * NS, "web-1-2", f"line {i}")

    stream = iter_log_lines_csv(source())
    assert taken == 0
    first = next(stream)
    assert (first.text, first.time, first.service) == ("line 0", float(T0), "web")
    assert taken <= 2
    assert next(stream).text == "line 1"
    assert sum(1 for _ in stream) == 9_998


def test_streaming_reader_skips_bad_rows_and_raises_on_a_bad_header() -> None:
    lines = ["time,service,text\n", "bad,s,x\n", f"{T0},s,ok\n"]
    assert [line.text for line in iter_log_lines_csv(lines)] == ["ok"]
    with pytest.raises(FormatError, match="text"):
        next(iter_log_lines_csv(["time,service\n", f"{T0},s\n"]))


def test_json_lines_logs() -> None:
    lines = [
        json.dumps({"time": "2023-01-29T08:42:48.5Z", "service": "cart", "message": "hello", "trace_id": "ABC"}),
        json.dumps({"time": T0, "service": "cart", "log": "from log\n"}),
        json.dumps({"time": str(T0), "msg": "no service"}),
        "",
        json.dumps({"time": 1e30, "service": "a", "message": "x"}),
        '{"time": NaN, "service": "a", "message": "x"}',
        '{"time": Infinity, "service": "a", "message": "x"}',
        json.dumps({"time": T0, "service": "a", "message": 5}),
        json.dumps({"time": [T0], "service": "a", "message": "x"}),
        "[1, 2]",
        "{not json",
    ]
    got, dropped = log_lines_from_jsonl(lines)
    assert dropped == 7
    assert got == [
        LogLine(T0 + 0.5, "cart", "hello", "abc"),
        LogLine(float(T0), "cart", "from log", ""),
        LogLine(float(T0), "unknown", "no service", ""),
    ]
    same, _ = log_lines_from_text("\n".join(lines))
    assert same == got
    with pytest.raises(FormatError, match="JSON object"):
        log_lines_from_jsonl(["[1]", "2"])


def test_separators_inside_a_record_do_not_split_it() -> None:
    text = f'time,service,text\n{T0},s,"one\u2028two"\n'
    assert [line.text for line in log_lines_from_text(text)[0]] == ["one\u2028two"]
    jsonl = json.dumps({"time": T0, "service": "s", "message": "a\u2028b"}, ensure_ascii=False)
    assert [line.text for line in log_lines_from_text(jsonl)[0]] == ["a\u2028b"]


def test_pod_log_with_continuation_lines() -> None:
    text = (
        "orphan line before any stamp\n"
        "2023-01-29T08:42:48.123456789Z Exception in thread main\n"
        "\tat com.example.Main(Main.java:1)\n"
        "\n"
        "2023-01-29T08:42:49Z done\n"
    )
    got, dropped = log_lines_from_pod_log(text, "cart\x1b[0m")
    assert dropped == 1
    assert [(line.time, line.text, line.service) for line in got] == [
        (pytest.approx(T0 + 0.123456789), "Exception in thread main", "cart[0m"),
        (pytest.approx(T0 + 0.123456789), "\tat com.example.Main(Main.java:1)", "cart[0m"),
        (float(T0 + 1), "done", "cart[0m"),
    ]
    got, dropped = log_lines_from_pod_log(text, "cart", limit=1)
    assert (len(got), dropped) == (1, 3)
    assert log_lines_from_pod_log("", "cart") == ([], 0)
