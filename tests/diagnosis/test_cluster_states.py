"""Node conditions, lost claims, load balancers, overlapping autoscalers and budgets, and the quiet states of
Jobs, LoadBalancer Services and namespaces: each on plain dicts with its healthy twin and malformed input."""

from __future__ import annotations

from typing import Any

from engines.diagnosis import Snapshot, run
from engines.diagnosis.model import Limits
from tests.diagnosis.world import NOW, cond, event, fresh, meta, namespace, only, service, ts

Obj = dict[str, Any]


def _with_condition(w: dict[str, list[Obj]], kind: str, status: str, reason: str, message: str = "") -> None:
    c = cond(kind, status, reason, message or None)
    c["lastTransitionTime"] = ts(30)
    w["nodes"][0]["status"]["conditions"].append(c)


def _codes(w: dict[str, list[Obj]], limits: Limits | None = None, scope: set[str] | None = None) -> list[str]:
    """The codes found; every rule ran (a rule that raises on malformed input leaves a note instead)."""
    report = run(Snapshot(w, cluster="test", now=NOW, limits=limits, scope=scope))
    assert report.notes == []
    return [f.code for f in report.findings]


# -- nodes -----------------------------------------------------------------------------------------------------
def test_a_node_without_its_pod_network_is_reported_with_its_reason() -> None:
    w = fresh()
    _with_condition(w, "NetworkUnavailable", "True", "NoRouteCreated", "Node created without a route")
    f = only(w, "NODE_NETWORK_UNAVAILABLE")
    assert f.severity == "critical" and f.object.name == "node-1"
    assert f.evidence["reason"] == "NoRouteCreated" and f.evidence["pods"] == 1
    w = fresh()
    _with_condition(w, "NetworkUnavailable", "False", "RouteCreated")
    assert _codes(w) == []


def test_node_problem_detector_conditions_are_problems_when_true() -> None:
    w = fresh()
    _with_condition(w, "KernelDeadlock", "True", "DockerHung", "task docker:20744 blocked for more than 120 seconds")
    f = only(w, "NODE_PROBLEM")
    assert f.evidence["condition"] == "KernelDeadlock" and f.evidence["reason"] == "DockerHung"
    for kind in ("ReadonlyFilesystem", "FrequentContainerdRestart", "VendorDiskProblem", "XfsCorruptionDetected"):
        w = fresh()
        _with_condition(w, kind, "True", "Detected")
        assert _codes(w) == ["NODE_PROBLEM"], kind
    w = fresh()
    _with_condition(w, "KernelDeadlock", "False", "KernelHasNoDeadlock")
    _with_condition(w, "ReadonlyFilesystem", "False", "FilesystemIsNotReadOnly")
    assert _codes(w) == []


def test_conditions_that_name_a_healthy_state_are_problems_only_when_false() -> None:
    w = fresh()
    _with_condition(w, "KernelReady", "True", "KernelIsReady")  # EKS node monitoring agent
    _with_condition(w, "SomeVendorFeature", "True", "Enabled")  # a name that says nothing: not judged
    _with_condition(w, "KernelDeadlock", "Unknown", "NoData")
    assert _codes(w) == []
    w = fresh()
    _with_condition(w, "StorageReady", "False", "IOErrors", "disk I/O errors on nvme0n1")
    assert only(w, "NODE_PROBLEM").evidence["condition"] == "StorageReady"


def test_node_conditions_are_only_reported_for_nodes_running_the_scope_s_pods() -> None:
    w = fresh()
    w["pods"] = [p for p in w["pods"] if p["spec"].get("nodeName") != "node-1"]
    _with_condition(w, "NetworkUnavailable", "True", "NoRouteCreated")
    _with_condition(w, "KernelDeadlock", "True", "DockerHung")
    assert _codes(w, scope={"shop"}) == []
    assert sorted(_codes(w)) == ["NODE_NETWORK_UNAVAILABLE", "NODE_PROBLEM"]


