"""Plain-dict objects for rule tests: a small healthy world (a Deployment `web` behind a Service, on Ready
nodes) that each test breaks in one way, and a `findings()` helper that runs the engine over it."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from engines.diagnosis import Finding, Snapshot, run

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
Obj = dict[str, Any]


def ts(minutes_ago: float = 60) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta(name: str, ns: str | None = "shop", labels: dict[str, str] | None = None, **extra: Any) -> Obj:
    m: Obj = {"name": name, "creationTimestamp": ts(120), **extra}
    if ns:
        m["namespace"] = ns
    if labels:
        m["labels"] = labels
    return m


def cond(kind: str, status: str = "True", reason: str | None = None, message: str | None = None) -> Obj:
    c = {"type": kind, "status": status}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def node(name: str = "node-1", ready: bool = True, cpu: str = "4", memory: str = "16Gi", **spec: Any) -> Obj:
    conds = [cond("Ready", "True" if ready else "False", "KubeletReady" if ready else "KubeletNotReady")]
    conds += [cond(t, "False") for t in ("MemoryPressure", "DiskPressure", "PIDPressure")]
    return {
        "kind": "Node",
        "metadata": meta(name, None),
        "spec": spec,
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}, "conditions": conds},
    }


def container(name: str = "web", image: str = "shop/web:1.0", port: int | None = 8080, **extra: Any) -> Obj:
    c: Obj = {"name": name, "image": image, **extra}
    if port:
        c["ports"] = [{"containerPort": port, "name": "http"}]
    return c


def running(name: str = "web", ready: bool = True, restarts: int = 0, last: Obj | None = None) -> Obj:
    cs: Obj = {"name": name, "ready": ready, "restartCount": restarts, "state": {"running": {"startedAt": ts(30)}}}
    if last:
        cs["lastState"] = {"terminated": last}
    return cs


def waiting(reason: str, message: str = "", name: str = "web", restarts: int = 0, last: Obj | None = None) -> Obj:
    cs: Obj = {
        "name": name,
        "ready": False,
        "restartCount": restarts,
        "state": {"waiting": {"reason": reason, "message": message}},
    }
    if last:
        cs["lastState"] = {"terminated": last}
    return cs


def pod(
    name: str = "web-abc-1",
    rs: str | None = "web-abc",
    labels: dict[str, str] | None = None,
    containers: list[Obj] | None = None,
    statuses: list[Obj] | None = None,
    phase: str = "Running",
    ready: bool = True,
    node_name: str | None = "node-1",
    ns: str = "shop",
    **spec: Any,
) -> Obj:
    m = meta(name, ns, labels if labels is not None else {"app": "web"})
    if rs:
        m["ownerReferences"] = [{"kind": "ReplicaSet", "name": rs, "controller": True}]
    pod_spec: Obj = {"containers": containers or [container()], **spec}
    if node_name:
        pod_spec["nodeName"] = node_name
    conds = [cond("PodScheduled"), cond("Ready", "True" if ready else "False")]
    return {
        "kind": "Pod",
        "metadata": m,
        "spec": pod_spec,
        "status": {
            "phase": phase,
            "conditions": conds,
            "containerStatuses": statuses if statuses is not None else [running()],
        },
    }


def template(image: str = "shop/web:1.0", labels: dict[str, str] | None = None, **container_extra: Any) -> Obj:
    return {
        "metadata": {"labels": labels or {"app": "web"}},
        "spec": {"containers": [container(image=image, **container_extra)]},
    }


def deployment(
    name: str = "web",
    replicas: int = 2,
    available: int = 2,
    image: str = "shop/web:1.0",
    conditions: list[Obj] | None = None,
    ns: str = "shop",
) -> Obj:
    return {
        "kind": "Deployment",
        "metadata": meta(name, ns),
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": template(image)},
        "status": {
            "replicas": replicas,
            "availableReplicas": available,
            "readyReplicas": available,
            "updatedReplicas": replicas,
            "conditions": conditions or [cond("Available")],
        },
    }


def replicaset(
    name: str = "web-abc",
    deployment_name: str = "web",
    revision: int = 1,
    image: str = "shop/web:1.0",
    replicas: int = 2,
    conditions: list[Obj] | None = None,
) -> Obj:
    m = meta(
        name,
        annotations={"deployment.kubernetes.io/revision": str(revision)},
        ownerReferences=[{"kind": "Deployment", "name": deployment_name, "controller": True}],
    )
    return {
        "kind": "ReplicaSet",
        "metadata": m,
        "spec": {"replicas": replicas, "template": template(image)},
        "status": {"replicas": replicas, "conditions": conditions or []},
    }


def service(
    name: str = "web",
    selector: dict[str, str] | None = None,
    target: Any = 8080,
    ns: str = "shop",
    port_name: str = "http",
    **spec: Any,
) -> Obj:
    return {
        "kind": "Service",
        "metadata": meta(name, ns),
        "spec": {
            "selector": selector if selector is not None else {"app": "web"},
            "ports": [{"name": port_name, "port": 80, "targetPort": target}],
            **spec,
        },
    }


def event(
    kind: str, name: str, reason: str, message: str, count: int = 3, ns: str = "shop", field_path: str | None = None
) -> Obj:
    inv = {"kind": kind, "name": name, "namespace": ns}
    if field_path:
        inv["fieldPath"] = field_path
    return {
        "kind": "Event",
        "metadata": meta(f"{name}.{reason.lower()}", ns),
        "involvedObject": inv,
        "reason": reason,
        "message": message,
        "type": "Warning",
        "count": count,
        "lastTimestamp": ts(1),
    }


def namespace(name: str = "shop", labels: dict[str, str] | None = None) -> Obj:
    return {"kind": "Namespace", "metadata": meta(name, None, labels)}


def world() -> dict[str, list[Obj]]:
    """The healthy baseline: two ready pods of Deployment web behind Service web, on two Ready nodes."""
    return {
        "pods": [pod("web-abc-1"), pod("web-abc-2", node_name="node-2")],
        "events": [],
        "deployments": [deployment()],
        "replicasets": [replicaset()],
        "statefulsets": [],
        "daemonsets": [],
        "jobs": [],
        "cronjobs": [],
        "services": [service()],
        "ingresses": [],
        "ingressclasses": [
            {
                "kind": "IngressClass",
                "metadata": meta("nginx", None, annotations={"ingressclass.kubernetes.io/is-default-class": "true"}),
            }
        ],
        "networkpolicies": [],
        "persistentvolumeclaims": [],
        "persistentvolumes": [],
        "storageclasses": [
            {
                "kind": "StorageClass",
                "metadata": meta("standard", None),
                "provisioner": "csi.example",
                "volumeBindingMode": "Immediate",
            }
        ],
        "nodes": [node("node-1"), node("node-2")],
        "horizontalpodautoscalers": [],
        "poddisruptionbudgets": [],
        "configmaps": [{"metadata": meta("app-config")}],
        "secrets": [{"metadata": meta("regcred")}],
        "namespaces": [namespace("shop")],
    }


def fresh() -> dict[str, list[Obj]]:
    return copy.deepcopy(world())


def findings(objects: dict[str, list[Obj]], scope: set[str] | None = None, **kwargs: Any) -> list[Finding]:
    return run(Snapshot(objects, cluster="test", scope=scope, now=NOW), **kwargs).findings


def codes(objects: dict[str, list[Obj]], **kwargs: Any) -> list[str]:
    return [f.code for f in findings(objects, **kwargs)]


def only(objects: dict[str, list[Obj]], code: str, **kwargs: Any) -> Finding:
    """The one finding with `code` (fails when there is none or several)."""
    found = [f for f in findings(objects, **kwargs) if f.code == code]
    assert len(found) == 1, f"expected one {code}, got {[f.code for f in findings(objects, **kwargs)]}"
    return found[0]
