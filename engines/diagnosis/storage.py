"""Storage rules: PersistentVolumeClaims stuck Pending (and why) or Lost, PersistentVolumes Released or Failed."""

from __future__ import annotations

from collections.abc import Iterator

from engines.diagnosis.common import event_summary, quantity
from engines.diagnosis.model import Finding
from engines.diagnosis.snapshot import Obj, Snapshot, label_selector_matches, labels_of, meta, name_of, ns_of

DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"


def claims(snap: Snapshot) -> Iterator[Finding]:
    classes = {name_of(sc): sc for sc in snap.items("storageclasses")}
    for pvc in snap.items("persistentvolumeclaims"):
        if (pvc.get("status") or {}).get("phase") != "Pending" or not snap.covers("storageclasses"):
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
        evidence = {k: v for k, v in evidence.items() if v is not None}
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
        failed = [e for e in events if e.get("reason") == "ProvisioningFailed"]
        if failed:
            yield Finding(
                code="PVC_PROVISIONING_FAILED",
                severity="critical",
                object=snap.ref(pvc, "PersistentVolumeClaim"),
                summary=f"Pending: provisioner {sc.get('provisioner')} fails to create the volume",
                evidence=evidence,
                remediation="Read the provisioner's error in the events; check its controller's logs "
                "and the StorageClass parameters.",
            )


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
        evidence = {"phase": "Lost", "volumeName": volume, "events": event_summary(events) or None}
        if volume and snap.covers("persistentvolumes"):
            evidence["volume_exists"] = any(name_of(pv) == volume for pv in snap.items("persistentvolumes"))
        yield Finding(
            code="PVC_LOST",
            severity="critical",
            object=snap.ref(pvc, "PersistentVolumeClaim"),
            summary=f"Lost: the PersistentVolume {volume or '(none)'} it was bound to no longer exists",
            evidence={k: v for k, v in evidence.items() if v is not None},
            remediation="If the disk still exists, re-create a PersistentVolume named "
            f"{volume or 'as spec.volumeName'} for it (same size and access modes, claimRef to this claim) and the "
            "claim binds again; otherwise delete and re-create the claim (a new, empty volume) and restore its data "
            "from a backup.",
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
        evidence = {k: v for k, v in evidence.items() if v is not None}
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


RULES = [claims, lost_claims, volumes]
