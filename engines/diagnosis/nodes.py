"""Node rules: NotReady, memory/disk/PID pressure, network not configured, problem conditions that other agents
(node-problem-detector, vendor health agents) add, cordoned, allocatable used up by requests, and recent
system-wide OOM kills (the kubelet's SystemOOM event, which sets no condition)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

from engines.diagnosis.common import event_summary, fmt_resource, pod_requests, present, quantity, seen_since
from engines.diagnosis.model import Finding, Fix
from engines.diagnosis.snapshot import Obj, Snapshot, name_of

PRESSURE = {
    "MemoryPressure": "NODE_MEMORY_PRESSURE",
    "DiskPressure": "NODE_DISK_PRESSURE",
    "PIDPressure": "NODE_PID_PRESSURE",
}
EXHAUSTED = Decimal("0.95")
RECENT = timedelta(hours=1)  # an older node event is history
STANDARD = {"Ready", "NetworkUnavailable", *PRESSURE}
# Conditions node-problem-detector's shipped configs set (True = the problem is there), and words that name a
# problem in other agents' condition types. A condition that names a healthy state (EKS's KernelReady,
# Calico's CalicoIsUp ...) is True when all is well, so a True status is only a problem for these.
NPD_PROBLEMS = {
    "KernelDeadlock",
    "ReadonlyFilesystem",
    "FrequentKubeletRestart",
    "FrequentDockerRestart",
    "FrequentContainerdRestart",
    "FrequentUnregisterNetDevice",
    "CorruptDockerOverlay2",
    "KubeletProblem",
    "ContainerRuntimeProblem",
}
PROBLEM_WORDS = ("problem", "deadlock", "readonly", "corrupt", "frequent", "unhealthy", "failure", "error", "hung")


def _relevant(snap: Snapshot, node: Obj) -> bool:
    return snap.scope is None or name_of(node) in snap.scope_nodes


def conditions(snap: Snapshot) -> Iterator[Finding]:
    for node in snap.items("nodes"):
        if not _relevant(snap, node):
            continue
        name = name_of(node)
        pods = len(snap.pods_by_node.get(name, []))
        conds = _conditions(node)
        ready = conds.get("Ready")
        if ready is None or ready.get("status") != "True":
            yield Finding(
                code="NODE_NOT_READY",
                severity="critical",
                object=snap.ref(node, "Node"),
                summary=f"NotReady ({(ready or {}).get('reason') or 'no Ready condition'}); {pods} pod(s) on it",
                evidence={
                    "status": (ready or {}).get("status"),
                    "reason": (ready or {}).get("reason"),
                    "message": (ready or {}).get("message"),
                    "last_heartbeat": (ready or {}).get("lastHeartbeatTime"),
                    "pods": pods,
                },
                remediation="Check the kubelet and container runtime on the node (and its network); pods "
                "there are evicted after the toleration timeout.",
            )
        for kind, code in PRESSURE.items():
            cond = conds.get(kind)
            if cond and cond.get("status") == "True":
                yield Finding(
                    code=code,
                    severity="warning",
                    object=snap.ref(node, "Node"),
                    summary=f"{kind}: {cond.get('message') or cond.get('reason')}",
                    evidence=_pressure_evidence(snap, node, cond, pods),
                    remediation="The kubelet evicts pods and refuses new ones under pressure: free the "
                    "resource (clean images/logs, move heavy pods) or add capacity.",
                )
        yield from _network(snap, node, conds, pods)
        yield from _problems(snap, node, conds, pods)
        if (node.get("spec") or {}).get("unschedulable"):
            yield Finding(
                code="NODE_CORDONED",
                severity="info",
                object=snap.ref(node, "Node"),
                summary=f"cordoned (unschedulable); {pods} pod(s) still on it",
                evidence={"unschedulable": True, "pods": pods},
                remediation="Uncordon it when maintenance is over.",
                fix=Fix(action="uncordon", target=snap.ref(node, "Node")),
            )


def _pressure_evidence(snap: Snapshot, node: Obj, cond: Obj, pods: int) -> dict[str, object]:
    """The condition, and what the kubelet's eviction manager last said it reclaims (EvictionThresholdMet)."""
    reclaiming = _node_events(snap, name_of(node), "EvictionThresholdMet")
    evidence = {
        "reason": cond.get("reason"),
        "message": cond.get("message"),
        "pods": pods,
        "reclaiming": str(reclaiming[0].get("message") or "")[:200] if reclaiming else None,
    }
    return present(evidence)


def _node_events(snap: Snapshot, node: str, reason: str) -> list[Obj]:
    """A node's events of one reason seen within RECENT, newest first."""
    since = snap.now - RECENT
    return [e for e in snap.events_about("Node", node) if e.get("reason") == reason and seen_since(e, since)]


def _conditions(node: Obj) -> dict[str, Obj]:
    """A node's conditions by type (entries that are not conditions are left out)."""
    found = (node.get("status") or {}).get("conditions")
    items = found if isinstance(found, list) else []
    return {c["type"]: c for c in items if isinstance(c, dict) and isinstance(c.get("type"), str)}


