"""The diagnosis engine: run every rule over a snapshot, fold pod findings into their workloads, narrow to
an object of interest, and rank (severity, then causes before symptoms)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence

from engines.diagnosis import autoscaling, istio, nodes, pods, quiet, storage, traffic, workloads
from engines.diagnosis.focus import related
from engines.diagnosis.model import Finding, ObjectRef
from engines.diagnosis.snapshot import Snapshot

logger = logging.getLogger(__name__)

Rule = Callable[[Snapshot], Iterator[Finding]]
AREAS: dict[str, Sequence[Rule]] = {
    "pods": [*pods.RULES, quiet.gated_pods],
    "workloads": [*workloads.RULES, quiet.paused_rollouts],
    "traffic": traffic.RULES,
    "storage": storage.RULES,
    "nodes": nodes.RULES,
    "autoscaling": autoscaling.RULES,
    "istio": istio.RULES,
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
    findings = fold_pods(snap, findings)
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
