"""Diagnosis tools: what is broken in a namespace, the whole cluster, or around one object, and why.

Gathers a snapshot of raw objects concurrently (only the kinds the rules read; namespace-scoped lists for a
namespace diagnosis, plus the cluster-wide objects references may point to), caches it per cluster for
`k8s.cache_ttl_seconds`, and runs `engines.diagnosis` over it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import Field

from connections import namespaces as namespace_check
from connections.kube import METADATA_LIST, Connection
from engines.diagnosis import Finding, ObjectRef, Snapshot, run
from engines.diagnosis.model import SEVERITY_RANK, Limits
from errors import CloudPilotError, Forbidden, InvalidInput, NotFound, Unsupported
from guard import validate
from guard.mask import redact
from runtime import Runtime, current, validate_limit
from tools.catalogue import tool
from tools.clusters import ClusterArg
from tools.results import Result

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """One kind the rules read, and how to list it."""

    key: str
    group: str
    version: str
    resource: str
    namespaced: bool = True
    reference: bool = False  # listed cluster-wide even for a namespace diagnosis: references point into it
    metadata_only: bool = False
    query: dict[str, str] = field(default_factory=dict)

    def path(self, namespace: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        return base + (f"/namespaces/{namespace}" if namespace and self.namespaced else "") + f"/{self.resource}"


BUILTIN = (
    Source("pods", "", "v1", "pods"),
    Source("events", "", "v1", "events", query={"fieldSelector": "type=Warning"}),
    Source("deployments", "apps", "v1", "deployments"),
    Source("replicasets", "apps", "v1", "replicasets"),
    Source("statefulsets", "apps", "v1", "statefulsets"),
    Source("daemonsets", "apps", "v1", "daemonsets"),
    Source("jobs", "batch", "v1", "jobs"),
    Source("cronjobs", "batch", "v1", "cronjobs"),
    Source("services", "", "v1", "services", reference=True),
    Source("ingresses", "networking.k8s.io", "v1", "ingresses"),
    Source("ingressclasses", "networking.k8s.io", "v1", "ingressclasses", namespaced=False),
    Source("networkpolicies", "networking.k8s.io", "v1", "networkpolicies"),
    Source("persistentvolumeclaims", "", "v1", "persistentvolumeclaims"),
    Source("persistentvolumes", "", "v1", "persistentvolumes", namespaced=False),
    Source("storageclasses", "storage.k8s.io", "v1", "storageclasses", namespaced=False),
    Source("nodes", "", "v1", "nodes", namespaced=False),
    Source("horizontalpodautoscalers", "autoscaling", "v2", "horizontalpodautoscalers"),
    Source("poddisruptionbudgets", "policy", "v1", "poddisruptionbudgets"),
    Source("configmaps", "", "v1", "configmaps", metadata_only=True),
    Source("secrets", "", "v1", "secrets", metadata_only=True),
    Source("namespaces", "", "v1", "namespaces", namespaced=False),
    Source("limitranges", "", "v1", "limitranges"),
    Source("resourcequotas", "", "v1", "resourcequotas"),
    Source("serviceaccounts", "", "v1", "serviceaccounts", metadata_only=True),
    Source("priorityclasses", "scheduling.k8s.io", "v1", "priorityclasses", namespaced=False),
    Source("runtimeclasses", "node.k8s.io", "v1", "runtimeclasses", namespaced=False),
    Source(
        "validatingwebhookconfigurations",
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        namespaced=False,
    ),
    Source(
        "mutatingwebhookconfigurations",
        "admissionregistration.k8s.io",
        "v1",
        "mutatingwebhookconfigurations",
        namespaced=False,
    ),
)
# Istio and Gateway API kinds: (snapshot key, resource.group, listed cluster-wide).
MESH_KINDS = (
    ("istio_gateways", "gateways.networking.istio.io", True),
    ("virtualservices", "virtualservices.networking.istio.io", True),
    ("destinationrules", "destinationrules.networking.istio.io", True),
    ("serviceentries", "serviceentries.networking.istio.io", True),
    ("sidecars", "sidecars.networking.istio.io", False),
    ("peerauthentications", "peerauthentications.security.istio.io", True),
    ("authorizationpolicies", "authorizationpolicies.security.istio.io", False),
    ("k8s_gateways", "gateways.gateway.networking.k8s.io", True),
    ("httproutes", "httproutes.gateway.networking.k8s.io", False),
    ("gatewayclasses", "gatewayclasses.gateway.networking.k8s.io", True),
)
ISTIO_ONLY = {"pods", "services", "namespaces", "secrets"}  # what istio_analyze reads besides the mesh kinds
ISTIO_NOT_INSTALLED = (
    "Istio is not installed in cluster {cluster!r}: the API group networking.istio.io is not served (no Istio CRDs)."
)

Severity = Literal["critical", "warning", "info"]
_FOCUS_KINDS = {
    "deployment": "Deployment",
    "deploy": "Deployment",
    "statefulset": "StatefulSet",
    "sts": "StatefulSet",
    "daemonset": "DaemonSet",
    "ds": "DaemonSet",
    "job": "Job",
    "cronjob": "CronJob",
    "cj": "CronJob",
    "replicaset": "ReplicaSet",
    "rs": "ReplicaSet",
    "pod": "Pod",
    "po": "Pod",
    "service": "Service",
    "svc": "Service",
    "ingress": "Ingress",
    "ing": "Ingress",
    "node": "Node",
    "no": "Node",
    "persistentvolumeclaim": "PersistentVolumeClaim",
    "pvc": "PersistentVolumeClaim",
    "horizontalpodautoscaler": "HorizontalPodAutoscaler",
    "hpa": "HorizontalPodAutoscaler",
    "poddisruptionbudget": "PodDisruptionBudget",
    "pdb": "PodDisruptionBudget",
    "virtualservice": "VirtualService",
    "vs": "VirtualService",
    "destinationrule": "DestinationRule",
    "dr": "DestinationRule",
    "gateway": "Gateway",
    "gw": "Gateway",
}
_FOCUS_KEYS = {
    "Deployment": "deployments",
    "StatefulSet": "statefulsets",
    "DaemonSet": "daemonsets",
    "Job": "jobs",
    "CronJob": "cronjobs",
    "ReplicaSet": "replicasets",
    "Pod": "pods",
    "Service": "services",
    "Ingress": "ingresses",
    "Node": "nodes",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "VirtualService": "virtualservices",
    "DestinationRule": "destinationrules",
    "Gateway": "istio_gateways",
}


# -- gathering -----------------------------------------------------------------------------------------------
_gc_lock = threading.Lock()
_gc_holders = 0


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a snapshot is decoded and diagnosed.

    Decoding 5,000 pods makes millions of dicts and lists; each allocation burst triggers collections that
    rescan the whole heap, which doubles the time. The snapshot has no reference cycles, so nothing is lost:
    reference counting frees it as usual, and collection resumes when the last holder leaves.
    """
    global _gc_holders
    with _gc_lock:
        paused = gc.isenabled() or _gc_holders > 0  # someone who switched it off on purpose is left alone
        if paused:
            _gc_holders += 1
            gc.disable()
    try:
        yield
    finally:
        if paused:
            with _gc_lock:
                _gc_holders -= 1
                if _gc_holders == 0:
                    gc.enable()


