"""A snapshot of raw cluster objects (decoded JSON dicts) that the rules read, with the indexes they share.

The tool that gathers it says which kinds it fetched and in which namespaces (`covered`), so a rule can tell
"this referenced object does not exist" from "this namespace was not looked at" and never raises a false
alarm for a reference it could not check.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from engines.diagnosis.model import Limits, ObjectRef

Obj = dict[str, Any]

# Kind keys of a snapshot and the Kubernetes kind each holds.
KINDS: dict[str, str] = {
    "pods": "Pod",
    "events": "Event",
    "deployments": "Deployment",
    "replicasets": "ReplicaSet",
    "statefulsets": "StatefulSet",
    "daemonsets": "DaemonSet",
    "jobs": "Job",
    "cronjobs": "CronJob",
    "services": "Service",
    "ingresses": "Ingress",
    "ingressclasses": "IngressClass",
    "networkpolicies": "NetworkPolicy",
    "persistentvolumeclaims": "PersistentVolumeClaim",
    "persistentvolumes": "PersistentVolume",
    "storageclasses": "StorageClass",
    "nodes": "Node",
    "horizontalpodautoscalers": "HorizontalPodAutoscaler",
    "poddisruptionbudgets": "PodDisruptionBudget",
    "configmaps": "ConfigMap",
    "secrets": "Secret",
    "namespaces": "Namespace",
    "istio_gateways": "Gateway",
    "virtualservices": "VirtualService",
    "destinationrules": "DestinationRule",
    "serviceentries": "ServiceEntry",
    "sidecars": "Sidecar",
    "peerauthentications": "PeerAuthentication",
    "authorizationpolicies": "AuthorizationPolicy",
    "k8s_gateways": "Gateway",
    "httproutes": "HTTPRoute",
    "gatewayclasses": "GatewayClass",
    "limitranges": "LimitRange",
    "resourcequotas": "ResourceQuota",
    "priorityclasses": "PriorityClass",
    "runtimeclasses": "RuntimeClass",
    "serviceaccounts": "ServiceAccount",
    "validatingwebhookconfigurations": "ValidatingWebhookConfiguration",
    "mutatingwebhookconfigurations": "MutatingWebhookConfiguration",
}


def meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def ns_of(obj: Obj) -> str:
    return meta(obj).get("namespace") or ""


def name_of(obj: Obj) -> str:
    return meta(obj).get("name") or ""


def labels_of(obj: Obj) -> dict[str, str]:
    return meta(obj).get("labels") or {}


def condition(obj: Obj, kind: str) -> Obj | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == kind:
            return c
    return None


def selector_matches(labels: Mapping[str, str], selector: Mapping[str, str]) -> bool:
    """A map selector (Service, Gateway, DestinationRule subset): every pair present. Empty matches all."""
    return all(labels.get(k) == v for k, v in selector.items())


def label_selector_matches(labels: Mapping[str, str], selector: Mapping[str, Any] | None) -> bool:
    """A metav1.LabelSelector (matchLabels + matchExpressions). None matches nothing, {} everything."""
    if selector is None:
        return False
    if not selector_matches(labels, selector.get("matchLabels") or {}):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def pod_is_ready(pod: Obj) -> bool:
    c = condition(pod, "Ready")
    return bool(c and c.get("status") == "True")


def pod_is_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


class Snapshot:
    """Raw objects by kind key (see `KINDS`), the scope diagnosed, and shared indexes."""

    def __init__(
        self,
        objects: Mapping[str, list[Obj]],
        *,
        cluster: str | None = None,
        scope: Iterable[str] | None = None,
        covered: Mapping[str, Iterable[str] | None] | None = None,
        now: datetime | None = None,
        limits: Limits | None = None,
    ) -> None:
        """Args:
        objects: lists of raw objects, keyed by kind key.
        cluster: the cluster name put into every finding's object.
        scope: the namespaces diagnosed; None = all namespaces.
        covered: for each kind key, the namespaces it was listed in (None = all). Kinds not in
            `covered` count as listed wherever `scope` says; kinds absent from `objects` as not listed.
        now: the time the snapshot was taken.
        limits: when quiet states (no Warning event) count as stuck.
        """
        self.objects = {k: list(v) for k, v in objects.items()}
        self.cluster = cluster
        self.scope = frozenset(scope) if scope is not None else None
        self._covered = {k: (frozenset(v) if v is not None else None) for k, v in (covered or {}).items()}
        self.now = now or datetime.now(UTC)
        self.limits = limits or Limits()
        self._ns_index: dict[str, dict[str, list[Obj]]] = {}
        self._name_index: dict[str, dict[tuple[str, str], Obj]] = {}

    # -- access -----------------------------------------------------------------------------------
    def items(self, kind: str) -> list[Obj]:
        return self.objects.get(kind) or []

    def has(self, kind: str) -> bool:
        """Whether the kind was gathered at all (Istio kinds are absent when Istio is not installed)."""
        return kind in self.objects

    def covers(self, kind: str, namespace: str | None = None) -> bool:
        """Whether the absence of a `kind` object in `namespace` means it does not exist."""
        if kind not in self.objects:
            return False
        covered = self._covered.get(kind, self.scope)
        return covered is None or (namespace is not None and namespace in covered)

    def in_scope(self, namespace: str | None) -> bool:
        return self.scope is None or (namespace is not None and namespace in self.scope)

    def in_ns(self, kind: str, namespace: str) -> list[Obj]:
        return self._by_ns(kind).get(namespace, [])

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        return self._by_name(kind).get((namespace, name))

    def ref(self, obj: Obj, kind: str | None = None) -> ObjectRef:
        m = meta(obj)
        return ObjectRef(
            kind=kind or obj.get("kind") or "?",
            name=m.get("name", ""),
            namespace=m.get("namespace") or None,
            cluster=self.cluster,
        )

    def make_ref(self, kind: str, name: str, namespace: str | None = None) -> ObjectRef:
        return ObjectRef(kind=kind, name=name, namespace=namespace or None, cluster=self.cluster)

    # -- indexes ----------------------------------------------------------------------------------
    def _by_ns(self, kind: str) -> dict[str, list[Obj]]:
        cache = self._ns_index
        if kind not in cache:
            index: dict[str, list[Obj]] = defaultdict(list)
            for obj in self.items(kind):
                index[ns_of(obj)].append(obj)
            cache[kind] = dict(index)
        return cache[kind]

    def _by_name(self, kind: str) -> dict[tuple[str, str], Obj]:
        cache = self._name_index
        if kind not in cache:
            cache[kind] = {(ns_of(o), name_of(o)): o for o in self.items(kind)}
        return cache[kind]

    @cached_property
    def _events(self) -> dict[tuple[str, str, str], list[Obj]]:
        index: dict[tuple[str, str, str], list[Obj]] = defaultdict(list)
        for ev in self.items("events"):
            inv = ev.get("involvedObject") or ev.get("regarding") or {}
            if not isinstance(inv, dict):
                continue  # malformed: about no object we can name
            index[(inv.get("namespace") or ns_of(ev), inv.get("kind", ""), inv.get("name", ""))].append(ev)
        return dict(index)

    @cached_property
    def _cluster_events(self) -> dict[tuple[str, str], list[Obj]]:
        index: dict[tuple[str, str], list[Obj]] = defaultdict(list)
        for ev in self.items("events"):
            inv = ev.get("involvedObject") or ev.get("regarding") or {}
            if isinstance(inv, dict):
                index[(inv.get("kind", ""), inv.get("name", ""))].append(ev)
        return dict(index)

    def events_about(self, kind: str, name: str) -> list[Obj]:
        """Warning events about a cluster-scoped object (a Node, a PersistentVolume), newest first, whichever
        namespace they were filed in (the kubelet uses `default`)."""
        found = self._cluster_events.get((kind, name), [])
        return sorted(found, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""), reverse=True)

    def events_for(self, kind: str, namespace: str | None, name: str) -> list[Obj]:
        """Warning events about one object, newest first."""
        found = self._events.get((namespace or "", kind, name), [])
        return sorted(found, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "", reverse=True)

    def pods_matching(self, namespace: str, selector: Mapping[str, str]) -> list[Obj]:
        """Non-terminal pods of a namespace whose labels contain every pair of a map selector."""
        return [
            p
            for p in self.in_ns("pods", namespace)
            if not pod_is_terminal(p) and selector_matches(labels_of(p), selector)
        ]

    def controller_of(self, obj: Obj) -> tuple[str, str] | None:
        for ref in meta(obj).get("ownerReferences") or []:
            if ref.get("controller"):
                return ref.get("kind", ""), ref.get("name", "")
        return None

    def owner(self, pod: Obj) -> ObjectRef | None:
        """The workload that manages a pod: Deployment (through its ReplicaSet), StatefulSet, DaemonSet, Job."""
        ctrl = self.controller_of(pod)
        if ctrl is None:
            return None
        kind, name = ctrl
        ns = ns_of(pod)
        if kind == "ReplicaSet":
            rs = self.get("replicasets", ns, name)
            up = self.controller_of(rs) if rs else None
            if up and up[0] == "Deployment":
                return self.make_ref("Deployment", up[1], ns)
        return self.make_ref(kind, name, ns)

    def rs_revision(self, rs: Obj) -> int:
        try:
            return int((meta(rs).get("annotations") or {}).get("deployment.kubernetes.io/revision", "0"))
        except ValueError:
            return 0

    def replicasets_of(self, deployment: Obj) -> list[Obj]:
        """A Deployment's ReplicaSets, newest revision first."""
        name = name_of(deployment)
        owned = [
            rs for rs in self.in_ns("replicasets", ns_of(deployment)) if self.controller_of(rs) == ("Deployment", name)
        ]
        return sorted(owned, key=self.rs_revision, reverse=True)

    @cached_property
    def unhealthy_pods(self) -> list[Obj]:
        """Pods worth a closer look: not ready, restarted, deleted or failed (finished ones excluded)."""
        out = []
        for pod in self.items("pods"):
            status = pod.get("status") or {}
            if status.get("phase") == "Succeeded":
                continue
            restarted = any(cs.get("restartCount") for cs in status.get("containerStatuses") or [])
            if restarted or not pod_is_ready(pod) or meta(pod).get("deletionTimestamp"):
                out.append(pod)
        return out

    @cached_property
    def pods_by_node(self) -> dict[str, list[Obj]]:
        index: dict[str, list[Obj]] = defaultdict(list)
        for pod in self.items("pods"):
            node = (pod.get("spec") or {}).get("nodeName")
            if node and not pod_is_terminal(pod):
                index[node].append(pod)
        return dict(index)

    @cached_property
    def scope_nodes(self) -> frozenset[str]:
        """Nodes that host pods of the diagnosed namespaces."""
        return frozenset(n for n, pods in self.pods_by_node.items() if any(self.in_scope(ns_of(p)) for p in pods))
