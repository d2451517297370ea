"""A real Jaeger for tests (built by scripts/build-jaeger.sh): in-memory storage, OTLP over HTTP in, the query
API out, every listener on 127.0.0.1 on a free port. And `send_spans`, which sends spans through the real
OpenTelemetry SDK and OTLP HTTP exporter.

    with JaegerServer() as jaeger:
        ids = send_spans(jaeger.otlp_url, [SpanSpec("a", "frontend", "GET /", 100.0, 100.5)])
        jaeger.query_url  # http://127.0.0.1:<port>
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Status, StatusCode

from tests.prom.harness import stop_process
from tests.serving import free_port

START_DEADLINE = 60.0
BUILD_HINT = "run scripts/build-jaeger.sh (or scripts/test.sh) and set CLOUDPILOT_JAEGER_BIN to the directory it prints"

# Only the pieces tests need: memory storage, OTLP HTTP in, the query API (HTTP and its gRPC twin, which cannot
# be turned off) out. No health check, zpages, expvar, pprof or sampling extensions; internal metrics off so
# that nothing listens on the collector's fixed port 8888.
CONFIG = """\
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn

extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memstore
    enable_tracing: false
    http:
      endpoint: 127.0.0.1:{query_port}
    grpc:
      endpoint: 127.0.0.1:{query_grpc_port}

receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp_port}

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


def jaeger_binary() -> Path:
    """The jaeger binary: in $CLOUDPILOT_JAEGER_BIN, else in the build script's default cache."""
    bin_dir = os.environ.get("CLOUDPILOT_JAEGER_BIN")
    if not bin_dir:
        cache = Path(os.environ.get("CLOUDPILOT_CACHE") or Path.home() / ".cache" / "cloudpilot")
        bin_dir = str(cache / "jaeger" / "v1.75.0" / "bin")
    return Path(bin_dir) / "jaeger"


class JaegerServer:
    """A Jaeger process with in-memory storage; stops and cleans up on exit."""

    def __init__(self, binary: Path | None = None) -> None:
        self.binary = binary or jaeger_binary()
        self.dir = Path(tempfile.mkdtemp(prefix="cloudpilot-jaeger-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.query_url = self.otlp_url = ""

    def __enter__(self) -> JaegerServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if not os.access(self.binary, os.X_OK):
            raise FileNotFoundError(f"no Jaeger binary at {self.binary}: {BUILD_HINT}")
        for attempt in range(3):  # a free port can be taken by another process before Jaeger binds it
            try:
                return self._start_once()
            except RuntimeError:
                if attempt == 2:
                    raise

    def _start_once(self) -> None:
        stop_process(self.process)
        query_port, otlp_port = free_port(), free_port()
        config = self.dir / "jaeger.yaml"
        config.write_text(CONFIG.format(query_port=query_port, query_grpc_port=free_port(), otlp_port=otlp_port))
        self.query_url = f"http://127.0.0.1:{query_port}"
        self.otlp_url = f"http://127.0.0.1:{otlp_port}"
        log_path = self.dir / "jaeger.log"
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(self.binary), "--config", f"file:{config}"], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"jaeger exited: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.query_url}/api/services", timeout=1.0).status_code == 200 and self._otlp_up():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)  # polling interval while waiting on a deadline, not a fixed wait
        raise TimeoutError(f"jaeger not ready at {self.query_url} within {START_DEADLINE}s")

    def _otlp_up(self) -> bool:
        # An empty export request: the receiver answers 200 once it listens.
        response = httpx.post(
            f"{self.otlp_url}/v1/traces", content=b"{}", headers={"Content-Type": "application/json"}, timeout=1.0
        )
        return response.status_code == 200

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass(frozen=True)
class SpanSpec:
    """One span to send: `key` names it for `parent` (a key sent earlier in the same call); times in seconds."""

    key: str
    service: str
    operation: str
    start: float
    end: float
    parent: str | None = None
    error: bool = False


class _Checked(SpanExporter):
    """The OTLP exporter, remembering whether any export failed (the SDK only logs it)."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.failed = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        self.failed |= result is not SpanExportResult.SUCCESS
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()


def send_spans(otlp_url: str, specs: Sequence[SpanSpec]) -> dict[str, tuple[str, str]]:
    """Send spans over OTLP HTTP, one TracerProvider per service; {key: (trace id, span id)} in lowercase hex."""
    providers: dict[str, tuple[TracerProvider, _Checked]] = {}
    live: dict[str, trace.Span] = {}
    try:
        for spec in specs:
            if spec.service not in providers:
                exporter = _Checked(OTLPSpanExporter(endpoint=f"{otlp_url}/v1/traces", timeout=10))
                provider = TracerProvider(
                    resource=Resource.create({"service.name": spec.service}), shutdown_on_exit=False
                )
                provider.add_span_processor(SimpleSpanProcessor(exporter))
                providers[spec.service] = (provider, exporter)
            tracer = providers[spec.service][0].get_tracer("cloudpilot.tests")
            context = trace.set_span_in_context(live[spec.parent]) if spec.parent else None
            live[spec.key] = tracer.start_span(spec.operation, context=context, start_time=int(spec.start * 1e9))
        ids = {}
        for spec in specs:
            span = live[spec.key]
            if spec.error:
                span.set_status(Status(StatusCode.ERROR, "failed"))
            span.end(end_time=int(spec.end * 1e9))
            ctx = span.get_span_context()
            ids[spec.key] = (f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}")
        for provider, _ in providers.values():
            provider.force_flush()
        failed = [service for service, (_, exporter) in providers.items() if exporter.failed]
        if failed:
            raise RuntimeError(f"OTLP export to {otlp_url} failed for {failed}")
        return ids
    finally:
        for provider, _ in providers.values():
            provider.shutdown()