@dataclass
class Gathered:
    snapshot: Snapshot
    notes: list[str]
    skipped: int = 0  # lists that could not be read (their notes say why): such a snapshot is not cached


@dataclass(frozen=True)
class Skipped:
    """A list that could not be read, and why."""

    note: str
    error: CloudPilotError


async def gather(rt: Runtime, conn: Connection, namespaces: list[str] | None, *, istio_only: bool = False) -> Gathered:
    """List what the rules need, concurrently, into a Snapshot (see the module docstring)."""
    notes: list[str] = []
    sources = [s for s in BUILTIN if not istio_only or s.key in ISTIO_ONLY]
    mesh = await rt.call(_mesh_sources, conn)
    sources += mesh
    if istio_only and not any(s.key == "virtualservices" for s in mesh):
        raise Unsupported(
            ISTIO_NOT_INSTALLED.format(cluster=conn.name),
            hint="Install Istio, or pick the cluster that runs it (clusters_list).",
        )
    jobs: list[tuple[Source, str | None]] = []
    for s in sources:
        if namespaces is None or not s.namespaced or s.reference:
            jobs.append((s, None))
        else:
            jobs.extend((s, ns) for ns in namespaces)
    results = await asyncio.gather(*(_list(rt, conn, s, ns) for s, ns in jobs))
    failed = [r for r in results if isinstance(r, Skipped)]
    if len(failed) == len(results):
        raise failed[0].error  # nothing could be read: an error, not "no problems found"
    skipped = 0
    objects: dict[str, list[dict[str, Any]]] = {}
    covered: dict[str, set[str] | None] = {}
    fallback: list[Source] = []
    for (s, ns), result in zip(jobs, results, strict=True):
        if isinstance(result, Skipped):
            if s.reference and namespaces is not None:
                fallback.append(s)  # not allowed cluster-wide: read it in the diagnosed namespaces only
            else:
                notes.append(result.note)
                skipped += 1
            continue
        objects.setdefault(s.key, []).extend(result)
        if ns is None:
            covered[s.key] = None
        elif covered.get(s.key, set()) is not None:
            covered.setdefault(s.key, set()).add(ns)  # type: ignore[union-attr]
    if fallback:
        assert namespaces is not None
        again = await asyncio.gather(*(_list(rt, conn, s, ns) for s in fallback for ns in namespaces))
        pairs = [(s, ns) for s in fallback for ns in namespaces]
        for (s, ns), result in zip(pairs, again, strict=True):
            if isinstance(result, Skipped):
                notes.append(result.note)
                skipped += 1
                continue
            objects.setdefault(s.key, []).extend(result)
            covered.setdefault(s.key, set()).add(ns)  # type: ignore[union-attr]
    if namespaces is not None and "istio_gateways" in objects:
        skipped += await _gateway_workloads(rt, conn, namespaces, objects, covered, notes)
    scope: set[str] | None = set(namespaces) if namespaces is not None else None
    if rt.settings.safety.namespace_allow or rt.settings.safety.namespace_deny:
        scope = _hide_namespaces(rt, objects, covered, scope)
    quiet = rt.settings.diagnosis
    limits = Limits(
        gated_seconds=quiet.gated_minutes * 60,
        paused_seconds=quiet.paused_minutes * 60,
        lb_pending_seconds=quiet.lb_pending_minutes * 60,
        suspended_seconds=quiet.suspended_hours * 3600,
        terminating_seconds=quiet.terminating_minutes * 60,
    )
    snap = Snapshot(objects, cluster=conn.name, scope=scope, covered=covered, now=datetime.now(UTC), limits=limits)
    return Gathered(snap, notes, skipped)


