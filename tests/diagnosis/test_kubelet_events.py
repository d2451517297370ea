"""Kubelet events read as problems: DNS settings trimmed or missing, system OOM kills, eviction thresholds, pods
the runtime cannot kill, sandbox steps (network, DRA, status), block-volume maps and filesystem mismatches,
kubelet preemption, failed in-place resizes and abnormal volumes. Old events are history and stay silent."""

from __future__ import annotations

from typing import Any

from engines.diagnosis import Snapshot, run
from tests.diagnosis.world import NOW, Obj, cond, event, findings, fresh, pod, ts, waiting

SEARCH_MSG = (
    "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: "
    "shop.svc.cluster.local svc.cluster.local cluster.local a.example b.example"
)
NS_MSG = "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: 1.1.1.1"
MISSING_DNS = (
    'pod: "web-abc-1_shop(uid)". kubelet does not have ClusterDNS IP configured and cannot create Pod using '
    '"ClusterFirst" policy. Falling back to "Default" policy.'
)


def aged(ev: Obj, minutes: float) -> Obj:
    ev["lastTimestamp"] = ts(minutes)
    ev["firstTimestamp"] = ts(minutes + 5)
    return ev


def node_event(node: str, reason: str, message: str, minutes: float = 1, count: int = 1) -> Obj:
    ev = event("Node", node, reason, message, count=count, ns="default")
    ev["involvedObject"]["namespace"] = ""
    return aged(ev, minutes)


def codes_of(w: dict[str, list[Obj]]) -> list[str]:
    return [f.code for f in findings(w)]


def the(w: dict[str, list[Obj]], code: str) -> Any:
    found = [f for f in findings(w) if f.code == code]
    assert len(found) == 1, [f.code for f in findings(w)]
    return found[0]


# -- DNS ------------------------------------------------------------------------------------------------------
def test_a_ready_pod_whose_search_line_was_trimmed_is_reported_with_the_node_as_the_source() -> None:
    w = fresh()
    w["events"] += [
        event("Pod", "web-abc-1", "DNSConfigForming", SEARCH_MSG),
        node_event("node-1", "CheckLimitsForResolvConf", "Resolv.conf file '/etc/resolv.conf' contains search line"),
    ]
    f = the(w, "POD_DNS_CONFIG")
    assert f.severity == "warning" and "search domains" in f.summary
    assert f.evidence["applied"].startswith("shop.svc") and "node_resolv_conf" in f.evidence
    assert "resolv.conf of node node-1" in f.remediation


def test_too_many_nameservers_in_the_pods_own_dns_config_points_at_the_pod_spec() -> None:
    w = fresh()
    w["pods"][0]["spec"]["dnsConfig"] = {"nameservers": ["1.1.1.1", "8.8.8.8", "9.9.9.9", "4.4.4.4"]}
    w["events"].append(event("Pod", "web-abc-1", "DNSConfigForming", NS_MSG))
    f = the(w, "POD_DNS_CONFIG")
    assert "nameservers" in f.summary and "spec.dnsConfig.nameservers" in f.remediation


def test_missing_cluster_dns_is_critical_and_names_the_kubelet_setting() -> None:
    w = fresh()
    w["events"].append(event("Pod", "web-abc-1", "MissingClusterDNS", MISSING_DNS))
    f = the(w, "POD_DNS_CONFIG")
    assert f.severity == "critical" and "clusterDNS" in f.remediation


def test_old_dns_events_and_events_of_an_earlier_pod_of_the_same_name_are_history() -> None:
    w = fresh()
    w["events"].append(aged(event("Pod", "web-abc-1", "DNSConfigForming", SEARCH_MSG), 90))
    assert "POD_DNS_CONFIG" not in codes_of(w)
    w = fresh()
    w["pods"][0]["metadata"]["creationTimestamp"] = ts(2)
    w["events"].append(aged(event("Pod", "web-abc-1", "DNSConfigForming", SEARCH_MSG), 10))
    assert "POD_DNS_CONFIG" not in codes_of(w)


