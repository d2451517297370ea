"""Which objects relate to one object of interest, so a diagnosis can be narrowed to it (e.g. a Deployment:
its ReplicaSets and pods, the Services, Ingresses, HPAs, PDBs, PVCs, nodes and Istio rules that touch it)."""

from __future__ import annotations

from engines.diagnosis.common import pod_template_labels
from engines.diagnosis.snapshot import (
    KINDS,
    Obj,
    Snapshot,
    label_selector_matches,
    labels_of,
    name_of,
    ns_of,
    selector_matches,
)

Key = tuple[str, str, str]  # kind, namespace ('' for cluster-scoped), name
WORKLOADS = {
    "Deployment": "deployments",
    "StatefulSet": "statefulsets",
    "DaemonSet": "daemonsets",
    "Job": "jobs",
    "ReplicaSet": "replicasets",
    "CronJob": "cronjobs",
}


def key_of(obj: Obj, kind: str) -> Key:
    return (kind, ns_of(obj), name_of(obj))


def related(snap: Snapshot, kind: str, namespace: str, name: str) -> set[Key]:
    """Keys of the objects whose findings matter when diagnosing `kind namespace/name`."""
    out: set[Key] = {(kind, namespace, name)}
    pods: list[Obj] = []
    labels: dict[str, str] | None = None
    if kind in WORKLOADS:
        obj = snap.get(WORKLOADS[kind], namespace, name)
        if obj is not None:
            labels = pod_template_labels(obj)
        for pod in snap.in_ns("pods", namespace):
            owner = snap.owner(pod)
            ctrl = snap.controller_of(pod)
            if (owner and (owner.kind, owner.name) == (kind, name)) or ctrl == (kind, name):
                pods.append(pod)
        for rs in snap.in_ns("replicasets", namespace):
            if snap.controller_of(rs) == (kind, name):
                out.add(key_of(rs, "ReplicaSet"))
        if kind == "CronJob":
            for job in snap.in_ns("jobs", namespace):
                if snap.controller_of(job) == ("CronJob", name):
                    out.add(key_of(job, "Job"))
    elif kind == "Pod":
        the_pod = snap.get("pods", namespace, name)
        if the_pod is not None:
            pods = [the_pod]
            owner = snap.owner(the_pod)
            if owner:
                out.add((owner.kind, namespace, owner.name))
    services = _services(snap, kind, namespace, name, pods, labels)
    for pod in pods:
        out.add(key_of(pod, "Pod"))
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            out.add(("Node", "", node))
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if claim:
                out.add(("PersistentVolumeClaim", namespace, claim))
        owner = snap.owner(pod)
        if owner and kind in ("Service", "Pod"):
            out.add((owner.kind, namespace, owner.name))
    sample = labels if labels is not None else (labels_of(pods[0]) if pods else None)
    for svc in services:
        out.add(key_of(svc, "Service"))
    _add_referrers(snap, out, namespace, {name_of(s) for s in services}, kind, name, sample)
    return out


def _services(
    snap: Snapshot, kind: str, namespace: str, name: str, pods: list[Obj], labels: dict[str, str] | None
) -> list[Obj]:
    if kind == "Service":
        svc = snap.get("services", namespace, name)
        if svc is not None:
            selector = (svc.get("spec") or {}).get("selector") or {}
            if selector:
                pods.extend(snap.pods_matching(namespace, selector))
            return [svc]
        return []
    if kind == "Ingress":
        ing = snap.get("ingresses", namespace, name) or {}
        names = {
            ((p.get("backend") or {}).get("service") or {}).get("name")
            for r in (ing.get("spec") or {}).get("rules") or []
            for p in (r.get("http") or {}).get("paths") or []
        }
        return [s for s in snap.in_ns("services", namespace) if name_of(s) in names]
    sample = [labels] if labels is not None else [labels_of(p) for p in pods[:1]]
    return [
        s
        for s in snap.in_ns("services", namespace)
        if (s.get("spec") or {}).get("selector") and any(selector_matches(lbl, s["spec"]["selector"]) for lbl in sample)
    ]


def _add_referrers(
    snap: Snapshot,
    out: set[Key],
    namespace: str,
    service_names: set[str],
    kind: str,
    name: str,
    labels: dict[str, str] | None,
) -> None:
    for ing in snap.in_ns("ingresses", namespace):
        backends = {
            ((p.get("backend") or {}).get("service") or {}).get("name")
            for r in (ing.get("spec") or {}).get("rules") or []
            for p in (r.get("http") or {}).get("paths") or []
        }
        if backends & service_names:
            out.add(key_of(ing, "Ingress"))
    for hpa in snap.in_ns("horizontalpodautoscalers", namespace):
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        if (ref.get("kind"), ref.get("name")) == (kind, name):
            out.add(key_of(hpa, "HorizontalPodAutoscaler"))
    if labels is not None:
        for pdb in snap.in_ns("poddisruptionbudgets", namespace):
            if label_selector_matches(labels, (pdb.get("spec") or {}).get("selector")):
                out.add(key_of(pdb, "PodDisruptionBudget"))
        for pol in snap.in_ns("networkpolicies", namespace):
            if label_selector_matches(labels, (pol.get("spec") or {}).get("podSelector") or {}):
                out.add(key_of(pol, "NetworkPolicy"))
    hosts = {
        h
        for s in service_names
        for h in (s, f"{s}.{namespace}", f"{s}.{namespace}.svc", f"{s}.{namespace}.svc.cluster.local")
    }
    for key in ("virtualservices", "destinationrules"):
        for obj in snap.items(key):
            spec = obj.get("spec") or {}
            used = (
                set(spec.get("hosts") or [])
                | {spec.get("host")}
                | {
                    (d.get("destination") or {}).get("host")
                    for proto in ("http", "tcp", "tls")
                    for r in spec.get(proto) or []
                    for d in r.get("route") or []
                }
            )
            local = ns_of(obj) == namespace
            if any(h in hosts and (local or "." in h) for h in used if h):
                out.add(key_of(obj, KINDS[key]))
