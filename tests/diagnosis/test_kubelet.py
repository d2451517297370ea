"""Kubelet-side start failures on plain dicts (engines/diagnosis/kubelet.py): each broken case is the first finding
with its evidence, its healthy or passing twin gives none, and malformed objects neither crash a rule nor raise a
false finding."""

from __future__ import annotations

from typing import Any

from engines.diagnosis import Finding, Snapshot, kubelet
from tests.diagnosis.world import (
    NOW,
    Obj,
    codes,
    cond,
    container,
    event,
    findings,
    fresh,
    meta,
    only,
    pod,
    replicaset,
    running,
    ts,
    waiting,
)

NOT_FOUND = 'exec: "/app/serve": executable file not found in $PATH'
CALICO = 'failed to setup network for sandbox "3f9c": plugin type="calico" failed (add): connection refused'
NOT_REGISTERED = (
    'MountVolume.MountDevice failed for volume "pv-data" : kubernetes.io/csi: attacher.MountDevice failed to create '
    "newCsiDriverClient: driver name ebs.csi.aws.com not found in the list of registered CSI drivers"
)
WAITED = (
    "Unable to attach or mount volumes: unmounted volumes=[data], unattached volumes=[data kube-api-access-x]: "
    "timed out waiting for the condition"
)
MULTI_ATTACH = (
    'Multi-Attach error for volume "pv-data" Volume is already exclusively attached to one node and can\'t be '
    "attached to another"
)
EVICTION = (
    "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. Container web was using "
    "900Mi, request is 128Mi, has larger consumption of memory. "
)


def broken(w: dict[str, list[Obj]], statuses: list[Obj], phase: str = "Pending", **kw: Any) -> dict[str, list[Obj]]:
    """Both pods of Deployment web in the given container state."""
    w["pods"] = [
        pod("web-abc-1", statuses=statuses, phase=phase, ready=False, **kw),
        pod("web-abc-2", statuses=statuses, phase=phase, ready=False, node_name="node-2", **kw),
    ]
    w["deployments"][0]["status"]["availableReplicas"] = 0
    return w


def pod_event(name: str, reason: str, message: str, first: float | None = None, **kw: Any) -> Obj:
    ev = event("Pod", name, reason, message, **kw)
    if first is not None:
        ev["firstTimestamp"] = ts(first)
    return ev


def creating(w: dict[str, list[Obj]], reason: str, message: str, first: float | None = 20, **kw: Any) -> None:
    """Both pods stuck ContainerCreating with the event `reason` since `first` minutes ago."""
    broken(w, [waiting("ContainerCreating")], **kw)
    w["events"] += [pod_event(p, reason, message, first=first) for p in ("web-abc-1", "web-abc-2")]


def volume_world(access: str = "ReadWriteOnce") -> dict[str, list[Obj]]:
    """Pods of web mount claim data, bound to the CSI volume pv-data."""
    w = fresh()
    w["persistentvolumeclaims"] = [
        {"metadata": meta("data"), "spec": {"volumeName": "pv-data", "accessModes": [access]}, "status": {}}
    ]
    w["persistentvolumes"] = [
        {"metadata": meta("pv-data", None), "spec": {"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"}}}
    ]
    return w


VOLUMES = [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]


# -- the runtime refuses the container ------------------------------------------------------------------------
def test_create_container_error_is_the_cause_and_names_the_command() -> None:
    w = broken(fresh(), [waiting("CreateContainerError", NOT_FOUND)])
    w["events"].append(pod_event("web-abc-1", "Failed", f"Error: {NOT_FOUND}", field_path="spec.containers{web}"))
    found = findings(w)
    assert found[0].code == "POD_CONTAINER_CREATE_FAILED" and found[0].object.name == "web"
    f = found[0]
    assert f.evidence["reason"] == "CreateContainerError" and f.evidence["container"] == "web"
    assert f.evidence["pod_count"] == 2 and "command is not in the image" in f.summary
    assert f.fix is None  # one revision: nothing to roll back to
    assert "POD_CRASHLOOP" not in codes(w) and "POD_CONFIG_MISSING" not in codes(w)
    assert codes(fresh()) == []


def test_a_failure_that_came_with_the_newest_revision_can_be_rolled_back() -> None:
    w = broken(fresh(), [waiting("CreateContainerError", NOT_FOUND)], rs="web-new")
    w["replicasets"] = [replicaset("web-abc", revision=1, replicas=0), replicaset("web-new", revision=2)]
    f = only(w, "POD_CONTAINER_CREATE_FAILED")
    assert f.fix and f.fix.action == "rollout_undo" and f.fix.params == {"to_revision": 1}


