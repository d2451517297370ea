"""States that are wrong without any Warning event: things waiting on something that is not happening.

Found from object state and time, with the limits of `Snapshot.limits` (settings `diagnosis.*`): a young
state is a step in progress, not a finding."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from engines.diagnosis.common import pod_finding
from engines.diagnosis.model import Finding
from engines.diagnosis.snapshot import Obj, Snapshot, condition, meta
from kube.times import parse_time


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


RULES = [gated_pods, paused_rollouts]
