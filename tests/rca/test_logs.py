"""The log engine on synthetic lines: drain3 templates, normal baselines and per-service scores."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterator

from engines.rca.logs import (
    EXAMPLE_CHARS,
    LogBaseline,
    LogEvidence,
    LogLine,
    Templates,
    is_error,
    score_services,
)

USUAL = {
    "ts-order-service": "INFO o.s.OrderServiceImpl TraceID: {tid} [getOrder][Get Order][Success][OrderId: {uuid}]",
    "ts-route-service": "INFO r.s.RouteServiceImpl TraceID: {tid} [getRouteById][Find route][Route id: {uuid}]",
    "ts-price-service": "INFO p.s.PriceServiceImpl TraceID: {tid} [findByRouteId][Price config found][{n} items]",
}


def tid(i: int) -> str:
    return f"{i * 7919:032x}"


def uuid(i: int) -> str:
    return f"{i:08x}-1a2b-4c3d-8e9f-{i * 31:012x}"


def usual(service: str, i: int, start: float = 0.0) -> LogLine:
    text = USUAL[service].format(tid=tid(i), uuid=uuid(i), n=i % 17)
    return LogLine(start + i * 0.1, service, text, tid(i))


def traffic(start: float, count: int, weights: dict[str, int], skip: str = "") -> Iterator[LogLine]:
    """`count` rounds; in each, a service writes its usual line `weights[service]` times."""
    for i in range(count):
        for service, times in weights.items():
            if service != skip:
                for j in range(times):
                    yield usual(service, i * 100 + j, start)


NORMAL = {"ts-order-service": 20, "ts-route-service": 1, "ts-price-service": 1}


def run(window: list[LogLine]) -> tuple[list[LogEvidence], Templates]:
    templates = Templates()
    baseline = LogBaseline.from_lines(traffic(0.0, 100, NORMAL), templates)
    return score_services(baseline, window, templates), templates


def by_service(evidence: list[LogEvidence]) -> dict[str, LogEvidence]:
    return {e.service: e for e in evidence}


def exception(service: str, i: int) -> LogLine:
    text = (
        f"ERROR r.s.RouteServiceImpl TraceID: {tid(i)} [getRouteById][Route query failed] NullPointerException at {i}"
    )
    return LogLine(1000.0 + i, service, text, tid(i))


def test_lines_differing_only_in_ids_and_numbers_share_a_template() -> None:
    templates = Templates()
    first = templates.add(
        LogLine(0, "a", "INFO user 4711 from 10.0.0.12 took 35 ms trace 9f86d081884c7d659a2feaa0c55ad015")
    )
    assert templates.template(first) == "INFO user <NUM> from <IP> took <NUM> ms trace <HEX>"  # masked before mining
    second = templates.add(
        LogLine(1, "a", "INFO user 12 from 192.168.1.7 took 1200 ms trace 3c59dc048e8850243be8079a5c74d079")
    )
    other = templates.add(LogLine(2, "a", "ERROR connection refused by database primary"))
    assert first == second
    assert other != first


def test_uuids_and_trace_ids_are_masked_before_mining() -> None:
    templates = Templates()
    ids = {templates.add(usual("ts-order-service", i)) for i in range(50)}
    assert len(ids) == 1
    assert uuid(3) not in templates.template(ids.pop())


def test_a_service_with_a_new_error_template_ranks_first() -> None:
    window = list(traffic(1000.0, 50, NORMAL)) + [exception("ts-route-service", i) for i in range(5)]
    evidence, _ = run(window)
    assert evidence[0].service == "ts-route-service"
    assert evidence[0].new_templates >= 1
    assert evidence[0].error_lines == 5
    assert "Route query failed" in evidence[0].template


def test_a_chatty_healthy_service_does_not_outrank_a_quiet_one_with_new_exceptions() -> None:
    chatty = dict(NORMAL, **{"ts-order-service": 40})  # twice its normal volume, all of it usual lines
    window = list(traffic(1000.0, 50, chatty)) + [exception("ts-price-service", i) for i in range(3)]
    scores = by_service(run(window)[0])
    assert scores["ts-price-service"].score > scores["ts-order-service"].score
    assert run(window)[0][0].service == "ts-price-service"


def test_a_service_whose_usual_line_disappears_scores() -> None:
    window = list(traffic(1000.0, 100, NORMAL, skip="ts-route-service"))
    evidence, _ = run(window)
    route = by_service(evidence)["ts-route-service"]
    assert evidence[0].service == "ts-route-service"
    assert route.score > 0.5
    assert route.observed_rate == 0 and route.baseline_rate > 0
    assert "fell" in route.note


def test_an_unchanged_window_scores_low() -> None:
    evidence, _ = run(list(traffic(1000.0, 30, NORMAL)))  # a third of the normal volume, the same mix
    assert max(e.score for e in evidence) < 0.3


def test_a_service_the_normal_period_never_saw_does_not_outrank_a_new_error() -> None:
    unknown = [
        LogLine(1000.0 + i, "ts-cancel-service", f"INFO c.s.CancelServiceImpl step {w} of cancel flow {i}")
        for i in range(30)
        for w in ("calculate", "refund", "notify", "drawback", "finish")
    ]
    window = list(traffic(1000.0, 50, NORMAL)) + unknown + [exception("ts-route-service", i) for i in range(3)]
    evidence, _ = run(window)
    assert evidence[0].service == "ts-route-service"
    assert by_service(evidence)["ts-cancel-service"].score < 0.3


def test_services_seen_in_either_period_are_all_ranked() -> None:
    window = [*traffic(1000.0, 20, NORMAL, skip="ts-price-service"), exception("ts-new-service", 1)]
    names = {e.service for e in run(window)[0]}
    assert names == {"ts-order-service", "ts-route-service", "ts-price-service", "ts-new-service"}
    assert all(0.0 <= e.score < 1.0 for e in run(window)[0])


def test_evidence_is_clipped_and_masked() -> None:
    secret = "password=hunter2-DO-NOT-LEAK key AKIAIOSFODNN7EXAMPLE"
    bearer = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2VjcmV0LXNpZ25hdHVyZQ"
    lines = [
        LogLine(
            1000.0 + i, "ts-auth-service", f"ERROR login failed {secret} Authorization: Bearer {bearer} " + "x" * 900
        )
        for i in range(5)
    ]
    evidence, _ = run(list(traffic(1000.0, 20, NORMAL)) + lines)
    auth = by_service(evidence)["ts-auth-service"]
    for text in (auth.example, auth.template, auth.note):
        assert "hunter2" not in text and "DO-NOT-LEAK" not in text
        assert bearer not in text and bearer[:20] not in text and "AKIAIOSFODNN7EXAMPLE" not in text
    assert auth.example and len(auth.example) <= EXAMPLE_CHARS
    assert len(auth.template) <= EXAMPLE_CHARS


def test_the_number_of_templates_is_bounded() -> None:
    templates = Templates(max_clusters=50)
    words = ["alpha", "beta", "gamma", "delta", "omega", "kappa", "sigma", "theta"]
    for i in range(3000):
        text = f"{words[i % 8]}{i} {words[(i // 8) % 8]}x{i} event{i} happened q{i} z{i}"
        templates.add(LogLine(i, f"svc-{i % 7}", text))
    assert len(templates) <= 50


def test_memory_stays_bounded_on_a_long_stream() -> None:
    """Every line a template of its own: the miner and the per-service counts stop growing at their caps."""

    def peak(count: int) -> int:
        templates = Templates(max_clusters=50)
        baseline = LogBaseline.from_lines(traffic(0.0, 5, NORMAL), templates)
        stream = (LogLine(1000.0 + i, "svc", f"INFO step{i} tok{i} unique{i} v{i} done") for i in range(count))
        tracemalloc.start()
        try:
            score_services(baseline, stream, templates)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    assert peak(6_000) < 1.5 * peak(600)  # ten times the lines, about the same memory


def test_hostile_input_does_not_raise() -> None:
    huge = "A" * 1_000_000
    words = " ".join(f"w{i}:{i}.5 0x{i:x}" for i in range(100_000))  # 1.9 MB of tokens the masks all touch
    junk = bytes(range(256)).decode("latin-1") * 100
    lines = [
        LogLine(1000.0, "ts-order-service", huge),
        LogLine(1001.0, "ts-order-service", junk),
        LogLine(1002.0, "ts-order-service", ""),
        LogLine(1003.0, "", "   \n\t "),
        LogLine(float("nan"), "ts-route-service", "\x00\x01\x02 ERROR \ud800"),
        LogLine(float("inf"), "x" * 10_000, "ERROR " + "[" * 50_000),
    ]
    lines += [LogLine(1004.0 + i, "ts-order-service", f"{i} {words}") for i in range(20)]
    started = time.perf_counter()
    evidence, _ = run(lines)
    assert time.perf_counter() - started < 10  # long lines are clipped before masking and mining
    assert evidence
    for e in evidence:
        assert len(e.example) <= EXAMPLE_CHARS and len(e.template) <= EXAMPLE_CHARS
    assert score_services(LogBaseline.from_lines([], Templates()), [], Templates()) == []


def test_error_lines_are_recognised() -> None:
    assert is_error("12:00:01.002 ERROR c.s.ContactsServiceImpl#47 no contacts")
    assert is_error("\tat com.example.Foo.bar(Foo.java:42)")
    assert is_error("Caused by: java.lang.IllegalStateException: boom")
    assert not is_error("12:00:01.002 INFO c.s.ContactsServiceImpl#47 [findContacts][Success]")


def test_a_new_error_template_outweighs_a_new_ordinary_one_of_the_same_size() -> None:
    info = [
        LogLine(1000.0 + i, "ts-price-service", f"INFO p.s.PriceServiceImpl cache warmed for {i}") for i in range(4)
    ]
    window = list(traffic(1000.0, 50, NORMAL)) + info + [exception("ts-route-service", i) for i in range(4)]
    scores = by_service(run(window)[0])
    assert scores["ts-route-service"].score > scores["ts-price-service"].score