def _mesh_sources(conn: Connection) -> list[Source]:
    served = {r.full_name: r for r in conn.resources()}
    out = []
    for key, full_name, reference in MESH_KINDS:
        info = served.get(full_name)
        if info is not None:
            out.append(
                Source(key, info.group, info.version, info.resource, namespaced=info.namespaced, reference=reference)
            )
    return out


async def _list(rt: Runtime, conn: Connection, source: Source, namespace: str | None) -> list[dict[str, Any]] | Skipped:
    """The items, or why they could not be read."""
    accept = METADATA_LIST if source.metadata_only else "application/json"
    try:
        items, _ = await rt.call(conn.list_items, source.path(namespace), dict(source.query), accept)
    except (Forbidden, NotFound) as e:
        where = f" in namespace {namespace}" if namespace else ""
        logger.info("cluster=%s cannot list %s%s: %s", conn.name, source.resource, where, e.message)
        return Skipped(f"{source.resource}{where} not checked: {e.message}", e)
    return items


async def _gateway_workloads(
    rt: Runtime,
    conn: Connection,
    namespaces: list[str],
    objects: dict[str, list[dict[str, Any]]],
    covered: dict[str, set[str] | None],
    notes: list[str],
) -> int:
    """For a namespace diagnosis: the pods the diagnosed Istio Gateways select (in any namespace) and the
    secret names of those pods' namespaces, so selector and credential checks see them. Returns how many lists
    could not be read."""
    selectors = {
        ",".join(f"{k}={v}" for k, v in sorted(((g.get("spec") or {}).get("selector") or {}).items()))
        for g in objects["istio_gateways"]
        if (g.get("metadata") or {}).get("namespace") in namespaces
    }
    selectors.discard("")
    found = await asyncio.gather(
        *(
            _list(rt, conn, Source("gateway_pods", "", "v1", "pods", query={"labelSelector": sel}), None)
            for sel in selectors
        )
    )
    pods = [p for result in found if not isinstance(result, Skipped) for p in result]
    notes.extend(r.note for r in found if isinstance(r, Skipped))
    skipped = sum(1 for r in found if isinstance(r, Skipped))
    objects["gateway_pods"] = pods
    covered["gateway_pods"] = None
    secrets_cover = covered.get("secrets", set())
    extra = sorted({(p.get("metadata") or {}).get("namespace", "") for p in pods} - set(namespaces))
    if secrets_cover is None or not extra:
        return skipped
    source = next(s for s in BUILTIN if s.key == "secrets")
    for ns, result in zip(extra, await asyncio.gather(*(_list(rt, conn, source, ns) for ns in extra)), strict=True):
        if isinstance(result, Skipped):
            notes.append(result.note)
            skipped += 1
            continue
        objects.setdefault("secrets", []).extend(result)
        secrets_cover.add(ns)
    covered["secrets"] = secrets_cover
    return skipped


