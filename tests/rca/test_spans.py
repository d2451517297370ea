"""Trace-span root-cause ranking (engines/rca/spans.py) on synthetic spans only."""

from __future__ import annotations

import math
import random
import time

import pytest

from engines.rca import spans as spans_module
from engines.rca.spans import Span, SpanBaseline, call_graph, own_times, score_services

MS = 1e-3


def _span(trace: str, span: str, parent: str | None, service: str, start: float, end: float, op: str = "op") -> Span:
    return Span(trace, span, parent, service, op, start, end)


def test_own_time_subtracts_the_union_of_children_clipped_to_the_parent() -> None:
    spans = [
        _span("t", "p", None, "a", 0.0, 10.0),
        _span("t", "c1", "p", "b", 1.0, 4.0),
        _span("t", "c2", "p", "b", 3.0, 6.0),  # overlaps c1: union 1..6
        _span("t", "c3", "p", "c", 8.0, 12.0),  # runs past the parent: counts 8..10
        _span("t", "g", "c1", "b", 2.0, 3.0),  # nested in c1 only
        _span("u", "c9", "p", "d", 0.0, 10.0),  # another trace: not p's child
    ]
    own = own_times(spans)
    assert own == pytest.approx([3.0, 2.0, 3.0, 4.0, 1.0, 10.0])


def test_own_time_is_never_negative() -> None:
    spans = [
        _span("t", "p", None, "a", 0.0, 1.0),
        _span("t", "c", "p", "b", -5.0, 5.0),
        _span("t", "x", None, "a", 2, 1),
    ]
    assert own_times(spans) == [0.0, 10.0, 0.0]


def test_call_graph_has_cross_service_edges_only() -> None:
    spans = [
        _span("t", "1", None, "front", 0, 1),
        _span("t", "2", "1", "front", 0, 1),
        _span("t", "3", "2", "cart", 0, 1),
        _span("t", "4", "3", "db", 0, 1),
        _span("t", "5", "missing", "ghost", 0, 1),
    ]
    assert call_graph(spans) == {("front", "cart"), ("cart", "db")}


# A five-service system: front -> orders -> payment -> bank, and front -> catalogue. Each span's own time is
# about 2 ms; a call's duration is its own time plus its callee's duration.
CALLS = {"front": ["orders", "catalogue"], "orders": ["payment"], "payment": ["bank"], "catalogue": [], "bank": []}


def _trace(trace: str, rng: random.Random, extra_own: dict[str, float]) -> list[Span]:
    out: list[Span] = []

    def visit(service: str, parent: str | None, start: float) -> float:
        span_id = f"{trace}-{service}"
        own = (2.0 + rng.random()) * MS + extra_own.get(service, 0.0)
        cursor = start + own / 2
        for callee in CALLS[service]:
            cursor = visit(callee, span_id, cursor)
        end = cursor + own / 2
        out.append(Span(trace, span_id, parent, service, f"GET /{service}", start, end))
        return end

    visit("front", None, rng.random() * 60)
    return out


def _system(n: int, seed: int, extra_own: dict[str, float] | None = None) -> list[Span]:
    rng = random.Random(seed)
    return [s for i in range(n) for s in _trace(f"{seed}-{i}", rng, extra_own or {})]


def test_the_service_whose_own_time_jumped_ranks_first_and_its_callers_do_not() -> None:
    baseline = SpanBaseline.from_spans(_system(300, seed=1))
    window = _system(100, seed=2, extra_own={"payment": 0.2})  # payment's own time +200 ms
    durations = {s.service: s.end - s.start for s in window if s.trace_id == window[0].trace_id}
    assert durations["front"] > 0.2 and durations["orders"] > 0.2  # callers' total time rose too
    ranked = score_services(baseline, window)
    assert ranked[0].service == "payment"
    assert ranked[0].size > 3.5  # ~2.5 ms -> ~200 ms: log(201.5 / 3.5) nats
    assert ranked[0].score == pytest.approx(1 - math.exp(-ranked[0].size / 2), abs=1e-5)
    assert ranked[0].slow_share == pytest.approx(1.0)
    assert ranked[0].observed_ms > 50 * ranked[0].baseline_ms / 3
    assert "payment" in ranked[0].note and ranked[0].example_trace
    scores = {e.service: e.score for e in ranked}
    assert scores["front"] < 0.2 and scores["orders"] < 0.2
    assert {e.service for e in ranked} == set(CALLS)
    assert all(0 <= e.score < 1 for e in ranked)


def test_a_caller_with_unchanged_own_time_is_not_blamed_for_a_slow_callee() -> None:
    baseline = SpanBaseline.from_spans(_system(300, seed=3))
    window = _system(100, seed=4, extra_own={"bank": 0.5})
    scores = {e.service: e.score for e in score_services(baseline, window, graph_use="none")}
    assert max(scores, key=lambda s: scores[s]) == "bank"
    for caller in ("front", "orders", "payment"):
        assert scores[caller] < 0.2, (caller, scores)


def test_a_normal_window_scores_low_everywhere() -> None:
    baseline = SpanBaseline.from_spans(_system(300, seed=5))
    ranked = score_services(baseline, _system(100, seed=6))
    assert max(e.score for e in ranked) < 0.3


def test_missing_downstream_calls_are_seen() -> None:
    baseline = SpanBaseline.from_spans(_system(300, seed=7))
    window = [s for s in _system(100, seed=8) if s.service not in ("payment", "bank")]  # orders stops calling
    ranked = score_services(baseline, window)
    assert ranked[0].service == "orders" and ranked[0].signal == "shape"


