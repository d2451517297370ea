"""A controller cannot create pods: what refused them, and the object a person must change.

The API server's refusal (a `FailedCreate` event, or a ReplicaSet's ReplicaFailure condition) names the
admission step that said no. Each step maps to the namespace- or cluster-level object behind it — a
ResourceQuota, a LimitRange, the namespace's Pod Security level, a missing PriorityClass, RuntimeClass or
ServiceAccount, a webhook configuration — which becomes the finding's `cause`; the engine makes that object the
subject and the workload the symptom (see `engine.chain_causes`). A refusal no step explains stays a
WORKLOAD_FAILED_CREATE about the workload.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from engines.diagnosis.common import event_summary, seen_since
from engines.diagnosis.model import Finding, ObjectRef
from engines.diagnosis.snapshot import Obj, Snapshot, condition, labels_of, name_of, ns_of

# A controller retries a refused create within minutes; a FailedCreate event older than this is history.
RETRY_WINDOW = timedelta(hours=1)
_QUOTA = re.compile(r"exceeded quota: ([a-z0-9.-]+)")
_LIMIT = re.compile(r"(minimum|maximum) (\S+) usage per (Container|Pod|PersistentVolumeClaim) is (\S+)")
_RATIO = re.compile(r"(\S+) max limit to request ratio per (Container|Pod)")
_PRIORITY = re.compile(r"no PriorityClass with name (\S+) was found")
_RUNTIME = re.compile(r'RuntimeClass "([^"]+)" not found')
_ACCOUNT = re.compile(r'serviceaccount "([^"]+)" not found')
_WEBHOOK = re.compile(r'(?:failed calling webhook|admission webhook) "([^"]+)"')
_SECURITY = re.compile(r'violates PodSecurity "([^"]+)": (.*)')


@dataclass
class Refusal:
    """Why admission said no, as far as the message and the snapshot tell."""

    code: str
    summary: str
    remediation: str
    cause: ObjectRef | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


def failed_create(snap: Snapshot) -> Iterator[Finding]:
    for rs in snap.items("replicasets"):
        cond = condition(rs, "ReplicaFailure")
        if not cond or cond.get("status") != "True" or not (rs.get("spec") or {}).get("replicas"):
            continue
        ctrl = snap.controller_of(rs)
        target = snap.make_ref(ctrl[0], ctrl[1], ns_of(rs)) if ctrl else snap.ref(rs, "ReplicaSet")
        events = snap.events_for("ReplicaSet", ns_of(rs), name_of(rs))
        message = str(cond.get("message") or "")
        yield _finding(snap, ns_of(rs), target, message, events, [snap.ref(rs, "ReplicaSet")])
    recent = snap.now - RETRY_WINDOW
    for key, kind in (("statefulsets", "StatefulSet"), ("daemonsets", "DaemonSet"), ("jobs", "Job")):
        for obj in snap.items(key):
            events = [
                e
                for e in snap.events_for(kind, ns_of(obj), name_of(obj))
                if e.get("reason") == "FailedCreate" and seen_since(e, recent)
            ]
            if events:
                message = str(events[0].get("message") or "")
                yield _finding(snap, ns_of(obj), snap.ref(obj, kind), message, events, [])


def _finding(
    snap: Snapshot, ns: str, target: ObjectRef, message: str, events: list[Obj], involves: list[ObjectRef]
) -> Finding:
    why = classify(snap, ns, message)
    evidence: dict[str, Any] = {**why.evidence, "message": message[:400]}
    if events:
        evidence["events"] = event_summary(events)
    return Finding(
        code=why.code,
        severity="critical",
        object=target,
        summary=why.summary,
        evidence=evidence,
        remediation=why.remediation,
        involves=involves,
        cause=why.cause,
    )


def classify(snap: Snapshot, ns: str, message: str) -> Refusal:
    """The admission step behind a refusal message and the object to change."""
    if m := _QUOTA.search(message):
        return Refusal(
            "QUOTA_EXCEEDED",
            f"ResourceQuota {m[1]} is exhausted: new pods are refused",
            f"Raise ResourceQuota {m[1]}'s spec.hard, or lower the pods' requests or replica count.",
            snap.make_ref("ResourceQuota", m[1], ns),
            {"quota": m[1]},
        )
    if m := _LIMIT.search(message) or _RATIO.search(message):
        resource = m[2] if m.re is _LIMIT else m[1]
        scope = m[3] if m.re is _LIMIT else m[2]
        found = _limit_ranges(snap, ns, resource, scope)
        name = found[0] if len(found) == 1 else None
        what = f"LimitRange {name}" if name else "a LimitRange"
        return Refusal(
            "LIMITRANGE_REJECTS",
            f"{what} refuses the pods' {resource} per {scope}",
            f"Change the pod template's {resource} requests/limits to fit {what}, or change its bounds.",
            snap.make_ref("LimitRange", name, ns) if name else None,
            {"limit_range": name, "resource": resource, "per": scope},
        )
    if m := _SECURITY.search(message):
        level = str(labels_of(snap.get("namespaces", "", ns) or {}).get("pod-security.kubernetes.io/enforce", ""))
        return Refusal(
            "POD_SECURITY_REJECTS",
            f"namespace {ns} enforces Pod Security {m[1]}; the pods violate it",
            "Change the pod template to meet the level (each violation is listed), or, if the workload truly "
            "needs more, relax the namespace's pod-security.kubernetes.io/enforce label after review.",
            snap.make_ref("Namespace", ns),
            {"enforce": level or m[1], "violations": m[2][:300]},
        )
    if m := _PRIORITY.search(message):
        return _missing(snap, "PRIORITYCLASS_MISSING", "PriorityClass", "priorityclasses", m[1], None)
    if m := _RUNTIME.search(message):
        return _missing(snap, "RUNTIMECLASS_MISSING", "RuntimeClass", "runtimeclasses", m[1], None)
    if m := _ACCOUNT.search(message):
        return _missing(snap, "SERVICEACCOUNT_MISSING", "ServiceAccount", "serviceaccounts", m[1], ns)
    if m := _WEBHOOK.search(message):
        return _webhook(snap, m[1], message)
    return Refusal(
        "WORKLOAD_FAILED_CREATE",
        "cannot create pods: the API server refused them",
        "Read the message and correct the pod template or the policy it names.",
    )


def _missing(snap: Snapshot, code: str, kind: str, key: str, name: str, ns: str | None) -> Refusal:
    where = f" in namespace {ns}" if ns else ""
    return Refusal(
        code,
        f"the pods name {kind} {name}, which does not exist{where}: admission refuses them",
        f"Create {kind} {name}{where}, or change the pod template to name an existing one.",
        snap.make_ref(kind, name, ns),
        {kind[0].lower() + kind[1:]: name},
    )


def _webhook(snap: Snapshot, hook: str, message: str) -> Refusal:
    config: ObjectRef | None = None
    for key, kind in (
        ("validatingwebhookconfigurations", "ValidatingWebhookConfiguration"),
        ("mutatingwebhookconfigurations", "MutatingWebhookConfiguration"),
    ):
        for obj in snap.items(key):
            if any(isinstance(w, dict) and w.get("name") == hook for w in obj.get("webhooks") or []):
                config = snap.ref(obj, kind)
    unreachable = "failed calling webhook" in message
    what = "cannot be reached" if unreachable else "denies the pods"
    return Refusal(
        "ADMISSION_WEBHOOK_FAILS",
        f"admission webhook {hook} {what}",
        (
            "Restore the webhook's backend (its Service and pods), or, if it is gone for good, delete its "
            "configuration; failurePolicy Fail makes every matching request wait for it."
            if unreachable
            else "Change the pod template to satisfy the webhook's policy (its reason is in the message)."
        ),
        config,
        {"webhook": hook, "unreachable": unreachable},
    )


def _limit_ranges(snap: Snapshot, ns: str, resource: str, scope: str) -> list[str]:
    """LimitRanges of a namespace with a bound on `resource` for `scope` (Container, Pod, ...)."""
    out = []
    for lr in snap.in_ns("limitranges", ns):
        for item in (lr.get("spec") or {}).get("limits") or []:
            if not isinstance(item, dict) or item.get("type") != scope:
                continue
            bounds = [item.get(k) or {} for k in ("max", "min", "maxLimitRequestRatio")]
            if any(isinstance(b, dict) and resource in b for b in bounds):
                out.append(name_of(lr))
                break
    return out


def defaulted_by(snap: Snapshot, pod: Obj, container: str, what: str) -> ObjectRef | None:
    """The LimitRange whose default gave a pod's container its `what` ("memory limit", "cpu request", ...), as
    the LimitRanger admission plugin records in the pod's annotation; None when the template set it."""
    note = str(((pod.get("metadata") or {}).get("annotations") or {}).get("kubernetes.io/limit-ranger") or "")
    if f"{what} for container {container}" not in note and f"{what} for init container {container}" not in note:
        return None
    resource, kind = what.split(" ", 1)
    key = "default" if kind == "limit" else "defaultRequest"
    for lr in snap.in_ns("limitranges", ns_of(pod)):
        for item in (lr.get("spec") or {}).get("limits") or []:
            if isinstance(item, dict) and item.get("type") == "Container" and resource in (item.get(key) or {}):
                return snap.ref(lr, "LimitRange")
    return None


RULES = [failed_create]
