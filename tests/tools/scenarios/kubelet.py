"""Pods the kubelet cannot start: the runtime refuses the container, the sandbox or a volume cannot be set up, a
lifecycle hook fails, or node pressure evicts pods. The controllers and the scheduler create and place the pods;
the builder writes what the kubelet (or the attach-detach controller) would: container states through the status
subresource, and their Warning events. Each twin is the same workload running fine."""

from __future__ import annotations

from typing import Any

from tests.tools.diagnosis_scenarios import (
    Kube,
    Scenario,
    _claim,
    _pv,
    _scenario_node,
    hours_ago,
    now,
    wait_for,
    waiting_status,
)


def _event(
    kube: Kube,
    ns: str,
    pod: dict[str, Any],
    reason: str,
    message: str,
    count: int = 5,
    minutes: float = 0,
    source: str = "kubelet",
    container: str | None = "app",
) -> None:
    """A Warning event about `pod`, first seen `minutes` ago and last just now."""
    involved = {"kind": "Pod", "namespace": ns, "name": pod["metadata"]["name"], "apiVersion": "v1"}
    if container:
        involved["fieldPath"] = f"spec.containers{{{container}}}"
    kube.create(
        f"/api/v1/namespaces/{ns}/events",
        {
            "metadata": {"generateName": f"{pod['metadata']['name']}."},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": "Warning",
            "count": count,
            "firstTimestamp": hours_ago(minutes / 60),
            "lastTimestamp": now(),
            "source": {"component": source, "host": pod["spec"].get("nodeName", "")},
        },
    )


def _web(kube: Kube, ns: str, broken: bool, replicas: int = 2, **kw: Any) -> list[dict[str, Any]]:
    """Deployment web: Running and Ready (twin), or scheduled and left to the builder to break."""
    return kube.deploy(ns, "web", replicas=replicas, ready=not broken, **kw)


def _waiting(kube: Kube, ns: str, pods: list[dict[str, Any]], reason: str, message: str, **kw: Any) -> None:
    for p in pods:
        kube.set_pod_status(ns, p["metadata"]["name"], waiting_status(p, reason, message, **kw))


# -- the runtime refuses the container ------------------------------------------------------------------------
NOT_FOUND = (
    'container create failed: runc create failed: unable to start container process: exec: "/app/serve": '
    "executable file not found in $PATH"
)
NOT_EXECUTABLE = (
    "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: "
    'unable to start container process: exec: "/app/start": permission denied: unknown'
)


def create_container_error(kube: Kube, ns: str, broken: bool) -> None:
    """CRI-O cannot create the container: the template's command is not in the image."""
    pods = _web(kube, ns, broken, container={"command": ["/app/serve"]})
    if broken:
        _waiting(kube, ns, pods, "CreateContainerError", NOT_FOUND, phase="Pending")
        for p in pods:
            _event(kube, ns, p, "Failed", f"Error: {NOT_FOUND}", count=7)


def run_container_error(kube: Kube, ns: str, broken: bool) -> None:
    """containerd creates the container but cannot start it: the entrypoint lacks the execute bit."""
    pods = _web(kube, ns, broken, container={"command": ["/app/start"]})
    if broken:
        last = {"reason": "StartError", "exitCode": 128, "message": NOT_EXECUTABLE, "finishedAt": now()}
        _waiting(kube, ns, pods, "RunContainerError", NOT_EXECUTABLE, restarts=3, last=last)
        for p in pods:
            _event(kube, ns, p, "Failed", f"Error: {NOT_EXECUTABLE}", count=4)


def image_inspect_error(kube: Kube, ns: str, broken: bool) -> None:
    """The image is on the node but its config blob is missing from the runtime's content store."""
    pods = _web(kube, ns, broken)
    message = (
        'Failed to inspect image "shop/web:1.0": rpc error: code = Unknown desc = failed to get image config: '
        "content digest sha256:9b2a4c1e0f3d: not found"
    )
    if broken:
        _waiting(kube, ns, pods, "ImageInspectError", message, phase="Pending")
        for p in pods:
            _event(kube, ns, p, "InspectFailed", message, count=6)


def run_as_root(kube: Kube, ns: str, broken: bool) -> None:
    """runAsNonRoot on an image that runs as root; the twin also sets a non-root UID."""
    context: dict[str, Any] = {"runAsNonRoot": True}
    if not broken:
        context["runAsUser"] = 1000
    pods = _web(kube, ns, broken, pod_spec={"securityContext": context})
    for p in pods if broken else []:
        message = (
            "container has runAsNonRoot and image will run as root "
            f'(pod: "{p["metadata"]["name"]}_{ns}({p["metadata"]["uid"]})", container: app)'
        )
        _waiting(kube, ns, [p], "CreateContainerConfigError", message, phase="Pending")
        _event(kube, ns, p, "Failed", f"Error: {message}", count=9)