def test_a_stale_container_name_is_not_blamed_on_the_revision() -> None:
    message = 'the container name "k8s_web_web-abc-1" is already in use by 4f1c'
    w = broken(fresh(), [waiting("CreateContainerError", message)], rs="web-new")
    w["replicasets"] = [replicaset("web-abc", revision=1, replicas=0), replicaset("web-new", revision=2)]
    f = only(w, "POD_CONTAINER_CREATE_FAILED")
    assert f.fix is None and "stale container" in f.summary and "node-1" in f.remediation


def test_run_container_error_keeps_its_reason_and_restarts() -> None:
    message = 'runc create failed: unable to start container process: exec: "/app/start": permission denied'
    last = {"reason": "StartError", "exitCode": 128, "message": message}
    w = broken(fresh(), [waiting("RunContainerError", message, restarts=3, last=last)], phase="Running")
    f = findings(w)[0]
    assert f.code == "POD_CONTAINER_CREATE_FAILED" and "cannot be started" in f.summary
    assert f.evidence["reason"] == "RunContainerError" and f.evidence["restarts"] == 3
    assert "chmod +x" in f.remediation


def test_a_start_error_in_crash_loop_back_off_outranks_the_crash_loop() -> None:
    last = {"reason": "StartError", "exitCode": 128, "message": 'exec: "/app/start": exec format error'}
    w = broken(fresh(), [waiting("CrashLoopBackOff", "back-off 5m0s", restarts=9, last=last)], phase="Running")
    found = codes(w)
    assert found[0] == "POD_CONTAINER_CREATE_FAILED" and "POD_CRASHLOOP" in found
    assert only(w, "POD_CONTAINER_CREATE_FAILED").evidence["reason"] == "StartError"


def test_missing_config_stays_with_config_missing() -> None:
    w = broken(fresh(), [waiting("CreateContainerConfigError", 'configmap "app-env" not found')])
    assert codes(w)[0] == "POD_CONFIG_MISSING" and "POD_CONTAINER_CREATE_FAILED" not in codes(w)
    w = broken(fresh(), [waiting("CreateContainerConfigError", "")])  # nothing to go on: not ours to report
    assert "POD_CONTAINER_CREATE_FAILED" not in codes(w)


def test_another_create_container_config_error_is_a_create_failure() -> None:
    message = 'failed to prepare subPath for volumeMount "cfg" of container "web"'
    w = broken(fresh(), [waiting("CreateContainerConfigError", message)])
    f = findings(w)[0]
    assert f.code == "POD_CONTAINER_CREATE_FAILED" and f.evidence["reason"] == "CreateContainerConfigError"


def test_image_inspect_error() -> None:
    message = 'Failed to inspect image "shop/web:1.0": rpc error: code = Unknown desc = failed to get image config'
    w = broken(fresh(), [waiting("ImageInspectError", message)])
    f = findings(w)[0]
    assert f.code == "POD_IMAGE_INSPECT_FAILED" and f.evidence["image"] == "shop/web:1.0"
    assert "crictl rmi" in f.remediation and "POD_IMAGE_PULL" not in codes(w)


def test_run_as_non_root_with_a_root_image() -> None:
    message = 'container has runAsNonRoot and image will run as root (pod: "web-abc-1_shop(1)", container: web)'
    w = broken(fresh(), [waiting("CreateContainerConfigError", message)], securityContext={"runAsNonRoot": True})
    f = findings(w)[0]
    assert f.code == "POD_RUN_AS_ROOT" and f.evidence["runAsNonRoot"] is True and f.evidence["set_in"] == "pod"
    assert f.evidence["container"] == "web" and "runAsUser" in f.remediation
    assert "POD_CONFIG_MISSING" not in codes(w) and "POD_CONTAINER_CREATE_FAILED" not in codes(w)


def test_run_as_non_root_set_on_the_container_with_a_named_user() -> None:
    message = "container has runAsNonRoot and image has non-numeric user (app), cannot verify user is non-root"
    spec = container(securityContext={"runAsNonRoot": True})
    w = broken(fresh(), [waiting("CreateContainerConfigError", message)], containers=[spec])
    f = only(w, "POD_RUN_AS_ROOT")
    assert f.evidence["set_in"] == "container" and "non-numeric user app" in f.summary


def test_run_as_user_zero_breaks_the_policy() -> None:
    message = 'container\'s runAsUser breaks non-root policy (pod: "web-abc-1_shop(1)", container: web)'
    context = {"runAsNonRoot": True, "runAsUser": 0}
    w = broken(fresh(), [waiting("CreateContainerConfigError", message)], securityContext=context)
    f = only(w, "POD_RUN_AS_ROOT")
    assert f.evidence["runAsUser"] == 0 and "runAsUser is 0" in f.summary


