"""One ranking from several modalities: a service counts by how far it stands out within each, so a modality in
which nothing stands out adds nothing, and one in which a service stands far out decides."""

from __future__ import annotations

from engines.rca.fusion import CLIP, fuse


def test_the_modality_where_a_service_stands_out_decides():
    metrics = {f"s{i}": 0.7 + 0.01 * (i % 3) for i in range(10)}  # everything moved a little: nothing stands out
    logs = {f"s{i}": 0.05 for i in range(10)} | {"s7": 0.9}  # one service clearly does
    ranked = fuse({"metrics": metrics, "logs": logs})
    assert ranked[0].service == "s7" and ranked[0].by_modality["logs"] > 5


def test_a_service_one_modality_did_not_see_gets_no_evidence_either_way():
    ranked = fuse({"metrics": {"a": 0.9, "b": 0.1, "c": 0.1}, "logs": {"b": 0.2, "c": 0.1}})
    assert ranked[0].service == "a" and ranked[0].by_modality["logs"] == 0.0


def test_ties_keep_the_first_modality_order_and_one_wild_score_is_bounded():
    ranked = fuse({"metrics": {"x": 0.5, "y": 0.5, "z": 0.4}, "traces": {"x": 0.1, "y": 0.1, "z": 0.1}})
    assert [f.service for f in ranked][:2] == ["x", "y"]
    wild = fuse({"traces": {"a": 1e9, "b": 0.0, "c": 0.0}, "logs": {"a": 0.0, "b": 0.0, "c": 0.0}})
    assert wild[0].score == CLIP


def test_empty_and_odd_input():
    assert fuse({}) == [] and fuse({"metrics": {}}) == []
    ranked = fuse({"metrics": {"a": float("nan"), "b": 0.3, "c": 0.1}})
    assert {f.service for f in ranked} == {"a", "b", "c"} and ranked[0].service == "b"
