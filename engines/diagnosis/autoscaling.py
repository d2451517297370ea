"""Autoscaling and disruption rules: HPAs (missing target, no metrics, missing requests, pinned at max, two on
one workload) and PodDisruptionBudgets (allowing no disruption at all, selecting nothing, or overlapping)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from engines.diagnosis.common import event_summary, pod_template_spec, present, seen_since
from engines.diagnosis.model import Finding, Fix
from engines.diagnosis.snapshot import (
    Obj,
    Snapshot,
    condition,
    label_selector_matches,
    labels_of,
    meta,
    name_of,
    ns_of,
    pod_is_terminal,
)
from engines.diagnosis.traffic import edit_distance

TARGET_KINDS = {"Deployment": "deployments", "StatefulSet": "statefulsets", "ReplicaSet": "replicasets"}
# ScalingActive reasons other rules report or that are no problem: the target was scaled to zero on purpose
# (ScalingDisabled), another HPA selects the same pods (HPA_CONFLICT), the target's scale has no usable selector
# (HPA_SELECTOR_INVALID).
QUIET_REASONS = {"ScalingDisabled", "AmbiguousSelector", "InvalidSelector"}
# Events older than this are history: the controller repeats them at every sync while the problem lasts.
RECENT = timedelta(hours=1)
SELECTOR_EVENTS = ("SelectorRequired", "InvalidSelector")
PDB_EVENTS = ("UnmanagedPods", "CalculateExpectedPodCountFailed")


def hpas(snap: Snapshot) -> Iterator[Finding]:
    for hpa in snap.items("horizontalpodautoscalers"):
        ns, spec, status = ns_of(hpa), hpa.get("spec") or {}, hpa.get("status") or {}
        ref: Obj = spec["scaleTargetRef"] if isinstance(spec.get("scaleTargetRef"), dict) else {}
        key = TARGET_KINDS.get(str(ref.get("kind", "")))
        target = snap.get(key, ns, ref.get("name", "")) if key else None
        if key and snap.covers(key, ns) and target is None:
            near = typo_of(str(ref.get("name", "")), [name_of(w) for w in snap.in_ns(key, ns)])
            yield Finding(
                code="HPA_TARGET_MISSING",
                severity="critical",
                object=snap.ref(hpa, "HorizontalPodAutoscaler"),
                summary=f"scale target {ref.get('kind')} {ref.get('name')} does not exist",
                evidence={"scaleTargetRef": ref} | ({"closest": f"{ref.get('kind')} {near}"} if near else {}),
                remediation="Point scaleTargetRef at the workload's real name, or delete the HPA.",
                fix=None
                if near is None
                else Fix(
                    action="set_fields",
                    target=snap.ref(hpa, "HorizontalPodAutoscaler"),
                    params={
                        "fields": [[["spec", "scaleTargetRef", "name"], near]],
                        "expected": f"the autoscaler scales {ref.get('kind')} {near} again",
                    },
                ),
            )
            continue
        missing = _missing_requests(spec, target, _defaulted(snap, ns)) if target else {}
        if missing:
            yield Finding(
                code="HPA_MISSING_REQUESTS",
                severity="critical",
                object=snap.ref(hpa, "HorizontalPodAutoscaler"),
                summary="utilization targets need requests that containers lack: "
                + "; ".join(f"{c} has no {'/'.join(r)} request" for c, r in missing.items()),
                evidence={"missing": missing, "target": f"{ref.get('kind')}/{ref.get('name')}"},
                remediation="Set resource requests on these containers; utilization is a percentage of the request.",
            )
        else:
            active = condition(hpa, "ScalingActive")
            if active and active.get("status") == "False" and active.get("reason") not in QUIET_REASONS:
                yield Finding(
                    code="HPA_METRICS_UNAVAILABLE",
                    severity="warning",
                    object=snap.ref(hpa, "HorizontalPodAutoscaler"),
                    summary=f"cannot scale: {active.get('reason')}",
                    evidence={"reason": active.get("reason"), "message": str(active.get("message") or "")[:300]},
                    remediation="Check the metrics pipeline (metrics-server for resource metrics, the adapter for "
                    "custom/external ones) and the metric names.",
                )
        high = spec.get("maxReplicas", 0)
        current, desired = status.get("currentReplicas", 0), status.get("desiredReplicas", 0)
        if high and high > spec.get("minReplicas", 1) and current >= high and desired >= high:
            limited = condition(hpa, "ScalingLimited") or {}
            yield Finding(
                code="HPA_AT_MAX",
                severity="warning",
                object=snap.ref(hpa, "HorizontalPodAutoscaler"),
                summary=f"pinned at maxReplicas {high}: it wants at least as many as it may have",
                evidence={
                    "current": current,
                    "desired": desired,
                    "maxReplicas": high,
                    "limited": limited.get("reason"),
                    "metrics": status.get("currentMetrics"),
                },
                remediation="Raise maxReplicas if the cluster has room, or make each replica handle more "
                "load; check that the metric target is realistic.",
            )


def _recent(snap: Snapshot, kind: str, obj: Obj, reasons: tuple[str, ...]) -> list[Obj]:
    since = snap.now - RECENT
    return [
        e
        for e in snap.events_for(kind, ns_of(obj), name_of(obj))
        if e.get("reason") in reasons and seen_since(e, since)
    ]


def _condition_dict(obj: Obj, kind: str) -> Obj:
    status = obj.get("status")
    if not isinstance(status, dict) or not isinstance(status.get("conditions"), list):
        return {}
    found = next((c for c in status["conditions"] if isinstance(c, dict) and c.get("type") == kind), None)
    return found if isinstance(found, dict) else {}


def _dict(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def hpa_controller_errors(snap: Snapshot) -> Iterator[Finding]:
    """What the HPA controller itself cannot do: read a pod selector from the target's scale subresource
    (ScalingActive=False, InvalidSelector; events SelectorRequired / InvalidSelector), or write the size it
    decided on to that subresource (AbleToScale=False, FailedUpdateScale; event FailedRescale). The metrics are
    fine in both cases, so the metrics-pipeline advice of HPA_METRICS_UNAVAILABLE would mislead."""
    for hpa in snap.items("horizontalpodautoscalers"):
        ref = _dict(hpa.get("spec")).get("scaleTargetRef")
        target = f"{ref.get('kind')} {ref.get('name')}" if isinstance(ref, dict) else None
        active = _condition_dict(hpa, "ScalingActive")
        events = _recent(snap, "HorizontalPodAutoscaler", hpa, SELECTOR_EVENTS)
        bad = active.get("status") == "False" and active.get("reason") == "InvalidSelector"
        if bad or (events and active.get("status") != "True"):
            yield Finding(
                code="HPA_SELECTOR_INVALID",
                severity="warning",
                object=snap.ref(hpa, "HorizontalPodAutoscaler"),
                summary=f"cannot scale: the scale subresource of {target} gives no usable pod selector",
                evidence=_compact(
                    {
                        "target": target,
                        "reason": active.get("reason"),
                        "message": str(active.get("message") or "")[:300] or None,
                        "events": event_summary(events) or None,
                    }
                ),
                remediation="Point scaleTargetRef at a workload whose scale subresource reports a selector: for a "
                "custom resource, set labelSelectorPath in its CRD's scale subresource and have its controller "
                "fill that status field with a valid label selector.",
            )
        able = _condition_dict(hpa, "AbleToScale")
        failed = _recent(snap, "HorizontalPodAutoscaler", hpa, ("FailedRescale",))
        stuck = able.get("status") == "False" and able.get("reason") == "FailedUpdateScale"
        if stuck or (failed and able.get("status") != "True"):
            status = _dict(hpa.get("status"))
            yield Finding(
                code="HPA_RESCALE_FAILED",
                severity="warning",
                object=snap.ref(hpa, "HorizontalPodAutoscaler"),
                summary=f"wants {status.get('desiredReplicas')} replica(s) but updating the scale of {target} fails",
                evidence=_compact(
                    {
                        "target": target,
                        "current": status.get("currentReplicas"),
                        "desired": status.get("desiredReplicas"),
                        "message": str(able.get("message") or "")[:300] or None,
                        "events": event_summary(failed) or None,
                    }
                ),
                involves=[snap.make_ref(str(ref.get("kind")), str(ref.get("name")), ns_of(hpa))]
                if isinstance(ref, dict) and ref.get("kind") in TARGET_KINDS
                else [],
                remediation="Read the API server's error in the message: an admission webhook or policy refusing "
                "updates to the target's scale subresource, or RBAC of the horizontal-pod-autoscaler service "
                "account; fix that, and the controller applies the size at its next sync.",
            )


def _compact(evidence: dict[str, Any]) -> dict[str, Any]:
    return present(evidence)


def hpa_conflicts(snap: Snapshot) -> Iterator[Finding]:
    """Two HPAs on one workload (same scaleTargetRef), or any HPA the controller found sharing its pods with
    another (condition ScalingActive=False, AmbiguousSelector): the controller refuses to scale either."""
    groups: dict[tuple[str, str, str], list[Obj]] = {}
    for hpa in snap.items("horizontalpodautoscalers"):
        ref = _dict(hpa.get("spec")).get("scaleTargetRef") or {}
        if isinstance(ref, dict) and ref.get("kind") and ref.get("name"):
            groups.setdefault((ns_of(hpa), str(ref["kind"]), str(ref["name"])), []).append(hpa)
    reported: set[tuple[str, str]] = set()
    for (_, kind, name), same in groups.items():
        if len(same) < 2:
            continue
        same.sort(key=_age_order)
        reported.update((ns_of(h), name_of(h)) for h in same)
        newest = same[-1]
        others = [name_of(h) for h in same[:-1]]
        yield Finding(
            code="HPA_CONFLICT",
            severity="warning",
            object=snap.ref(newest, "HorizontalPodAutoscaler"),
            summary=f"scales {kind} {name} together with HorizontalPodAutoscaler {', '.join(others)}: "
            "the controller refuses to scale it",
            evidence={"target": f"{kind} {name}", "hpas": [name_of(h) for h in same], **_ambiguous(same)},
            involves=[snap.ref(h, "HorizontalPodAutoscaler") for h in same[:-1]]
            + ([snap.make_ref(kind, name, ns_of(newest))] if kind in TARGET_KINDS else []),
            remediation="Keep one autoscaler per workload: merge the metrics of both into one HPA (it scales to "
            "the highest recommendation) and delete the other.",
        )
    for hpa in snap.items("horizontalpodautoscalers"):
        if (ns_of(hpa), name_of(hpa)) in reported or not _ambiguous([hpa]):
            continue
        ref = _dict(hpa.get("spec")).get("scaleTargetRef") or {}
        yield Finding(
            code="HPA_CONFLICT",
            severity="warning",
            object=snap.ref(hpa, "HorizontalPodAutoscaler"),
            summary="another HorizontalPodAutoscaler selects the same pods: the controller refuses to scale it",
            evidence={"target": f"{ref.get('kind')} {ref.get('name')}", **_ambiguous([hpa])},
            remediation="Find the other HPA named in the message; give each workload its own pod labels, or keep "
            "one autoscaler for these pods.",
        )


def _ambiguous(hpas: list[Obj]) -> dict[str, str]:
    """The controller's word on pods shared between HPAs, when one of them has it."""
    for hpa in hpas:
        active = condition(hpa, "ScalingActive") or {}
        if active.get("status") == "False" and active.get("reason") == "AmbiguousSelector":
            return {"controller": f"AmbiguousSelector: {str(active.get('message') or '')[:200]}"}
    return {}


