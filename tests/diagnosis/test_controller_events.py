"""What controllers report about their own failures: HPA selectors and rescales, budgets without a scale,
claims and volumes that cannot bind or grow, CronJobs missing runs. Old events are history, healthy twins are
silent, malformed objects neither crash a rule nor are reported wrongly."""

from __future__ import annotations

from typing import Any

import pytest

from engines.diagnosis import Snapshot
from engines.diagnosis.autoscaling import hpa_controller_errors, pdb_scale_unknown
from engines.diagnosis.storage import _volume_mismatch, resizes
from engines.diagnosis.workloads import _missed_schedules
from tests.diagnosis.world import NOW, Obj, codes, cond, event, fresh, meta, only, pod, ts


def _old(ev: Obj, minutes: float = 180) -> Obj:
    ev["lastTimestamp"] = ts(minutes)
    return ev


# -- HPAs -------------------------------------------------------------------------------------------------
def hpa(*conditions: Obj, desired: int = 3) -> Obj:
    return {
        "metadata": meta("web"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1,
            "maxReplicas": 5,
            "metrics": [{"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue"}}}],
        },
        "status": {"currentReplicas": 2, "desiredReplicas": desired, "conditions": list(conditions)},
    }


def test_an_hpa_whose_target_gives_no_selector_is_reported_as_such_not_as_a_metrics_problem() -> None:
    w = fresh()
    w["horizontalpodautoscalers"] = [
        hpa(cond("ScalingActive", "False", "InvalidSelector", "the HPA target's scale is missing a selector"))
    ]
    w["events"] = [event("HorizontalPodAutoscaler", "web", "SelectorRequired", "selector is required")]
    found = only(w, "HPA_SELECTOR_INVALID")
    assert found.evidence["reason"] == "InvalidSelector" and "HPA_METRICS_UNAVAILABLE" not in codes(w)
    assert "SelectorRequired" in found.evidence["events"][0]


def test_selector_events_alone_count_while_recent_and_not_once_scaling_is_active() -> None:
    w = fresh()
    w["horizontalpodautoscalers"] = [hpa()]
    w["events"] = [event("HorizontalPodAutoscaler", "web", "InvalidSelector", "couldn't convert selector")]
    assert "HPA_SELECTOR_INVALID" in codes(w)
    w["events"] = [_old(event("HorizontalPodAutoscaler", "web", "InvalidSelector", "couldn't convert selector"))]
    assert "HPA_SELECTOR_INVALID" not in codes(w)
    w["events"] = [event("HorizontalPodAutoscaler", "web", "InvalidSelector", "couldn't convert selector")]
    w["horizontalpodautoscalers"] = [hpa(cond("ScalingActive", "True", "ValidMetricFound"))]
    assert "HPA_SELECTOR_INVALID" not in codes(w)


def test_an_hpa_that_cannot_update_the_scale_is_reported_with_the_error() -> None:
    w = fresh()
    message = 'the HPA controller was unable to update the target scale: admission webhook "deny" denied'
    w["horizontalpodautoscalers"] = [hpa(cond("AbleToScale", "False", "FailedUpdateScale", message))]
    w["events"] = [event("HorizontalPodAutoscaler", "web", "FailedRescale", "New size: 3; reason: ...; error: x")]
    found = only(w, "HPA_RESCALE_FAILED")
    assert found.evidence["desired"] == 3 and "denied" in found.evidence["message"]
    assert any(r.kind == "Deployment" for r in found.involves)


def test_a_rescale_that_succeeded_since_is_silent() -> None:
    w = fresh()
    w["horizontalpodautoscalers"] = [hpa(cond("AbleToScale", "True", "SucceededRescale"))]
    w["events"] = [event("HorizontalPodAutoscaler", "web", "FailedRescale", "New size: 3; error: conflict")]
    assert "HPA_RESCALE_FAILED" not in codes(w)


# -- PodDisruptionBudgets ---------------------------------------------------------------------------------
def budget(spec: Obj, status: Obj | None = None) -> Obj:
    base = {"observedGeneration": 1, "expectedPods": 0, "currentHealthy": 0, "desiredHealthy": 0}
    return {
        "metadata": {**meta("web"), "generation": 1},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec},
        "status": {**base, "disruptionsAllowed": 0, **(status or {})},
    }


def bare_pods(w: dict[str, list[Obj]]) -> None:
    for p in w["pods"]:
        p["metadata"].pop("ownerReferences", None)


def test_a_max_unavailable_budget_over_bare_pods_is_reported_not_as_selecting_nothing() -> None:
    w = fresh()
    bare_pods(w)
    w["poddisruptionbudgets"] = [budget({"maxUnavailable": 1})]
    found = only(w, "PDB_SCALE_UNKNOWN")
    assert found.evidence["unmanaged_pods"] == 2 and "PDB_NO_PODS" not in codes(w)


