"""A small Jaeger query API client: trace spans for root-cause analysis.

Synchronous (tools run it through `Runtime.call`). Errors are the catalogue's: `Unsupported` when no Jaeger
is configured, `Unreachable` when it does not answer (naming the URL), `InvalidInput` when the arguments
break a rule or Jaeger rejects the request. Every read is bounded: traces per service, spans in all, bytes
per response.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from connections.http import ApiClient
from engines.rca.formats import span_from_jaeger
from engines.rca.spans import Span
from errors import InvalidInput, Unreachable, Unsupported, quote
from settings import TracingSettings

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024 * 1024  # the largest response read; a larger one is re-asked with fewer traces
MAX_ERROR_BYTES = 64 * 1024  # of an error answer, the part read for its message
MAX_SERVICES = 500  # services queried in one call
MAX_NAME = 253


class _TooLarge(Exception):
    """A response body passed MAX_BODY_BYTES."""


def check_service(name: object) -> str:
    """A service name, or InvalidInput when it is not a plausible one."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        raise InvalidInput(f"{quote(name)} is not a service name: it must be a string of 1 to {MAX_NAME} characters.")
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name):
        raise InvalidInput(f"{quote(name)} is not a service name: it contains control characters.")
    return name


def _spans_of(trace: Any) -> list[Span]:
    """The spans of one trace in Jaeger's JSON; malformed spans are skipped."""
    if not isinstance(trace, dict):
        return []
    processes = trace.get("processes")
    found = (
        span_from_jaeger(raw, processes if isinstance(processes, dict) else {}) for raw in trace.get("spans") or []
    )
    return [span for span in found if span is not None]


class Jaeger(ApiClient):
    """The Jaeger query HTTP API at `settings.url`."""

    def __init__(self, settings: TracingSettings, transport: httpx.BaseTransport | None = None) -> None:
        if not settings.url:
            raise Unsupported(
                "No Jaeger is configured, so trace spans cannot be queried.",
                hint="Set CLOUDPILOT_TRACING__URL (e.g. http://jaeger-query.observability:16686) or tracing.url "
                "in the config file.",
            )
        super().__init__(settings, transport)
        self.settings = settings

    def _get(self, path: str, params: dict[str, str | int] | None = None) -> Any:
        """The `data` of Jaeger's JSON answer; `_TooLarge` when the body passes MAX_BODY_BYTES."""
        try:
            with self._client.stream("GET", path, params=params) as response:
                cap = MAX_BODY_BYTES if response.status_code < 400 else MAX_ERROR_BYTES
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > cap:
                        if response.status_code < 400:
                            raise _TooLarge
                        break  # an error's message is in its first bytes
                    chunks.append(chunk)
        except httpx.TimeoutException:
            raise Unreachable(
                f"Jaeger at {self.shown} did not answer in time.",
                hint="Narrow the window, ask for fewer traces, or raise tracing.timeout_seconds.",
                delay=5.0,
            ) from None
        except httpx.HTTPError as e:
            raise Unreachable(
                f"Jaeger at {self.shown} is unreachable: {type(e).__name__}: {e}.",
                hint="Check tracing.url and that the Jaeger query service is up.",
                delay=5.0,
            ) from None
        text = b"".join(chunks)
        try:
            body = orjson.loads(text)
        except orjson.JSONDecodeError:
            body = None
        errors = body.get("errors") if isinstance(body, dict) else None
        errors = [str(e.get("msg", e)) for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []
        message = quote("; ".join(errors) or text[:300].decode(errors="replace"), 300)
        if response.status_code in (400, 422):
            raise InvalidInput(f"Jaeger rejected the request: {message}", hint="Fix the arguments and try again.")
        if response.status_code >= 400:
            raise Unreachable(f"Jaeger at {self.shown} answered HTTP {response.status_code}: {message}", delay=5.0)
        if not isinstance(body, dict):
            raise Unreachable(f"Jaeger at {self.shown} answered something that is not its JSON API: {message}")
        return body.get("data")

    def services(self) -> list[str]:
        """The service names Jaeger has spans of."""
        try:
            data = self._get("/api/services")
        except _TooLarge:
            raise Unreachable(f"Jaeger at {self.shown} listed more than {MAX_BODY_BYTES} bytes of services.") from None
        return sorted({s for s in data if isinstance(s, str)}) if isinstance(data, list) else []

    def spans(
        self, services: Sequence[str] | None, start: float, end: float, limit: int | None = None
    ) -> tuple[list[Span], bool]:
        """The spans of traces in [start, end] (epoch seconds) that touch `services` (all when None).

        `limit` is the most traces read per service (at most tracing.max_traces). Returns the spans, one per
        (trace_id, span_id), and whether a cap was hit (traces per service, spans in all, response size).
        """
        if not (isinstance(start, int | float) and isinstance(end, int | float)):
            raise InvalidInput("The window's start and end must be numbers (epoch seconds).")
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end < 1e11):
            raise InvalidInput("The window must be finite epoch seconds with its end after its start.")
        cap = self.settings.max_traces
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise InvalidInput(f"limit must be a positive integer, not {quote(limit)}.")
            cap = min(cap, limit)
        truncated = False
        if services is None:
            names = [s for s in self.services() if s != "jaeger" and not s.startswith("jaeger-")]
        else:
            if isinstance(services, str) or not isinstance(services, Sequence):
                raise InvalidInput("services must be a list of service names.")
            if len(services) > MAX_SERVICES:
                raise InvalidInput(f"{len(services)} services is more than the {MAX_SERVICES} one call reads.")
            names = list(dict.fromkeys(check_service(s) for s in services))
        if len(names) > MAX_SERVICES:
            names, truncated = names[:MAX_SERVICES], True
        window = {"start": int(start * 1e6), "end": math.ceil(end * 1e6)}
        seen: set[tuple[str, str]] = set()
        out: list[Span] = []
        for name in names:
            traces, hit = self._traces(name, window, cap)
            truncated |= hit
            for trace in traces:
                for span in _spans_of(trace):
                    key = (span.trace_id, span.span_id)
                    if key in seen:
                        continue
                    if len(out) >= self.settings.max_spans:
                        return out, True
                    seen.add(key)
                    out.append(span)
        return out, truncated

    def _traces(self, service: str, window: dict[str, int], limit: int) -> tuple[list[Any], bool]:
        """One service's traces, and whether a cap was hit; re-asks for fewer when the answer is too large."""
        fewer = False
        while True:
            try:
                data = self._get("/api/traces", {"service": service, **window, "limit": limit})
            except _TooLarge:
                pass
            else:
                traces = data if isinstance(data, list) else []
                return traces[:limit], fewer or len(traces) >= limit
            logger.warning("Jaeger's traces of %r exceed %d bytes at limit %d", service, MAX_BODY_BYTES, limit)
            if limit == 1:
                return [], True
            limit, fewer = limit // 2, True