def test_dns_events_with_hostile_shapes_do_not_crash() -> None:
    w = fresh()
    w["pods"][0]["spec"]["dnsConfig"] = {"nameservers": "1.1.1.1", "searches": [1, None]}
    ev = event("Pod", "web-abc-1", "DNSConfigForming", SEARCH_MSG)
    ev["message"] = None
    ev["lastTimestamp"] = 12
    w["events"].append(ev)
    report = run(Snapshot(w, cluster="test", now=NOW))
    assert report.notes == [] and "POD_DNS_CONFIG" in [f.code for f in report.findings]


# -- nodes ----------------------------------------------------------------------------------------------------
def test_a_recent_system_oom_is_reported_on_the_node_with_its_victims() -> None:
    w = fresh()
    msg = "System OOM encountered, victim process: java, pid: 4242"
    w["events"].append(node_event("node-1", "SystemOOM", msg, count=2))
    f = the(w, "NODE_SYSTEM_OOM")
    assert f.object.name == "node-1" and f.evidence["kills"] == 2 and f.evidence["victims"] == ["java"]


def test_an_old_system_oom_or_one_on_a_node_outside_the_scope_is_silent() -> None:
    w = fresh()
    w["events"].append(node_event("node-1", "SystemOOM", "System OOM encountered", minutes=120))
    assert "NODE_SYSTEM_OOM" not in codes_of(w)
    w = fresh()
    w["events"].append(node_event("node-9", "SystemOOM", "System OOM encountered"))
    w["nodes"].append(w["nodes"][0] | {"metadata": {"name": "node-9"}})
    assert "NODE_SYSTEM_OOM" not in [f.code for f in findings(w, scope={"shop"})]


def test_eviction_threshold_met_is_evidence_of_the_pressure_condition() -> None:
    w = fresh()
    w["nodes"][0]["status"]["conditions"][1] = cond("MemoryPressure", "True", "KubeletHasInsufficientMemory")
    w["events"].append(node_event("node-1", "EvictionThresholdMet", "Attempting to reclaim memory"))
    f = the(w, "NODE_MEMORY_PRESSURE")
    assert f.evidence["reclaiming"] == "Attempting to reclaim memory"
    w["nodes"][0]["status"]["conditions"][1] = cond("MemoryPressure", "False")
    assert "NODE_MEMORY_PRESSURE" not in codes_of(w)  # the pressure passed: the event is history


def test_node_events_with_hostile_shapes_do_not_crash() -> None:
    w = fresh()
    bad = node_event("node-1", "SystemOOM", "x")
    bad["involvedObject"] = {"kind": "Node", "name": None}
    odd = node_event("node-1", "SystemOOM", "System OOM encountered")
    odd["count"] = "many"
    odd["message"] = None
    w["events"] += [bad, odd]
    report = run(Snapshot(w, cluster="test", now=NOW))
    assert report.notes == []
    assert [f.evidence["kills"] for f in report.findings if f.code == "NODE_SYSTEM_OOM"] == [1]


# -- pods that do not stop ------------------------------------------------------------------------------------
def test_a_pod_the_runtime_cannot_kill_is_reported_with_the_cause() -> None:
    w = fresh()
    w["pods"][0]["metadata"]["deletionTimestamp"] = ts(10)
    w["events"].append(event("Pod", "web-abc-1", "FailedKillPod", "error killing pod: rpc error: DeadlineExceeded"))
    f = the(w, "POD_STUCK_TERMINATING")
    assert "fails to kill" in f.summary and "DeadlineExceeded" in f.evidence["message"]