def test_a_small_drift_on_many_calls_does_not_outrank_a_large_slowdown() -> None:
    baseline = SpanBaseline.from_spans(_system(300, seed=11))
    window = _system(1000, seed=12, extra_own={"front": 0.0003, "bank": 0.05})  # +0.3 ms on 1,000 requests
    ranked = score_services(baseline, window)
    assert ranked[0].service == "bank", [(e.service, e.size) for e in ranked]
    assert next(e for e in ranked if e.service == "front").size < 0.5 < ranked[0].size


def test_a_caller_whose_own_time_moved_is_not_discounted_by_the_graph() -> None:
    baseline = SpanBaseline.from_spans(_system(300, seed=9))
    window = _system(100, seed=10, extra_own={"orders": 0.2, "payment": 0.001})
    for graph_use in ("tiebreak", "none"):
        assert score_services(baseline, window, graph_use=graph_use)[0].service == "orders"


def test_operations_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spans_module, "MAX_OPERATIONS", 50)
    monkeypatch.setattr(spans_module, "RESERVOIR", 16)
    spans = [_span(f"t{i}", "s", None, "svc", 0, 1, op=f"GET /item/{i}") for i in range(1_000)]
    spans += [_span(f"u{i}", "s", None, "svc", 0, 1, op="GET /item/0") for i in range(1_000)]
    baseline = SpanBaseline.from_spans(spans)
    assert len(baseline.ops) == 50
    assert baseline.dropped == 950
    assert all(len(stats.own) <= 16 for stats in baseline.ops.values())
    assert baseline.ops[("svc", "GET /item/0")].count == 1_001
    assert len(score_services(baseline, spans)) == 1


def test_hostile_input_does_not_raise() -> None:
    hostile = [
        _span("t", "a", "b", "x", 5.0, 1.0),  # negative duration, and a cycle a <-> b
        _span("t", "b", "a", "y", 0.0, float("nan")),
        _span("t", "c", "c", "z", 0.0, 1.0),  # its own parent
        _span("t", "d", "nowhere", "z", float("inf"), 1.0),
        _span("t", "a", None, "x", 0.0, 1.0),  # duplicate id
        _span("", "", "", "", 0.0, 0.0),
    ]
    assert all(o >= 0 for o in own_times(hostile))
    baseline = SpanBaseline.from_spans(hostile)
    ranked = score_services(baseline, hostile)
    assert {e.service for e in ranked} == {"x", "y", "z", ""}
    assert score_services(SpanBaseline(), hostile)  # an empty baseline
    assert score_services(baseline, []) is not None


def test_a_million_spans_of_one_operation_is_quick() -> None:
    began = time.perf_counter()
    spans = (Span(f"t{i}", "s", None, "svc", "GET /", i * MS, i * MS + 0.002) for i in range(1_000_000))
    baseline = SpanBaseline.from_spans(spans)
    assert baseline.total == 1_000_000
    window = [Span(f"w{i}", "s", None, "svc", "GET /", 0.0, 0.5) for i in range(1_000)]
    assert score_services(baseline, window)[0].slow_share == 1.0
    assert time.perf_counter() - began < 60


def _client_server(n: int, seed: int, queued: dict[str, float]) -> list[Span]:
    """front's server span makes two exit calls (client spans in front), each around the callee's server span;
    `queued[callee]` is how long a request waits in the callee before its server span starts (a starved CPU)."""
    rng = random.Random(seed)
    out: list[Span] = []
    for i in range(n):
        trace, start = f"{seed}-{i}", rng.random() * 60
        cursor = start + 1 * MS
        for callee in ("orders", "catalogue"):
            wait = (0.5 + rng.random()) * MS + queued.get(callee, 0.0)
            work = (2.0 + rng.random()) * MS
            out.append(
                Span(trace, f"{trace}-c-{callee}", f"{trace}-f", "front", "HTTP GET", cursor, cursor + wait + work)
            )
            out.append(
                Span(
                    trace,
                    f"{trace}-s-{callee}",
                    f"{trace}-c-{callee}",
                    callee,
                    "GET /",
                    cursor + wait,
                    cursor + wait + work,
                )
            )
            cursor += wait + work
        out.append(Span(trace, f"{trace}-f", None, "front", "GET /front", start, cursor + 1 * MS))
    return out


def test_a_callee_that_answers_late_is_blamed_though_its_own_spans_did_not_slow() -> None:
    baseline = SpanBaseline.from_spans(_client_server(300, seed=13, queued={}))
    window = _client_server(100, seed=14, queued={"orders": 0.08})
    ranked = score_services(baseline, window, graph_use="none")
    assert ranked[0].service == "orders" and ranked[0].signal == "waiting", [(e.service, e.signal) for e in ranked]
    assert "answers front HTTP GET late" in ranked[0].note
    scores = {e.service: e.score for e in ranked}
    assert scores["catalogue"] < 0.2


def test_a_caller_whose_every_exit_call_slowed_keeps_the_blame() -> None:
    baseline = SpanBaseline.from_spans(_client_server(300, seed=15, queued={}))
    window = _client_server(100, seed=16, queued={"orders": 0.08, "catalogue": 0.08})  # front reads answers late
    scores = {e.service: e.score for e in score_services(baseline, window, graph_use="none")}
    assert scores["front"] > 0.5
    assert scores["orders"] < 0.2 and scores["catalogue"] < 0.2