# -- pods stuck ContainerCreating -----------------------------------------------------------------------------
def _creating(kube: Kube, ns: str, pods: list[dict[str, Any]], minutes: float) -> None:
    """ContainerCreating, scheduled `minutes` ago."""
    for p in pods:
        status = waiting_status(p, "ContainerCreating", phase="Pending")
        status["conditions"][0]["lastTransitionTime"] = hours_ago(minutes / 60)
        kube.set_pod_status(ns, p["metadata"]["name"], status)


def sandbox_failed(kube: Kube, ns: str, broken: bool) -> None:
    """The calico agent on the node cannot reach the API server, so no pod there gets a network."""
    node = _scenario_node(kube, ns)
    pin = {
        "nodeSelector": {"kubernetes.io/hostname": node},
        "tolerations": [{"key": "scenario", "operator": "Equal", "value": ns, "effect": "NoSchedule"}],
    }
    pods = _web(kube, ns, broken, pod_spec=pin)
    if broken:
        _creating(kube, ns, pods, minutes=12)
        for p in pods:
            _event(
                kube,
                ns,
                p,
                "FailedCreatePodSandBox",
                'Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox "'
                '3f9c2d1b7a6e": plugin type="calico" failed (add): error getting ClusterInformation: Get "https://'
                'kubernetes.default.svc/apis/crd.projectcalico.org/v1/clusterinformations/default": connect: '
                "connection refused",
                count=14,
                minutes=12,
                container=None,
            )


