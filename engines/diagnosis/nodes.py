"""Node rules: NotReady, memory/disk/PID pressure, cordoned, and allocatable used up by requests."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

from engines.diagnosis.common import fmt_resource, pod_requests, quantity
from engines.diagnosis.model import Finding, Fix
from engines.diagnosis.snapshot import Obj, Snapshot, condition, name_of

PRESSURE = {
    "MemoryPressure": "NODE_MEMORY_PRESSURE",
    "DiskPressure": "NODE_DISK_PRESSURE",
    "PIDPressure": "NODE_PID_PRESSURE",
}
EXHAUSTED = Decimal("0.95")


def _relevant(snap: Snapshot, node: Obj) -> bool:
    return snap.scope is None or name_of(node) in snap.scope_nodes


def conditions(snap: Snapshot) -> Iterator[Finding]:
    for node in snap.items("nodes"):
        if not _relevant(snap, node):
            continue
        name = name_of(node)
        pods = len(snap.pods_by_node.get(name, []))
        ready = condition(node, "Ready")
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
            cond = condition(node, kind)
            if cond and cond.get("status") == "True":
                yield Finding(
                    code=code,
                    severity="warning",
                    object=snap.ref(node, "Node"),
                    summary=f"{kind}: {cond.get('message') or cond.get('reason')}",
                    evidence={"reason": cond.get("reason"), "message": cond.get("message"), "pods": pods},
                    remediation="The kubelet evicts pods and refuses new ones under pressure: free the "
                    "resource (clean images/logs, move heavy pods) or add capacity.",
                )
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


RULES = [conditions, allocation]