# -- hooks ------------------------------------------------------------------------------------------------------
HOOK = {"postStart": {"exec": {"command": ["/bin/sh", "-c", "/app/warm.sh"]}}}


def test_a_failing_post_start_hook_outranks_the_crash_loop_it_causes() -> None:
    last = {"reason": "Error", "exitCode": 137, "finishedAt": ts(1)}
    w = broken(
        fresh(),
        [waiting("CrashLoopBackOff", "back-off 40s", restarts=3, last=last)],
        phase="Running",
        containers=[container(lifecycle=HOOK)],
    )
    w["events"].append(pod_event("web-abc-1", "FailedPostStartHook", "PostStartHook failed", count=4))
    found = findings(w)
    assert found[0].code == "POD_HOOK_FAILED" and "POD_CRASHLOOP" in [f.code for f in found]
    f = found[0]
    assert f.evidence["hook"] == "postStart" and f.evidence["container"] == "web"
    assert f.evidence["handler"] == HOOK["postStart"] and f.severity == "critical"


def test_a_post_start_hook_error_without_its_event_and_an_old_event_on_a_ready_container() -> None:
    output = "Exec lifecycle hook ([/bin/sh -c /app/warm.sh]) for Container web failed - exited with 127"
    w = broken(fresh(), [waiting("PostStartHookError", output, restarts=1)], containers=[container(lifecycle=HOOK)])
    f = only(w, "POD_HOOK_FAILED")
    assert f.evidence["message"] == output
    w = fresh()  # the hook failed once, the container has run fine since
    w["pods"][0]["status"]["containerStatuses"] = [running(restarts=1)]
    w["events"].append(pod_event("web-abc-1", "FailedPostStartHook", "PostStartHook failed"))
    assert "POD_HOOK_FAILED" not in codes(w)


def test_a_failing_pre_stop_hook_is_a_warning() -> None:
    w = fresh()
    w["pods"][0]["metadata"]["deletionTimestamp"] = ts(0.5)
    w["pods"][0]["spec"]["containers"] = [container(lifecycle={"preStop": {"httpGet": {"path": "/drain"}}})]
    w["events"].append(pod_event("web-abc-1", "FailedPreStopHook", "HTTP lifecycle hook (/drain) failed"))
    f = only(w, "POD_HOOK_FAILED")
    assert f.severity == "warning" and f.evidence["hook"] == "preStop" and f.evidence["container"] == "web"


# -- sandbox, mount, attach -----------------------------------------------------------------------------------
def test_a_lasting_sandbox_failure_names_the_plugin_and_nodes() -> None:
    w = fresh()
    creating(w, "FailedCreatePodSandBox", f"Failed to create pod sandbox: {CALICO}")
    f = findings(w)[0]
    assert f.code == "POD_SANDBOX_FAILED" and f.evidence["plugin"] == "calico"
    assert f.evidence["nodes"] == ["node-1", "node-2"] and "on 2 nodes" in f.summary
    assert f.evidence["failing_for"] == "20 min" and f.evidence["attempts"] == 3


def test_a_sandbox_failure_on_one_node_says_so() -> None:
    w = fresh()
    w["pods"][1] = pod("web-abc-2", statuses=[], phase="Pending", ready=False)  # no container status yet
    w["events"].append(pod_event("web-abc-2", "FailedCreatePodSandBox", CALICO, first=15))
    f = only(w, "POD_SANDBOX_FAILED")
    assert f.evidence["nodes"] == ["node-1"] and "on node node-1" in f.summary and "cordon" in f.remediation


def test_a_young_or_resolved_sandbox_failure_is_not_reported() -> None:
    w = fresh()
    creating(w, "FailedCreatePodSandBox", CALICO, first=1)  # the kubelet is still retrying
    assert "POD_SANDBOX_FAILED" not in codes(w)
    w = fresh()  # it failed a while ago; the pod runs now
    w["events"].append(pod_event("web-abc-1", "FailedCreatePodSandBox", CALICO, first=30))
    assert codes(w) == []


def test_ip_exhaustion_gets_its_own_advice() -> None:
    w = fresh()
    creating(w, "FailedCreatePodSandBox", 'plugin type="aws-cni" failed: failed to assign an IP address: ipam')
    assert "pod IP" in findings(w)[0].remediation


