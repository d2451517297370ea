"""What the server wraps to measure itself: tool calls (count, latency, error type) and the runtime's cache.

The guarded pipeline (guard/pipeline.py) turns every failure into an answer, so the error's type is caught on
the way out of the tool function itself (`metered`) and read back by `ToolCall` once the pipeline answers.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from ops.metrics import Metrics, error_type
from runtime import Principal, TTLCache
from tools.catalogue import ToolSpec

T = TypeVar("T")


@dataclass
class _Attempt:
    ran: bool = False
    error: str | None = None


_attempt: ContextVar[_Attempt | None] = ContextVar("cloudpilot_metered_attempt", default=None)


def metered(spec: ToolSpec) -> ToolSpec:
    """`spec` whose function notes, for the call in progress, that it ran and what it raised (re-raised as is).
    Signature, name, docstring and module stay the function's own (`functools.wraps`)."""
    fn = spec.fn

    @functools.wraps(fn)
    async def run(*args: Any, **kwargs: Any) -> Any:
        attempt = _attempt.get()
        if attempt is not None:
            attempt.ran = True
        try:
            return await fn(*args, **kwargs)
        except BaseException as e:
            if attempt is not None and isinstance(e, Exception):
                attempt.error = error_type(e)
            raise

    return replace(spec, fn=run)


class ToolCall:
    """Measures one tool call around the pipeline: `with ToolCall(...) as call: answer = …; call.done(answer)`."""

    def __init__(self, metrics: Metrics, tool: str, specs: dict[str, ToolSpec], principal: Principal) -> None:
        self.metrics = metrics
        self.tool = tool if tool in specs else "unknown"  # a label never takes a caller's made-up name
        self.spec = specs.get(tool)
        self.principal = principal
        self.attempt = _Attempt()
        self.answered = False

    @contextmanager
    def measure(self) -> Iterator[ToolCall]:
        token = _attempt.set(self.attempt)
        self.metrics.tools_in_flight.inc()
        started = time.perf_counter()
        try:
            yield self
        finally:
            self.metrics.tools_in_flight.dec()
            self.metrics.tool_seconds.labels(tool=self.tool).observe(time.perf_counter() - started)
            if not self.answered:  # cancelled: the client went away, or the server stopped
                self.metrics.tool_calls.labels(tool=self.tool, outcome="cancelled").inc()
            _attempt.reset(token)

    def done(self, is_error: bool) -> None:
        self.answered = True
        self.metrics.tool_calls.labels(tool=self.tool, outcome="error" if is_error else "ok").inc()
        if is_error:
            self.metrics.tool_errors.labels(tool=self.tool, error_type=self._error_type()).inc()

    def _error_type(self) -> str:
        if self.attempt.error is not None:
            return self.attempt.error
        if self.attempt.ran:  # the tool returned, then shaping its answer failed
            return "internal"
        # refused before the tool ran: unknown tool, scope, or arguments (guard/pipeline.py's order)
        if self.spec is None:
            return "invalid_input"
        if not self.principal.allows(self.spec):
            return "not_allowed"
        return "invalid_input"


class MeteredCache(TTLCache):
    """The runtime's TTLCache, counting hits and misses by kind of entry (the key's second element: "pods",
    "overview", …; keys are (cluster, kind, …) tuples)."""

    def __init__(self, metrics: Metrics, kept: TTLCache | None = None) -> None:
        super().__init__()
        self.metrics = metrics
        if kept is not None:  # take over what is cached already
            self._data = kept._data
            self._locks = kept._locks

    async def get(
        self,
        key: Any,
        ttl: float,
        load: Callable[[], Awaitable[T]],
        refresh: bool = False,
        keep: Callable[[T], bool] | None = None,
    ) -> tuple[T, float]:
        loaded = False

        async def counted() -> T:
            nonlocal loaded
            loaded = True
            return await load()

        try:
            return await super().get(key, ttl, counted, refresh, keep)
        finally:
            if not refresh:  # a forced reload is asked for, not a miss
                self.metrics.cache_lookups.labels(cache=_kind(key), result="miss" if loaded else "hit").inc()


def _kind(key: Any) -> str:
    if isinstance(key, tuple) and len(key) > 1 and isinstance(key[1], str) and len(key[1]) <= 40:
        return key[1]
    return "other"
