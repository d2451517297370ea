"""From diagnosis findings to one plan: a rule per structured fix, each checked against the live object and
the evidence; several causes on one object become one change (one rollout). Findings without a safe
automatic change are listed as refusals with the reason (e.g. a missing ConfigMap: its data is not ours)."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from typing import Any

from engines.diagnosis.common import fmt_resource, quantity
from engines.diagnosis.model import Finding, ObjectRef
from engines.remediation.blast import assess
from engines.remediation.edits import EditError, apply_edits, container, exposed_ports
from engines.remediation.model import Change, Edit, Plan, Refusal

Obj = dict[str, Any]
MI64 = Decimal(64 * 2**20)
OOM_FACTOR = Decimal(2)  # without metrics: double the limit ...
OOM_MAX_STEP = Decimal(2 * 2**30)  # ... but add at most 2Gi
USAGE_HEADROOM = Decimal("1.5")  # with metrics: 1.5x the observed peak
NODE_SHARE = Decimal("0.9")  # never ask for more than 90% of a node's allocatable


@dataclass
class Context:
    """What the rules read besides the findings, fetched by the caller."""

    objects: dict[tuple[str, str, str], Obj]  # (kind, namespace or "", name) → live object
    nodes: list[Obj] = field(default_factory=list)
    replicasets: list[Obj] = field(default_factory=list)
    pdbs: list[Obj] = field(default_factory=list)
    hpas: list[Obj] = field(default_factory=list)
    memory_peak: dict[tuple[str, str, str], Decimal] = field(default_factory=dict)  # (ns, workload, container)
    node_requests: dict[str, dict[str, Decimal]] | None = None  # node → requests of the pods on it, when known
    now: str = ""

    def live(self, ref: ObjectRef) -> Obj | None:
        return self.objects.get((ref.kind, ref.namespace or "", ref.name))


@dataclass
class _Step:
    target: ObjectRef
    edit: Edit
    why: str
    expected: str
    evidence: dict[str, Any]
    code: str


def make_plan(findings: list[Finding], ctx: Context) -> Plan:
    """One plan covering every finding: changes grouped per object, plus what was refused and why."""
    steps: list[_Step] = []
    refused: list[Refusal] = []
    for f in sorted(findings, key=lambda f: f.sort_key()):
        try:
            result = _rule(f, ctx)
        except EditError as e:
            result = Refusal(finding=f.code, object=f.object, reason=str(e))
        if isinstance(result, Refusal):
            refused.append(result)
        elif result is not None:
            steps.append(result)
    changes = _combine(steps, ctx)
    covered = {(c.target.namespace, c.target.name) for c in changes}
    refused = [r for r in _unique(refused) if not _covered(r.object, covered)]
    return Plan(changes=changes, refused=refused)


def _rule(f: Finding, ctx: Context) -> _Step | Refusal | None:
    fix = f.fix
    if fix is None:
        if f.tier == 0 or f.severity == "critical":
            return Refusal(
                finding=f.code, object=f.object, reason=f"no safe automatic change: {f.remediation or f.summary}"
            )
        return None
    if fix.action == "create_missing":
        key = f" key {fix.params['key']}" if fix.params.get("key") else ""
        return Refusal(
            finding=f.code,
            object=fix.target,
            reason=(
                f"{fix.target.kind} {fix.target.name}{key} is missing in namespace {fix.target.namespace}. Its content "
                "must come from the application's owner: CloudPilot does not invent configuration or credentials. "
                "Create it; the pods then start on their own."
            ),
        )
    live = ctx.live(fix.target)
    if live is None:
        return Refusal(finding=f.code, object=fix.target, reason=f"{fix.target.short()} was not found to plan on.")
    step = _STEP_RULES[fix.action](f, live, ctx)
    if isinstance(step, _Step):
        apply_edits(live, [step.edit])  # fail now, with the reason, if the edit does not fit the object
    return step


def _step(f: Finding, edit: Edit, expected: str, evidence: dict[str, Any]) -> _Step:
    assert f.fix is not None
    return _Step(f.fix.target, edit, f.summary, expected, evidence, f.code)


def _probe(f: Finding, live: Obj, ctx: Context) -> _Step | Refusal:
    fix = f.fix
    assert fix is not None
    params = dict(fix.params)
    c = container(live, fix.container)
    handler = params.get("handler") or {}
    port = (handler.get("tcpSocket") or {}).get("port")
    if port is not None and port not in exposed_ports(c):
        params.pop("handler")  # never point a probe at a port the container does not declare
    if not params.get("handler") and not params.get("timing"):
        return Refusal(
            finding=f.code,
            object=fix.target,
            reason=(
                f"container {c.get('name')} declares no port to check instead: fix the {params.get('probe')} probe "
                "by hand (the path or port the application really serves)."
            ),
        )
    evidence: dict[str, Any] = {
        k: f.evidence[k] for k in ("probe", "handler", "timing", "container_ports", "events") if k in f.evidence
    }
    what = (f"checks {params['handler']}" if params.get("handler") else "keeps its check") + (
        f" with timing {params['timing']}" if params.get("timing") else ""
    )
    expected = f"the {params.get('probe')} probe {what}; probe failures stop, pods become and stay ready"
    return _step(f, Edit(action="set_probe", container=c.get("name"), params=params), expected, evidence)


def _resources(f: Finding, live: Obj, ctx: Context) -> _Step | Refusal:
    fix = f.fix
    assert fix is not None
    c = container(live, fix.container)
    if f.code == "POD_OOMKILLED":
        return _oom(f, live, c, ctx)
    params = copy.deepcopy(fix.params)
    evidence = {k: f.evidence[k] for k in f.evidence if k not in ("pod_status", "node")}
    room = _room(ctx)
    for res, value in list((params.get("requests") or {}).items()):
        cap = room.get(res)
        if cap is not None and quantity(value) > cap * NODE_SHARE:
            fitted = _round_down(res, cap * NODE_SHARE)
            if fitted <= 0:
                return Refusal(
                    finding=f.code,
                    object=fix.target,
                    reason=(
                        f"no node has {res} to spare (largest free: {fmt_resource(res, cap)}): add nodes or free "
                        "capacity; lowering the requests further would not be a fix."
                    ),
                )
            params["requests"][res] = fmt_resource(res, fitted)
    if room:
        label = "largest_node_free" if ctx.node_requests is not None else "largest_node_allocatable"
        evidence[label] = {r: fmt_resource(r, v) for r, v in room.items()}
    expected = f"requests {params.get('requests') or {}} fit a node: the pending pods get scheduled"
    if params.get("limits"):
        expected = f"container {c.get('name')} gets resources {params}"
    return _step(f, Edit(action="set_resources", container=c.get("name"), params=params), expected, evidence)


def _oom(f: Finding, live: Obj, c: Obj, ctx: Context) -> _Step | Refusal:
    assert f.fix is not None
    current = quantity(((c.get("resources") or {}).get("limits") or {}).get("memory"))
    if not current:
        return Refusal(
            finding=f.code,
            object=f.fix.target,
            reason=(
                f"container {c.get('name')} has no memory limit: the node ran out of memory; set requests/limits "
                "from the application's real usage rather than a guess."
            ),
        )
    ns, name = f.fix.target.namespace or "", f.fix.target.name
    peak = ctx.memory_peak.get((ns, name, c.get("name", "")))
    evidence: dict[str, Any] = {
        "memory_limit": fmt_resource("memory", current),
        "last_termination": f.evidence.get("last_termination"),
    }
    if peak:
        new = max(peak * USAGE_HEADROOM, current + MI64)
        evidence["observed_peak"] = fmt_resource("memory", peak)
        basis = f"{USAGE_HEADROOM}x the observed peak {fmt_resource('memory', peak)}"
    else:
        new = min(current * OOM_FACTOR, current + OOM_MAX_STEP)
        evidence["observed_peak"] = "no metrics: bounded factor"
        basis = f"no usage metrics, so {OOM_FACTOR}x the limit (at most +{fmt_resource('memory', OOM_MAX_STEP)})"
    new = _round_up(new)
    largest = _largest_allocatable(ctx.nodes).get("memory")
    if largest is not None and new > largest * NODE_SHARE:
        new = _round_down("memory", largest * NODE_SHARE)
        if new <= current:
            return Refusal(
                finding=f.code,
                object=f.fix.target,
                reason=("no node has room for a higher memory limit: reduce the application's memory use."),
            )
    limit = fmt_resource("memory", new)
    params: dict[str, Any] = {"limits": {"memory": limit}}
    expected = f"container {c.get('name')} may use up to {limit} ({basis}) and stops being OOMKilled"
    return _step(f, Edit(action="set_resources", container=c.get("name"), params=params), expected, evidence)


def _undo(f: Finding, live: Obj, ctx: Context) -> _Step | Refusal:
    assert f.fix is not None
    wanted = f.fix.params.get("to_revision")
    target = revision_template(live, ctx.replicasets, wanted)
    if isinstance(target, str):
        return Refusal(finding=f.code, object=f.fix.target, reason=target)
    revision, template = target
    evidence: dict[str, Any] = {
        k: f.evidence[k] for k in ("failing_revision", "previous_revision", "image_change", "image") if k in f.evidence
    }
    expected = f"the pods return to revision {revision}'s template, which ran before the failing rollout"
    edit = Edit(action="set_template", params={"revision": revision, "template": template})
    return _step(f, edit, expected, evidence)


def revision_template(deployment: Obj, replicasets: list[Obj], wanted: int | None) -> tuple[int, Obj] | str:
    """(revision, template) of a Deployment's ReplicaSet revision — the previous one when `wanted` is None —
    or why there is none to return to."""
    uid = deployment["metadata"].get("uid")
    owned = [rs for rs in replicasets if any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences") or [])]
    by_rev = {
        int((rs["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", 0)): rs for rs in owned
    }
    current = int((deployment["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", 0))
    name = deployment["metadata"]["name"]
    if wanted is None:
        older = sorted(r for r in by_rev if r < current)
        if not older:
            return f"Deployment {name} has no earlier revision to roll back to."
        wanted = older[-1]
    rs = by_rev.get(int(wanted))
    if rs is None:
        known = ", ".join(map(str, sorted(by_rev))) or "none"
        return f"Deployment {name} has no revision {wanted} (revisions kept: {known})."
    template = copy.deepcopy(rs["spec"]["template"])
    (template.get("metadata") or {}).get("labels", {}).pop("pod-template-hash", None)
    if template == _without_hash(deployment["spec"]["template"]):
        return f"Deployment {name} already runs revision {wanted}'s template: nothing to roll back."
    return int(wanted), template


def _without_hash(template: Obj) -> Obj:
    out = copy.deepcopy(template)
    (out.get("metadata") or {}).get("labels", {}).pop("pod-template-hash", None)
    return out


def _plain(action: str, expected: str) -> Any:
    def rule(f: Finding, live: Obj, ctx: Context) -> _Step:
        assert f.fix is not None
        params = dict(f.fix.params)
        if action == "restart":
            params = {"at": ctx.now}
        if action == "cordon":
            params = {"unschedulable": False}
        edit = Edit(action=action, container=f.fix.container, params=params)  # type: ignore[arg-type]
        return _step(f, edit, expected, dict(f.evidence))

    return rule


def _fields(f: Finding, live: Obj, ctx: Context) -> _Step:
    """A reference one typo away from the one thing it can mean (diagnosis proposed it only then)."""
    assert f.fix is not None
    params = {"fields": f.fix.params["fields"]}
    expected = str(f.fix.params.get("expected") or f"diagnosis no longer reports {f.code}")
    return _step(f, Edit(action="set_fields", params=params), expected, dict(f.evidence))


_STEP_RULES = {
    "set_probe": _probe,
    "set_resources": _resources,
    "rollout_undo": _undo,
    "scale": _plain("scale", "the workload runs the requested number of replicas"),
    "set_image": _plain("set_image", "the pods run the corrected image"),
    "uncordon": _plain("cordon", "the node accepts new pods again"),
    "rollout_restart": _plain("restart", "every pod is re-created with the current configuration"),
    "set_target_port": _plain("set_target_port", "the Service routes to a port the pods expose"),
    "set_fields": _fields,
}


def _combine(steps: list[_Step], ctx: Context) -> list[Change]:
    """One change per object; a rollback goes first so the other edits apply on top of the restored template."""
    grouped: dict[tuple[str, str, str], list[_Step]] = {}
    for s in steps:
        grouped.setdefault((s.target.kind, s.target.namespace or "", s.target.name), []).append(s)
    changes = []
    for group in grouped.values():
        group.sort(key=lambda s: s.edit.action != "set_template")
        edits: list[Edit] = []
        for s in group:
            if s.edit not in edits:
                edits.append(s.edit)
        change = Change(
            target=group[0].target,
            edits=edits,
            why=_unique([f"{s.code}: {s.why}" for s in group]),
            expected="; ".join(_unique([s.expected for s in group])),
            evidence={s.code: s.evidence for s in group},
            findings=_unique([s.code for s in group]),
        )
        live = ctx.live(change.target)
        pdbs = [p for p in ctx.pdbs if p["metadata"].get("namespace") == change.target.namespace]
        change.blast, change.risk = assess(change, live, pdbs, ctx.hpas)
        changes.append(change)
    return changes


def _covered(ref: ObjectRef, covered: set[tuple[str | None, str]]) -> bool:
    """A symptom on an object a change already addresses (the workload, or one of its pods)."""
    return any(ref.namespace == ns and (ref.name == name or ref.name.startswith(name + "-")) for ns, name in covered)


def _unique(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for i in items:
        if i not in out:
            out.append(i)
    return out


def _room(ctx: Context) -> dict[str, Decimal]:
    """Per resource, the most a pod can request and still fit one node: its allocatable, less what the pods
    already on it request when that is known."""
    if ctx.node_requests is None:
        return _largest_allocatable(ctx.nodes)
    out: dict[str, Decimal] = {}
    for node in _schedulable(ctx.nodes):
        used = ctx.node_requests.get(node["metadata"]["name"], {})
        for res in ("cpu", "memory"):
            free = quantity(((node.get("status") or {}).get("allocatable") or {}).get(res)) - used.get(res, Decimal(0))
            out[res] = max(out.get(res, Decimal(0)), free)
    return out


def _schedulable(nodes: list[Obj]) -> list[Obj]:
    return [
        n
        for n in nodes
        if not (n.get("spec") or {}).get("unschedulable")
        and not any(t.get("effect") in ("NoSchedule", "NoExecute") for t in (n.get("spec") or {}).get("taints") or [])
    ]


def _largest_allocatable(nodes: list[Obj]) -> dict[str, Decimal]:
    """Per resource, the largest allocatable of a node that takes ordinary pods (schedulable, untainted)."""
    out: dict[str, Decimal] = {}
    for node in _schedulable(nodes):
        for res in ("cpu", "memory"):
            value = quantity(((node.get("status") or {}).get("allocatable") or {}).get(res))
            out[res] = max(out.get(res, Decimal(0)), value)
    return out


def _round_up(memory: Decimal) -> Decimal:
    return (memory / MI64).to_integral_value(rounding=ROUND_CEILING) * MI64


def _round_down(res: str, value: Decimal) -> Decimal:
    step = Decimal("0.1") if res == "cpu" else MI64
    return (value // step) * step