def test_a_csi_driver_missing_on_the_node() -> None:
    w = volume_world()
    creating(w, "FailedMount", NOT_REGISTERED, volumes=VOLUMES)
    f = findings(w)[0]
    assert f.code == "POD_MOUNT_FAILED"
    assert {k: f.evidence[k] for k in ("volume", "claim", "persistent_volume", "driver", "source")} == {
        "volume": "data",
        "claim": "data",
        "persistent_volume": "pv-data",
        "driver": "ebs.csi.aws.com",
        "source": "csi",
    }
    assert "not registered on node node-1" in f.summary


def test_a_missing_config_map_volume_stays_config_missing() -> None:
    w = fresh()
    creating(w, "FailedMount", 'MountVolume.SetUp failed for volume "cfg" : configmap "app-env" not found')
    assert codes(w)[0] == "POD_CONFIG_MISSING" and "POD_MOUNT_FAILED" not in codes(w)


def test_the_kubelet_timeout_alone_is_a_mount_failure_but_echoes_an_attach_failure() -> None:
    w = volume_world()
    creating(w, "FailedMount", WAITED, volumes=VOLUMES)
    f = findings(w)[0]
    assert f.code == "POD_MOUNT_FAILED" and f.evidence["volume"] == "data"
    w["events"] += [pod_event(p, "FailedAttachVolume", MULTI_ATTACH, first=25) for p in ("web-abc-1", "web-abc-2")]
    assert codes(w)[0] == "POD_VOLUME_ATTACH_FAILED" and "POD_MOUNT_FAILED" not in codes(w)


def test_multi_attach_names_the_pod_that_holds_the_volume() -> None:
    w = volume_world()
    w["pods"] = [
        pod(
            "web-new-1",
            rs="web-abc",
            statuses=[waiting("ContainerCreating")],
            phase="Pending",
            ready=False,
            volumes=VOLUMES,
        ),
        pod("web-old-1", rs="web-abc", node_name="node-2", volumes=VOLUMES),
    ]
    w["events"].append(pod_event("web-new-1", "FailedAttachVolume", MULTI_ATTACH, first=10))
    f = only(w, "POD_VOLUME_ATTACH_FAILED")
    assert f.evidence["used_by"] == ["web-old-1 (node-2)"] and f.evidence["access_modes"] == ["ReadWriteOnce"]
    assert "web-old-1" in f.remediation and "Recreate" in f.remediation


# -- evictions ------------------------------------------------------------------------------------------------
def evicted(name: str, minutes: float, message: str = EVICTION, rs: str | None = "web-abc", **kw: Any) -> Obj:
    p = pod(name, rs=rs, statuses=[], phase="Failed", ready=False, **kw)
    p["status"].update(reason="Evicted", message=message)
    target = cond("DisruptionTarget", "True", "TerminationByKubelet", message)
    target["lastTransitionTime"] = ts(minutes)
    p["status"]["conditions"].append(target)
    return p


def test_repeated_evictions_of_a_workload_are_counted_with_the_resource_and_a_request_fix() -> None:
    w = fresh()
    w["pods"] += [evicted("web-abc-x", 30), evicted("web-abc-y", 90, node_name="node-2")]
    f = findings(w)[0]
    assert f.code == "POD_EVICTED" and f.severity == "warning" and f.object.name == "web"
    assert f.evidence["evicted"] == 2 and f.evidence["resource"] == "memory"
    assert f.evidence["nodes"] == ["node-1", "node-2"]
    assert f.evidence["usage"] == "container web used 900Mi, request 128Mi"
    assert f.fix and f.fix.action == "set_resources" and f.fix.params == {"requests": {"memory": "960Mi"}}


def test_one_eviction_or_old_ones_are_not_reported() -> None:
    w = fresh()
    w["pods"].append(evicted("web-abc-x", 30))
    assert codes(w) == []
    w = fresh()
    w["pods"] += [evicted("web-abc-x", 3 * 24 * 60), evicted("web-abc-y", 2 * 24 * 60)]
    assert codes(w) == []


def test_a_bare_pod_evicted_once_is_gone_and_reported() -> None:
    w = fresh()
    message = "The node was low on resource: ephemeral-storage. Threshold quantity: 1Gi, available: 900Mi. "
    w["pods"].append(evicted("scratch", 10, message, rs=None))
    f = only(w, "POD_EVICTED")
    assert f.object.kind == "Pod" and f.evidence["resource"] == "ephemeral-storage" and f.fix is None


