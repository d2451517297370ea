"""Scenarios of nodes, storage, Services, autoscaling, disruption budgets and quiet states (no Warning event):
node conditions set by an agent, a claim whose volume was deleted, a load balancer the cloud controller cannot
create, two autoscalers or two budgets on the same pods, a Job suspended for days, a namespace that cannot
finish terminating. Each has a healthy twin that yields no finding."""

from __future__ import annotations

import time
from typing import Any

from tests.tools.diagnosis_scenarios import (
    Kube,
    Scenario,
    _age_condition,
    _agent_on,
    _claim,
    _hpa,
    _hpa_status,
    _pv,
    _scenario_node,
    now,
    wait_for,
)


# -- nodes -------------------------------------------------------------------------------------------------
def _node_condition(kube: Kube, node: str, kind: str, status: str, reason: str, message: str) -> None:
    """What an agent on the node writes (the CNI plugin, the route controller, node-problem-detector)."""
    path = f"/api/v1/nodes/{node}"
    conditions = [c for c in kube.api("GET", path)["status"]["conditions"] if c["type"] != kind]
    stamp = now()
    conditions.append(
        {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": stamp,
        }
    )
    kube.patch(f"{path}/status", {"status": {"conditions": conditions}})


def node_network_unavailable(kube: Kube, ns: str, broken: bool) -> None:
    """The route controller has not created the route for the node's pod CIDR (twin: it has)."""
    node = _scenario_node(kube, ns)
    _agent_on(kube, ns, node)
    if broken:
        _node_condition(kube, node, "NetworkUnavailable", "True", "NoRouteCreated", "Node created without a route")
    else:
        _node_condition(kube, node, "NetworkUnavailable", "False", "RouteCreated", "RouteController created a route")


def node_problem(kube: Kube, ns: str, broken: bool) -> None:
    """node-problem-detector found a hung container runtime in the kernel log (twin: no deadlock)."""
    node = _scenario_node(kube, ns)
    _agent_on(kube, ns, node)
    _node_condition(kube, node, "ReadonlyFilesystem", "False", "FilesystemIsNotReadOnly", "Filesystem is not read-only")
    if broken:
        message = "kernel: INFO: task docker:20744 blocked for more than 120 seconds."
        _node_condition(kube, node, "KernelDeadlock", "True", "DockerHung", message)
    else:
        _node_condition(kube, node, "KernelDeadlock", "False", "KernelHasNoDeadlock", "kernel has no deadlock")


# -- storage -----------------------------------------------------------------------------------------------
def pvc_lost(kube: Kube, ns: str, broken: bool) -> None:
    """A bound claim whose PersistentVolume was deleted and its protection finalizer removed by hand: the PV
    controller marks the claim Lost (twin: the claim stays bound)."""
    _pv(kube, ns, f"manual-{ns}")
    _claim(kube, ns, f"manual-{ns}", bound=True)
    if not broken:
        return
    kube.api("DELETE", f"/api/v1/persistentvolumes/pv-{ns}")
    kube.patch(f"/api/v1/persistentvolumes/pv-{ns}", {"metadata": {"finalizers": None}})
    wait_for(
        lambda: (
            kube.api("GET", f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data")["status"].get("phase") == "Lost"
        ),
        "the claim marked Lost",
    )


def pvc_volume_mismatch(kube: Kube, ns: str, broken: bool) -> None:
    """A claim that names PersistentVolume pv-<ns> (1Gi) in spec.volumeName but asks for 5Gi: the PV controller
    refuses the binding (VolumeMismatch) and the claim stays Pending (twin: it asks for 1Gi and binds)."""
    _pv(kube, ns, "")
    kube.create(
        f"/api/v1/namespaces/{ns}/persistentvolumeclaims",
        {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "",
                "volumeName": f"pv-{ns}",
                "resources": {"requests": {"storage": "5Gi" if broken else "1Gi"}},
            },
        },
    )
    if broken:
        wait_for(
            lambda: any(
                e.get("reason") == "VolumeMismatch" for e in kube.api("GET", f"/api/v1/namespaces/{ns}/events")["items"]
            ),
            "the PV controller's VolumeMismatch event",
        )
    else:
        wait_for(
            lambda: (
                kube.api("GET", f"/api/v1/namespaces/{ns}/persistentvolumeclaims/data")["status"].get("phase")
                == "Bound"
            ),
            "claim bound",
        )


