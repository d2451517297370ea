"""Storage rules: PersistentVolumeClaims stuck Pending (and why), tied to a volume that cannot take them, Lost,
or failing to expand; PersistentVolumes Released or Failed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from engines.diagnosis.common import event_summary, present, quantity, seen_since
from engines.diagnosis.model import Finding
from engines.diagnosis.snapshot import Obj, Snapshot, label_selector_matches, labels_of, meta, name_of, ns_of

DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"
# Events older than this are history: the controllers repeat them at every retry while a problem lasts.
RECENT = timedelta(hours=1)
RESIZE_EVENTS = ("VolumeResizeFailed", "FileSystemResizeFailed", "ExternalExpanding")
RESIZE_ERRORS = ("ControllerResizeError", "NodeResizeError")
INFEASIBLE = ("ControllerResizeInfeasible", "NodeResizeInfeasible")


def claims(snap: Snapshot) -> Iterator[Finding]:
    classes = {name_of(sc): sc for sc in snap.items("storageclasses")}
    for pvc in snap.items("persistentvolumeclaims"):
        if (pvc.get("status") or {}).get("phase") != "Pending":
            continue
        mismatch = _volume_mismatch(snap, pvc)
        if mismatch is not None:
            yield mismatch
            continue
        if not snap.covers("storageclasses"):
            continue
        spec = pvc.get("spec") or {}
        cls = spec.get("storageClassName")
        events = snap.events_for("PersistentVolumeClaim", ns_of(pvc), name_of(pvc))
        evidence = {
            "storageClassName": cls,
            "request": (spec.get("resources") or {}).get("requests", {}).get("storage"),
            "accessModes": spec.get("accessModes"),
            "events": event_summary(events) or None,
        }
        evidence = present(evidence)
        static = bool(cls) and any(
            (pv.get("spec") or {}).get("storageClassName") == cls for pv in snap.items("persistentvolumes")
        )
        if cls and cls not in classes and not static:
            yield Finding(
                code="PVC_STORAGECLASS_MISSING",
                severity="critical",
                object=snap.ref(pvc, "PersistentVolumeClaim"),
                summary=f"Pending: StorageClass {cls} does not exist",
                evidence={**evidence, "available_classes": sorted(classes)},
                remediation="Use an existing StorageClass"
                + (f" ({', '.join(sorted(classes))})" if classes else "")
                + " — the class of a claim cannot be changed, so recreate the claim — or install the class.",
            )
            continue
        sc = classes.get(cls) if cls else None  # None: bound statically, by class name, to a PersistentVolume
        selected = (meta(pvc).get("annotations") or {}).get("volume.kubernetes.io/selected-node")
        if sc and sc.get("volumeBindingMode") == "WaitForFirstConsumer" and not selected:
            continue  # binds when a pod that uses it is scheduled; once a node is chosen, provisioning may fail
        if sc is None:
            if not snap.covers("persistentvolumes") or _matching_pv(snap, pvc):
                continue
            yield Finding(
                code="PVC_NO_MATCHING_PV",
                severity="critical",
                object=snap.ref(pvc, "PersistentVolumeClaim"),
                summary="Pending: no StorageClass to provision from and no available PersistentVolume matches it",
                evidence={
                    **evidence,
                    "available_pvs": sum(
                        1
                        for pv in snap.items("persistentvolumes")
                        if (pv.get("status") or {}).get("phase") == "Available"
                    ),
                },
                remediation="Create a PersistentVolume matching its size, access modes and class, or set a "
                "StorageClass (mark one as default) so volumes are provisioned.",
            )
            continue
        failed = [e for e in events if e.get("reason") in ("ProvisioningFailed", "ProvisioningCleanupFailed")]
        if failed:
            orphan = any(e.get("reason") == "ProvisioningCleanupFailed" for e in failed)
            yield Finding(
                code="PVC_PROVISIONING_FAILED",
                severity="critical",
                object=snap.ref(pvc, "PersistentVolumeClaim"),
                summary=f"Pending: provisioner {sc.get('provisioner')} fails to create the volume"
                + ("; a volume it created could not be cleaned up" if orphan else ""),
                evidence=evidence,
                remediation="Read the provisioner's error in the events; check its controller's logs "
                "and the StorageClass parameters."
                + (" Delete the orphaned volume the event names in the storage backend by hand." if orphan else ""),
            )


def _dict(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _volume_mismatch(snap: Snapshot, pvc: Obj) -> Finding | None:
    """A Pending claim tied to one PersistentVolume (its spec.volumeName, or a PV pre-bound to it by claimRef)
    that cannot take it: too small, another class or volumeMode, missing access modes, or bound to another
    claim. The PV controller then waits forever (event VolumeMismatch for the first four, none for the last)."""
    if not snap.covers("persistentvolumes"):
        return None
    spec, ns, name = _dict(pvc.get("spec")), ns_of(pvc), name_of(pvc)
    wanted = spec.get("volumeName")
    if isinstance(wanted, str) and wanted:
        pv = snap.get("persistentvolumes", "", wanted)
    else:
        pv = next(
            (
                v
                for v in snap.items("persistentvolumes")
                if _dict(_dict(v.get("spec")).get("claimRef")).get("name") == name
                and _dict(_dict(v.get("spec")).get("claimRef")).get("namespace") == ns
            ),
            None,
        )
    if pv is None:
        return None
    pv_spec = _dict(pv.get("spec"))
    claim_ref = _dict(pv_spec.get("claimRef"))
    problems = _unsatisfied(spec, pv_spec)
    if claim_ref.get("name") and (claim_ref.get("name"), claim_ref.get("namespace")) != (name, ns):
        problems.append(f"bound to claim {claim_ref.get('namespace')}/{claim_ref.get('name')}")
    since = snap.now - RECENT
    events = [
        e
        for e in snap.events_for("PersistentVolumeClaim", ns, name)
        if e.get("reason") == "VolumeMismatch" and seen_since(e, since)
    ]
    if not problems and not events:
        return None
    return Finding(
        code="PVC_VOLUME_MISMATCH",
        severity="critical",
        object=snap.ref(pvc, "PersistentVolumeClaim"),
        summary=f"Pending: PersistentVolume {name_of(pv)} cannot bind it: "
        + ("; ".join(problems) or str(events[0].get("message") or "VolumeMismatch")[:200]),
        evidence={
            k: v
            for k, v in {
                "volume": name_of(pv),
                "problems": problems or None,
                "request": _dict(_dict(spec.get("resources")).get("requests")).get("storage"),
                "capacity": _dict(pv_spec.get("capacity")).get("storage"),
                "events": event_summary(events, limit=1) or None,
            }.items()
            if v is not None
        },
        involves=[snap.ref(pv, "PersistentVolume")],
        remediation="Make the claim and the volume agree (request no more than the volume's capacity, the same "
        "storageClassName and volumeMode, access modes the volume offers) — a claim's spec cannot shrink, so "
        "re-create the claim — or name a volume that fits in spec.volumeName.",
    )


def _unsatisfied(claim: Obj, pv: Obj) -> list[str]:
    """What the PV controller's checkVolumeSatisfyClaim would refuse, in its words."""
    out = []
    request = _dict(_dict(claim.get("resources")).get("requests")).get("storage")
    if quantity(_dict(pv.get("capacity")).get("storage")) < quantity(request):
        out.append("requested PV is too small")
    if (pv.get("storageClassName") or "") != (claim.get("storageClassName") or ""):
        out.append("storageClassName does not match")
    if (pv.get("volumeMode") or "Filesystem") != (claim.get("volumeMode") or "Filesystem"):
        out.append("incompatible volumeMode")
    modes, offered = claim.get("accessModes"), pv.get("accessModes")
    if isinstance(modes, list) and isinstance(offered, list) and not set(map(str, modes)) <= set(map(str, offered)):
        out.append("incompatible accessMode")
    return out


