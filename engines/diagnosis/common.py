"""Helpers several rule modules share: container specs, resource arithmetic, rollback targets."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from engines.diagnosis.model import Finding, Fix
from engines.diagnosis.snapshot import Obj, Snapshot, meta, name_of, ns_of
from kube.podstatus import pod_reason
from kube.quantity import QuantityError, parse_quantity
from kube.times import parse_time

MI = Decimal(2**20)


def containers(pod_spec: Obj, init: bool = True) -> list[Obj]:
    out = list(pod_spec.get("containers") or [])
    if init:
        out += pod_spec.get("initContainers") or []
    return out


def container_spec(pod_spec: Obj, name: str) -> Obj | None:
    return next((c for c in containers(pod_spec) if c.get("name") == name), None)


def container_statuses(pod: Obj) -> list[Obj]:
    status = pod.get("status") or {}
    return list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or [])


def present(evidence: dict[str, Any]) -> dict[str, Any]:
    """Evidence without the entries that are not known (None), so a finding shows only what was found."""
    return {k: v for k, v in evidence.items() if v is not None}


def pod_finding(snap: Snapshot, pod: Obj, **fields: Any) -> Finding:
    """A finding about a pod; its evidence starts with the pod's STATUS column and node."""
    fields.setdefault("evidence", {})
    fields["evidence"] = {
        "pod_status": pod_reason(pod),
        "node": (pod.get("spec") or {}).get("nodeName"),
        **fields["evidence"],
    }
    return Finding(object=snap.ref(pod, "Pod"), **fields)


def quantity(value: Any) -> Decimal:
    """A resource quantity as a number (0 for absent or unparsable values)."""
    if value in (None, ""):
        return Decimal(0)
    try:
        return parse_quantity(value)
    except QuantityError:
        return Decimal(0)


def pod_requests(pod_spec: Obj) -> dict[str, Decimal]:
    """What the scheduler charges a pod: the sum over containers, or the largest init container if more."""
    total: dict[str, Decimal] = {}
    for c in pod_spec.get("containers") or []:
        for res, v in ((c.get("resources") or {}).get("requests") or {}).items():
            total[res] = total.get(res, Decimal(0)) + quantity(v)
    for c in pod_spec.get("initContainers") or []:
        for res, v in ((c.get("resources") or {}).get("requests") or {}).items():
            total[res] = max(total.get(res, Decimal(0)), quantity(v))
    return total


def fmt_cpu(cores: Decimal) -> str:
    millis = int(cores * 1000)
    return f"{millis // 1000}" if millis % 1000 == 0 else f"{millis}m"


def fmt_mem(value: Decimal) -> str:
    mi = int(value / MI)
    return f"{mi // 1024}Gi" if mi and mi % 1024 == 0 else f"{mi}Mi"


def fmt_resource(resource: str, value: Decimal) -> str:
    if resource == "cpu":
        return fmt_cpu(value)
    if resource in ("memory", "ephemeral-storage"):
        return fmt_mem(value)
    return str(int(value))


def images(pod_spec: Obj) -> dict[str, str]:
    return {c.get("name", ""): c.get("image", "") for c in pod_spec.get("containers") or []}


def rollback_fix(snap: Snapshot, deployment: Obj) -> tuple[Fix, dict[str, Any]] | None:
    """`rollout_undo` to the previous revision when there is one, with the image change it reverts."""
    sets = snap.replicasets_of(deployment)
    if len(sets) < 2:
        return None
    newest, previous = sets[0], sets[1]
    new_images = images(((newest.get("spec") or {}).get("template") or {}).get("spec") or {})
    old_images = images(((previous.get("spec") or {}).get("template") or {}).get("spec") or {})
    evidence: dict[str, Any] = {
        "failing_revision": snap.rs_revision(newest),
        "previous_revision": snap.rs_revision(previous),
    }
    changed = {c: f"{old_images.get(c, '-')} -> {img}" for c, img in new_images.items() if old_images.get(c) != img}
    if changed:
        evidence["image_change"] = changed
    fix = Fix(
        action="rollout_undo",
        target=snap.make_ref("Deployment", name_of(deployment), ns_of(deployment)),
        params={"to_revision": snap.rs_revision(previous)},
    )
    return fix, evidence


def owning_deployment(snap: Snapshot, pod: Obj) -> Obj | None:
    """The Deployment of a pod, if the pod belongs to its newest ReplicaSet."""
    owner = snap.owner(pod)
    if owner is None or owner.kind != "Deployment":
        return None
    dep = snap.get("deployments", ns_of(pod), owner.name)
    if dep is None:
        return None
    sets = snap.replicasets_of(dep)
    rs_name = (snap.controller_of(pod) or ("", ""))[1]
    if sets and name_of(sets[0]) != rs_name:
        return None
    return dep


def pod_template_spec(obj: Obj) -> Obj:
    return ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}


def pod_template_labels(obj: Obj) -> dict[str, str]:
    return meta((obj.get("spec") or {}).get("template") or {}).get("labels") or {}


def event_summary(events: list[Obj], limit: int = 3) -> list[str]:
    """'reason (xN): message' for the newest events."""
    out = []
    for ev in events[:limit]:
        count = ev.get("count") or (ev.get("series") or {}).get("count") or 1
        out.append(f"{ev.get('reason')} (x{count}): {str(ev.get('message') or '')[:300]}")
    return out


def seen_since(event: Obj, since: datetime) -> bool:
    """Whether the event last happened after `since` (an event without a readable time counts as recent)."""
    series: Obj = event["series"] if isinstance(event.get("series"), dict) else {}
    stamp = event.get("lastTimestamp") or series.get("lastObservedTime") or event.get("eventTime")
    when = parse_time(stamp)
    return when is None or when >= since