def _hide_namespaces(
    rt: Runtime, objects: dict[str, list[dict[str, Any]]], covered: dict[str, set[str] | None], scope: set[str] | None
) -> set[str]:
    """Drop objects of namespaces the allow/deny settings hide; what was hidden counts as not looked at."""
    seen = {(o.get("metadata") or {}).get("name", "") for o in objects.get("namespaces", [])}
    seen |= {(o.get("metadata") or {}).get("namespace", "") for items in objects.values() for o in items}
    visible = {ns for ns in seen if ns and rt.namespace_visible(ns)}
    for key, items in objects.items():
        objects[key] = [
            o
            for o in items
            if not (o.get("metadata") or {}).get("namespace") or (o.get("metadata") or {}).get("namespace") in visible
        ]
        if key == "namespaces":
            objects[key] = [o for o in objects[key] if (o.get("metadata") or {}).get("name") in visible]
    for key, cov in covered.items():
        covered[key] = (cov & visible) if cov is not None else set(visible)
    return (scope & visible) if scope is not None else visible


async def snapshot(
    rt: Runtime, conn: Connection, namespaces: list[str] | None, *, istio_only: bool = False, refresh: bool = False
) -> tuple[Gathered, float]:
    """The cached snapshot of a scope (and its age in seconds)."""
    key = (conn.name, "diagnosis", tuple(sorted(namespaces)) if namespaces is not None else "*", istio_only)

    async def load() -> Gathered:
        with _collector_paused():
            return await gather(rt, conn, namespaces, istio_only=istio_only)

    # a snapshot missing lists it could not read is used once, not cached: the next call reads them again
    return await rt.cache.get(key, rt.settings.k8s.cache_ttl_seconds, load, refresh, keep=lambda g: g.skipped == 0)


