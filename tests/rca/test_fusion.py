"""One ranking from several modalities: traces and logs count by the larger of their effect sizes (a modality
with nothing to say cannot drown the one that saw the fault); metrics add their score; metrics alone keep the
metrics ranking."""

from __future__ import annotations

from engines.rca.fusion import MAX_SIZE, METRICS_WEIGHT, fuse
from engines.rca.multimodal import rank
from engines.rca.spans import SpanEvidence


def test_the_modality_that_saw_the_fault_decides_and_the_quiet_one_cannot_drown_it() -> None:
    logs = {f"s{i}": 0.3 for i in range(10)} | {"s7": 4.0}  # an exception: one service's logs moved a lot
    traces = {f"s{i}": 0.2 + 0.1 * (i % 4) for i in range(10)}  # spans unchanged: noise only
    ranked = fuse({"traces": traces, "logs": logs})
    assert ranked[0].service == "s7" and ranked[0].score == 4.0
    assert ranked[0].by_modality == {"traces": traces["s7"], "logs": 4.0}


def test_metrics_order_services_the_other_modalities_leave_close() -> None:
    ranked = fuse({"metrics": {"a": 0.2, "b": 0.9}, "logs": {"a": 1.0, "b": 0.9}})
    assert [f.service for f in ranked] == ["b", "a"]
    assert ranked[0].score == 0.9 + METRICS_WEIGHT * 0.9


def test_metrics_alone_keep_the_metrics_ranking_and_ties_keep_its_order() -> None:
    metrics = {"x": 0.5, "y": 0.5, "z": 0.7, "w": 0.1}
    assert [f.service for f in fuse({"metrics": metrics})] == ["z", "x", "y", "w"]


def test_a_wild_value_is_bounded_and_odd_input_is_harmless() -> None:
    wild = fuse({"traces": {"a": 1e9, "b": float("inf"), "c": float("nan"), "d": -5.0}})
    assert wild[0].service == "a" and wild[0].score == MAX_SIZE
    assert {f.service: f.score for f in wild}["b"] == 0.0 and {f.service: f.score for f in wild}["d"] == 0.0
    assert fuse({}) == [] and fuse({"metrics": {}}) == []


def test_rank_lists_only_the_modalities_that_had_evidence() -> None:
    slow = SpanEvidence("cart", 0.9, 3.0, "GET /cart", 2.0, 40.0, 0.9, 0, "t1", "cart slow")
    ranking = rank(None, [slow], [])
    assert ranking.modalities == ["traces"] and ranking.services() == ["cart"]
    assert ranking.ranked[0].trace is slow and ranking.ranked[0].log is None
    assert rank(None).modalities == [] and rank(None).ranked == []