def _matching_pv(snap: Snapshot, pvc: Obj) -> bool:
    spec = pvc.get("spec") or {}
    wanted = quantity(((spec.get("resources") or {}).get("requests") or {}).get("storage"))
    modes = set(spec.get("accessModes") or [])
    for pv in snap.items("persistentvolumes"):
        pv_spec = pv.get("spec") or {}
        if (pv.get("status") or {}).get("phase") != "Available":
            continue
        if (pv_spec.get("storageClassName") or "") != (spec.get("storageClassName") or ""):
            continue
        if quantity((pv_spec.get("capacity") or {}).get("storage")) < wanted:
            continue
        if not modes <= set(pv_spec.get("accessModes") or []):
            continue
        if spec.get("selector") and not label_selector_matches(labels_of(pv), spec["selector"]):
            continue
        return True
    return False


def lost_claims(snap: Snapshot) -> Iterator[Finding]:
    """A claim in phase Lost: the PV controller found the volume it was bound to gone (deleted, or its
    finalizer removed by hand). Pods using the claim cannot start, and the data is gone unless the disk is."""
    for pvc in snap.items("persistentvolumeclaims"):
        if (pvc.get("status") or {}).get("phase") != "Lost":
            continue
        volume = (pvc.get("spec") or {}).get("volumeName")
        events = [
            e
            for e in snap.events_for("PersistentVolumeClaim", ns_of(pvc), name_of(pvc))
            if e.get("reason") == "ClaimLost"
        ]
        misbound = [
            e
            for e in snap.events_for("PersistentVolumeClaim", ns_of(pvc), name_of(pvc))
            if e.get("reason") == "ClaimMisbound"
        ]
        pv = snap.get("persistentvolumes", "", volume) if isinstance(volume, str) and volume else None
        claim_ref = _dict(_dict(pv.get("spec")).get("claimRef")) if pv else {}
        other = claim_ref.get("name") and (claim_ref.get("name"), claim_ref.get("namespace")) != (
            name_of(pvc),
            ns_of(pvc),
        )
        uid = claim_ref.get("uid") and meta(pvc).get("uid") and claim_ref.get("uid") != meta(pvc).get("uid")
        if pv is not None and (other or uid or misbound):
            owner = f"{claim_ref.get('namespace')}/{claim_ref.get('name')}" if claim_ref.get("name") else None
            yield Finding(
                code="PVC_LOST",
                severity="critical",
                object=snap.ref(pvc, "PersistentVolumeClaim"),
                summary=f"Lost: its PersistentVolume {volume} is bound to another claim"
                + (f" ({owner})" if owner else "")
                + " (ClaimMisbound)",
                evidence={
                    k: v
                    for k, v in {
                        "phase": "Lost",
                        "volumeName": volume,
                        "volume_exists": True,
                        "bound_to": owner,
                        "events": event_summary(misbound, limit=1) or None,
                    }.items()
                    if v is not None
                },
                involves=[snap.ref(pv, "PersistentVolume")],
                remediation="Two claims named the same volume and the other one holds it: this claim cannot get it "
                "back. Delete this claim and re-create it without spec.volumeName (or naming a free volume), and "
                "restore its data if the pods wrote to the other claim's volume.",
            )
            continue
        evidence = {"phase": "Lost", "volumeName": volume, "events": event_summary(events) or None}
        if volume and snap.covers("persistentvolumes"):
            evidence["volume_exists"] = any(name_of(pv) == volume for pv in snap.items("persistentvolumes"))
        yield Finding(
            code="PVC_LOST",
            severity="critical",
            object=snap.ref(pvc, "PersistentVolumeClaim"),
            summary=f"Lost: the PersistentVolume {volume or '(none)'} it was bound to no longer exists",
            evidence=present(evidence),
            remediation="If the disk still exists, re-create a PersistentVolume named "
            f"{volume or 'as spec.volumeName'} for it (same size and access modes, claimRef to this claim) and the "
            "claim binds again; otherwise delete and re-create the claim (a new, empty volume) and restore its data "
            "from a backup.",
        )