# -- results ---------------------------------------------------------------------------------------------
class Diagnosis(Result):
    """Findings, worst and causes first, with evidence."""

    cluster: str
    scope: str
    counts: dict[str, int] = Field(description="Findings per severity, before the limit.")
    findings: list[Finding]
    total: int
    limited: bool = Field(False, description="True when more findings matched than `limit` let through (see total).")
    checked: dict[str, int] = Field(default_factory=dict, description="Objects looked at, per kind.")
    snapshot_age_seconds: float = 0.0
    notes: list[str] = Field(default_factory=list)

    def render(self) -> str:
        counts = ", ".join(f"{self.counts.get(s, 0)} {s}" for s in ("critical", "warning", "info"))
        checked = ", ".join(f"{n} {k}" for k, n in self.checked.items() if n)
        lines = [
            f"cluster {self.cluster} · {self.scope} · {counts} (checked {checked}; "
            f"snapshot {self.snapshot_age_seconds:.0f}s old)"
        ]
        if not self.findings:
            lines.append("No problems found.")
        for i, f in enumerate(self.findings, 1):
            lines.append(f"{i}. [{f.severity}] {f.code} {f.object.short()}: {f.summary}")
            if f.chain:
                lines.append("   chain: " + " → ".join(o.short() for o in f.chain[:4]))
            lines.append("   evidence: " + "; ".join(f"{k}={_value(v)}" for k, v in f.evidence.items()))
            if f.fix:
                lines.append(f"   fix: {f.fix.short()}")
            if f.remediation:
                lines.append(f"   do: {f.remediation}")
        if self.limited:
            lines.append(f"(showing {len(self.findings)} of {self.total}; raise limit or min_severity to see others)")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)  # the server clips to output.max_chars


def _value(v: Any) -> str:
    return v if isinstance(v, str) else orjson.dumps(v, default=str).decode()


def _result(
    gathered: Gathered,
    age: float,
    findings: list[Finding],
    notes: list[str],
    scope: str,
    min_severity: Severity,
    limit: int,
) -> Diagnosis:
    snap = gathered.snapshot
    counts = {s: 0 for s in ("critical", "warning", "info")}
    for f in findings:
        counts[f.severity] += 1
    kept = [f for f in findings if SEVERITY_RANK[f.severity] <= SEVERITY_RANK[min_severity]]
    # evidence quotes event and termination messages: mask anything credential-like before it leaves
    shown = [f.model_copy(update={"evidence": redact(f.evidence)}) for f in kept[:limit]]
    checked = {
        k: len(v) if k != "pods" else sum(1 for p in v if snap.in_scope(p["metadata"].get("namespace")))
        for k, v in snap.objects.items()
        if k in ("pods", "deployments", "services", "nodes", "virtualservices")
    }
    return Diagnosis(
        cluster=snap.cluster or "",
        scope=scope,
        counts=counts,
        findings=shown,
        total=len(kept),
        limited=len(kept) > limit,
        checked=checked,
        snapshot_age_seconds=round(age, 1),
        notes=gathered.notes + notes,
    )


# -- tools ---------------------------------------------------------------------------------------------------
@tool("diagnose", title="Diagnose problems")
async def diagnose(
    namespace: Annotated[str | None, Field(description="Namespace to diagnose; omit for all namespaces.")] = None,
    kind: Annotated[
        str | None,
        Field(
            description="Narrow to one object and what relates to it: Deployment, "
            "StatefulSet, DaemonSet, Job, CronJob, Pod, Service, Ingress, "
            "Node, PVC, HPA, ..."
        ),
    ] = None,
    name: Annotated[str | None, Field(description="Name of that object.")] = None,
    min_severity: Annotated[Severity, Field(description="Leave out less severe findings.")] = "info",
    limit: Annotated[int | None, Field(description="Most findings returned (default 50).")] = None,
    force_refresh: Annotated[
        bool, Field(description="Re-read the cluster instead of a snapshot up to k8s.cache_ttl_seconds old.")
    ] = False,
    cluster: ClusterArg = None,
) -> Diagnosis:
    """Find what is broken and why, without an LLM: pods (crash loops with exit codes, OOM kills, image pulls,
    missing ConfigMaps/Secrets, unschedulable with the scheduler's numbers, failing probes, stuck deletion),
    workloads (unavailable, stuck rollouts and the revision that caused them, Jobs, CronJobs), Services without
    endpoints and why, Ingress, NetworkPolicy, storage, nodes, HPAs, PDBs, and Istio configuration. Each finding
    has a stable code, evidence, a remediation and, where one exists, a structured fix. Use kind+name to focus
    on one workload and everything around it."""
    rt = current()
    ns = validate.namespace(namespace)
    rt.check_namespace(ns)
    limit = validate_limit(limit, rt.settings.output.default_limit)
    conn = await rt.connect(cluster)
    focus = _focus(kind, name, ns)
    await namespace_check.require(rt, conn, ns)
    return await diagnose_cluster(rt, conn, ns, focus, min_severity, limit, force_refresh)


