"""rca_namespace with a real Jaeger beside the real Prometheus: spans sent by the OpenTelemetry SDK over OTLP,
read back through Jaeger's query API. The metrics alone blame `cart` (its CPU saturates); the spans show
`payment`'s own time jumping 50x at the same moment, and the answer must follow the spans and quote them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runtime import Runtime
from tests.rca.conftest import Incident, incident_runtime
from tests.serving import free_port
from tests.tracing.conftest import jaeger  # noqa: F401  (the session's Jaeger fixture)
from tests.tracing.harness import JaegerServer, SpanSpec, send_spans
from tools import rca

EVERY = 20.0  # seconds between traces


def _traces(incident: Incident) -> list[SpanSpec]:
    """frontend GET / -> cart GET /cart -> payment POST /pay; payment's own time 8 ms, 400 ms after the fault."""
    specs = []
    moment = incident.start + 5
    while moment < incident.end - 5:
        pay = 0.4 if moment >= incident.fault else 0.008
        k = f"{moment:.0f}"
        specs += [
            SpanSpec(f"f{k}", "frontend", "GET /", moment, moment + 0.005 + 0.010 + pay + 0.002),
            SpanSpec(f"c{k}", "cart", "GET /cart", moment + 0.003, moment + 0.003 + 0.010 + pay, parent=f"f{k}"),
            SpanSpec(f"p{k}", "payment", "POST /pay", moment + 0.008, moment + 0.008 + pay, parent=f"c{k}"),
        ]
        moment += EVERY
    return specs


@pytest.fixture(scope="module")
def traced(incident: Incident, jaeger: JaegerServer) -> Incident:  # noqa: F811
    specs = _traces(incident)
    send_spans(jaeger.otlp_url, specs)
    params = {"service": "payment", "start": int(incident.start * 1e6), "end": int(incident.end * 1e6), "limit": 500}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # Jaeger stores asynchronously
        found = httpx.get(f"{jaeger.query_url}/api/traces", params=params, timeout=5).json().get("data") or []
        if len(found) >= len(specs) // 3:
            return incident
        time.sleep(0.2)
    raise AssertionError("Jaeger did not store the traces sent")


@pytest.fixture
def with_jaeger(traced: Incident, jaeger: JaegerServer, tmp_path: Path) -> Iterator[Runtime]:  # noqa: F811
    yield from incident_runtime(traced, tmp_path, tracing={"url": jaeger.query_url})


@pytest.fixture
def jaeger_down(incident: Incident, tmp_path: Path) -> Iterator[Runtime]:
    yield from incident_runtime(incident, tmp_path, tracing={"url": f"http://127.0.0.1:{free_port()}"})


@pytest.mark.anyio
async def test_the_slow_service_in_the_traces_ranks_first_and_its_span_is_quoted(
    traced: Incident, with_jaeger: Runtime
) -> None:
    result = await rca.rca_namespace("shop", minutes=55, end=str(traced.end))
    assert result.modalities == ["metrics", "traces"]
    top = result.candidates[0]
    assert top.service == "payment", [(c.service, c.fused_score, c.traces) for c in result.candidates]
    assert top.traces and "POST /pay" in top.traces and "own time" in top.traces
    by_name = {c.service: c for c in result.candidates}
    assert by_name["cart"].evidence  # the metrics evidence is still there
    assert not by_name["frontend"].traces  # own time unchanged: the callers are not blamed
    assert any(n.startswith("traces:") and "spans before the anomaly time" in n for n in result.notes)
    assert "payment traces: payment POST /pay own time" in result.render()


@pytest.mark.anyio
async def test_jaeger_down_answers_from_the_metrics_with_a_note(incident: Incident, jaeger_down: Runtime) -> None:
    result = await rca.rca_namespace("shop", minutes=55, end=str(incident.end))
    assert result.modalities == ["metrics"]
    assert result.candidates[0].service == "cart"
    note = next(n for n in result.notes if n.startswith("traces unavailable"))
    assert "Unreachable" in note and "answered without them" in note