def _missing_requests(spec: Obj, target: Obj, defaulted: set[str]) -> dict[str, list[str]]:
    """Per container, the utilization resources it gets no request for: none in the template, no limit (a
    request defaults to the limit) and no LimitRange default (`defaulted`)."""
    wanted = {
        m["resource"]["name"]
        for m in spec.get("metrics") or []
        if m.get("type") == "Resource" and ((m.get("resource") or {}).get("target") or {}).get("type") == "Utilization"
    }
    if not spec.get("metrics"):
        wanted = {"cpu"}  # the default metric: 80% CPU utilization
    out: dict[str, list[str]] = {}
    for c in pod_template_spec(target).get("containers") or []:
        resources = c.get("resources") or {}
        given = {*(resources.get("requests") or {}), *(resources.get("limits") or {}), *defaulted}
        lacking = sorted(r for r in wanted if r not in given)
        if lacking:
            out[c.get("name", "")] = lacking
    return out


def _defaulted(snap: Snapshot, namespace: str) -> set[str]:
    """Resources a LimitRange of the namespace gives every container a request for (defaultRequest; the API
    server fills it from `default` when only that is set)."""
    out: set[str] = set()
    for lr in snap.in_ns("limitranges", namespace):
        for item in (lr.get("spec") or {}).get("limits") or []:
            if isinstance(item, dict) and item.get("type") == "Container":
                for key in ("defaultRequest", "default"):
                    if isinstance(item.get(key), dict):
                        out.update(item[key])
    return out