async def diagnose_cluster(
    rt: Runtime,
    conn: Connection,
    ns: str | None,
    focus: ObjectRef | None,
    min_severity: Severity,
    limit: int,
    refresh: bool = False,
) -> Diagnosis:
    """The diagnosis of one cluster from checked arguments (diagnose, and fleet_diagnose per cluster)."""
    gathered, age = await snapshot(rt, conn, [ns] if ns else None, refresh=refresh)
    snap = gathered.snapshot
    notes = []
    if focus is not None:
        key = _FOCUS_KEYS.get(focus.kind)
        if key and snap.has(key) and snap.get(key, focus.namespace or "", focus.name) is None:
            where = f" in namespace {focus.namespace}" if focus.namespace else ""
            raise NotFound(
                f"{focus.kind} {focus.name!r} not found{where} in cluster {conn.name!r}.",
                hint="Check the name (workloads_list / resources_list show what exists).",
            )
    if not snap.has("virtualservices"):
        notes.append("Istio is not installed: Istio checks skipped.")
    with _collector_paused():
        report = await rt.call(run, snap, focus=focus)
    scope = f"namespace {ns}" if ns else "all namespaces"
    if focus:
        scope += f", focus {focus.short()}"
    return _result(gathered, age, report.findings, notes + report.notes, scope, min_severity, limit)


@tool("istio", title="Analyze Istio configuration")
async def istio_analyze(
    namespace: Annotated[str | None, Field(description="Namespace to analyze; omit for all namespaces.")] = None,
    min_severity: Annotated[Severity, Field(description="Leave out less severe findings.")] = "info",
    limit: Annotated[int | None, Field(description="Most findings returned (default 50).")] = None,
    force_refresh: Annotated[bool, Field(description="Re-read instead of using a recent snapshot.")] = False,
    cluster: ClusterArg = None,
) -> Diagnosis:
    """Check Istio configuration like `istioctl analyze`, with its IST codes: references to missing gateways,
    hosts, subsets and TLS credentials (IST0101), gateway selectors matching no pods, conflicting
    VirtualServices (IST0109) and DestinationRules, subsets selecting no pods, mTLS conflicts between
    PeerAuthentication and DestinationRules (IST0113), namespaces/pods without sidecar injection (IST0102,
    IST0103), port naming (IST0118), selectors matching no workload (IST0127)."""
    rt = current()
    ns = validate.namespace(namespace)
    rt.check_namespace(ns)
    limit = validate_limit(limit, rt.settings.output.default_limit)
    conn = await rt.connect(cluster)
    await namespace_check.require(rt, conn, ns)
    gathered, age = await snapshot(rt, conn, [ns] if ns else None, istio_only=True, refresh=force_refresh)
    with _collector_paused():
        report = await rt.call(run, gathered.snapshot, areas=["istio"])
    scope = f"namespace {ns}" if ns else "all namespaces"
    return _result(gathered, age, report.findings, report.notes, scope + " (Istio)", min_severity, limit)


def _focus(kind: str | None, name: str | None, namespace: str | None) -> ObjectRef | None:
    if not kind and not name:
        return None
    if not kind or not name:
        raise InvalidInput("Pass both kind and name to focus on one object (e.g. kind='Deployment', name='web').")
    canonical = _FOCUS_KINDS.get(kind.lower().rstrip("s") if kind.lower() not in _FOCUS_KINDS else kind.lower())
    canonical = canonical or next((v for v in _FOCUS_KINDS.values() if v.lower() == kind.lower()), None)
    if canonical is None:
        raise InvalidInput(
            f"Cannot focus on kind {kind!r}.", hint=f"Use one of: {', '.join(sorted(set(_FOCUS_KINDS.values())))}."
        )
    if canonical != "Node" and not namespace:
        raise InvalidInput(f"A {canonical} is namespaced: pass its namespace too.")
    return ObjectRef(
        kind=canonical, name=validate.object_name(name), namespace=namespace if canonical != "Node" else None
    )