def test_an_integer_min_available_over_bare_pods_or_managed_pods_is_fine() -> None:
    w = fresh()
    bare_pods(w)
    w["poddisruptionbudgets"] = [budget({"minAvailable": 1}, {"expectedPods": 2, "currentHealthy": 2})]
    assert codes(w) == []
    w = fresh()
    w["poddisruptionbudgets"] = [
        budget({"maxUnavailable": "50%"}, {"expectedPods": 2, "currentHealthy": 2, "desiredHealthy": 1})
    ]
    w["poddisruptionbudgets"][0]["status"]["disruptionsAllowed"] = 1
    assert codes(w) == []


def test_a_budget_the_controller_failed_to_sync_is_reported_with_its_message() -> None:
    w = fresh()
    failed = cond("DisruptionAllowed", "False", "SyncFailed", 'found no controllers for pod "web-abc-1"')
    w["poddisruptionbudgets"] = [budget({"maxUnavailable": "25%"}, {"observedGeneration": 0, "conditions": [failed]})]
    w["events"] = [event("PodDisruptionBudget", "web", "CalculateExpectedPodCountFailed", "Failed to calculate")]
    found = only(w, "PDB_SCALE_UNKNOWN")
    assert "found no controllers" in found.summary and found.evidence["reason"] == "SyncFailed"


def test_unmanaged_pods_events_count_only_where_pods_were_not_listed() -> None:
    w = fresh()
    w["poddisruptionbudgets"] = [budget({"maxUnavailable": 1})]
    w["events"] = [event("PodDisruptionBudget", "web", "UnmanagedPods", "Pods selected ... unmanaged")]
    del w["pods"]
    assert "PDB_SCALE_UNKNOWN" in codes(w)
    w["events"] = [_old(event("PodDisruptionBudget", "web", "UnmanagedPods", "Pods selected ... unmanaged"))]
    assert "PDB_SCALE_UNKNOWN" not in codes(w)


# -- claims and volumes -----------------------------------------------------------------------------------
def pv(name: str = "pv-1", size: str = "1Gi", claim: Obj | None = None, **spec: Any) -> Obj:
    body: Obj = {
        "capacity": {"storage": size},
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "",
        "hostPath": {"path": "/x"},
        **spec,
    }
    if claim:
        body["claimRef"] = claim
    return {"metadata": meta(name, None), "spec": body, "status": {"phase": "Bound" if claim else "Available"}}


def claim(phase: str = "Pending", size: str = "1Gi", capacity: str | None = None, **spec: Any) -> Obj:
    status: Obj = {"phase": phase}
    if capacity:
        status["capacity"] = {"storage": capacity}
    return {
        "metadata": {**meta("data"), "uid": "u-1"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "",
            "resources": {"requests": {"storage": size}},
            **spec,
        },
        "status": status,
    }


def test_a_claim_naming_a_too_small_volume_is_reported_with_the_pv_controllers_words() -> None:
    w = fresh()
    w["persistentvolumes"] = [pv()]
    w["persistentvolumeclaims"] = [claim(size="5Gi", volumeName="pv-1")]
    found = only(w, "PVC_VOLUME_MISMATCH")
    assert found.evidence["problems"] == ["requested PV is too small"] and found.evidence["capacity"] == "1Gi"
    assert "PVC_NO_MATCHING_PV" not in codes(w)


def test_a_pre_bound_volume_with_another_volume_mode_and_a_fitting_named_volume() -> None:
    w = fresh()
    w["persistentvolumes"] = [pv(claim={"namespace": "shop", "name": "data"}, volumeMode="Block")]
    w["persistentvolumeclaims"] = [claim()]
    assert only(w, "PVC_VOLUME_MISMATCH").evidence["problems"] == ["incompatible volumeMode"]
    w["persistentvolumes"] = [pv()]
    w["persistentvolumeclaims"] = [claim(volumeName="pv-1")]  # fits: binding in progress
    assert "PVC_VOLUME_MISMATCH" not in codes(w)


def test_a_lost_claim_whose_volume_went_to_another_claim_is_misbound() -> None:
    w = fresh()
    w["persistentvolumes"] = [pv(claim={"namespace": "shop", "name": "other", "uid": "u-2"})]
    w["persistentvolumeclaims"] = [claim("Lost", volumeName="pv-1")]
    w["events"] = [event("PersistentVolumeClaim", "data", "ClaimMisbound", "Two claims are bound to the same volume")]
    found = only(w, "PVC_LOST")
    assert found.evidence["bound_to"] == "shop/other" and "another claim" in found.summary


def test_a_resize_failing_in_the_backend_or_on_the_node_is_reported_and_one_in_progress_is_not() -> None:
    w = fresh()
    error = cond("ControllerResizeError", "True", None, "disk quota exceeded")
    w["persistentvolumeclaims"] = [claim("Bound", size="20Gi", capacity="10Gi", volumeName="pv-1")]
    w["persistentvolumeclaims"][0]["status"]["conditions"] = [error]
    found = only(w, "PVC_RESIZE_FAILED")
    assert "storage backend" in found.summary and found.evidence["capacity"] == "10Gi"
    w["persistentvolumeclaims"][0]["status"]["conditions"] = [cond("FileSystemResizePending", "True")]
    assert "PVC_RESIZE_FAILED" not in codes(w)
    w["events"] = [event("PersistentVolumeClaim", "data", "FileSystemResizeFailed", "resize2fs failed")]
    assert "on the node" in only(w, "PVC_RESIZE_FAILED").summary
    w["events"] = [_old(event("PersistentVolumeClaim", "data", "FileSystemResizeFailed", "resize2fs failed"))]
    assert "PVC_RESIZE_FAILED" not in codes(w)


