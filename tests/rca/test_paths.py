"""Code paths cut short and echoed errors (engines/rca/paths.py), and how they join the log modality
(engines/rca/multimodal.py), on synthetic calls."""

from __future__ import annotations

import pytest

from engines.rca import paths
from engines.rca.logs import LogBaseline, LogLine, Period, Templates, moves, score_services
from engines.rca.multimodal import LogNormal, log_evidence, score_logs
from engines.rca.spans import Span

# Each request: front handles it and calls orders; orders logs three statements per call, then answers.
ORDERS = (
    "INFO o.s.OrderServiceImpl#41 [getOrder][start][orderId: {i}]",
    "INFO o.s.OrderServiceImpl#57 [getOrder][found][Order(id={i}, items=[{items}])]",
    "INFO o.c.OrderController#88 [getOrder][done]",
)
FRONT = "INFO f.c.FrontController#12 [checkout][asked orders][{i}]"


def request(i: int, t: float, cut: bool = False, caller_error: bool = False) -> tuple[list[LogLine], list[Span]]:
    """One request's lines and spans; `cut`: orders throws between its first and second statement (its last
    lines are missing); `caller_error`: front logs the failure as an error of its own."""
    trace = f"{i:032x}"
    front, orders = f"f{i:015x}", f"o{i:015x}"
    items = ", ".join(str(n) for n in range(i % 4))  # values (and so the line's shape) vary call to call
    lines = [LogLine(t, "front", FRONT.format(i=i), trace, front)]
    written = ORDERS[:1] if cut else ORDERS
    lines += [
        LogLine(t + 0.001 * k, "orders", text.format(i=i, items=items), trace, orders) for k, text in enumerate(written)
    ]
    if caller_error:
        failure = f"ERROR f.c.FrontController#19 checkout failed: upstream answered 500 {i}"
        lines.append(LogLine(t + 0.01, "front", failure, trace, front))
    spans = [
        Span(trace, front, None, "front", "POST /checkout", t, t + 0.02),
        Span(trace, orders, front, "orders", "GET /orders/{id}", t + 0.001, t + 0.01, error=False),
    ]
    return lines, spans


def traffic(start: int, count: int, **kwargs: bool) -> tuple[list[LogLine], list[Span]]:
    lines, spans = [], []
    for i in range(start, start + count):
        got_lines, got_spans = request(i, float(i), **kwargs)
        lines += got_lines
        spans += got_spans
    return lines, spans


def test_a_statement_is_the_source_location_in_the_line() -> None:
    assert paths.statement("16:42:22 INFO t.s.TravelServiceImpl#532 TraceID: x [route]") == "t.s.TravelServiceImpl#532"
    assert paths.statement("2024-01-01 views.py:88 GET /") == "views.py:88"
    assert paths.statement("E0101 12:00:00 main.go:42] failed") == "main.go:42"
    assert paths.statement("connected to db.example.com:5432") is None  # a host and port is not a location
    assert paths.statement("plain words") is None


def test_rules_are_learned_from_calls() -> None:
    lines, _ = traffic(0, 50)
    rules = paths.PathRules.learn(lines).rules()
    orders = {(r.after, r.expected) for r in rules["orders"]}
    assert ("o.s.OrderServiceImpl#41", "o.s.OrderServiceImpl#57") in orders
    assert ("o.s.OrderServiceImpl#57", "o.c.OrderController#88") in orders
    assert rules["front"] == []  # one statement per call: nothing follows from it


def test_a_service_whose_calls_stop_halfway_ranks_first() -> None:
    normal, _ = traffic(0, 100)
    healthy, _ = traffic(1000, 40)
    cut, _ = traffic(2000, 20, cut=True)
    found = paths.score(paths.PathRules.learn(normal), paths.window_calls(healthy + cut))
    assert found["orders"].broken == 20 and found["orders"].calls == 60
    assert found["orders"].size > 2.0 > found["front"].size
    assert "20 of 60 calls that logged at o.s.OrderServiceImpl#41 did not log at" in found["orders"].note
    assert "code path cut short" in found["orders"].note


def test_values_that_change_the_line_do_not_break_a_path() -> None:
    normal, _ = traffic(0, 100)
    grown = [
        LogLine(x.time, x.service, x.text.replace("items=[", "items=[9, 9, 9, 9, 9, 9, "), x.trace_id, x.span_id)
        for x in traffic(1000, 60)[0]
    ]  # a list that grew: a new drain3 template, the same statement
    found = paths.score(paths.PathRules.learn(normal), paths.window_calls(grown))
    assert max(f.size for f in found.values()) < 0.5


def test_lines_without_a_trace_or_a_location_take_no_part() -> None:
    lines = [
        LogLine(1.0, "a", "INFO A#1 start", ""),  # no trace
        LogLine(1.0, "a", "INFO no location here", "t1", "s1"),
        LogLine(1.0, "a", "ERROR A#9 failed", "t1", "s1"),  # errors are the template scoring's
    ]
    assert paths.window_calls(lines) == {}
    assert paths.PathRules.learn(lines).rules() == {}


