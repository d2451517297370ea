"""Blast radius and risk of one change: pods restarted, replicas unavailable during the rollout, and how
PodDisruptionBudgets and HorizontalPodAutoscalers interact with it."""

from __future__ import annotations

import math
from typing import Any

from engines.remediation.model import RISK_RANK, Blast, Change, Risk

Obj = dict[str, Any]
TEMPLATE_EDITS = {"set_probe", "set_resources", "set_image", "restart", "set_template"}


def assess(
    change: Change, live: Obj | None, pdbs: list[Obj], hpas: list[Obj], inside: dict[str, int] | None = None
) -> tuple[Blast, Risk]:
    """How much `change` disturbs, and the resulting risk. `inside`: for a Namespace, how many objects of each
    kind it holds (e.g. {"Pod": 4, "Deployment": 2})."""
    if change.operation == "delete":
        if (live or {}).get("kind") == "Namespace":
            return _delete_namespace(inside or {})
        return _delete(change, live)
    if live is None:
        return Blast(notes=["creates a new object"]), "low"
    kind = live.get("kind", "")
    spec = live.get("spec") or {}
    actions: set[str] = {e.action for e in change.edits}
    blast = Blast()
    notes = blast.notes  # the model's own list: appended to below
    risk: Risk = "low"
    replicas = _replicas(live)
    if actions & TEMPLATE_EDITS or (change.patch is not None and kind in ("Deployment", "StatefulSet", "DaemonSet")):
        blast.pods_restarted = replicas
        blast.max_unavailable = _unavailable_during_rollout(kind, spec, replicas)
        risk = "medium"
        if blast.max_unavailable >= replicas > 0:
            risk = "high"
            notes.append(f"all {replicas} replica(s) may be unavailable at once during the rollout")
        elif replicas:
            notes.append(
                f"rolling update: {replicas} pod(s) replaced, at most {blast.max_unavailable} unavailable at a time"
            )
        available = (live.get("status") or {}).get("availableReplicas")
        if available is not None and available < replicas:
            notes.append(f"{replicas - available} replica(s) are already unavailable")
        notes += _pdb_notes(live, pdbs)
    if "scale" in actions:
        new = next(e.params["replicas"] for e in change.edits if e.action == "scale")
        if new < replicas:
            notes.append(f"scale down: {replicas - new} pod(s) stopped")
            risk = "high" if new == 0 else max(risk, "medium", key=_rank)
        else:
            notes.append(f"scale up: {new - replicas} pod(s) started")
    if actions & {"set_resources", "scale"}:
        notes += _hpa_notes(live, hpas, actions)
    if "cordon" in actions:
        notes.append("no pod is restarted: cordoning only stops new pods from being scheduled on the node")
    if "set_target_port" in actions:
        notes.append("no pod is restarted: traffic is routed to the new target port at once")
        risk = max(risk, "medium", key=_rank)
    return blast, risk


def _rank(risk: str) -> int:
    return RISK_RANK[risk]


def _delete_namespace(inside: dict[str, int]) -> tuple[Blast, Risk]:
    pods = inside.get("Pod", 0)
    held = ", ".join(f"{n} {kind}(s)" for kind, n in inside.items() if n) or "no workloads or pods"
    note = f"the namespace is deleted with everything in it: {held}"
    return Blast(max_unavailable=pods, notes=[note]), "critical"


def _delete(change: Change, live: Obj | None) -> tuple[Blast, Risk]:
    kind = change.target.kind
    if kind == "Pod":
        owned = bool(((live or {}).get("metadata") or {}).get("ownerReferences"))
        note = "its controller creates a replacement" if owned else "it has no controller: nothing replaces it"
        return Blast(pods_restarted=1, max_unavailable=1, notes=[f"the pod stops; {note}"]), (
            "medium" if owned else "high"
        )
    return Blast(max_unavailable=_replicas(live or {}), notes=[f"the {kind} is deleted with what it owns"]), "high"


def _replicas(obj: Obj) -> int:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "DaemonSet":
        return int((obj.get("status") or {}).get("desiredNumberScheduled") or 0)
    if obj.get("kind") in ("Deployment", "StatefulSet", "ReplicaSet"):
        return int(spec.get("replicas", 1))
    return 0


def _scaled(value: Any, replicas: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        exact = replicas * int(value[:-1]) / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value)


def _unavailable_during_rollout(kind: str, spec: Obj, replicas: int) -> int:
    strategy = spec.get("strategy") or spec.get("updateStrategy") or {}
    if strategy.get("type") in ("Recreate", "OnDelete"):
        return replicas if strategy.get("type") == "Recreate" else 0
    rolling = strategy.get("rollingUpdate") or {}
    if kind == "Deployment":
        unavailable = _scaled(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
        surge = _scaled(rolling.get("maxSurge", "25%"), replicas, round_up=True)
        return unavailable if unavailable or surge else 1
    return min(replicas, _scaled(rolling.get("maxUnavailable", 1), replicas, round_up=False) or 1)


def _labels(obj: Obj) -> dict[str, str]:
    return (((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}


def _pdb_notes(live: Obj, pdbs: list[Obj]) -> list[str]:
    labels = _labels(live)
    notes = []
    for pdb in pdbs:
        selector = ((pdb.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        if selector and all(labels.get(k) == v for k, v in selector.items()):
            allowed = (pdb.get("status") or {}).get("disruptionsAllowed")
            notes.append(
                f"PodDisruptionBudget {pdb['metadata']['name']} covers these pods (allows {allowed} "
                "disruption(s)): a rolling update does not consult it, but node drains during the "
                "rollout do"
            )
    return notes


def _hpa_notes(live: Obj, hpas: list[Obj], actions: set[str]) -> list[str]:
    name, kind = (live.get("metadata") or {}).get("name"), live.get("kind")
    notes = []
    for hpa in hpas:
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        if ref.get("kind") != kind or ref.get("name") != name:
            continue
        spec = hpa["spec"]
        if "scale" in actions:
            notes.append(
                f"HorizontalPodAutoscaler {hpa['metadata']['name']} owns the replica count "
                f"({spec.get('minReplicas', 1)}..{spec.get('maxReplicas')}): it will undo a manual scale"
            )
        if "set_resources" in actions:
            notes.append(
                f"HorizontalPodAutoscaler {hpa['metadata']['name']} measures utilisation against the "
                "requests: changing them shifts its scaling decisions"
            )
    return notes
