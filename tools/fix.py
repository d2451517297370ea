"""Fix tools: plan a repair from diagnosis findings, apply an approved plan (verify, roll back on failure),
and read the audit log. The change tools of `tools/mutations.py` make plans the same way; every change is
applied only here, by `fix_apply`.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import anyio
from pydantic import BaseModel, Field

from connections.kube import Connection
from engines.diagnosis import Finding, ObjectRef, Snapshot, run
from engines.diagnosis.common import pod_requests, quantity
from engines.diagnosis.snapshot import KINDS
from engines.remediation import Context, Plan, make_plan
from engines.remediation.describe import codes_for_text
from errors import CloudPilotError, Conflict, Forbidden, InvalidInput, NotAllowed, NotFound, Unsupported
from guard import validate
from runtime import (
    DECIDED_OUTSIDE,
    Runtime,
    approval_methods,
    ask_confirmation,
    client_name,
    current,
    principal,
    validate_limit,
)
from tools.catalogue import tool
from tools.clusters import ClusterArg
from tools.diagnose import snapshot
from tools.fixloop import (
    STALE_APPLY_SECONDS,
    Item,
    Outcome,
    PlanView,
    SavedPlan,
    audit_log,
    check_allowed,
    load,
    next_step,
    pre_approved,
    preflight,
    propose,
    restore,
    view,
    write,
)
from tools.results import Result, clip, table
from tools.verify import verify

logger = logging.getLogger(__name__)

_KEYS = {kind: key for key, kind in KINDS.items() if key not in ("k8s_gateways",)}
OverrideArg = Annotated[
    str | None,
    Field(
        description="Name the protected namespace (e.g. kube-system) to change it anyway; works only when the "
        "server allows overrides (fix.allow_protected_override)."
    ),
]


# -- planning from findings --------------------------------------------------------------------------------------
@tool("fix", access="write", idempotent=False, title="Plan a fix")
async def fix_plan(
    namespace: Annotated[str, Field(description="Namespace of the problem.")],
    name: Annotated[
        str | None,
        Field(description="Workload to fix (e.g. a Deployment name); omit for all problems of the namespace."),
    ] = None,
    kind: Annotated[str, Field(description="Kind of that workload.")] = "Deployment",
    event_text: Annotated[
        str | None,
        Field(
            description="The operator's description or an event/error text, e.g. "
            "'Liveness probe failed: HTTP probe failed with statuscode: 404'; "
            "narrows the plan to the causes it points at."
        ),
    ] = None,
    codes: Annotated[list[str] | None, Field(description="Only these finding codes (from diagnose).")] = None,
    override_protected: OverrideArg = None,
    cluster: ClusterArg = None,
) -> PlanView:
    """Plan the repair of what diagnosis finds (bad probes, requests too high to schedule, OOM kills, a failing
    rollout, ...): one combined plan with each concrete change, why, the expected effect, risk and blast
    radius, and the API server's dry-run diff. Changes nothing: a person approves it and fix_apply applies it.
    Findings with no safe automatic change (e.g. a missing ConfigMap, whose data only its owner knows) are
    listed as not changed, with the reason."""
    rt = current()
    ns = validate.namespace(namespace)
    if ns is None:
        raise InvalidInput("fix_plan needs the namespace of the problem.")
    rt.check_namespace(ns)
    conn = await rt.connect(cluster)
    gathered, _ = await snapshot(rt, conn, [ns], refresh=True)
    snap = gathered.snapshot
    focus = None
    if name:
        if kind not in _KEYS:
            raise InvalidInput(f"Cannot plan for kind {kind!r}.", hint="Use Deployment, StatefulSet, DaemonSet, ...")
        focus = ObjectRef(kind=kind, name=validate.object_name(name), namespace=ns)
        if snap.get(_KEYS[kind], ns, name) is None:
            raise NotFound(
                f"{kind} {name!r} not found in namespace {ns!r} of cluster {conn.name!r}.",
                hint="workloads_list shows what exists.",
            )
    findings = (await rt.call(run, snap, focus=focus)).findings
    where = f"{kind} {name} in namespace {ns}" if name else f"namespace {ns}"
    if not findings:
        raise InvalidInput(
            f"Diagnosis finds nothing to fix around {where}.",
            hint="diagnose shows what was checked; a change tool (scale, set_image, ...) makes "
            "a plan for a specific change.",
        )
    chosen = _chosen(findings, codes, event_text, where)
    ctx = await _context(rt, conn, snap, chosen)
    plan = await rt.call(make_plan, chosen, ctx)
    source = "fix_plan " + ",".join(sorted({f.code for f in chosen}))
    return await propose(rt, conn, plan, source, override_protected)


def _chosen(findings: list[Finding], codes: list[str] | None, event_text: str | None, where: str) -> list[Finding]:
    """The findings a filter selects: every one without a filter; a filter that selects none is an error."""
    present = ", ".join(sorted({f.code for f in findings}))
    if codes:
        chosen = [f for f in findings if f.code in set(codes)]
        if not chosen:
            asked = ", ".join(sorted({c[:40] for c in codes[:10]}))
            raise InvalidInput(
                f"None of the codes {asked} is among the findings around {where}; diagnosis reports: {present}.",
                hint="Pass codes from that list, or omit codes to plan for every finding.",
            )
        return chosen
    wanted = codes_for_text(event_text)
    if not wanted:
        return findings
    chosen = [f for f in findings if f.code in wanted]
    if not chosen:
        raise InvalidInput(
            f"The description points at {', '.join(sorted(wanted))}, but diagnosis reports none of them around "
            f"{where}; it reports: {present}.",
            hint="Pass codes from that list, or omit event_text to plan for every finding.",
        )
    return chosen


async def _context(rt: Runtime, conn: Connection, snap: Snapshot, findings: list[Finding]) -> Context:
    objects: dict[tuple[str, str, str], dict[str, Any]] = {}
    for f in findings:
        if f.fix is None or f.fix.target.kind not in _KEYS:
            continue
        t = f.fix.target
        obj = snap.get(_KEYS[t.kind], t.namespace or "", t.name)
        if obj is not None:
            objects[(t.kind, t.namespace or "", t.name)] = {**obj, "kind": t.kind}
    peaks = await _memory_usage(rt, conn, snap, {t[1] for t in objects if t[1]})
    placed = None
    if any(f.code == "POD_INSUFFICIENT_RESOURCES" for f in findings):
        placed = await _node_requests(rt, conn)
    return Context(
        objects=objects,
        nodes=snap.items("nodes"),
        replicasets=snap.items("replicasets"),
        pdbs=snap.items("poddisruptionbudgets"),
        hpas=snap.items("horizontalpodautoscalers"),
        memory_peak=peaks,
        node_requests=placed,
        now=datetime.now(UTC).isoformat(timespec="seconds"),
    )


async def _node_requests(rt: Runtime, conn: Connection) -> dict[str, dict[str, Decimal]] | None:
    """CPU/memory requested on each node by its running pods (None when pods cannot be listed cluster-wide)."""
    try:
        pods, _ = await rt.call(
            conn.list_items, "/api/v1/pods", {"fieldSelector": "status.phase!=Succeeded,status.phase!=Failed"}
        )
    except (Forbidden, NotFound) as e:
        logger.info("cluster=%s cannot list pods cluster-wide, sizing on allocatable: %s", conn.name, e.message)
        return None
    out: dict[str, dict[str, Decimal]] = {}
    for pod in pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            used = out.setdefault(node, {})
            for res, value in pod_requests(pod.get("spec") or {}).items():
                used[res] = used.get(res, Decimal(0)) + value
    return out


async def _memory_usage(
    rt: Runtime, conn: Connection, snap: Snapshot, namespaces: set[str]
) -> dict[tuple[str, str, str], Decimal]:
    """Highest current memory use per (namespace, workload, container) from metrics.k8s.io, when served."""
    out: dict[tuple[str, str, str], Decimal] = {}
    for ns in namespaces:
        try:
            doc = await rt.call(conn.get, f"/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods")
        except (NotFound, Forbidden, Unsupported) as e:
            logger.info("cluster=%s namespace=%s no pod metrics: %s", conn.name, ns, e.message)
            continue
        for pm in doc.get("items", []):
            pod = snap.get("pods", ns, pm["metadata"]["name"])
            owner = snap.owner(pod) if pod else None
            for c in pm.get("containers") or []:
                key = (ns, owner.name if owner else pm["metadata"]["name"], c.get("name", ""))
                out[key] = max(out.get(key, Decimal(0)), quantity((c.get("usage") or {}).get("memory")))
    return out


# -- applying ------------------------------------------------------------------------------------------------------
class AppliedChange(BaseModel):
    object: str
    applied: bool
    verification: str = ""
    rollback: str | None = None


class ApplyResult(Result):
    """What happened to a plan: applied and verified, or rolled back (and why), with the approval used."""

    plan_id: str
    cluster: str
    status: Outcome
    approved_by: str
    changes: list[AppliedChange]
    seconds: float

    def render(self) -> str:
        lines = [
            f"plan {self.plan_id} on cluster {self.cluster}: {self.status} (approved by {self.approved_by}, "
            f"{self.seconds:.1f}s)"
        ]
        for c in self.changes:
            lines.append(f"- {c.object}: {'applied' if c.applied else 'not applied'}; {c.verification}")
            if c.rollback:
                lines.append(f"  rollback: {c.rollback}")
        lines.append("audit_list(plan_id=...) shows every step.")
        return "\n".join(lines)


@tool("fix", access="write", idempotent=False, title="Apply a plan")
async def fix_apply(
    plan_id: Annotated[str, Field(description="The plan id from fix_plan or a change tool.")],
    confirm: Annotated[
        str | None,
        Field(
            description="The plan id again, as the user's explicit confirmation after seeing the diff; accepted "
            "only where the server allows it (fix.approval; by default not over HTTP). Not needed when the client "
            "asks the user."
        ),
    ] = None,
    verify_timeout_seconds: Annotated[
        float | None,
        Field(
            description="How long to wait for the rollout to complete before rolling back (default fix settings).",
            gt=0,
            le=3600,
        ),
    ] = None,
) -> ApplyResult:
    """Apply a reviewed plan: needs a person's approval (asked through the client when it can; where the server
    allows it, confirm=<plan id>; or an operator's pre-approval policy). Writes on the exact version the diff was
    made from (a conflicting change by someone else aborts and yields a fresh plan), then watches the rollout
    until the pods are ready (for objects without a rollout: until diagnosis no longer reports the findings the
    plan removes); if that fails within the timeout, restores the previous spec automatically. Every step is
    audited."""
    rt = current()
    log = audit_log(rt)
    status, saved = load(rt, plan_id)
    if status != "planned":
        raise InvalidInput(
            f"Plan {plan_id} is {status}, so it cannot be applied again.",
            hint="Make a new plan (fix_plan or the change tool) to change the object again.",
        )
    if datetime.fromisoformat(saved.expires_at) < datetime.now(UTC):
        log.set_plan_status(plan_id, "expired", expect="planned")
        raise InvalidInput(f"Plan {plan_id} expired at {saved.expires_at}.", hint="Make a new plan.")
    for item in saved.items:
        check_allowed(rt, item.change, saved.override_protected, item.kind or None)
    conn = await rt.connect(saved.cluster)
    base = {
        "plan_id": plan_id,
        "cluster": conn.name,
        "identity": conn.identity,
        "client": client_name(),
        "principal": principal().name,
    }
    approved_by = await _approve(rt, saved, confirm, base)
    if not log.set_plan_status(plan_id, "applying", expect="planned"):
        raise Conflict(f"Plan {plan_id} is being applied by another call.", hint="audit_list shows its progress.")
    started = time.monotonic()
    try:
        await rt.call(preflight, conn, saved.items)
    except Forbidden as e:
        log.record("refused", **base, object=_objects(saved), result=e.message)
        log.set_plan_status(plan_id, "planned")
        raise
    log.record("approved", **base, object=_objects(saved), result=f"approved by {approved_by}", approver=approved_by)
    with anyio.CancelScope(shield=True):  # a client that goes away mid-write must not leave half a plan written
        applied = await _write_all(rt, conn, saved, base)
    timeout = verify_timeout_seconds or rt.settings.fix.verify_timeout_seconds
    try:
        results = await _verify_all(rt, conn, applied, timeout, base)
    except BaseException as e:  # cancelled (the client went away) or a bug: no change stays unverified
        with anyio.CancelScope(shield=True):
            for item, obj in applied:
                undone = await rt.call(restore, conn, item, obj)
                log.record(
                    "rolled_back",
                    **base,
                    object=item.label,
                    diff=item.diff,
                    result=f"verification interrupted ({type(e).__name__}): {undone}",
                )
            log.set_plan_status(plan_id, "rolled_back")
        raise
    outcome: Outcome = "verified" if all(r[2] for r in results) else "rolled_back"
    views = []
    for item, obj in applied:
        seen = next((r[3] for r in results if r[0] is item), "not verified: an earlier change failed")
        view_ = AppliedChange(object=item.label, applied=True, verification=seen)
        if outcome == "rolled_back":
            view_.rollback = await rt.call(restore, conn, item, obj)
            log.record("rolled_back", **base, object=item.label, diff=item.diff, result=view_.rollback)
        views.append(view_)
    if any((v.rollback or "").startswith("not rolled back") for v in views):
        outcome = "failed"  # verification failed and at least one change could not be undone safely
    log.set_plan_status(plan_id, outcome)
    logger.info("cluster=%s plan %s %s", conn.name, plan_id, outcome)
    return ApplyResult(
        plan_id=plan_id,
        cluster=conn.name,
        status=outcome,
        approved_by=approved_by,
        changes=views,
        seconds=round(time.monotonic() - started, 1),
    )


async def _verify_all(
    rt: Runtime,
    conn: Connection,
    applied: list[tuple[Item, dict[str, Any] | None]],
    timeout: float,
    base: dict[str, Any],
) -> list[tuple[Item, dict[str, Any] | None, bool, str]]:
    """Verify the written changes in order, stopping at the first that fails."""
    log = audit_log(rt)
    results = []
    for item, obj in applied:
        try:
            findings = (item.change.target, item.change.findings)
            ok, seen = await verify(rt, conn, item.change.target.kind, item.path, obj, item.desired, timeout, findings)
        except CloudPilotError as e:  # cannot tell whether it worked: treat as failed, so it is rolled back
            ok, seen = False, f"verification failed: {e.message}"
        results.append((item, obj, ok, seen))
        log.record("verified" if ok else "failed", **base, object=item.label, result=seen)
        if not ok:
            break
    return results


async def _approve(rt: Runtime, saved: SavedPlan, confirm: str | None, base: dict[str, Any]) -> str:
    """Who approved the plan and how — only by a method this server accepts from this caller (fix.approval;
    over HTTP not the confirm argument, which the model itself would pass). Refuses, and records why, otherwise."""
    log = audit_log(rt)
    methods = approval_methods(rt.settings, principal().transport)
    who = principal().name
    if pre_approved(saved, rt.settings):
        return "policy fix.auto_approve"
    if "elicitation" in methods:
        question = clip(view(saved, "planned", rt.settings).render(), 6000) + "\n\nApply this plan?"
        answer = await ask_confirmation(question)
        if answer is True:
            transport = principal().transport
            return f"{who} via {DECIDED_OUTSIDE.get(transport, 'elicitation')}"
        if answer is False:
            log.record("refused", **base, object=_objects(saved), result="declined by the user")
            raise NotAllowed(f"The user declined plan {saved.id}; nothing was applied.")
    if "confirm" in methods and confirm == saved.id:
        return f"{who} via confirm"
    if "confirm" not in methods:
        reason = "no approval from the user" + (
            " (this server does not accept the confirm argument)" if confirm else ""
        )
    else:
        reason = "no confirmation" if not confirm else f"confirm {confirm[:80]!r} does not match the plan id"
    log.record("refused", **base, object=_objects(saved), result=reason)
    raise NotAllowed(f"Plan {saved.id} was not applied: {reason}.", hint=next_step(saved, rt.settings))


async def _write_all(
    rt: Runtime, conn: Connection, saved: SavedPlan, base: dict[str, Any]
) -> list[tuple[Item, dict[str, Any] | None]]:
    """Write every item; if one fails, undo the ones already written and report why."""
    log = audit_log(rt)
    done: list[tuple[Item, dict[str, Any] | None]] = []
    for item in saved.items:
        try:
            obj = await rt.call(write, conn, item)
        except CloudPilotError as e:
            undone = [f"{i.label}: {await rt.call(restore, conn, i, o)}" for i, o in reversed(done)]
            for line in undone:
                log.record("rolled_back", **base, object=line.split(":")[0], result=line)
            if isinstance(e, Conflict):
                log.record("conflict", **base, object=item.label, result=e.message)
                log.set_plan_status(saved.id, "conflict")
                fresh = await propose(
                    rt,
                    conn,
                    Plan(changes=[i.change for i in saved.items]),
                    f"re-plan of {saved.id} after a conflict",
                    saved.override_protected,
                )
                raise Conflict(
                    f"{item.label} was changed by someone else after plan {saved.id} was made: nothing was "
                    f"overwritten{'; undone: ' + '; '.join(undone) if undone else ''}. A fresh plan "
                    f"{fresh.plan_id} was made from the current object.",
                    hint=f"Review its diff (fix_plan_show(plan_id='{fresh.plan_id}')) and apply that one.",
                ) from e
            log.record("failed", **base, object=item.label, result=e.message)
            log.set_plan_status(saved.id, "failed")
            raise
        log.record(
            "applied",
            **base,
            object=item.label,
            diff=item.diff,
            result=f"resourceVersion {(obj or {}).get('metadata', {}).get('resourceVersion', '-')}",
        )
        done.append((item, obj))
    return done


def _objects(saved: SavedPlan) -> str:
    return ", ".join(i.label for i in saved.items)


# -- reading plans and the audit log -------------------------------------------------------------------------------
@tool("fix", title="Show a plan")
async def fix_plan_show(plan_id: Annotated[str, Field(description="The plan id.")]) -> PlanView:
    """A saved plan with its changes, reasons, risk, blast radius, diffs and current status."""
    rt = current()
    status, saved = load(rt, plan_id)
    return view(saved, status, rt.settings)


class AuditRow(BaseModel):
    id: int
    at: str
    event: str
    plan_id: str | None
    cluster: str
    principal: str = Field("", description="Who asked, as the transport authenticated them.")
    client: str = Field("", description="The client as it names itself (unverified).")
    approver: str = Field("", description="On approved records: who approved, and how.")
    identity: str
    object: str
    result: str


class AuditList(Result):
    """Audit records, newest first."""

    entries: list[AuditRow]
    next_before: int | None = None

    def render(self) -> str:
        rows = [
            [e.id, e.at, e.event, e.plan_id, e.object, e.principal or "-", e.client, e.approver or "-", e.result[:120]]
            for e in self.entries
        ]
        text = table(["ID", "AT", "EVENT", "PLAN", "OBJECT", "PRINCIPAL", "CLIENT", "APPROVER", "RESULT"], rows)
        if self.next_before:
            text += f"\n(more: pass before={self.next_before})"
        return text


class AuditRecord(Result):
    """One audit record with its diff."""

    entry: AuditRow
    diff: str

    def render(self) -> str:
        e = self.entry
        return (
            f"#{e.id} {e.at} {e.event} plan {e.plan_id} cluster {e.cluster}\nobject: {e.object}\n"
            f"principal: {e.principal or '-'}; client (self-declared): {e.client}; cluster identity: {e.identity}\n"
            + (f"approver: {e.approver}\n" if e.approver else "")
            + f"result: {e.result}\n{self.diff or '(no diff)'}"
        )


@tool("fix", title="List the audit log")
async def audit_list(
    plan_id: Annotated[str | None, Field(description="Only this plan's records.")] = None,
    object: Annotated[
        str | None, Field(description="Only records whose object contains this text, e.g. 'Deployment shop/web'.")
    ] = None,
    event: Annotated[
        str | None,
        Field(
            description="planned, approved, refused, applied, conflict, verified, failed, rolled_back or interrupted."
        ),
    ] = None,
    limit: Annotated[int | None, Field(description="Most records returned (default 50).")] = None,
    before: Annotated[int | None, Field(description="Only records older than this id (paging).")] = None,
) -> AuditList:
    """Every planned, approved, refused, applied, verified and rolled-back change CloudPilot made or was asked
    to make: when, which client and cluster identity, which object, and the outcome. Newest first."""
    rt = current()
    limit = validate_limit(limit, rt.settings.output.default_limit)
    log = audit_log(rt)
    log.interrupt_stale(STALE_APPLY_SECONDS)
    entries = log.entries(plan_id=plan_id, object=object, event=event, limit=limit + 1, before=before)
    rows = [AuditRow(**{k: v for k, v in e.__dict__.items() if k != "diff"}) for e in entries[:limit]]
    return AuditList(entries=rows, next_before=rows[-1].id if len(entries) > limit else None)


@tool("fix", title="Read an audit record")
async def audit_get(entry_id: Annotated[int, Field(description="The record id from audit_list.")]) -> AuditRecord:
    """One audit record in full, with the diff of the change it is about."""
    entry = audit_log(current()).entry(entry_id)
    if entry is None:
        raise NotFound(f"No audit record #{entry_id}.", hint="audit_list shows the records.")
    return AuditRecord(entry=AuditRow(**{k: v for k, v in entry.__dict__.items() if k != "diff"}), diff=entry.diff)