def resizes(snap: Snapshot) -> Iterator[Finding]:
    """A claim whose expansion fails: its request is above its capacity and the resizer (expand controller or
    CSI external-resizer: ControllerResizeError, VolumeResizeFailed) or the kubelet growing the file system
    (NodeResizeError, FileSystemResizeFailed) reports an error, or the size is infeasible. The volume keeps
    working at its old size; a resize still in progress without error is no finding, nor is an old error."""
    since = snap.now - RECENT
    for pvc in snap.items("persistentvolumeclaims"):
        spec, status = _dict(pvc.get("spec")), _dict(pvc.get("status"))
        if status.get("phase") != "Bound":
            continue
        request = _dict(_dict(spec.get("resources")).get("requests")).get("storage")
        capacity = _dict(status.get("capacity")).get("storage")
        if capacity is None or quantity(request) <= quantity(capacity):
            continue
        conditions: list[Any] = status["conditions"] if isinstance(status.get("conditions"), list) else []
        errors = [
            c
            for c in conditions
            if isinstance(c, dict) and c.get("type") in RESIZE_ERRORS and c.get("status") == "True"
        ]
        infeasible = _dict(status.get("allocatedResourceStatuses")).get("storage")
        events = [
            e
            for e in snap.events_for("PersistentVolumeClaim", ns_of(pvc), name_of(pvc))
            if e.get("reason") in RESIZE_EVENTS and e.get("type", "Warning") == "Warning" and seen_since(e, since)
        ]
        if not errors and infeasible not in INFEASIBLE and not events:
            continue
        where = (
            "node"
            if any(c.get("type") == "NodeResizeError" for c in errors)
            or infeasible == INFEASIBLE[1]
            or any(e.get("reason") == "FileSystemResizeFailed" for e in events)
            else "controller"
        )
        message = str((errors[0].get("message") if errors else None) or (events[0].get("message") if events else ""))
        yield Finding(
            code="PVC_RESIZE_FAILED",
            severity="warning",
            object=snap.ref(pvc, "PersistentVolumeClaim"),
            summary=f"expansion from {capacity} to {request} fails"
            + (" on the node (file system)" if where == "node" else " in the storage backend")
            + (f": {message[:200]}" if message else ""),
            evidence={
                k: v
                for k, v in {
                    "request": request,
                    "capacity": capacity,
                    "conditions": [f"{c.get('type')}: {str(c.get('message') or '')[:200]}" for c in errors] or None,
                    "allocatedResourceStatus": infeasible,
                    "events": event_summary(events) or None,
                }.items()
                if v is not None
            },
            remediation="Read the resizer's error: the backend may refuse the size (quota, maximum disk size) or "
            "the volume type cannot grow (check the StorageClass's allowVolumeExpansion and its CSI driver's "
            "resizer); a file system error needs the pod restarted on a node whose kubelet can grow it. A failed "
            "expansion can be retried with a smaller spec.resources.requests.storage, not below status.capacity.",
        )


