"""Storage, node, HPA and PDB rules on plain dicts, each with its healthy twin."""

from __future__ import annotations

from tests.diagnosis.world import codes, cond, event, fresh, meta, node, only, pod


def _pvc(name="data", cls="standard", phase="Pending"):
    spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    if cls is not None:
        spec["storageClassName"] = cls
    return {"kind": "PersistentVolumeClaim", "metadata": meta(name), "spec": spec, "status": {"phase": phase}}


def _pv(name="pv-1", phase="Available", cls="", claim=None, size="5Gi"):
    spec = {
        "capacity": {"storage": size},
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": cls,
        "persistentVolumeReclaimPolicy": "Retain",
    }
    if claim:
        spec["claimRef"] = {"namespace": "shop", "name": claim}
    return {"kind": "PersistentVolume", "metadata": meta(name, None), "spec": spec, "status": {"phase": phase}}


def test_pvc_with_a_missing_storage_class() -> None:
    w = fresh()
    w["persistentvolumeclaims"] = [_pvc(cls="fast")]
    assert only(w, "PVC_STORAGECLASS_MISSING").evidence["available_classes"] == ["standard"]
    w["persistentvolumeclaims"] = [_pvc(phase="Bound")]
    assert codes(w) == []


def test_pvc_without_class_and_no_matching_pv() -> None:
    w = fresh()
    w["persistentvolumeclaims"] = [_pvc(cls="")]
    w["persistentvolumes"] = [_pv(size="512Mi")]
    assert only(w, "PVC_NO_MATCHING_PV").evidence["available_pvs"] == 1
    w["persistentvolumes"] = [_pv()]
    assert codes(w) == []  # a matching PV exists: the binder will bind it


def test_pvc_provisioning_failed_and_wait_for_first_consumer_twin() -> None:
    w = fresh()
    w["persistentvolumeclaims"] = [_pvc()]
    w["events"] = [event("PersistentVolumeClaim", "data", "ProvisioningFailed", "quota exceeded in zone")]
    assert only(w, "PVC_PROVISIONING_FAILED").evidence["events"][0].startswith("ProvisioningFailed")
    w["events"] = []
    w["storageclasses"][0]["volumeBindingMode"] = "WaitForFirstConsumer"
    assert codes(w) == []


def test_released_and_failed_volumes() -> None:
    w = fresh()
    w["persistentvolumes"] = [_pv("pv-old", "Released", claim="gone")]
    assert only(w, "PV_RELEASED").evidence["former_claim"] == "shop/gone"
    w["persistentvolumes"] = [_pv("pv-bad", "Failed", claim="gone")]
    w["persistentvolumes"][0]["status"]["message"] = "recycler failed"
    assert only(w, "PV_FAILED").summary == "Failed: recycler failed"


def test_node_not_ready_and_pressure() -> None:
    w = fresh()
    w["nodes"][1] = node("node-2", ready=False)
    f = only(w, "NODE_NOT_READY")
    assert f.evidence["pods"] == 1 and f.evidence["reason"] == "KubeletNotReady"
    w["nodes"][1] = node("node-2")
    w["nodes"][1]["status"]["conditions"][1] = cond("MemoryPressure", "True", "KubeletHasInsufficientMemory")
    assert only(w, "NODE_MEMORY_PRESSURE").object.name == "node-2"


def test_node_cordoned_suggests_uncordon() -> None:
    w = fresh()
    w["nodes"][0]["spec"]["unschedulable"] = True
    f = only(w, "NODE_CORDONED")
    assert f.fix and f.fix.action == "uncordon" and f.fix.target.name == "node-1"


def test_node_rules_follow_the_scope() -> None:
    w = fresh()
    w["nodes"].append(node("node-9", ready=False))  # no pod of namespace shop runs there
    assert codes(w, scope={"shop"}) == []
    assert codes(w) == ["NODE_NOT_READY"]


def test_node_requests_exhausted() -> None:
    w = fresh()
    big = [{"name": "web", "image": "x", "resources": {"requests": {"cpu": "3900m"}}}]
    w["pods"].append(pod("hog", rs=None, labels={"app": "hog"}, containers=big))
    f = only(w, "NODE_REQUESTS_EXHAUSTED")
    assert f.evidence["requested"] == {"cpu": "3900m of 4 (97%)"}