def _network(snap: Snapshot, node: Obj, conds: dict[str, Obj], pods: int) -> Iterator[Finding]:
    """NetworkUnavailable=True: the route controller (cloud) or the CNI plugin has not configured the node's pod
    network, so its pods cannot reach other nodes."""
    cond = conds.get("NetworkUnavailable")
    if not cond or cond.get("status") != "True":
        return
    yield Finding(
        code="NODE_NETWORK_UNAVAILABLE",
        severity="critical",
        object=snap.ref(node, "Node"),
        summary=f"NetworkUnavailable ({cond.get('reason') or 'no reason'}): its pod network is not configured; "
        f"{pods} pod(s) on it",
        evidence=_condition_evidence(cond, pods),
        remediation="Check what configures the node's network: the CNI plugin's pod on this node (calico-node, "
        "cilium, aws-node ...) and its logs, or the cloud route controller (routes for the node's podCIDR).",
    )


def _problems(snap: Snapshot, node: Obj, conds: dict[str, Obj], pods: int) -> Iterator[Finding]:
    for kind, cond in conds.items():
        if kind in STANDARD or not _is_problem(kind, cond.get("status")):
            continue
        yield Finding(
            code="NODE_PROBLEM",
            severity="warning",
            object=snap.ref(node, "Node"),
            summary=f"{kind}={cond.get('status')} ({cond.get('reason') or 'no reason'}); {pods} pod(s) on it",
            evidence={"condition": kind, **_condition_evidence(cond, pods)},
            remediation="The node's agent (node-problem-detector or the vendor's) reports a fault of the machine: "
            "read the message, then drain the node and repair or replace it (reboot for a kernel deadlock, "
            "fsck for a read-only filesystem).",
        )


def _is_problem(kind: str, status: object) -> bool:
    """True for a problem condition that is True; False for a `...Ready` condition (a healthy state) that is
    False. Anything else (Unknown, an unrecognised name) is not judged."""
    if status == "True":
        return kind in NPD_PROBLEMS or any(w in kind.lower() for w in PROBLEM_WORDS)
    return status == "False" and kind.endswith("Ready")


def _condition_evidence(cond: Obj, pods: int) -> dict[str, object]:
    evidence = {
        "reason": cond.get("reason"),
        "message": str(cond.get("message") or "")[:300] or None,
        "since": cond.get("lastTransitionTime"),
        "pods": pods,
    }
    return present(evidence)


def allocation(snap: Snapshot) -> Iterator[Finding]:
    if not snap.covers("pods", None):
        return  # requests of other namespaces' pods are unknown
    for node in snap.items("nodes"):
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        pods = snap.pods_by_node.get(name_of(node), [])
        used: dict[str, Decimal] = {"pods": Decimal(len(pods))}
        for pod in pods:
            for res, value in pod_requests(pod.get("spec") or {}).items():
                used[res] = used.get(res, Decimal(0)) + value
        full = {}
        for res in ("cpu", "memory", "pods"):
            cap = quantity(allocatable.get(res))
            if cap > 0 and used.get(res, Decimal(0)) >= cap * EXHAUSTED:
                full[res] = (
                    f"{fmt_resource(res, used[res])} of {fmt_resource(res, cap)} ({int(used[res] * 100 / cap)}%)"
                )
        if full:
            yield Finding(
                code="NODE_REQUESTS_EXHAUSTED",
                severity="warning",
                object=snap.ref(node, "Node"),
                summary="allocatable used up by requests: " + ", ".join(f"{r} {v}" for r, v in full.items()),
                evidence={"requested": full, "pods": len(pods)},
                remediation="New pods needing this resource cannot land here: lower over-sized requests or add nodes.",
            )


_VICTIM = re.compile(r"victim process: ([^,]+)")


def system_oom(snap: Snapshot) -> Iterator[Finding]:
    """The node ran out of memory as a whole within the last hour and the kernel killed a process: the kubelet's
    SystemOOM event (no condition records it). Only nodes that host pods of the diagnosed namespaces."""
    for node in snap.items("nodes"):
        if not _relevant(snap, node):
            continue
        events = _node_events(snap, name_of(node), "SystemOOM")
        if not events:
            continue
        kills = sum(c if isinstance(c := e.get("count"), int) and c > 0 else 1 for e in events)
        victims = sorted({m.group(1).strip() for e in events if (m := _VICTIM.search(str(e.get("message") or "")))})
        evidence = {
            "kills": kills,
            "victims": victims[:5] or None,
            "pods": len(snap.pods_by_node.get(name_of(node), [])),
            "events": event_summary(events),
        }
        yield Finding(
            code="NODE_SYSTEM_OOM",
            severity="warning",
            object=snap.ref(node, "Node"),
            summary=f"the node ran out of memory: the kernel OOM-killed {kills} process(es) in the last hour"
            + (f" ({', '.join(victims[:3])})" if victims else ""),
            evidence=present(evidence),
            remediation="The node's memory as a whole ran out before the kubelet could evict (no container limit "
            "was hit): memory the scheduler does not count (system daemons, pods using far above their requests "
            "without limits) filled it. Reserve memory for the system (kubelet systemReserved/kubeReserved and "
            "a memory.available eviction threshold), set memory requests close to use and limits on pods, or "
            "move heavy pods off this node.",
        )


RULES = [conditions, allocation, system_oom]