def test_no_request_fix_above_the_limit() -> None:
    w = fresh()
    limited = [container(resources={"requests": {"memory": "128Mi"}, "limits": {"memory": "512Mi"}})]
    w["pods"] += [evicted("web-abc-x", 5, containers=limited), evicted("web-abc-y", 6, containers=limited)]
    assert only(w, "POD_EVICTED").fix is None


# -- malformed input ------------------------------------------------------------------------------------------
def kubelet_findings(objects: dict[str, list[Obj]]) -> list[Finding]:
    """This module's rules alone, run directly: an exception fails the test instead of becoming an engine note."""
    snap = Snapshot(objects, cluster="test", now=NOW)
    return [f for rule in kubelet.RULES for f in rule(snap)]


def test_malformed_objects_neither_crash_nor_raise_false_findings() -> None:
    w = fresh()
    odd = {
        "waiting-list": pod(
            "odd-1", rs=None, statuses=[{"name": "web", "state": {"waiting": ["RunContainerError"]}}], ready=False
        ),
        "numbers": pod("odd-2", rs=None, statuses=[{"name": 3, "state": {"waiting": {"reason": 5}}}], ready=False),
        "hook-text": pod(
            "odd-3",
            rs=None,
            containers=[container(lifecycle="postStart")],
            statuses=[running(ready=False)],
            ready=False,
        ),
        "root-list": pod(
            "odd-4", rs=None, statuses=[waiting("CreateContainerConfigError", "runAsNonRoot")], ready=False
        ),
        "volumes-map": pod(
            "odd-5", rs=None, phase="Pending", statuses=[waiting("ContainerCreating")], volumes={"x": 1}, ready=False
        ),
        "evicted-42": pod("odd-6", rs=None, phase="Failed", statuses=[], ready=False),
    }
    odd["root-list"]["spec"]["securityContext"] = ["runAsNonRoot"]
    odd["root-list"]["spec"]["containers"][0]["securityContext"] = "yes"
    odd["evicted-42"]["status"].update(reason="Evicted", message=42)
    odd["evicted-42"]["metadata"]["creationTimestamp"] = "last week"
    w["pods"] += [*odd.values(), {"metadata": meta("no-spec"), "status": {"phase": "Pending"}}]
    w["events"] += [
        {"reason": "FailedMount", "message": None},  # about nothing
        {**pod_event("odd-5", "FailedMount", "boom"), "count": "many", "firstTimestamp": "yesterday"},
        {**pod_event("odd-5", "FailedAttachVolume", ""), "message": None, "firstTimestamp": 12},
        pod_event("odd-3", "FailedPostStartHook", "PostStartHook failed"),
        {**pod_event("web-abc-1", "FailedCreatePodSandBox", CALICO), "series": "x"},  # a running pod
    ]
    found = {(f.code, f.object.name): f for f in kubelet_findings(w)}
    # odd-3's hook failed on a container that is not ready; odd-4 is refused for runAsNonRoot although its
    # securityContext is unreadable; odd-5 is stuck (its times unreadable) on a volume no message names
    assert set(found) == {
        ("POD_HOOK_FAILED", "odd-3"),
        ("POD_RUN_AS_ROOT", "odd-4"),
        ("POD_MOUNT_FAILED", "odd-5"),
        ("POD_VOLUME_ATTACH_FAILED", "odd-5"),
    }
    assert found[("POD_HOOK_FAILED", "odd-3")].evidence["container"] == "web"
    assert "runAsNonRoot" not in found[("POD_RUN_AS_ROOT", "odd-4")].evidence
    mount = found[("POD_MOUNT_FAILED", "odd-5")]
    assert mount.evidence["attempts"] == 1 and "volume" not in mount.evidence and "failing_for" in mount.evidence


def test_naive_timestamps_are_read_as_utc() -> None:
    w = fresh()
    w["pods"] += [evicted("web-abc-x", 5), evicted("web-abc-y", 6)]
    for p in w["pods"][-2:]:
        p["status"]["conditions"][-1]["lastTransitionTime"] = ts(5).rstrip("Z")
    assert codes(w) == ["POD_EVICTED"]


def test_a_kubelet_step_before_the_start_and_a_pod_cgroup_failure() -> None:
    message = "failed to allocate devices: requested number of devices unavailable for nvidia.com/gpu"
    w = broken(fresh(), [waiting("PreStartHookError", message)])
    f = findings(w)[0]
    assert f.code == "POD_CONTAINER_CREATE_FAILED" and "device plugin" in f.remediation
    w = fresh()
    creating(w, "FailedCreatePodContainer", "unable to ensure pod container exists: failed to create container")
    f = findings(w)[0]
    assert f.code == "POD_SANDBOX_FAILED" and "containerd or CRI-O" in f.remediation