# -- Services ----------------------------------------------------------------------------------------------
def _controller_event(kube: Kube, ns: str, kind: str, name: str, reason: str, message: str, component: str) -> None:
    """A Warning event as a controller other than the kubelet records it."""
    stamp = now()
    kube.create(
        f"/api/v1/namespaces/{ns}/events",
        {
            "metadata": {"generateName": f"{name}."},
            "involvedObject": {"kind": kind, "namespace": ns, "name": name, "apiVersion": "v1"},
            "reason": reason,
            "message": message,
            "type": "Warning",
            "count": 4,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": component},
        },
    )


def lb_sync_failed(kube: Kube, ns: str, broken: bool) -> None:
    """The cloud's service controller cannot create the load balancer: the project's address quota is used up
    (twin: it created one and wrote its address)."""
    kube.deploy(ns, "web", replicas=1)
    kube.service(ns, "web", type="LoadBalancer")
    if broken:
        message = (
            "Error syncing load balancer: failed to ensure load balancer: failed to create forwarding rule: "
            "googleapi: Error 403: QUOTA_EXCEEDED - Quota 'IN_USE_ADDRESSES' exceeded. Limit: 8.0 in region "
            "europe-west1."
        )
        _controller_event(kube, ns, "Service", "web", "SyncLoadBalancerFailed", message, "service-controller")
    else:
        status = {"loadBalancer": {"ingress": [{"ip": "203.0.113.10", "ipMode": "VIP"}]}}
        kube.patch(f"/api/v1/namespaces/{ns}/services/web/status", {"status": status})


# -- autoscaling and disruption ------------------------------------------------------------------------------
def hpa_conflict(kube: Kube, ns: str, broken: bool) -> None:
    """A second HPA on Deployment web; the HPA controller finds both selecting the same pods (AmbiguousSelector)
    at its first sync, 15 s after creation. Twin: one HPA, with the status a working metrics pipeline gives."""
    kube.deploy(ns, "web", container={"resources": {"requests": {"cpu": "100m"}}})
    _hpa(kube, ns)
    if not broken:
        _hpa_status(kube, ns, replicas=1, desired=1, utilization=40, limited=False)
        return
    metric = {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}},
    }
    kube.create(
        f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers",
        {
            "metadata": {"name": "web-burst"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1,
                "maxReplicas": 10,
                "metrics": [metric],
            },
        },
    )
    wait_for(
        lambda: any(
            c.get("reason") == "AmbiguousSelector"
            for h in kube.api("GET", f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers")["items"]
            for c in h.get("status", {}).get("conditions") or []
        ),
        "the HPA controller to find two autoscalers on the same pods",
        timeout=60,
    )


def _budget(kube: Kube, ns: str, name: str, app: str, **spec: Any) -> None:
    """PDB `name` selecting app=`app`, once the disruption controller has counted its 2 pods."""
    path = f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets"
    kube.create(path, {"metadata": {"name": name}, "spec": {"selector": {"matchLabels": {"app": app}}, **spec}})
    wait_for(
        lambda: kube.api("GET", f"{path}/{name}").get("status", {}).get("expectedPods") == 2,
        f"PDB {name} status",
    )


def pdb_overlap(kube: Kube, ns: str, broken: bool) -> None:
    """Two budgets on the pods of web; when the pods' status next changes, the disruption controller warns on
    them (MultiplePodDisruptionBudgets). Twin: one budget for web, one for api."""
    pods = kube.deploy(ns, "web", replicas=2)
    if not broken:
        kube.deploy(ns, "api", replicas=2)
        _budget(kube, ns, "web", "web", minAvailable=1)
        _budget(kube, ns, "api", "api", minAvailable=1)
        return
    _budget(kube, ns, "web", "web", minAvailable=1)
    _budget(kube, ns, "web-max", "web", maxUnavailable=1)
    time.sleep(1.1)  # so that the kubelet's next status update changes its timestamps
    for p in pods:
        kube.make_ready(ns, p)
    wait_for(
        lambda: any(
            e["reason"] == "MultiplePodDisruptionBudgets"
            for e in kube.api("GET", f"/api/v1/namespaces/{ns}/events")["items"]
        ),
        "the disruption controller's warning",
    )


# -- quiet states ------------------------------------------------------------------------------------------
def job_suspended(kube: Kube, ns: str, broken: bool) -> None:
    """A Job created suspended; the Job controller sets Suspended=True. Broken: two days ago. Twin: a moment
    ago (a Job waiting to be resumed or admitted by a queue)."""
    kube.create(
        f"/apis/batch/v1/namespaces/{ns}/jobs",
        {
            "metadata": {"name": "report"},
            "spec": {
                "suspend": True,
                "template": {
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "report", "image": "shop/report:1"}]}
                },
            },
        },
    )
    _age_condition(
        kube, f"/apis/batch/v1/namespaces/{ns}/jobs/report", "Suspended", "JobSuspended", 48 if broken else 0
    )