def test_malformed_node_conditions_do_not_crash_or_report() -> None:
    w = fresh()
    w["nodes"][0]["status"]["conditions"] += ["KernelDeadlock", {"type": None, "status": "True"}, {"status": 1}]
    assert _codes(w) == []


# -- storage ---------------------------------------------------------------------------------------------------
def _claim(phase: str, volume: str | None = "pv-data") -> Obj:
    spec: Obj = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    if volume:
        spec["volumeName"] = volume
    return {"kind": "PersistentVolumeClaim", "metadata": meta("data"), "spec": spec, "status": {"phase": phase}}


def test_a_lost_claim_names_its_volume_and_the_controller_s_event() -> None:
    w = fresh()
    w["persistentvolumeclaims"] = [_claim("Lost")]
    w["events"] = [event("PersistentVolumeClaim", "data", "ClaimLost", "Bound claim has lost its PersistentVolume.")]
    f = only(w, "PVC_LOST")
    assert f.severity == "critical" and f.evidence["volumeName"] == "pv-data"
    assert f.evidence["volume_exists"] is False and f.evidence["events"][0].startswith("ClaimLost")
    w["persistentvolumeclaims"] = [_claim("Bound")]
    w["events"] = []
    assert _codes(w) == []


def test_a_lost_claim_without_a_volume_name_or_a_volume_list_is_still_reported() -> None:
    w = fresh()
    w["persistentvolumeclaims"] = [_claim("Lost", volume=None)]
    del w["persistentvolumes"]
    f = only(w, "PVC_LOST")
    assert "volume_exists" not in f.evidence and "(none)" in f.summary


# -- Services --------------------------------------------------------------------------------------------------
def _lb(minutes: float = 120, ingress: Any = None, **spec: Any) -> Obj:
    svc = service(type="LoadBalancer", **spec)
    svc["metadata"]["creationTimestamp"] = ts(minutes)
    if ingress is not None:
        svc["status"] = {"loadBalancer": {"ingress": ingress}}
    return svc


def _sync_failed() -> Obj:
    return event("Service", "web", "SyncLoadBalancerFailed", "Error syncing load balancer: quota exceeded")


def test_a_load_balancer_the_controller_fails_to_create_is_critical() -> None:
    w = fresh()
    w["services"] = [_lb(5)]
    w["events"] = [_sync_failed()]
    f = only(w, "SVC_LB_FAILED")
    assert f.severity == "critical" and f.evidence["reason"] == "SyncLoadBalancerFailed"
    assert f.evidence["ingress"] == [] and "quota exceeded" in f.summary
    assert "SVC_LB_PENDING" not in _codes(w)  # the failure says why: not reported twice


def test_a_load_balancer_update_failing_with_an_address_is_a_warning() -> None:
    w = fresh()
    w["services"] = [_lb(ingress=[{"ip": "203.0.113.10"}])]
    w["events"] = [event("Service", "web", "UpdateLoadBalancerFailed", "Error updating load balancer with new hosts")]
    f = only(w, "SVC_LB_FAILED")
    assert f.severity == "warning" and f.evidence["ingress"] == ["203.0.113.10"]
    w["events"] = []
    assert _codes(w) == []


def test_a_failure_hours_ago_is_history() -> None:
    w = fresh()
    w["services"] = [_lb(3000, ingress=[{"ip": "203.0.113.10"}])]
    old = _sync_failed()
    old["lastTimestamp"] = ts(2 * 24 * 60)  # the retry after it succeeded: the Service has its address
    w["events"] = [old]
    assert _codes(w) == []
    w["services"] = [_lb(3000)]  # no address and the controller stopped trying: nobody serves it now
    assert _codes(w) == ["SVC_LB_PENDING"]
    old["lastTimestamp"], old["series"] = None, {"lastObservedTime": ts(5)}
    assert _codes(w) == ["SVC_LB_FAILED"]


def test_load_balancer_events_on_other_service_types_are_not_reported() -> None:
    w = fresh()
    w["events"] = [_sync_failed()]  # Service web is ClusterIP: a stale event from before a type change
    assert _codes(w) == []