def _volume_app(kube: Kube, ns: str, broken: bool) -> list[dict[str, Any]]:
    """Deployment web (one replica) with claim data, bound to an EBS CSI volume pv-<ns> (ReadWriteOnce)."""
    csi = {"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-0a1b2c3d4e5f67890", "fsType": "ext4"}}
    _pv(kube, ns, "", csi, claimRef={"namespace": ns, "name": "data"})
    _claim(kube, ns, "", bound=True)
    return _web(
        kube,
        ns,
        broken,
        replicas=1,
        container={"volumeMounts": [{"name": "data", "mountPath": "/var/lib/web"}]},
        pod_spec={"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]},
    )


def csi_mount_failed(kube: Kube, ns: str, broken: bool) -> None:
    """The EBS CSI node plugin is not running on the pod's node, so the kubelet cannot mount the volume."""
    pods = _volume_app(kube, ns, broken)
    if broken:
        _creating(kube, ns, pods, minutes=10)
        _event(
            kube,
            ns,
            pods[0],
            "FailedMount",
            f'MountVolume.MountDevice failed for volume "pv-{ns}" : kubernetes.io/csi: attacher.MountDevice failed '
            "to create newCsiDriverClient: driver name ebs.csi.aws.com not found in the list of registered CSI "
            "drivers",
            count=9,
            minutes=10,
            container=None,
        )


def attach_failed(kube: Kube, ns: str, broken: bool) -> None:
    """The EBS volume is still attached to the instance of the pod's previous node; the kubelet gives up waiting."""
    pods = _volume_app(kube, ns, broken)
    if broken:
        _creating(kube, ns, pods, minutes=8)
        _event(
            kube,
            ns,
            pods[0],
            "FailedAttachVolume",
            f'AttachVolume.Attach failed for volume "pv-{ns}" : rpc error: code = Internal desc = Could not attach '
            'volume "vol-0a1b2c3d4e5f67890" to node "i-0f1e2d3c4b5a69788": volume is already attached to another '
            "node",
            count=6,
            minutes=8,
            source="attachdetach-controller",
            container=None,
        )
        _event(
            kube,
            ns,
            pods[0],
            "FailedMount",
            "Unable to attach or mount volumes: unmounted volumes=[data], unattached volumes=[data "
            "kube-api-access-7xk2p]: timed out waiting for the condition",
            count=3,
            minutes=6,
            container=None,
        )


# -- evictions and hooks ------------------------------------------------------------------------------------
EVICTION = (
    "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. Container app was using "
    "900Mi, request is 128Mi, has larger consumption of memory. "
)


def _evicted_status(pod: dict[str, Any], hours: float) -> dict[str, Any]:
    """What the kubelet writes on a pod it evicted `hours` ago."""
    at = hours_ago(hours)
    conditions = [
        {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet", "message": EVICTION},
        {"type": "Initialized", "status": "True"},
        {"type": "Ready", "status": "False", "reason": "PodFailed"},
        {"type": "ContainersReady", "status": "False", "reason": "PodFailed"},
        {"type": "PodScheduled", "status": "True"},
    ]
    for c in conditions:
        c["lastTransitionTime"] = at
    terminated = {
        "exitCode": 137,
        "reason": "ContainerStatusUnknown",
        "message": "The container could not be located when the pod was terminated",
        "finishedAt": at,
    }
    return {
        "phase": "Failed",
        "reason": "Evicted",
        "message": EVICTION,
        "conditions": conditions,
        "containerStatuses": [
            {
                "name": "app",
                "image": pod["spec"]["containers"][0]["image"],
                "imageID": "",
                "ready": False,
                "started": False,
                "restartCount": 0,
                "state": {"terminated": terminated},
            }
        ],
    }


def evicted(kube: Kube, ns: str, broken: bool) -> None:
    """Two of three pods evicted under node memory pressure, the ReplicaSet replaced them: just now (broken), or
    three days ago (twin: the pressure is long over, the Failed pods are only left over until someone deletes
    them)."""
    pods = kube.deploy(ns, "web", replicas=3, container={"resources": {"requests": {"memory": "128Mi"}}})
    gone = {p["metadata"]["name"] for p in pods[:2]}
    for p in pods[:2]:
        kube.set_pod_status(ns, p["metadata"]["name"], _evicted_status(p, 0 if broken else 72))
        if broken:  # events expire after an hour: only the recent evictions still have theirs
            _event(kube, ns, p, "Evicted", EVICTION, count=1, container=None)

    def replaced() -> list[dict[str, Any]]:
        fresh = [p for p in kube.pods(ns, "app=web") if p["metadata"]["name"] not in gone and p["spec"].get("nodeName")]
        return fresh if len(fresh) == 3 else []

    for p in wait_for(replaced, "the ReplicaSet to replace the evicted pods"):
        if p["status"].get("phase") != "Running":
            kube.make_ready(ns, p)
    kube.wait_available(ns, "web", 3)


def post_start_hook(kube: Kube, ns: str, broken: bool) -> None:
    """The postStart hook runs a script the image does not have: each start, the kubelet kills the container."""
    hook = {"postStart": {"exec": {"command": ["/bin/sh", "-c", "/app/warm-cache.sh"]}}}
    pods = _web(kube, ns, broken, container={"lifecycle": hook})
    if broken:
        last = {"reason": "Error", "exitCode": 137, "startedAt": now(), "finishedAt": now()}
        _waiting(
            kube, ns, pods, "CrashLoopBackOff", "back-off 40s restarting failed container=app", restarts=3, last=last
        )
        for p in pods:
            _event(kube, ns, p, "FailedPostStartHook", "PostStartHook failed", count=4)


def dns_search_trimmed(kube: Kube, ns: str, broken: bool) -> None:
    """Ready pods whose dnsConfig adds search domains; with the node's own, the kubelet dropped the last ones
    (broken), or it fit (twin, no event)."""
    searches = [f"team{i}.corp.example" for i in range(6)]
    pods = _web(kube, ns, False, pod_spec={"dnsConfig": {"searches": searches}})
    if broken:
        applied = " ".join([f"{ns}.svc.cluster.local", "svc.cluster.local", "cluster.local", *searches[:3]])
        for p in pods:
            _event(
                kube,
                ns,
                p,
                "DNSConfigForming",
                "Search Line limits were exceeded, some search paths have been omitted, the applied search line "
                f"is: {applied}",
                count=1,
                container=None,
            )


SCENARIOS: list[Scenario] = [
    Scenario(
        "create-container-error",
        "POD_CONTAINER_CREATE_FAILED",
        create_container_error,
        {"reason": "CreateContainerError", "container": "app"},
        summary_has="command is not in the image",
    ),
    Scenario(
        "run-container-error",
        "POD_CONTAINER_CREATE_FAILED",
        run_container_error,
        {"reason": "RunContainerError", "restarts": 3},
        summary_has="not executable",
    ),
    Scenario("image-inspect-error", "POD_IMAGE_INSPECT_FAILED", image_inspect_error, {"image": "shop/web:1.0"}),
    Scenario("run-as-root", "POD_RUN_AS_ROOT", run_as_root, {"container": "app", "runAsNonRoot": True}),
    Scenario(
        "sandbox-failed",
        "POD_SANDBOX_FAILED",
        sandbox_failed,
        {"plugin": "calico", "attempts": 14},
        summary_has="on node n-",
    ),
    Scenario(
        "csi-mount-failed",
        "POD_MOUNT_FAILED",
        csi_mount_failed,
        {"volume": "data", "claim": "data", "driver": "ebs.csi.aws.com"},
    ),
    Scenario(
        "attach-failed",
        "POD_VOLUME_ATTACH_FAILED",
        attach_failed,
        {"claim": "data", "access_modes": ["ReadWriteOnce"]},
        summary_has="still attached to another node",
    ),
    Scenario(
        "evicted",
        "POD_EVICTED",
        evicted,
        {"evicted": 2, "resource": "memory", "usage": "container app used 900Mi, request 128Mi"},
    ),
    Scenario("post-start-hook", "POD_HOOK_FAILED", post_start_hook, {"hook": "postStart", "container": "app"}),
    Scenario(
        "dns-search-trimmed",
        "POD_DNS_CONFIG",
        dns_search_trimmed,
        {"dns_policy": "ClusterFirst"},
        summary_has="search domains",
    ),
]