def volumes(snap: Snapshot) -> Iterator[Finding]:
    for pv in snap.items("persistentvolumes"):
        status, spec = pv.get("status") or {}, pv.get("spec") or {}
        claim = spec.get("claimRef") or {}
        if not snap.in_scope(claim.get("namespace")):
            continue
        evidence = {
            "phase": status.get("phase"),
            "reclaimPolicy": spec.get("persistentVolumeReclaimPolicy"),
            "former_claim": f"{claim.get('namespace')}/{claim.get('name')}" if claim else None,
            "message": status.get("message"),
        }
        evidence = present(evidence)
        if status.get("phase") == "Released":
            yield Finding(
                code="PV_RELEASED",
                severity="warning",
                object=snap.ref(pv, "PersistentVolume"),
                summary="Released: its claim was deleted and the volume (Retain) cannot be bound again",
                evidence=evidence,
                remediation="Recover the data if needed, then delete the PV (and the disk), or clear "
                "spec.claimRef to make it Available again.",
            )
        elif status.get("phase") == "Failed":
            yield Finding(
                code="PV_FAILED",
                severity="critical",
                object=snap.ref(pv, "PersistentVolume"),
                summary=f"Failed: {status.get('message') or 'automatic reclamation failed'}",
                evidence=evidence,
                remediation="Reclamation failed: clean up the volume manually, then delete or re-create the PV.",
            )


RULES = [claims, lost_claims, resizes, volumes]