def test_a_load_balancer_pending_past_the_limit_is_reported() -> None:
    w = fresh()
    w["services"] = [_lb(120)]
    f = only(w, "SVC_LB_PENDING")
    assert f.evidence["ingress"] == [] and "2 h 0 min" in f.summary
    w["services"] = [_lb(5)]
    assert _codes(w) == []
    assert _codes(w, Limits(lb_pending_seconds=60)) == ["SVC_LB_PENDING"]
    w["services"] = [_lb(120, ingress=[{"hostname": "abc.elb.amazonaws.com"}])]
    assert _codes(w) == []


def test_a_service_switched_to_load_balancer_a_moment_ago_is_not_old() -> None:
    w = fresh()
    svc = _lb(600)
    svc["metadata"]["managedFields"] = [
        {"manager": "kubectl", "time": ts(600), "fieldsV1": {"f:spec": {"f:ports": {}}}},
        {"manager": "kubectl-edit", "time": ts(2), "fieldsV1": {"f:spec": {"f:type": {}}}},
        "junk",
        {"manager": "x", "time": 5, "fieldsV1": "junk"},
    ]
    w["services"] = [svc]
    assert _codes(w) == []


def test_malformed_load_balancer_status_does_not_crash() -> None:
    w = fresh()
    w["services"] = [_lb(5, ingress="203.0.113.10"), _lb(5, ingress=["x", {"ip": ""}])]
    w["services"][1]["metadata"]["name"] = "api"
    w["services"][0]["metadata"]["creationTimestamp"] = 12
    assert _codes(w) == []


# -- autoscaling and disruption --------------------------------------------------------------------------------
def _hpa(name: str, minutes: float, conds: list[Obj] | None = None, target: str = "web") -> Obj:
    m = meta(name)
    m["creationTimestamp"] = ts(minutes)
    return {
        "kind": "HorizontalPodAutoscaler",
        "metadata": m,
        "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": target, "apiVersion": "apps/v1"},
            "minReplicas": 1,
            "maxReplicas": 5,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "AverageValue"}}}],
        },
        "status": {"currentReplicas": 2, "desiredReplicas": 2, "conditions": conds or []},
    }


AMBIGUOUS = cond(
    "ScalingActive", "False", "AmbiguousSelector", "pods by selector app=web are controlled by multiple HPAs"
)


def test_two_autoscalers_on_one_workload_are_one_finding_about_the_newer() -> None:
    w = fresh()
    w["horizontalpodautoscalers"] = [_hpa("web-burst", 10, [AMBIGUOUS]), _hpa("web", 600)]
    f = only(w, "HPA_CONFLICT")
    assert f.object.name == "web-burst" and f.evidence["hpas"] == ["web", "web-burst"]
    assert f.evidence["target"] == "Deployment web" and f.evidence["controller"].startswith("AmbiguousSelector")
    assert _codes(w) == ["HPA_CONFLICT"]  # the AmbiguousSelector condition is not also a metrics problem
    w["horizontalpodautoscalers"] = [_hpa("web", 600)]
    assert _codes(w) == []


def test_the_controller_s_ambiguous_selector_alone_is_a_conflict() -> None:
    w = fresh()
    w["horizontalpodautoscalers"] = [_hpa("web", 600, [AMBIGUOUS])]  # the other HPA targets a twin Deployment
    assert only(w, "HPA_CONFLICT").object.name == "web"


def test_malformed_scale_target_refs_are_skipped() -> None:
    w = fresh()
    bad = [_hpa("a", 5), _hpa("b", 5)]
    bad[0]["spec"]["scaleTargetRef"] = "web"
    bad[1]["spec"]["scaleTargetRef"] = {"kind": ["Deployment"], "name": "web"}
    w["horizontalpodautoscalers"] = bad
    assert "HPA_CONFLICT" not in _codes(w)