def pdbs(snap: Snapshot) -> Iterator[Finding]:
    for pdb in snap.items("poddisruptionbudgets"):
        status, spec = pdb.get("status") or {}, pdb.get("spec") or {}
        if status.get("observedGeneration", 0) < (pdb.get("metadata") or {}).get("generation", 1):
            continue  # the disruption controller has not looked at it yet: its status is all zeros
        if _scale_problem(snap, pdb) is not None:
            continue  # its counts are wrong for want of a scale: PDB_SCALE_UNKNOWN says why
        expected = status.get("expectedPods", 0)
        evidence = {
            "minAvailable": spec.get("minAvailable"),
            "maxUnavailable": spec.get("maxUnavailable"),
            "expectedPods": expected,
            "currentHealthy": status.get("currentHealthy", 0),
            "desiredHealthy": status.get("desiredHealthy", 0),
            "disruptionsAllowed": status.get("disruptionsAllowed", 0),
        }
        evidence = present(evidence)
        if expected == 0:
            yield Finding(
                code="PDB_NO_PODS",
                severity="info",
                object=snap.ref(pdb, "PodDisruptionBudget"),
                summary="its selector matches no pod",
                evidence={**evidence, "selector": spec.get("selector")},
                remediation="Correct the selector to the pods it should protect, or delete it.",
            )
        elif status.get("disruptionsAllowed", 0) == 0 and status.get("desiredHealthy", 0) >= expected:
            yield Finding(
                fix=_one_disruption(snap, pdb, spec, expected),
                code="PDB_BLOCKS_DISRUPTIONS",
                severity="warning",
                object=snap.ref(pdb, "PodDisruptionBudget"),
                summary=f"allows zero disruptions even with all {expected} pod(s) healthy: node drains will hang",
                evidence=evidence,
                remediation="Allow at least one disruption: lower minAvailable below the replica count (or set "
                "maxUnavailable: 1), or run more replicas.",
            )


