"""States that are wrong without any Warning event: things waiting on something that is not happening.

Found from object state and time, with the limits of `Snapshot.limits` (settings `diagnosis.*`): a young
state is a step in progress, not a finding."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from engines.diagnosis.common import pod_finding, present
from engines.diagnosis.model import Finding
from engines.diagnosis.snapshot import KINDS, Obj, Snapshot, condition, meta, name_of, ns_of
from engines.diagnosis.traffic import lb_failures, lb_ingress
from kube.times import parse_time

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# What the namespace controller reports while it cannot finish deleting a namespace's content, the most
# telling first: the summary quotes the first one present.
NAMESPACE_BLOCKERS = {
    "NamespaceDeletionDiscoveryFailure": "discovery_failure",
    "NamespaceDeletionGroupVersionParsingFailure": "group_version_failure",
    "NamespaceDeletionContentFailure": "content_failure",
    "NamespaceFinalizersRemaining": "finalizers_remaining",
    "NamespaceContentRemaining": "content_remaining",
}


def _since(obj: Obj, kind: str, reason: str) -> datetime | None:
    """When the condition `kind` took its current `reason` (its lastTransitionTime), else None."""
    cond = condition(obj, kind) or {}
    if cond.get("reason") != reason:
        return None
    return parse_time(cond.get("lastTransitionTime") or cond.get("lastUpdateTime"))


def _age(snap: Snapshot, since: datetime) -> str:
    minutes = int((snap.now - since).total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def gated_pods(snap: Snapshot) -> Iterator[Finding]:
    """A pod the scheduler never considers because a scheduling gate was never removed. The scheduler emits no
    event for a gated pod; whatever was meant to lift the gate (a queue controller, an operator) is not doing it."""
    limit = timedelta(seconds=snap.limits.gated_seconds)
    for pod in snap.unhealthy_pods:
        gates = [str(g.get("name")) for g in (pod.get("spec") or {}).get("schedulingGates") or [] if g.get("name")]
        since = _since(pod, "PodScheduled", "SchedulingGated") or parse_time(meta(pod).get("creationTimestamp"))
        if not gates or since is None or snap.now - since < limit:
            continue
        yield pod_finding(
            snap,
            pod,
            code="POD_SCHEDULING_GATED",
            severity="warning",
            tier=1,
            summary=f"held from scheduling for {_age(snap, since)} by gate(s) {', '.join(gates)}",
            evidence={"scheduling_gates": gates, "gated_since": since.isoformat()},
            remediation=(
                "Find the controller that owns the gate (its name says which: a queue such as Kueue, an operator) "
                "and why it has not admitted the pod; remove the gate only if that controller is gone."
            ),
        )


def paused_rollouts(snap: Snapshot) -> Iterator[Finding]:
    """A paused Deployment whose pod template changed: the change never rolls out and nothing warns."""
    limit = timedelta(seconds=snap.limits.paused_seconds)
    for dep in snap.items("deployments"):
        spec, status = dep.get("spec") or {}, dep.get("status") or {}
        wanted = spec.get("replicas", 1)
        updated = status.get("updatedReplicas", 0)
        since = _since(dep, "Progressing", "DeploymentPaused")
        if not spec.get("paused") or wanted == 0 or updated >= wanted or since is None or snap.now - since < limit:
            continue
        yield Finding(
            code="DEPLOY_PAUSED_WITH_CHANGES",
            severity="warning",
            object=snap.ref(dep, "Deployment"),
            summary=f"paused for {_age(snap, since)} with a change not rolled out "
            f"({updated}/{wanted} replicas updated)",
            evidence={"paused": True, "desired": wanted, "updated": updated, "paused_since": since.isoformat()},
            remediation="Resume the rollout (kubectl rollout resume) if the change is meant to ship, or undo it.",
        )


def pending_load_balancers(snap: Snapshot) -> Iterator[Finding]:
    """A LoadBalancer Service that never got an address and no controller says why: usually no load balancer
    controller serves it (a cluster without a cloud provider or MetalLB, or a loadBalancerClass nobody
    implements). Its age counts from creation, or from the last write of the field manager that owns spec.type
    when later (a Service switched to LoadBalancer a minute ago is not old)."""
    limit = timedelta(seconds=snap.limits.lb_pending_seconds)
    for svc in snap.items("services"):
        spec = svc.get("spec") or {}
        if spec.get("type") != "LoadBalancer" or not snap.in_scope(ns_of(svc)):
            continue
        since = _type_set_at(svc)
        if lb_ingress(svc) or lb_failures(snap, svc) or since is None or snap.now - since < limit:
            continue
        evidence: dict[str, object] = {
            "type": "LoadBalancer",
            "ingress": [],
            "loadBalancerClass": spec.get("loadBalancerClass"),
            "pending_since": since.isoformat(),
        }
        yield Finding(
            code="SVC_LB_PENDING",
            severity="warning",
            object=snap.ref(svc, "Service"),
            summary=f"no load balancer address after {_age(snap, since)}, and no controller reports an error",
            evidence=present(evidence),
            remediation="Check that a load balancer controller serves this Service (the cloud-controller-manager, "
            "MetalLB, kube-vip ...; spec.loadBalancerClass says which) and read its logs; on a cluster without "
            "one, expose the Service with type NodePort or through an Ingress or Gateway instead.",
        )


def _type_set_at(svc: Obj) -> datetime | None:
    m = meta(svc)
    times = [parse_time(m.get("creationTimestamp"))]
    for entry in m.get("managedFields") or []:
        if not isinstance(entry, dict):
            continue
        fields = entry.get("fieldsV1")
        spec = fields.get("f:spec") if isinstance(fields, dict) else None
        if isinstance(spec, dict) and "f:type" in spec:
            times.append(parse_time(entry.get("time")))
    known = [t for t in times if t is not None]
    return max(known) if known else None


def suspended_jobs(snap: Snapshot) -> Iterator[Finding]:
    """A Job held suspended (spec.suspend) past the limit. A moment of suspension is a queue doing its work;
    a day of it means the queue has no room for it (Kueue: its ClusterQueue's quota), or whoever suspended it
    forgot, or a CronJob's jobTemplate suspends every run it creates."""
    limit = timedelta(seconds=snap.limits.suspended_seconds)
    for job in snap.items("jobs"):
        spec, status = job.get("spec") or {}, job.get("status") or {}
        if spec.get("suspend") is not True or any(
            (condition(job, t) or {}).get("status") == "True" for t in ("Complete", "Failed")
        ):
            continue
        held = condition(job, "Suspended") or {}
        since = parse_time(held.get("lastTransitionTime")) if held.get("status") == "True" else None
        if since is None and not status.get("startTime"):
            since = parse_time(meta(job).get("creationTimestamp"))  # created suspended, never started
        if since is None or snap.now - since < limit:
            continue
        yield _suspended(snap, job, since)


def _suspended(snap: Snapshot, job: Obj, since: datetime) -> Finding:
    m = meta(job)
    queue = (m.get("labels") or {}).get(QUEUE_LABEL) or (m.get("annotations") or {}).get(QUEUE_LABEL)
    ctrl = snap.controller_of(job)
    cron = snap.get("cronjobs", ns_of(job), ctrl[1]) if ctrl and ctrl[0] == "CronJob" else None
    template = (((cron or {}).get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}
    evidence: dict[str, object] = {"suspend": True, "suspended_since": since.isoformat()}
    cause = None
    if queue:
        evidence["queue"] = queue
        remediation = (
            f"The Kueue LocalQueue {queue} has not admitted it: read its Workload's conditions "
            "(kubectl get workloads) for the reason, usually a ClusterQueue without enough quota; do not set "
            "spec.suspend by hand, the queue owns it."
        )
    elif cron is not None and template.get("suspend") is True:
        evidence["cronjob"] = name_of(cron)
        cause = snap.ref(cron, "CronJob")
        remediation = (
            "The CronJob's spec.jobTemplate.spec.suspend is true, so every run it creates waits; remove it (unless "
            "a queue controller is meant to admit the runs), and resume or delete the waiting Jobs."
        )
    else:
        remediation = "Set spec.suspend to false to run it, or delete it if it is no longer wanted."
    return Finding(
        code="JOB_SUSPENDED",
        severity="warning",
        object=snap.ref(job, "Job"),
        summary=f"suspended for {_age(snap, since)}: none of its pods run"
        + (f" (waiting in queue {queue})" if queue else ""),
        evidence=evidence,
        remediation=remediation,
        cause=cause,
    )


def terminating_namespaces(snap: Snapshot) -> Iterator[Finding]:
    """A namespace whose deletion has not finished past the limit: content with finalizers nobody removes, or
    an API group the namespace controller cannot list (an unavailable APIService). Time counts from the
    controller's conditions saying so, else from the deletion."""
    limit = timedelta(seconds=snap.limits.terminating_seconds)
    for ns in snap.items("namespaces"):
        name = name_of(ns)
        deleted = meta(ns).get("deletionTimestamp")
        if not deleted or not snap.in_scope(name):
            continue
        conditions = {
            c.get("type"): c
            for c in (ns.get("status") or {}).get("conditions") or []
            if isinstance(c, dict) and isinstance(c.get("type"), str) and c.get("status") == "True"
        }
        blockers = [conditions[t] for t in NAMESPACE_BLOCKERS if t in conditions]
        times = [parse_time(c.get("lastTransitionTime")) for c in blockers]
        since = min((t for t in times if t is not None), default=None) or parse_time(deleted)
        if since is None or snap.now - since < limit:
            continue
        evidence: dict[str, object] = {
            NAMESPACE_BLOCKERS[c["type"]]: str(c.get("message") or c.get("reason"))[:300] for c in blockers
        }
        held = _held_objects(snap, name)
        if held:
            evidence["objects_with_finalizers"] = held
        evidence["terminating_since"] = since.isoformat()
        why = str(blockers[0].get("message") or blockers[0].get("reason"))[:200] if blockers else "not finished"
        yield Finding(
            code="NAMESPACE_STUCK_TERMINATING",
            severity="warning",
            object=snap.ref(ns, "Namespace"),
            summary=f"terminating for {_age(snap, since)}: {why}",
            evidence=evidence,
            remediation="Get the controller that owns each remaining finalizer running so it finishes its cleanup "
            "(the evidence names them); remove a finalizer by hand only when its controller is gone for good, "
            "since its cleanup is then skipped. A discovery failure means an APIService is unavailable: repair "
            "or delete it.",
        )


def _held_objects(snap: Snapshot, namespace: str) -> list[str]:
    """Objects of the namespace that a finalizer keeps from being deleted ('ConfigMap hold: example.com/x')."""
    out = []
    for key, kind in KINDS.items():
        for obj in snap.in_ns(key, namespace):
            m = meta(obj)
            finalizers = m.get("finalizers")
            if m.get("deletionTimestamp") and finalizers and isinstance(finalizers, list):
                out.append(f"{kind} {name_of(obj)}: {', '.join(str(f) for f in finalizers)}")
    return out[:5]


RULES = [gated_pods, paused_rollouts, pending_load_balancers, suspended_jobs, terminating_namespaces]