def test_a_finished_resize_is_silent_whatever_its_old_errors() -> None:
    w = fresh()
    w["persistentvolumeclaims"] = [claim("Bound", size="20Gi", capacity="20Gi")]
    w["events"] = [event("PersistentVolumeClaim", "data", "VolumeResizeFailed", "quota")]
    assert "PVC_RESIZE_FAILED" not in codes(w)


def test_a_normal_external_expanding_event_is_not_a_failure() -> None:
    w = fresh()
    w["persistentvolumeclaims"] = [claim("Bound", size="20Gi", capacity="10Gi")]
    ev = event("PersistentVolumeClaim", "data", "ExternalExpanding", "waiting for an external controller")
    ev["type"] = "Normal"
    w["events"] = [ev]
    assert "PVC_RESIZE_FAILED" not in codes(w)


def test_provisioning_cleanup_failed_is_a_provisioning_failure_naming_the_orphan() -> None:
    w = fresh()
    w["persistentvolumeclaims"] = [claim(storageClassName="standard")]
    w["events"] = [event("PersistentVolumeClaim", "data", "ProvisioningCleanupFailed", "Please delete manually.")]
    found = only(w, "PVC_PROVISIONING_FAILED")
    assert "orphaned volume" in found.remediation


# -- CronJobs ---------------------------------------------------------------------------------------------
def cron(last_minutes: float | None = None, **spec: Any) -> Obj:
    status = {"lastScheduleTime": ts(last_minutes)} if last_minutes is not None else {}
    return {"metadata": meta("nightly"), "spec": {"schedule": "0 3 * * *", **spec}, "status": status}


def test_a_recent_missed_schedule_is_reported_and_a_later_run_ends_it() -> None:
    w = fresh()
    w["cronjobs"] = [cron(last_minutes=24 * 60, startingDeadlineSeconds=5)]
    w["events"] = [event("CronJob", "nightly", "MissSchedule", "Missed scheduled time to start a job")]
    found = only(w, "CRONJOB_MISSED_SCHEDULES")
    assert found.evidence["startingDeadlineSeconds"] == 5
    w["cronjobs"] = [cron(last_minutes=0, startingDeadlineSeconds=5)]
    assert "CRONJOB_MISSED_SCHEDULES" not in codes(w)


def test_too_many_missed_times_counts_for_an_hour_and_suspended_or_old_is_silent() -> None:
    w = fresh()
    w["cronjobs"] = [cron(last_minutes=0)]
    w["events"] = [event("CronJob", "nightly", "TooManyMissedTimes", "too many missed start times")]
    assert "more than 100" in only(w, "CRONJOB_MISSED_SCHEDULES").summary
    w["events"] = [_old(event("CronJob", "nightly", "TooManyMissedTimes", "too many missed start times"))]
    assert "CRONJOB_MISSED_SCHEDULES" not in codes(w)
    w["events"] = [event("CronJob", "nightly", "MissSchedule", "Missed")]
    w["cronjobs"] = [cron(suspend=True)]
    assert "CRONJOB_MISSED_SCHEDULES" not in codes(w)


# -- hostile input ----------------------------------------------------------------------------------------
HOSTILE: list[Obj] = [
    {},
    {"metadata": None, "spec": None, "status": None},
    {"metadata": {"name": "x", "namespace": "shop"}, "spec": "nope", "status": ["a"]},
    {"metadata": {"name": "x", "namespace": "shop"}, "spec": {"scaleTargetRef": "web"}, "status": {"conditions": 3}},
    {"metadata": {"name": "x", "namespace": "shop"}, "status": {"conditions": ["x", None, {"type": 1}]}},
    {
        "metadata": {"name": "x", "namespace": "shop"},
        "spec": {"resources": {"requests": {"storage": "lots"}}, "volumeName": 7, "maxUnavailable": [1]},
        "status": {"phase": "Bound", "capacity": {"storage": None}, "allocatedResourceStatuses": "x"},
    },
]


@pytest.mark.parametrize("obj", HOSTILE)
def test_malformed_objects_neither_crash_nor_report(obj: Obj) -> None:
    kinds = ["horizontalpodautoscalers", "poddisruptionbudgets", "persistentvolumeclaims", "cronjobs"]
    objects: dict[str, list[Obj]] = {k: [obj] for k in kinds}
    objects.update(events=[{"reason": "MissSchedule", "involvedObject": None}], pods=[pod("web-abc-1")])
    objects["persistentvolumes"] = [{"spec": {"claimRef": "x"}}, {"spec": None}, obj]
    snap = Snapshot(objects, cluster="test", now=NOW)
    found = [*hpa_controller_errors(snap), *pdb_scale_unknown(snap), *resizes(snap)]
    found += [f for f in (_volume_mismatch(snap, obj), _missed_schedules(snap, obj)) if f is not None]
    assert found == []