def test_error_lines_that_echo_a_failure_below_are_left_out() -> None:
    lines, spans = traffic(0, 10, cut=True, caller_error=True)
    normal, _ = traffic(100, 100)
    rules = paths.PathRules.learn(normal)
    broken = paths.broken_calls(rules, paths.window_calls(lines))
    assert {service for service, _, _ in broken} == {"orders"}
    kept, echoes = paths.echo_lines(lines, spans, broken)
    assert echoes == {"front": 10}
    assert not any("ERROR" in line.text for line in kept)
    # the same error with nothing failing below it stays
    healthy, healthy_spans = traffic(200, 10, caller_error=True)
    kept, echoes = paths.echo_lines(healthy, healthy_spans, paths.broken_calls(rules, paths.window_calls(healthy)))
    assert not echoes and len(kept) == len(healthy)


def test_error_lines_naming_another_service_are_left_out() -> None:
    lines = [
        LogLine(1.0, "ts-travel-service", "ERROR No instances available for ts-basic-service"),
        LogLine(2.0, "ts-travel-service", "ERROR connection refused: payments:8080"),
        LogLine(3.0, "ts-travel-service", "ERROR ts-travel-service could not parse the route"),  # its own name
        LogLine(4.0, "ts-travel-service", "ERROR ts-basic-service-v2 is not a service we know"),
        LogLine(5.0, "ts-travel-service", "INFO asked ts-basic-service for a route"),  # not an error
        LogLine(6.0, "ts-travel-service", "ERROR the db timed out"),  # names shorter than 3 are not looked for
    ]
    services = {"ts-travel-service", "ts-basic-service", "payments", "db", "(other)"}
    kept, echoes = paths.echo_lines(lines, [], set(), services)
    assert [line.time for line in kept] == [3.0, 4.0, 5.0, 6.0]
    assert echoes == {"ts-travel-service": 2}
    assert paths.echo_lines(lines, [], set())[0] == lines  # no services known: nothing is an echo by name


def test_a_failing_callee_outranks_the_caller_that_logs_its_failure() -> None:
    normal_lines, _ = traffic(0, 200)
    window_lines, window_spans = traffic(1000, 30, cut=True, caller_error=True)
    # without the join, the caller's new error template outranks the callee whose lines merely stopped
    templates = Templates()
    alone = score_services(LogBaseline.from_lines(normal_lines, templates), window_lines, templates)
    assert alone[0].service == "front"
    joined = score_logs(LogNormal.learn(normal_lines), window_lines, window_spans)
    assert joined[0].service == "orders" and "code path cut short" in joined[0].note
    front = next(e for e in joined if e.service == "front")
    assert front.size < joined[0].size and "30 error line(s) left out as echoes" in front.note


def test_log_evidence_splits_at_the_anomaly_time_and_uses_the_spans() -> None:
    before, before_spans = traffic(0, 200)
    after, after_spans = traffic(1000, 30, cut=True, caller_error=True)
    evidence, note = log_evidence(before + after, 1000.0, before_spans + after_spans)
    assert evidence[0].service == "orders" and "400" not in note
    assert note == f"logs: {len(before)} lines before the anomaly time against {len(after)} after"


def test_an_error_template_that_stopped_is_not_a_symptom() -> None:
    normal = [LogLine(float(i), "a", f"ERROR a.Retry#3 upstream timed out after {i} ms") for i in range(50)]
    normal += [LogLine(float(i), "a", f"INFO a.Handler#7 served request {i}") for i in range(50)]
    templates = Templates()
    baseline = LogBaseline.from_lines(normal, templates)
    window = Period(templates)
    for i in range(100):
        window.add(LogLine(1000.0 + i, "a", f"INFO a.Handler#7 served request {i}"))
    found = moves(baseline.services["a"], window.services["a"], window.lines / baseline.lines)
    stopped = next(m for m in found if m.observed == 0)
    assert stopped.expected == 50 and stopped.size == 0.0
    # an ordinary line that stopped still counts
    window = Period(templates)
    for i in range(100):
        window.add(LogLine(1000.0 + i, "a", f"ERROR a.Retry#3 upstream timed out after {i} ms"))
    found = moves(baseline.services["a"], window.services["a"], window.lines / baseline.lines)
    assert next(m for m in found if m.observed == 0).size > 3


def test_open_calls_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths, "MAX_OPEN_CALLS", 50)
    rules = paths.PathRules()
    lines, _ = traffic(0, 500)
    for line in lines:
        rules.add(line)
        assert len(rules.open) <= 50
    # calls are folded as they leave: the rules are those of the whole stream
    assert ("o.s.OrderServiceImpl#41", "o.s.OrderServiceImpl#57") in {
        (r.after, r.expected) for r in rules.rules()["orders"]
    }


def test_hostile_calls_stay_bounded() -> None:
    # one service, calls of 200 distinct statements each: pairs are capped, and so is the work per call
    lines = [
        LogLine(float(c), "x", f"INFO X#{(c * 37 + k) % 5000} step", f"{c:032x}", "s")
        for c in range(400)
        for k in range(200)
    ]
    rules = paths.PathRules.learn(lines)
    found = paths.score(rules, paths.window_calls(lines))
    assert rules.pairs <= paths.MAX_PAIRS
    assert all(len(events) <= paths.MAX_CALL_STATEMENTS for events in paths.window_calls(lines).values())
    assert "x" in found
    cyclic = [Span("t", "a", "b", "x", "op", 0, 1), Span("t", "b", "a", "y", "op", 0, 1)]
    kept, _ = paths.echo_lines([LogLine(0.0, "x", "ERROR X#1 boom", "t", "a")], cyclic, {("y", "t", "b")})
    assert len(kept) <= 1