def _hpa(target="web", metrics=None, conds=None, current=2, desired=2, high=5):
    spec = {
        "scaleTargetRef": {"kind": "Deployment", "name": target, "apiVersion": "apps/v1"},
        "minReplicas": 2,
        "maxReplicas": high,
    }
    if metrics is not None:
        spec["metrics"] = metrics
    return {
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta("web"),
        "spec": spec,
        "status": {
            "currentReplicas": current,
            "desiredReplicas": desired,
            "conditions": conds or [cond("ScalingActive", "True", "ValidMetricFound")],
        },
    }


def _cpu_requests(w):
    w["deployments"][0]["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "100m"}}


def test_hpa_target_missing() -> None:
    w = fresh()
    w["horizontalpodautoscalers"] = [_hpa("webb")]
    assert only(w, "HPA_TARGET_MISSING").evidence["scaleTargetRef"]["name"] == "webb"


def test_hpa_missing_requests_and_twin() -> None:
    w = fresh()
    w["horizontalpodautoscalers"] = [
        _hpa(
            metrics=[
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                }
            ]
        )
    ]
    assert only(w, "HPA_MISSING_REQUESTS").evidence["missing"] == {"web": ["cpu"]}
    _cpu_requests(w)
    assert codes(w) == []


def test_hpa_metrics_unavailable() -> None:
    w = fresh()
    _cpu_requests(w)
    w["horizontalpodautoscalers"] = [
        _hpa(
            conds=[cond("ScalingActive", "False", "FailedGetResourceMetric", "unable to get metrics for resource cpu")]
        )
    ]
    assert only(w, "HPA_METRICS_UNAVAILABLE").evidence["reason"] == "FailedGetResourceMetric"


def test_hpa_pinned_at_max() -> None:
    w = fresh()
    _cpu_requests(w)
    w["horizontalpodautoscalers"] = [_hpa(current=5, desired=5)]
    assert only(w, "HPA_AT_MAX").evidence["maxReplicas"] == 5


def _pdb(min_available, expected=2, healthy=2, allowed=0, observed=1):
    return {
        "kind": "PodDisruptionBudget",
        "metadata": {**meta("web"), "generation": 1},
        "spec": {"minAvailable": min_available, "selector": {"matchLabels": {"app": "web"}}},
        "status": {
            "observedGeneration": observed,
            "expectedPods": expected,
            "currentHealthy": healthy,
            "desiredHealthy": min_available,
            "disruptionsAllowed": allowed,
        },
    }


def test_pdb_that_allows_no_disruption_and_twin() -> None:
    w = fresh()
    w["poddisruptionbudgets"] = [_pdb(2)]
    assert only(w, "PDB_BLOCKS_DISRUPTIONS").evidence["minAvailable"] == 2
    w["poddisruptionbudgets"] = [_pdb(1, allowed=1)]
    assert codes(w) == []


def test_pdb_selecting_no_pod() -> None:
    w = fresh()
    w["poddisruptionbudgets"] = [_pdb(1, expected=0, healthy=0)]
    assert only(w, "PDB_NO_PODS").severity == "info"


def test_pdb_not_yet_seen_by_its_controller_is_not_judged() -> None:
    w = fresh()
    w["poddisruptionbudgets"] = [_pdb(1, expected=0, healthy=0, observed=0)]  # the API server's all-zero status
    assert codes(w) == []


def test_hpa_paused_by_a_target_scaled_to_zero_is_not_a_metrics_problem() -> None:
    w = fresh()
    _cpu_requests(w)
    w["horizontalpodautoscalers"] = [
        _hpa(
            conds=[
                cond(
                    "ScalingActive",
                    "False",
                    "ScalingDisabled",
                    "scaling is disabled since the replica count of the target is zero",
                )
            ]
        )
    ]
    assert "HPA_METRICS_UNAVAILABLE" not in codes(w)


def test_wait_for_first_consumer_claim_failing_after_a_node_was_chosen() -> None:
    w = fresh()
    w["storageclasses"][0]["volumeBindingMode"] = "WaitForFirstConsumer"
    w["persistentvolumeclaims"] = [_pvc()]
    w["events"] = [event("PersistentVolumeClaim", "data", "ProvisioningFailed", "no capacity in zone b")]
    assert codes(w) == []  # no node chosen yet: nothing has been tried
    w["persistentvolumeclaims"][0]["metadata"]["annotations"] = {"volume.kubernetes.io/selected-node": "node-1"}
    assert only(w, "PVC_PROVISIONING_FAILED").evidence["events"][0].startswith("ProvisioningFailed")