def pdb_scale_unknown(snap: Snapshot) -> Iterator[Finding]:
    """A budget the disruption controller cannot compute. maxUnavailable and a percentage minAvailable are
    shares of the replica count the pods' controllers declare (their scale); pods without a controller
    (UnmanagedPods: the budget leaves them out, often counting zero pods) or whose controller gives no scale
    (CalculateExpectedPodCountFailed: the status update fails, DisruptionAllowed=False, SyncFailed, and no
    eviction is allowed) leave the budget without a true count."""
    for pdb in snap.items("poddisruptionbudgets"):
        problem = _scale_problem(snap, pdb)
        if problem is None:
            continue
        summary, evidence = problem
        spec = _dict(pdb.get("spec"))
        yield Finding(
            code="PDB_SCALE_UNKNOWN",
            severity="warning",
            object=snap.ref(pdb, "PodDisruptionBudget"),
            summary=summary,
            evidence=_compact(
                {"minAvailable": spec.get("minAvailable"), "maxUnavailable": spec.get("maxUnavailable"), **evidence}
            ),
            remediation="Run the pods under a controller with a scale (Deployment, StatefulSet, ReplicaSet, or a "
            "custom resource with a scale subresource), or give the budget an integer spec.minAvailable (it then "
            "counts the pods themselves) instead of maxUnavailable or a percentage.",
        )


def _scale_problem(snap: Snapshot, pdb: Obj) -> tuple[str, dict[str, Any]] | None:
    """Why the budget's counts cannot be computed (summary, evidence), or None."""
    allowed = _condition_dict(pdb, "DisruptionAllowed")
    events = _recent(snap, "PodDisruptionBudget", pdb, PDB_EVENTS)
    if allowed.get("status") == "False" and allowed.get("reason") == "SyncFailed":
        message = str(allowed.get("message") or "")[:300]
        return f"the disruption controller cannot compute it: {message or 'SyncFailed'}; no eviction is allowed", {
            "reason": "SyncFailed",
            "message": message or None,
            "events": event_summary(events, limit=1) or None,
        }
    spec = _dict(pdb.get("spec"))
    shared = spec.get("maxUnavailable") is not None or isinstance(spec.get("minAvailable"), str)
    ns = ns_of(pdb)
    if not shared:
        return None
    if snap.covers("pods", ns):
        selector = _selector(pdb)
        bare = [
            name_of(p)
            for p in snap.in_ns("pods", ns)
            if not pod_is_terminal(p)
            and label_selector_matches(labels_of(p), selector)
            and snap.controller_of(p) is None
        ]
        if not bare:
            return None
    else:
        unmanaged = [e for e in events if e.get("reason") == "UnmanagedPods"]
        if not unmanaged:
            return None
        bare = []
    return f"selects {len(bare) or 'some'} pod(s) without a controller: a share of replicas cannot be computed", {
        "unmanaged_pods": len(bare) or None,
        "sample_pods": bare[:3] or None,
        "events": event_summary(events, limit=1) or None,
    }