def test_requests_from_limits_or_a_limit_range_default_count_for_utilization() -> None:
    w = fresh()
    utilization = {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}
    hpa = _hpa("web", 60)
    hpa["spec"]["metrics"] = [{"type": "Resource", "resource": utilization}]
    w["horizontalpodautoscalers"] = [hpa]
    assert _codes(w) == ["HPA_MISSING_REQUESTS"]
    w["limitranges"] = [
        {"metadata": meta("defaults"), "spec": {"limits": [{"type": "Container", "defaultRequest": {"cpu": "100m"}}]}}
    ]
    assert _codes(w) == []
    w["limitranges"] = []
    w["deployments"][0]["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1"}}
    assert _codes(w) == []


def _pdb(name: str, selector: Any, minutes: float = 60) -> Obj:
    m = {**meta(name), "generation": 1, "creationTimestamp": ts(minutes)}
    return {
        "kind": "PodDisruptionBudget",
        "metadata": m,
        "spec": {"maxUnavailable": 1, "selector": selector},
        "status": {"observedGeneration": 1, "expectedPods": 2, "currentHealthy": 2, "disruptionsAllowed": 1},
    }


def test_pods_under_two_budgets_are_one_finding_about_the_newer_budget() -> None:
    w = fresh()
    w["poddisruptionbudgets"] = [
        _pdb("web", {"matchLabels": {"app": "web"}}, 600),
        _pdb("everything", {}, 5),  # policy/v1: an empty selector selects every pod of the namespace
    ]
    w["events"] = [event("Pod", "web-abc-1", "MultiplePodDisruptionBudgets", 'Chose "web" arbitrarily.')]
    f = only(w, "PDB_OVERLAP")
    assert f.object.name == "everything" and f.evidence["pdbs"] == ["everything", "web"] and f.evidence["pods"] == 2
    assert f.evidence["events"][0].startswith("MultiplePodDisruptionBudgets")


def test_budgets_for_different_pods_and_selectorless_budgets_do_not_overlap() -> None:
    w = fresh()
    w["poddisruptionbudgets"] = [
        _pdb("web", {"matchLabels": {"app": "web"}}),
        _pdb("api", {"matchLabels": {"app": "api"}}),
        _pdb("none", None),  # a missing selector selects nothing
        _pdb("junk", "app=web"),
    ]
    assert "PDB_OVERLAP" not in _codes(w)


# -- quiet: Jobs -----------------------------------------------------------------------------------------------
def _job(hours: float, **meta_extra: Any) -> Obj:
    held = cond("Suspended", "True", "JobSuspended", "Job suspended")
    held["lastTransitionTime"] = ts(hours * 60)
    return {
        "kind": "Job",
        "metadata": meta("report", **meta_extra),
        "spec": {"suspend": True, "template": {"spec": {"containers": [{"name": "c", "image": "x"}]}}},
        "status": {"conditions": [held]},
    }


def test_a_job_suspended_past_the_limit_is_reported_and_a_fresh_one_is_not() -> None:
    w = fresh()
    w["jobs"] = [_job(48)]
    f = only(w, "JOB_SUSPENDED")
    assert f.evidence["suspend"] is True and "48 h 0 min" in f.summary and "spec.suspend" in f.remediation
    w["jobs"] = [_job(1)]
    assert _codes(w) == []
    assert _codes(w, Limits(suspended_seconds=1800)) == ["JOB_SUSPENDED"]


def test_a_job_held_by_a_queue_points_at_the_queue() -> None:
    w = fresh()
    w["jobs"] = [_job(48, labels={"kueue.x-k8s.io/queue-name": "team-a"})]
    f = only(w, "JOB_SUSPENDED")
    assert f.evidence["queue"] == "team-a" and "Kueue" in f.remediation and "team-a" in f.summary