def test_an_evicted_pod_that_outlived_its_grace_period_is_reported_without_a_deletion() -> None:
    w = fresh()
    msg = "Container runtime did not kill the pod within specified grace period."
    w["events"].append(event("Pod", "web-abc-1", "ExceededGracePeriod", msg))
    f = the(w, "POD_STUCK_TERMINATING")
    assert f.summary.startswith("does not stop")


def test_old_kill_failures_and_those_of_finished_pods_are_silent() -> None:
    w = fresh()
    w["events"].append(aged(event("Pod", "web-abc-1", "FailedKillPod", "error killing pod"), 120))
    assert "POD_STUCK_TERMINATING" not in codes_of(w)
    w = fresh()
    w["pods"][0]["status"]["phase"] = "Failed"
    w["events"].append(event("Pod", "web-abc-1", "ExceededGracePeriod", "Container runtime did not kill"))
    assert "POD_STUCK_TERMINATING" not in codes_of(w)


# -- sandbox steps and volumes --------------------------------------------------------------------------------
def creating(name: str = "web-abc-1") -> Obj:
    p = pod(name, phase="Pending", ready=False, statuses=[waiting("ContainerCreating")])
    p["status"]["conditions"][0]["lastTransitionTime"] = ts(20)
    return p


def stuck_with(reason: str, message: str) -> dict[str, list[Obj]]:
    w = fresh()
    w["pods"][0] = creating()
    w["events"].append(aged(event("Pod", "web-abc-1", reason, message), 1))
    w["events"][-1]["firstTimestamp"] = ts(15)
    return w


def test_network_not_ready_sandbox_status_dra_and_failed_sync_are_sandbox_failures() -> None:
    cases = {
        "NetworkNotReady": ("network is not ready: container runtime network not ready", "network plugin"),
        "FailedPodSandBoxStatus": ("Unable to get pod sandbox status: rpc error", "cannot report its status"),
        "FailedSync": ("error determining status: rpc error: code = Unknown", "cannot report its status"),
        "FailedPrepareDynamicResources": ("Failed to prepare dynamic resources: NodePrepareResources", "DRA driver"),
    }
    for reason, (message, short) in cases.items():
        f = the(stuck_with(reason, message), "POD_SANDBOX_FAILED")
        assert short in f.summary, (reason, f.summary)


def test_a_sandbox_step_failing_for_a_moment_or_on_a_started_pod_is_silent() -> None:
    w = stuck_with("NetworkNotReady", "network is not ready")
    w["events"][-1]["firstTimestamp"] = ts(1)
    assert "POD_SANDBOX_FAILED" not in codes_of(w)
    w = fresh()
    w["events"].append(event("Pod", "web-abc-1", "FailedSync", "error determining status"))
    assert "POD_SANDBOX_FAILED" not in codes_of(w)


