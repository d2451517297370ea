"""States with no Warning event (engines/diagnosis/quiet.py): reported past their limit, never before, and the
limit is the snapshot's (settings `diagnosis.*`)."""

from __future__ import annotations

from engines.diagnosis import Snapshot, run
from engines.diagnosis.model import Limits
from tests.diagnosis.world import NOW, cond, fresh, pod, ts


def gated(minutes: float) -> dict:
    w = fresh()
    p = pod("batch-0", rs=None, labels={"app": "batch"}, phase="Pending", ready=False, node_name=None)
    p["spec"]["schedulingGates"] = [{"name": "example.com/queue"}]
    gate = cond("PodScheduled", "False", "SchedulingGated")
    gate["lastTransitionTime"] = ts(minutes)
    p["status"] = {"phase": "Pending", "conditions": [gate]}
    w["pods"].append(p)
    return w


def paused(minutes: float, updated: int) -> dict:
    w = fresh()
    dep = w["deployments"][0]
    dep["spec"]["paused"] = True
    progressing = cond("Progressing", "Unknown", "DeploymentPaused")
    progressing["lastTransitionTime"] = ts(minutes)
    dep["status"].update(updatedReplicas=updated, conditions=[progressing])
    return w


def codes(objects: dict, limits: Limits | None = None) -> list[str]:
    return [f.code for f in run(Snapshot(objects, cluster="test", now=NOW, limits=limits)).findings]


def test_a_pod_gated_past_the_limit_is_reported_with_its_gate() -> None:
    found = run(Snapshot(gated(120), cluster="test", now=NOW)).findings
    assert [f.code for f in found] == ["POD_SCHEDULING_GATED"]
    assert found[0].evidence["scheduling_gates"] == ["example.com/queue"] and "2 h 0 min" in found[0].summary
    assert found[0].evidence["pod_status"] == "SchedulingGated"


def test_a_pod_gated_for_a_moment_is_not_reported_and_the_limit_is_a_setting() -> None:
    assert codes(gated(5)) == []
    assert codes(gated(5), Limits(gated_seconds=60)) == ["POD_SCHEDULING_GATED"]


def test_a_paused_deployment_holding_back_a_change_is_reported() -> None:
    replicas = fresh()["deployments"][0]["spec"].get("replicas", 1)
    assert "DEPLOY_PAUSED_WITH_CHANGES" in codes(paused(120, updated=0))
    assert codes(paused(120, updated=replicas)) == []  # paused, nothing held back
    assert codes(paused(10, updated=0)) == []  # paused a moment ago: a step in a multi-part change
