"""Verification after a change: wait until the rollout is complete and its pods are ready, within a timeout,
reporting progress; fail early when the new pods are clearly broken (crash loop, image pull, config error).
A change with no rollout is verified by the diagnosis findings it was planned to remove going away."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from connections.kube import Connection
from engines.diagnosis import ObjectRef, run
from errors import NotFound
from runtime import Runtime, report_progress
from tools.diagnose import snapshot
from tools.fixloop import content

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5
BROKEN = {
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}


async def verify(
    rt: Runtime,
    conn: Connection,
    kind: str,
    path: str,
    applied: dict[str, Any] | None,
    desired: dict[str, Any] | None,
    timeout: float,
    findings: tuple[ObjectRef, list[str]] | None = None,
) -> tuple[bool, str]:
    """(verified, what was seen). `applied` is the server's answer to the write (None for a deletion).

    `findings`: the object and the codes of the diagnosis findings the change was planned to remove. A change
    with no rollout to watch (a Service, a Node, ...) is verified only once diagnosis no longer reports them;
    one timeout covers both waits.
    """
    deadline = time.monotonic() + timeout
    check = _stored if applied is None else _CHECKS.get(kind, _stored)
    ok, message = await _poll(kind, lambda: rt.call(check, conn, path, applied, desired), deadline, timeout)
    if ok and applied is not None and findings and findings[1] and kind not in ROLLOUT_KINDS:
        target, codes = findings
        ok, message = await _poll(kind, lambda: _findings_gone(rt, conn, target, codes), deadline, timeout)
    return ok, message


async def _poll(
    kind: str, check: Callable[[], Awaitable[tuple[bool, bool, str]]], deadline: float, timeout: float
) -> tuple[bool, str]:
    """Call `check` () -> (done, ok, message) until done or the deadline, reporting progress."""
    while True:
        done, ok, message = await check()
        elapsed = round(timeout - (deadline - time.monotonic()), 1)
        await report_progress(elapsed, timeout, f"{kind}: {message}")
        if done:
            return ok, message
        if time.monotonic() > deadline:
            return False, f"not complete after {timeout:g}s: {message}"
        await anyio.sleep(POLL_SECONDS)


async def _findings_gone(rt: Runtime, conn: Connection, target: ObjectRef, codes: list[str]) -> tuple[bool, bool, str]:
    gathered, _ = await snapshot(rt, conn, [target.namespace] if target.namespace else None, refresh=True)
    report = await rt.call(run, gathered.snapshot, focus=target)
    left = sorted({f.code for f in report.findings if f.code in codes})
    if left:
        return False, False, "diagnosis still reports " + ", ".join(left)
    return True, True, "stored as planned; diagnosis no longer reports " + ", ".join(sorted(set(codes)))


def _deployment(conn: Connection, path: str, applied: Any, desired: Any) -> tuple[bool, bool, str]:
    dep = conn.get(path)
    status = dep.get("status") or {}
    generation = (applied or dep)["metadata"].get("generation", 0)
    if status.get("observedGeneration", 0) < generation:
        return False, False, "waiting for the controller to see the change"
    for c in status.get("conditions") or []:
        if c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded":
            return True, False, f"rollout failed: {c.get('message')}"
    want = (dep.get("spec") or {}).get("replicas", 1)
    updated, available = status.get("updatedReplicas", 0), status.get("availableReplicas", 0)
    total, unavailable = status.get("replicas", 0), status.get("unavailableReplicas", 0)
    message = f"{updated}/{want} updated, {available}/{want} available"
    if updated == want and available == want and total == want and not unavailable:
        return True, True, f"rollout complete: {message}"
    broken = _broken_new_pods(conn, dep)
    if broken:
        return True, False, f"new pods are failing: {broken}"
    return False, False, message


def _broken_new_pods(conn: Connection, dep: dict[str, Any]) -> str:
    """'pod: reason' of the newest revision's pods that a kubelet reports as broken."""
    ns = dep["metadata"]["namespace"]
    revision = (dep["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision")
    selector = ",".join(f"{k}={v}" for k, v in ((dep["spec"].get("selector") or {}).get("matchLabels") or {}).items())
    sets = conn.get(f"/apis/apps/v1/namespaces/{ns}/replicasets", labelSelector=selector).get("items", [])
    new = [
        rs
        for rs in sets
        if (rs["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision") == revision
        and any(o.get("uid") == dep["metadata"]["uid"] for o in rs["metadata"].get("ownerReferences") or [])
    ]
    if not new:
        return ""
    template_hash = (new[0]["metadata"].get("labels") or {}).get("pod-template-hash")
    return _broken_pods(conn, ns, f"pod-template-hash={template_hash}")


def _broken_pods(conn: Connection, ns: str, selector: str) -> str:
    """'pod: reason' of the selected pods that a kubelet reports as broken (at most three)."""
    pods = conn.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=selector)
    found = []
    for pod in pods.get("items", []):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            reason = ((cs.get("state") or {}).get("waiting") or {}).get("reason")
            last = ((cs.get("lastState") or {}).get("terminated") or {}).get("reason")
            if reason in BROKEN or last == "OOMKilled":
                found.append(f"{pod['metadata']['name']} {reason or last}")
    return ", ".join(found[:3])


def _update_revision(conn: Connection, obj: dict[str, Any]) -> str | None:
    """The controller-revision-hash of a StatefulSet's or DaemonSet's newest pods."""
    if obj["kind"] == "StatefulSet":
        return (obj.get("status") or {}).get("updateRevision")
    ns, uid = obj["metadata"]["namespace"], obj["metadata"]["uid"]
    selector = ",".join(f"{k}={v}" for k, v in ((obj["spec"].get("selector") or {}).get("matchLabels") or {}).items())
    revisions = conn.get(f"/apis/apps/v1/namespaces/{ns}/controllerrevisions", labelSelector=selector).get("items", [])
    owned = [r for r in revisions if any(o.get("uid") == uid for o in r["metadata"].get("ownerReferences") or [])]
    if not owned:
        return None
    newest = max(owned, key=lambda r: r.get("revision", 0))
    return (newest["metadata"].get("labels") or {}).get("controller-revision-hash")


def _rolling(conn: Connection, path: str, applied: Any, desired: Any) -> tuple[bool, bool, str]:
    obj = conn.get(path)
    status = obj.get("status") or {}
    generation = (applied or obj)["metadata"].get("generation", 0)
    if status.get("observedGeneration", 0) < generation:
        return False, False, "waiting for the controller to see the change"
    if obj["kind"] == "DaemonSet":
        want = status.get("desiredNumberScheduled", 0)
        updated, ready = status.get("updatedNumberScheduled", 0), status.get("numberAvailable", 0)
    else:
        want = (obj.get("spec") or {}).get("replicas", 1)
        updated, ready = status.get("updatedReplicas", 0), status.get("availableReplicas", 0)
    message = f"{updated}/{want} updated, {ready}/{want} ready"
    if updated >= want and ready >= want:
        return True, True, f"rollout complete: {message}"
    revision = _update_revision(conn, obj)
    broken = revision and _broken_pods(conn, obj["metadata"]["namespace"], f"controller-revision-hash={revision}")
    if broken:
        return True, False, f"new pods are failing: {broken}"
    return False, False, message


def _node(conn: Connection, path: str, applied: Any, desired: Any) -> tuple[bool, bool, str]:
    node = conn.get(path)
    want = bool(((desired or {}).get("spec") or {}).get("unschedulable"))
    now = bool((node.get("spec") or {}).get("unschedulable"))
    return now == want, now == want, "cordoned" if now else "schedulable"


def _stored(conn: Connection, path: str, applied: Any, desired: Any) -> tuple[bool, bool, str]:
    """A deletion is done once the object is gone or terminating; anything else once it is stored as planned."""
    try:
        obj = conn.get(path)
    except NotFound:
        return True, True, "gone" if applied is None else "the object disappeared"
    if applied is None:
        done = bool(obj["metadata"].get("deletionTimestamp"))
        return done, done, "terminating" if done else "still present"
    same = content(obj) == content(applied)
    return True, same, "stored as planned" if same else "changed by someone else since"


_CHECKS = {"Deployment": _deployment, "StatefulSet": _rolling, "DaemonSet": _rolling, "Node": _node}
ROLLOUT_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet"})  # verified by their rollout, not by diagnosis