def namespace_terminating(kube: Kube, ns: str, broken: bool) -> None:
    """The namespace is deleted while a ConfigMap holds a finalizer no controller removes; the namespace
    controller reports the content and finalizers remaining. Broken: since two hours. Twin: since a moment."""
    kube.create(
        f"/api/v1/namespaces/{ns}/configmaps",
        {"metadata": {"name": "hold", "finalizers": ["example.com/hold"]}, "data": {"k": "v"}},
    )
    kube.api("DELETE", f"/api/v1/namespaces/{ns}")
    path = f"/api/v1/namespaces/{ns}"
    hours = 2 if broken else 0
    _age_condition(kube, path, "NamespaceFinalizersRemaining", "SomeFinalizersRemain", hours)
    _age_condition(kube, path, "NamespaceContentRemaining", "SomeResourcesRemain", hours)


SCENARIOS: list[Scenario] = [
    Scenario(
        "node-network-unavailable",
        "NODE_NETWORK_UNAVAILABLE",
        node_network_unavailable,
        {"reason": "NoRouteCreated", "pods": 1},
    ),
    Scenario("node-problem", "NODE_PROBLEM", node_problem, {"condition": "KernelDeadlock", "reason": "DockerHung"}),
    Scenario("pvc-lost", "PVC_LOST", pvc_lost, {"phase": "Lost", "volume_exists": False}),
    Scenario(
        "pvc-volume-mismatch",
        "PVC_VOLUME_MISMATCH",
        pvc_volume_mismatch,
        {"problems": ["requested PV is too small"], "capacity": "1Gi"},
        summary_has="cannot bind it",
    ),
    Scenario(
        "lb-sync-failed",
        "SVC_LB_FAILED",
        lb_sync_failed,
        {"reason": "SyncLoadBalancerFailed", "ingress": []},
        summary_has="QUOTA_EXCEEDED",
    ),
    Scenario("hpa-conflict", "HPA_CONFLICT", hpa_conflict, {"target": "Deployment web", "hpas": ["web", "web-burst"]}),
    Scenario("pdb-overlap", "PDB_OVERLAP", pdb_overlap, {"pdbs": ["web", "web-max"], "pods": 2}),
    Scenario("job-suspended", "JOB_SUSPENDED", job_suspended, {"suspend": True}, summary_has="suspended for 48 h"),
    Scenario(
        "namespace-terminating",
        "NAMESPACE_STUCK_TERMINATING",
        namespace_terminating,
        {"objects_with_finalizers": ["ConfigMap hold: example.com/hold"]},
        summary_has="example.com/hold",
    ),
]