def test_a_cronjob_that_suspends_every_run_is_the_subject() -> None:
    w = fresh()
    owner = [{"kind": "CronJob", "name": "nightly", "controller": True}]
    w["jobs"] = [_job(48, ownerReferences=owner)]
    w["cronjobs"] = [
        {
            "kind": "CronJob",
            "metadata": meta("nightly"),
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"suspend": True}}},
        }
    ]
    f = only(w, "JOB_SUSPENDED")
    assert f.object.kind == "CronJob" and [o.kind for o in f.chain] == ["CronJob", "Job"]
    assert "jobTemplate" in f.remediation


def test_finished_resumed_or_malformed_jobs_are_not_suspended() -> None:
    done, resumed, odd = _job(48), _job(48), _job(48)
    done["status"]["conditions"].append(cond("Complete", "True"))
    resumed["spec"]["suspend"] = False
    odd["spec"]["suspend"] = "true"
    odd["status"]["conditions"][0]["lastTransitionTime"] = 7
    for job in (done, resumed, odd):
        w = fresh()
        w["jobs"] = [job]
        assert _codes(w) == []


def test_a_job_created_suspended_without_the_controller_s_condition_counts_from_creation() -> None:
    w = fresh()
    job = _job(48)
    job["status"] = {}
    job["metadata"]["creationTimestamp"] = ts(48 * 60)
    w["jobs"] = [job]
    assert _codes(w) == ["JOB_SUSPENDED"]
    job["status"] = {"startTime": ts(60)}  # ran before: when it was suspended is unknown
    assert _codes(w) == []


# -- quiet: namespaces -----------------------------------------------------------------------------------------
def _terminating(minutes: float) -> Obj:
    ns = namespace("shop")
    ns["metadata"]["deletionTimestamp"] = ts(minutes)
    remaining = cond("NamespaceContentRemaining", "True", "SomeResourcesRemain", "configmaps. has 1 resource instances")
    finalizers = cond(
        "NamespaceFinalizersRemaining", "True", "SomeFinalizersRemain", "example.com/hold in 1 resource instances"
    )
    done = cond("NamespaceDeletionDiscoveryFailure", "False", "ResourcesDiscovered")
    for c in (remaining, finalizers, done):
        c["lastTransitionTime"] = ts(minutes)
    ns["status"] = {"phase": "Terminating", "conditions": [done, remaining, finalizers]}
    return ns


def test_a_namespace_terminating_past_the_limit_names_what_holds_it() -> None:
    w = fresh()
    w["namespaces"] = [_terminating(120)]
    w["configmaps"] = [
        {"metadata": meta("hold", finalizers=["example.com/hold"], deletionTimestamp=ts(120))},
        {"metadata": meta("kept", finalizers=["example.com/other"])},  # not being deleted: holds nothing
    ]
    f = only(w, "NAMESPACE_STUCK_TERMINATING")
    assert f.object.kind == "Namespace" and f.object.namespace is None and "example.com/hold" in f.summary
    assert f.evidence["objects_with_finalizers"] == ["ConfigMap hold: example.com/hold"]
    assert f.evidence["finalizers_remaining"].startswith("example.com/hold")
    assert "discovery_failure" not in f.evidence
    w["namespaces"] = [_terminating(5)]
    assert "NAMESPACE_STUCK_TERMINATING" not in _codes(w)
    assert "NAMESPACE_STUCK_TERMINATING" in _codes(w, Limits(terminating_seconds=60))


def test_only_namespaces_in_scope_are_judged_and_malformed_status_is_tolerated() -> None:
    w = fresh()
    other = _terminating(120)
    other["metadata"]["name"] = "legacy"
    w["namespaces"].append(other)
    assert _codes(w, scope={"shop"}) == []
    assert "NAMESPACE_STUCK_TERMINATING" in _codes(w)
    odd = _terminating(120)
    odd["status"]["conditions"] = ["x", {"type": ["NamespaceContentRemaining"], "status": "True"}]
    odd["metadata"]["deletionTimestamp"] = "not a time"
    w["namespaces"] = [odd]
    assert _codes(w) == []
    odd["metadata"]["deletionTimestamp"] = ts(120)
    assert only(w, "NAMESPACE_STUCK_TERMINATING").summary.endswith("not finished")
