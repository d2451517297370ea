"""rca_from_files / rca_from_spans: uploaded spans and logs, compared against their own time before the
anomaly; hostile and useless uploads get an error that says what to send."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from errors import InvalidInput
from runtime import Runtime, use
from settings import Settings
from tools import rca_files

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
FAULT = T0 + 600


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = Runtime(Settings(store={"path": tmp_path / "db.sqlite"}, k8s={"kubeconfig": tmp_path / "none"}))
    with use(rt):
        yield rt
    rt.close()


def _otlp(slow: str) -> str:
    """A trace every 10 s for 20 minutes: web -> api -> db; `slow`'s own time goes 5 ms -> 300 ms at FAULT."""
    by_service: dict[str, list[dict]] = {"web": [], "api": [], "db": []}
    for i in range(120):
        t = T0 + 10 * i
        extra = 0.3 if t >= FAULT else 0.0
        own = {s: 0.005 + (extra if s == slow else 0.0) for s in by_service}
        trace = f"{i:032x}"
        db_end = t + 0.002 + own["db"]
        api_end = db_end + own["api"]
        web_end = api_end + own["web"]
        for service, span, parent, start, end in (
            ("web", "a", "", t, web_end),
            ("api", "b", "a", t + 0.001, api_end),
            ("db", "c", "b", t + 0.002, db_end),
        ):
            by_service[service].append(
                {
                    "traceId": trace,
                    "spanId": f"{i:014x}{span}0",
                    "parentSpanId": f"{i:014x}{parent}0" if parent else "",
                    "name": f"{service.upper()} call",
                    "startTimeUnixNano": str(int(start * 1e9)),
                    "endTimeUnixNano": str(int(end * 1e9)),
                }
            )
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": s}}]},
                    "scopeSpans": [{"spans": spans}],
                }
                for s, spans in by_service.items()
            ]
        }
    )


def _logs() -> str:
    """JSON lines: every service logs a request line every 5 s; `api` starts logging an error with a
    credential in it at FAULT."""
    rows = []
    for i in range(240):
        t = T0 + 5 * i
        for service in ("web", "api", "db"):
            rows.append({"time": t, "service": service, "message": f"handled request {i} in {i % 7} ms"})
        if t >= FAULT:
            rows.append(
                {"time": t, "service": "api", "message": f"ERROR upstream refused password=hunter2{i} for order {i}"}
            )
    return "\n".join(json.dumps(r) for r in rows)


@pytest.mark.anyio
async def test_spans_alone_name_the_slow_service_and_quote_its_operation(runtime: Runtime) -> None:
    result = await rca_files.rca_from_spans(_otlp(slow="db"), anomaly_time=FAULT)
    assert result.modalities == ["traces"]
    assert result.candidates[0].service == "db"
    assert result.candidates[0].traces and "DB call own time" in result.candidates[0].traces
    assert not any(c.traces for c in result.candidates[1:])  # callers' own time did not move
    top_row = result.render().splitlines()[2]  # the table shows the fused score, not the absent metrics score
    assert top_row.split()[:2] == ["db", f"{result.candidates[0].fused_score:.2f}"] and top_row.split()[1] != "0.00"


@pytest.mark.anyio
async def test_logs_and_spans_together_each_name_what_they_saw(runtime: Runtime) -> None:
    result = await rca_files.rca_from_files(spans=_otlp(slow="web"), logs=_logs(), anomaly_time=FAULT)
    assert result.modalities == ["traces", "logs"]
    by_name = {c.service: c for c in result.candidates}
    assert {result.candidates[0].service, result.candidates[1].service} == {"api", "web"}
    assert by_name["api"].logs and "ERROR upstream refused" in by_name["api"].logs
    assert "hunter2" not in result.model_dump_json()  # the credential in the log line is masked
    assert by_name["web"].traces and "WEB call" in by_name["web"].traces


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "Nothing to analyse"),
        ({"spans": "x" * 5_000_001, "anomaly_time": FAULT}, "at most 5,000,000"),
        ({"spans": _otlp("db")}, "anomaly_time is required"),
        ({"spans": "[" * 100_000, "anomaly_time": FAULT}, "Cannot read the upload"),
        ({"spans": '{"neither": 1}', "anomaly_time": FAULT}, "Cannot read the upload"),
        ({"logs": "time,service,message\nsoon,web,hello\n", "anomaly_time": FAULT}, "No service could be compared"),
        ({"spans": _otlp("db"), "anomaly_time": T0 - 3600}, "No service could be compared"),
    ],
)
async def test_bad_uploads_are_refused_with_what_to_send(runtime: Runtime, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        await rca_files.rca_from_files(**kwargs)
    assert len(str(caught.value)) < 1_000


@pytest.mark.anyio
async def test_a_code_path_cut_short_is_blamed_on_the_callee_not_the_caller_that_logs_it(runtime: Runtime) -> None:
    """web calls api in every trace (spans a -> b); from FAULT on, api stops between its two statements and web
    logs the failure as a new error. The lines carry their trace and span ids, as an OpenTelemetry-instrumented
    logger writes them."""
    rows = []
    for i in range(120):
        t, trace = T0 + 10 * i, f"{i:032x}"

        def line(service: str, message: str, span: str, t: float = t, trace: str = trace) -> dict:
            return {"time": t, "service": service, "message": message, "trace_id": trace, "span_id": span}

        web, api = f"{i:014x}a0", f"{i:014x}b0"
        rows += [
            line("web", f"INFO w.Web#10 asked api for {i}", web),
            line("api", f"INFO a.Api#20 order {i} read", api),
        ]
        if t < FAULT:
            rows.append(line("api", f"INFO a.Api#31 order {i} priced", api))
        else:
            rows.append(line("web", f"ERROR w.Web#14 api failed for {i}", web))
    logs = "\n".join(json.dumps(r) for r in rows)
    result = await rca_files.rca_from_files(spans=_otlp(slow=""), logs=logs, anomaly_time=FAULT)
    by_name = {c.service: c for c in result.candidates}
    assert result.candidates[0].service == "api"
    assert by_name["api"].logs and "did not log at a.Api#31" in by_name["api"].logs
    assert "code path cut short" in by_name["api"].logs
    web = by_name.get("web")
    assert web is None or web.fused_score < result.candidates[0].fused_score
