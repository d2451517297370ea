"""The diagnosis engine: run every rule over a snapshot, fold pod findings into their workloads, make the object
to change the subject (the cause chain), narrow to an object of interest, and rank (severity, then causes before
symptoms)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence

from engines.diagnosis import (
    admission,
    autoscaling,
    gateway_api,
    istio,
    istio_config,
    kubelet,
    nodes,
    pods,
    quiet,
    storage,
    traffic,
    workloads,
)
from engines.diagnosis.focus import related
from engines.diagnosis.model import SEVERITY_RANK, Finding, ObjectRef
from engines.diagnosis.snapshot import Snapshot

logger = logging.getLogger(__name__)

Rule = Callable[[Snapshot], Iterator[Finding]]
AREAS: dict[str, Sequence[Rule]] = {
    "pods": [*pods.RULES, *kubelet.RULES, quiet.gated_pods],
    "workloads": [
        *workloads.RULES,
        *admission.RULES,
        quiet.paused_rollouts,
        quiet.suspended_jobs,
        quiet.terminating_namespaces,
    ],
    "traffic": [*traffic.RULES, *gateway_api.RULES, quiet.pending_load_balancers],
    "storage": storage.RULES,
    "nodes": nodes.RULES,
    "autoscaling": autoscaling.RULES,
    "istio": [*istio.RULES, *istio_config.RULES],
}
# A malformed object (custom resources may hold any shape) makes a rule fail with one of these.
_BAD_DATA = (AttributeError, TypeError, KeyError, ValueError, IndexError)


class Report:
    """The findings of one run, plus notes on rules that could not run."""

    def __init__(self, findings: list[Finding], notes: list[str]) -> None:
        self.findings = findings
        self.notes = notes


def run(snap: Snapshot, *, areas: Iterable[str] | None = None, focus: ObjectRef | None = None) -> Report:
    """Diagnose a snapshot.

    Args:
        snap: the objects to check.
        areas: rule areas to run (default: all; Istio only when its kinds are in the snapshot).
        focus: only findings about this object and the objects related to it.
    """
    wanted = set(areas) if areas is not None else set(AREAS)
    findings: list[Finding] = []
    notes: list[str] = []
    for area, rules in AREAS.items():
        if area not in wanted or (area == "istio" and not snap.has("virtualservices")):
            continue
        for rule in rules:
            try:
                findings.extend(rule(snap))
            except _BAD_DATA as e:
                logger.exception("cluster=%s diagnosis rule %s.%s failed", snap.cluster, area, rule.__name__)
                notes.append(f"rule {area}.{rule.__name__} could not run on this cluster's data: {e!r}")
    findings = [f for f in findings if f.object.namespace is None or snap.in_scope(f.object.namespace)]
    findings = chain_causes(fold_pods(snap, findings))
    if focus is not None:
        keys = related(snap, focus.kind, focus.namespace or "", focus.name)
        findings = [f for f in findings if _key(f.object) in keys or any(_key(o) in keys for o in f.involves)]
    findings.sort(key=Finding.sort_key)
    return Report(findings, notes)


def _key(ref: ObjectRef) -> tuple[str, str, str]:
    return (ref.kind, ref.namespace or "", ref.name)


def fold_pods(snap: Snapshot, findings: list[Finding]) -> list[Finding]:
    """One finding per (code, workload) instead of one per pod; pods without a controller stay as they are."""
    out: list[Finding] = []
    groups: dict[tuple[str, ObjectRef], list[Finding]] = {}
    for f in findings:
        pod = snap.get("pods", f.object.namespace or "", f.object.name) if f.object.kind == "Pod" else None
        owner = snap.owner(pod) if pod is not None else None
        if owner is None:
            out.append(f)
            continue
        group = groups.setdefault((f.code, owner), [])
        if not group:
            out.append(f)  # placeholder, replaced below, keeps the first-seen order
        group.append(f)
    merged = {id(group[0]): _merge(owner, group) for (_, owner), group in groups.items()}
    return [merged.get(id(f), f) for f in out]


def _merge(owner: ObjectRef, group: list[Finding]) -> Finding:
    first = group[0]
    names = [f.object.name for f in group]
    summary = f"{first.summary} ({len(group)} pods)" if len(group) > 1 else f"{first.summary} (pod {names[0]})"
    evidence = {"pods": names[:5], **({"pod_count": len(group)} if len(group) > 1 else {}), **first.evidence}
    involves = [f.object for f in group[:10]] + [o for o in first.involves if o != owner]
    return first.model_copy(update={"object": owner, "summary": summary, "evidence": evidence, "involves": involves})


def chain_causes(findings: list[Finding]) -> list[Finding]:
    """A finding whose rule named a `cause` (a quota, policy, class or namespace setting behind the symptom)
    becomes a finding about that object: the subject is what a person must change, `chain` runs from it to the
    workloads or pods that show the symptom, and those are kept in `involves`. Findings with the same code and
    cause merge into one, so one bad policy is one finding however many workloads it breaks."""
    out: list[Finding] = []
    index: dict[tuple[str, ObjectRef], int] = {}
    for f in findings:
        cause = f.cause
        if cause is None or _key(cause) == _key(f.object):
            out.append(f.model_copy(update={"cause": None}) if cause else f)
            continue
        at = index.get((f.code, cause))
        if at is None:
            index[(f.code, cause)] = len(out)
            out.append(
                f.model_copy(
                    update={
                        "object": cause,
                        "cause": None,
                        "chain": [cause, f.object],
                        "involves": _unique([f.object, *f.involves]),
                        "tier": 0,
                    }
                )
            )
            continue
        first = out[at]
        worst = min(first.severity, f.severity, key=SEVERITY_RANK.__getitem__)
        out[at] = first.model_copy(
            update={
                "severity": worst,
                "chain": _unique([*first.chain, f.object]),
                "involves": _unique([*first.involves, f.object, *f.involves]),
            }
        )
    return [_name_symptoms(f) if f.chain else f for f in out]


def _name_symptoms(f: Finding) -> Finding:
    symptoms = f.chain[1:]
    shown = ", ".join(o.short() for o in symptoms[:3]) + (f" and {len(symptoms) - 3} more" if len(symptoms) > 3 else "")
    return f.model_copy(update={"summary": f"{f.summary} (affects {shown})"})


def _unique(refs: list[ObjectRef]) -> list[ObjectRef]:
    seen: set[tuple[str, str, str]] = set()
    out = []
    for r in refs:
        if _key(r) not in seen:
            seen.add(_key(r))
            out.append(r)
    return out
