"""The engine: ranking (severity, then causes before symptoms), focus on one object, scope, bad data."""

from __future__ import annotations

from engines.diagnosis import ObjectRef, Snapshot, run
from engines.diagnosis.pods import scheduler_reasons
from tests.diagnosis.world import NOW, codes, deployment, findings, fresh, meta, pod, replicaset, service, waiting


def _broken_web(w):
    w["pods"] = [pod("web-abc-1", ready=False, statuses=[waiting("CrashLoopBackOff", last={"exitCode": 1})])]
    w["deployments"][0]["status"]["availableReplicas"] = 0
    return w


def _with_api(w):
    w["deployments"].append(deployment("api"))
    w["replicasets"].append(replicaset("api-1", "api"))
    w["pods"].append(
        pod(
            "api-1-x",
            rs="api-1",
            labels={"app": "api"},
            ready=False,
            statuses=[waiting("ImagePullBackOff", "manifest unknown")],
        )
    )
    w["deployments"][1]["status"]["availableReplicas"] = 0
    return w


def test_causes_rank_before_symptoms() -> None:
    assert codes(_broken_web(fresh())) == ["POD_CRASHLOOP", "DEPLOY_UNAVAILABLE", "SVC_NO_READY_PODS"]


def test_focus_on_a_deployment_keeps_its_pods_service_and_nothing_else() -> None:
    w = _with_api(_broken_web(fresh()))
    assert set(codes(w)) >= {"POD_CRASHLOOP", "POD_IMAGE_NOT_FOUND"}
    focused = findings(w, focus=ObjectRef(kind="Deployment", name="web", namespace="shop"))
    assert [f.code for f in focused] == ["POD_CRASHLOOP", "DEPLOY_UNAVAILABLE", "SVC_NO_READY_PODS"]
    on_service = findings(w, focus=ObjectRef(kind="Service", name="web", namespace="shop"))
    assert {f.code for f in on_service} == {"POD_CRASHLOOP", "DEPLOY_UNAVAILABLE", "SVC_NO_READY_PODS"}


def test_scope_drops_other_namespaces() -> None:
    w = fresh()
    w["services"].append(service("lost", selector={"app": "nothing"}, ns="other"))
    assert codes(w) == ["SVC_SELECTOR_NO_PODS"]
    assert codes(w, scope={"shop"}) == []


def test_malformed_object_becomes_a_note_not_a_crash() -> None:
    w = fresh()
    w["virtualservices"] = [{"metadata": meta("odd"), "spec": {"http": "not-a-list"}}]
    report = run(Snapshot(w, now=NOW))
    assert any("istio.virtual_services" in n for n in report.notes)
    assert report.findings == [] or all(f.code for f in report.findings)


def test_scheduler_message_parsing() -> None:
    msg = (
        "0/5 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, "
        "2 Insufficient memory, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/5"
    )
    assert scheduler_reasons(msg) == {
        "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }": 1,
        "Insufficient memory": 2,
        "node(s) didn't match Pod's node affinity/selector": 2,
    }


def test_malformed_events_and_conditions_do_not_stop_the_rules() -> None:
    from tests.diagnosis.world import event, findings, fresh

    w = fresh()
    w["events"] = [{"involvedObject": "pod web", "reason": "BackOff"}, event("Pod", "web-abc-1", "BackOff", "x")]
    w["pods"][0]["status"]["conditions"] = ["Ready", {"type": "Ready", "status": "True"}]
    from engines.diagnosis import Snapshot, run

    report = run(Snapshot(w, cluster="test"))
    assert report.notes == [] and isinstance(findings(w), list)