def pdb_overlaps(snap: Snapshot) -> Iterator[Finding]:
    """Pods that more than one PodDisruptionBudget selects: the eviction API refuses to evict them at all
    ("more than one PodDisruptionBudget"), so drains hang whatever the budgets allow."""
    for ns in sorted({ns_of(p) for p in snap.items("poddisruptionbudgets")}):
        if not snap.covers("pods", ns):
            continue
        budgets = snap.in_ns("poddisruptionbudgets", ns)
        selectors = [(name_of(b), _selector(b)) for b in budgets]
        shared: dict[tuple[str, ...], list[Obj]] = {}
        for pod in snap.in_ns("pods", ns):
            if pod_is_terminal(pod):
                continue
            covering = tuple(sorted(n for n, sel in selectors if label_selector_matches(labels_of(pod), sel)))
            if len(covering) > 1:
                shared.setdefault(covering, []).append(pod)
        for names, pods in shared.items():
            chosen = [b for b in budgets if name_of(b) in names]
            chosen.sort(key=_age_order)
            newest = chosen[-1]
            events = [
                e
                for p in pods
                for e in snap.events_for("Pod", ns, name_of(p))
                if e.get("reason") == "MultiplePodDisruptionBudgets"
            ]
            evidence = {
                "pdbs": list(names),
                "pods": len(pods),
                "sample_pods": [name_of(p) for p in pods[:3]],
                "events": event_summary(events, limit=1) or None,
            }
            yield Finding(
                code="PDB_OVERLAP",
                severity="warning",
                object=snap.ref(newest, "PodDisruptionBudget"),
                summary=f"selects the same {len(pods)} pod(s) as PodDisruptionBudget "
                f"{', '.join(n for n in names if n != name_of(newest))}: evictions of these pods are refused",
                evidence=present(evidence),
                involves=[snap.ref(b, "PodDisruptionBudget") for b in chosen[:-1]]
                + [snap.ref(p, "Pod") for p in pods[:5]],
                remediation="Keep one budget per set of pods: delete the redundant PodDisruptionBudget, or narrow the "
                "selectors so that no pod matches two.",
            )


def _selector(pdb: Obj) -> Obj | None:
    """A budget's selector; in policy/v1 an empty one selects every pod of the namespace, a missing one none."""
    selector = (pdb.get("spec") or {}).get("selector")
    return selector if isinstance(selector, dict) else None


def _age_order(obj: Obj) -> tuple[str, str]:
    """Oldest first; the last one is most likely the one added by mistake."""
    return (str(meta(obj).get("creationTimestamp") or ""), name_of(obj))


def _one_disruption(snap: Snapshot, pdb: Obj, spec: Obj, expected: int) -> Fix | None:
    """Allow exactly one disruption, keeping the budget's own form (maxUnavailable or minAvailable as a count);
    with a single pod that means accepting downtime, which is the owner's call: no fix then."""
    if expected < 2:
        return None
    if "maxUnavailable" in spec:
        path, value = ["spec", "maxUnavailable"], 1
    elif isinstance(spec.get("minAvailable"), int):
        path, value = ["spec", "minAvailable"], expected - 1
    else:
        return None  # a percentage: the owner's intent is a share, not a count
    return Fix(
        action="set_fields",
        target=snap.ref(pdb, "PodDisruptionBudget"),
        params={
            "fields": [[path, value]],
            "expected": f"one of the {expected} pods may be evicted at a time; node drains proceed",
        },
    )


def typo_of(name: str, names: list[str]) -> str | None:
    """The one name `name` plausibly meant — a typo away, or the same name with a prefix or suffix added or
    dropped (webapp → web) — and strictly closer than any other; else None."""

    def near(n: str, distance: int) -> bool:
        return distance <= max(1, len(name) // 4) or n.startswith(name) or name.startswith(n)

    ranked = sorted((edit_distance(name[:63], n[:63]), n) for n in names if n != name)
    ranked = [(d, n) for d, n in ranked if near(n, d)]
    if not ranked or (len(ranked) > 1 and ranked[1][0] == ranked[0][0]):
        return None
    return ranked[0][1]


RULES = [hpas, hpa_conflicts, hpa_controller_errors, pdbs, pdb_scale_unknown, pdb_overlaps]
