"""connections.jaeger against a real Jaeger fed through the real OpenTelemetry SDK and OTLP HTTP exporter."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import httpx
import pytest

import connections.jaeger as jaeger_module
from connections.jaeger import Jaeger
from engines.rca.spans import Span
from errors import InvalidInput, Unreachable, Unsupported
from settings import TracingSettings
from tests.serving import free_port
from tests.tracing.harness import JaegerServer, SpanSpec, send_spans

INGEST_DEADLINE = 30.0
TOKEN = "s3cret-token-do-not-show"


@dataclass(frozen=True)
class Sent:
    services: tuple[str, str, str]
    ids: dict[str, tuple[str, str]]  # key -> (trace id, span id)
    specs: dict[str, SpanSpec]
    start: float
    end: float


def _chain(tag: str, services: tuple[str, str, str], t0: float, ends: tuple[float, float, float], error: bool):
    front, checkout, payment = services
    return [
        SpanSpec(f"{tag}.front", front, "GET /checkout", t0, t0 + ends[0]),
        SpanSpec(f"{tag}.checkout", checkout, "POST /order", t0 + 0.010, t0 + ends[1], parent=f"{tag}.front"),
        SpanSpec(f"{tag}.pay", payment, "charge", t0 + 0.020, t0 + ends[2], parent=f"{tag}.checkout", error=error),
    ]


def _trace_id(hex_id: str) -> int:
    return int(hex_id, 16)  # Jaeger may drop leading zeros of a 128-bit id


def _ours(spans: list[Span], sent: Sent) -> dict[str, Span]:
    by_ids = {(_trace_id(t), s): key for key, (t, s) in sent.ids.items()}
    return {
        by_ids[(_trace_id(s.trace_id), s.span_id)]: s for s in spans if (_trace_id(s.trace_id), s.span_id) in by_ids
    }


@pytest.fixture(scope="module")
def sent(jaeger: JaegerServer) -> Sent:
    run = uuid.uuid4().hex[:8]
    services = (f"frontend-{run}", f"checkout-{run}", f"payment-{run}")
    t0 = float(int(time.time()) - 600)
    specs = [
        *_chain("ok", services, t0, (0.200, 0.150, 0.100), error=False),
        *_chain("err", services, t0 + 1, (0.300, 0.200, 0.100), error=True),
        *_chain("slow", services, t0 + 2, (5.000, 4.900, 4.800), error=False),
    ]
    ids = send_spans(jaeger.otlp_url, specs)
    result = Sent(services, ids, {s.key: s for s in specs}, t0 - 10, t0 + 20)
    deadline = time.monotonic() + INGEST_DEADLINE
    with Jaeger(TracingSettings(url=jaeger.query_url)) as client:
        while True:  # ingestion is asynchronous: poll until every span is queryable
            spans, _ = client.spans(list(services), result.start, result.end)
            if len(_ours(spans, result)) == len(specs):
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"Jaeger holds {len(_ours(spans, result))} of {len(specs)} spans")
            time.sleep(0.1)  # polling interval while waiting on a deadline, not a fixed wait


def test_services_are_listed(jaeger: JaegerServer, sent: Sent) -> None:
    with Jaeger(TracingSettings(url=jaeger.query_url)) as client:
        assert set(sent.services) <= set(client.services())


def test_spans_keep_parents_services_times_and_errors(jaeger: JaegerServer, sent: Sent) -> None:
    with Jaeger(TracingSettings(url=jaeger.query_url)) as client:
        spans, truncated = client.spans(None, sent.start, sent.end)
    assert not truncated
    assert not any(s.service == "jaeger" for s in spans)
    assert len({(s.trace_id, s.span_id) for s in spans}) == len(spans)  # each span once across services
    ours = _ours(spans, sent)
    assert set(ours) == set(sent.specs)
    for key, span in ours.items():
        spec = sent.specs[key]
        assert span.service == spec.service
        assert span.operation == spec.operation
        assert span.start == pytest.approx(spec.start, abs=1e-3)
        assert span.end == pytest.approx(spec.end, abs=1e-3)
        assert span.error is spec.error
        assert span.parent_id == (sent.ids[spec.parent][1] if spec.parent else None)
        assert _trace_id(span.trace_id) == _trace_id(sent.ids[key][0])
    assert {k for k, s in ours.items() if s.error} == {"err.pay"}
    assert ours["slow.front"].end - ours["slow.front"].start == pytest.approx(5.0, abs=1e-3)


def test_one_service_still_returns_whole_traces(jaeger: JaegerServer, sent: Sent) -> None:
    with Jaeger(TracingSettings(url=jaeger.query_url)) as client:
        spans, truncated = client.spans([sent.services[2]], sent.start, sent.end)
    assert not truncated
    assert set(_ours(spans, sent)) == set(sent.specs)


def test_window_excludes_other_times(jaeger: JaegerServer, sent: Sent) -> None:
    with Jaeger(TracingSettings(url=jaeger.query_url)) as client:
        spans, truncated = client.spans(list(sent.services), sent.end + 60, sent.end + 120)
    assert (spans, truncated) == ([], False)


def test_caps_mark_the_result_truncated(jaeger: JaegerServer, sent: Sent) -> None:
    with Jaeger(TracingSettings(url=jaeger.query_url, max_traces=1)) as client:
        spans, truncated = client.spans([sent.services[0]], sent.start, sent.end)
    assert truncated
    assert len({s.trace_id for s in spans}) == 1 and len(spans) == 3
    with Jaeger(TracingSettings(url=jaeger.query_url)) as client:
        spans, truncated = client.spans([sent.services[0]], sent.start, sent.end, limit=2)
        assert truncated and len({s.trace_id for s in spans}) == 2
        spans, truncated = client.spans([sent.services[0]], sent.start, sent.end, limit=3)
        assert len({s.trace_id for s in spans}) == 3
    with Jaeger(TracingSettings(url=jaeger.query_url, max_spans=4)) as client:
        spans, truncated = client.spans(list(sent.services), sent.start, sent.end)
    assert truncated and len(spans) == 4


def test_response_size_cap_asks_for_fewer_traces(
    jaeger: JaegerServer, sent: Sent, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = {"service": sent.services[0], "start": int(sent.start * 1e6), "end": int(sent.end * 1e6)}
    one = len(httpx.get(f"{jaeger.query_url}/api/traces", params={**params, "limit": 1}).content)
    monkeypatch.setattr(jaeger_module, "MAX_BODY_BYTES", one + 100)  # room for one trace, not three
    with Jaeger(TracingSettings(url=jaeger.query_url)) as client:
        spans, truncated = client.spans([sent.services[0]], sent.start, sent.end)
    assert truncated and len({s.trace_id for s in spans}) == 1
    monkeypatch.setattr(jaeger_module, "MAX_BODY_BYTES", 10)  # not even one trace fits
    with Jaeger(TracingSettings(url=jaeger.query_url)) as client:
        assert client.spans([sent.services[0]], sent.start, sent.end) == ([], True)


def test_a_closed_port_is_unreachable_without_the_token() -> None:
    url = f"http://user:pw-secret@127.0.0.1:{free_port()}"
    with Jaeger(TracingSettings(url=url, bearer_token=TOKEN, timeout_seconds=5)) as client:
        with pytest.raises(Unreachable) as err:
            client.services()
        with pytest.raises(Unreachable):
            client.spans(["frontend"], 1.0, 2.0)
    text = str(err.value)
    assert f"127.0.0.1:{url.rsplit(':', 1)[1]}" in text and "Jaeger" in text
    assert TOKEN not in text and "pw-secret" not in text


def test_no_url_is_unsupported() -> None:
    with pytest.raises(Unsupported, match="CLOUDPILOT_TRACING__URL"):
        Jaeger(TracingSettings())


@pytest.mark.parametrize("name", ["front\nend", "x" * 10_000, "", "tab\there", "nul\x00", 7])
def test_hostile_service_names_are_refused(name: object) -> None:
    # A closed port: were anything sent, the error would be Unreachable instead.
    with Jaeger(TracingSettings(url=f"http://127.0.0.1:{free_port()}")) as client, pytest.raises(InvalidInput) as err:
        client.spans(["ok", name], 1.0, 2.0)  # type: ignore[list-item]
    assert len(str(err.value)) < 400


@pytest.mark.parametrize(
    ("services", "start", "end", "limit"),
    [("frontend", 1.0, 2.0, None), (["a"], 2.0, 1.0, None), (["a"], float("nan"), 2.0, None), (["a"], 1.0, 2.0, 0)],
)
def test_bad_arguments_are_refused(services: object, start: float, end: float, limit: int | None) -> None:
    with Jaeger(TracingSettings(url=f"http://127.0.0.1:{free_port()}")) as client, pytest.raises(InvalidInput):
        client.spans(services, start, end, limit)  # type: ignore[arg-type]


def test_a_rejected_request_quotes_jaeger(jaeger: JaegerServer) -> None:
    with Jaeger(TracingSettings(url=jaeger.query_url)) as client, pytest.raises(InvalidInput, match="many"):
        client._get("/api/traces", {"service": "x", "limit": "many"})