def with_block_claim(w: dict[str, list[Obj]]) -> None:
    w["pods"][0]["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]
    w["persistentvolumeclaims"].append(
        {"metadata": {"name": "data", "namespace": "shop"}, "spec": {"volumeName": "pv-1"}, "status": {}}
    )
    w["persistentvolumes"].append({"metadata": {"name": "pv-1"}, "spec": {"csi": {"driver": "disk.example"}}})


def test_a_failed_block_volume_map_is_a_mount_failure() -> None:
    w = stuck_with("FailedMapVolume", 'MapVolume.SetUpDevice failed for volume "pv-1" : device not found')
    with_block_claim(w)
    f = the(w, "POD_MOUNT_FAILED")
    assert f.evidence["persistent_volume"] == "pv-1"


def test_a_filesystem_mismatch_on_the_volume_names_the_fs_type() -> None:
    w = stuck_with("FailedMount", 'MountVolume.MountDevice failed for volume "pv-1" : mount failed')
    with_block_claim(w)
    ev = event("PersistentVolume", "pv-1", "FailedMountOnFilesystemMismatch", "MountVolume failed: xfs != ext4")
    ev["involvedObject"]["namespace"] = ""
    ev["metadata"]["namespace"] = "default"
    w["events"].append(ev)
    f = the(w, "POD_MOUNT_FAILED")
    assert "filesystem" in f.summary and "fsType" in f.remediation and f.evidence["filesystem_mismatch"]
    ev["lastTimestamp"] = ts(120)
    assert "fsType" not in the(w, "POD_MOUNT_FAILED").summary


# -- preemption, resize, volume health ------------------------------------------------------------------------
def preempted(name: str) -> Obj:
    p = pod(name, ready=False, phase="Failed", statuses=[])
    p["status"].update(reason="Preempting", message="Preempted in order to admit critical pod")
    dt = cond("DisruptionTarget", "True", "TerminationByKubelet")
    dt["lastTransitionTime"] = ts(30)
    p["status"]["conditions"].append(dt)
    return p


def test_pods_the_kubelet_preempted_for_a_critical_pod_are_reported() -> None:
    w = fresh()
    w["pods"] += [preempted("web-abc-7"), preempted("web-abc-8")]
    found = [f for f in findings(w) if f.code == "POD_EVICTED"]
    assert found and "preempted" in found[0].summary and found[0].evidence["preempted"] == 2
    w = fresh()
    w["pods"].append(preempted("web-abc-7"))  # one pod of a workload in a day: the controller replaced it
    assert "POD_EVICTED" not in codes_of(w)


def test_a_resize_the_runtime_refused_is_reported_and_a_cleared_one_is_not() -> None:
    w = fresh()
    c = cond("PodResizeInProgress", "True", "Error", "failed to update container resources: memory too low")
    w["pods"][0]["status"]["conditions"].append(c)
    w["events"].append(event("Pod", "web-abc-1", "ResizeError", "Pod resize failed"))
    f = the(w, "POD_RESIZE_FAILED")
    assert "memory too low" in f.evidence["message"]
    c["reason"] = ""
    assert "POD_RESIZE_FAILED" not in codes_of(w)
    w = fresh()
    w["events"].append(event("Pod", "web-abc-1", "ResizeError", "Pod resize failed"))  # the condition cleared
    assert "POD_RESIZE_FAILED" not in codes_of(w)


def test_an_abnormal_volume_is_reported_on_its_pod_from_pod_or_claim_events() -> None:
    w = fresh()
    w["events"].append(event("Pod", "web-abc-1", "VolumeConditionAbnormal", "Volume data: disk is read-only"))
    f = the(w, "POD_VOLUME_UNHEALTHY")
    assert f.evidence["volume"] == "data"
    w = fresh()
    with_block_claim(w)
    w["events"].append(event("PersistentVolumeClaim", "data", "VolumeConditionAbnormal", "volume is lost"))
    assert the(w, "POD_VOLUME_UNHEALTHY").evidence["message"] == "volume is lost"
    w["events"][-1]["lastTimestamp"] = ts(120)
    assert "POD_VOLUME_UNHEALTHY" not in codes_of(w)


def test_hostile_pod_shapes_do_not_crash_the_new_rules() -> None:
    w = fresh()
    w["pods"][0]["status"]["conditions"] = ["PodResizeInProgress", None]  # other rules may refuse this pod
    w["pods"][0]["spec"]["volumes"] = [None, {"persistentVolumeClaim": "data"}]
    w["pods"].append({"metadata": {"name": "bare", "namespace": "shop"}, "spec": None})
    report = run(Snapshot(w, cluster="test", now=NOW))
    mine = ("dns_config", "resize_failed", "volume_health", "stuck_terminating")
    assert [n for n in report.notes if any(f".{r} " in n for r in mine)] == []
    w = fresh()
    w["pods"][0]["spec"]["volumes"] = [None, {"persistentVolumeClaim": "data"}]
    w["events"].append(event("Pod", "web-abc-1", "VolumeConditionAbnormal", ""))
    assert the(w, "POD_VOLUME_UNHEALTHY").evidence["message"] == ""
