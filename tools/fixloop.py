"""The fix loop behind every change, whoever asks: dry-run and diff, a saved plan, approval, apply with
optimistic concurrency, verify, roll back on failure, and an audit record for each step.

`propose` turns a `engines.remediation.Plan` into concrete items (server dry-run result, diff) and saves them
under a plan id. `apply_plan` applies a saved, approved plan. Nothing here writes without an audit row written
first.

Nothing secret is kept at rest or shown: a saved plan holds each change's recipe (edits or the caller's patch),
the object's uid and resourceVersion, and the object as read tools show it (masked) — never the live object or
the dry-run result. `fix_apply` re-reads the object, checks it is the version planned on, re-runs the dry run and
keeps the previous state for a rollback in memory only. Diffs, errors and audit rows mask every value read tools
mask, also where a change would move it; patches that read or write such values are refused.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import logging
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field

from connections.kube import Connection, ResourceInfo
from engines.remediation import Blast, Change, Edit, EditError, Plan, Refusal, apply_edits
from engines.remediation.masking import (
    SECRET_FIELDS,
    carries,
    exposures,
    hidden_values,
    masked_read,
    scrub,
    scrub_text,
    secret_key_changes,
    writes_secret_data,
)
from engines.remediation.planner import revision_template
from engines.remediation.privilege import privileged
from errors import CloudPilotError, Conflict, Forbidden, InvalidInput, NotAllowed, NotFound
from guard.mask import mask_text, redact
from runtime import Runtime, approval_methods, client_name, principal
from settings import Settings
from store import AuditLog
from tools.results import Result

logger = logging.getLogger(__name__)

FIELD_MANAGER = "cloudpilot"
PATCH_TYPES = {
    "strategic": "application/strategic-merge-patch+json",
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}
_VOLATILE = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp", "selfLink")
_CONTROLLER_ANNOTATIONS = ("deployment.kubernetes.io/revision",)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class Item(BaseModel):
    """One change made concrete against the live object. `live` (what a rollback restores) and `desired` (the
    server's dry-run result) exist only in memory: they are left out of the saved plan."""

    change: Change
    path: str
    group: str
    resource: str
    kind: str = ""
    uid: str | None = None
    resource_version: str | None = None
    shown: dict[str, Any] | None = None  # the live object as read tools show it: what a conflict is judged on
    diff: str = ""
    live: dict[str, Any] | None = Field(None, exclude=True)
    desired: dict[str, Any] | None = Field(None, exclude=True)

    @property
    def label(self) -> str:
        return self.change.target.short()


class SavedPlan(BaseModel):
    """A plan as stored: its items, who made it and where."""

    id: str
    cluster: str
    identity: str
    client: str
    principal: str = ""
    source: str
    created_at: str
    expires_at: str
    override_protected: str | None = None
    plan: Plan
    items: list[Item]


# -- results ---------------------------------------------------------------------------------------------------
class ChangeView(BaseModel):
    object: str
    actions: list[str]
    why: list[str]
    expected: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    risk: str
    blast: Blast
    diff: str


class PlanView(Result):
    """A plan to review: each change with its reason, expected effect, risk, blast radius and server diff."""

    plan_id: str
    cluster: str
    status: str
    risk: str
    expires_at: str
    changes: list[ChangeView]
    refused: list[Refusal] = Field(default_factory=list)
    next_step: str

    def render(self) -> str:
        lines = [
            f"plan {self.plan_id} on cluster {self.cluster}: {len(self.changes)} change(s), risk {self.risk}, "
            f"status {self.status}, expires {self.expires_at}"
        ]
        for i, c in enumerate(self.changes, 1):
            lines.append(f"{i}. {c.object}: {', '.join(c.actions)} (risk {c.risk})")
            lines += [f"   why: {w}" for w in c.why]
            if c.expected:
                lines.append(f"   expected: {c.expected}")
            lines.append(
                f"   blast radius: {c.blast.pods_restarted} pod(s) restarted, at most "
                f"{c.blast.max_unavailable} unavailable at a time"
            )
            lines += [f"   - {n}" for n in c.blast.notes]
            lines.append("   diff (live → after, from a server dry run):")
            lines += ["     " + d for d in (c.diff or "(no change)").splitlines()]
        for r in self.refused:
            lines.append(f"not changed: {r.finding} on {r.object.short()}: {r.reason}")
        lines.append(self.next_step)
        return "\n".join(lines)


def view(saved: SavedPlan, status: str, settings: Settings) -> PlanView:
    changes = [
        ChangeView(
            object=i.label,
            actions=i.change.actions(),
            why=i.change.why,
            expected=i.change.expected,
            evidence=redact(i.change.evidence),
            risk=i.change.risk,
            blast=i.change.blast,
            diff=i.diff,
        )
        for i in saved.items
    ]
    return PlanView(
        plan_id=saved.id,
        cluster=saved.cluster,
        status=status,
        risk=saved.plan.risk,
        expires_at=saved.expires_at,
        changes=changes,
        refused=saved.plan.refused,
        next_step=next_step(saved, settings),
    )


def next_step(saved: SavedPlan, settings: Settings) -> str:
    """How this plan can be approved, naming only the approval methods this server accepts from this caller."""
    if not saved.items:
        return "Nothing to apply."
    methods = approval_methods(settings, principal().transport)
    if pre_approved(saved, settings):
        return f"Pre-approved by policy fix.auto_approve: apply with fix_apply(plan_id='{saved.id}')."
    ways = []
    if "elicitation" in methods:
        ways.append(
            f"fix_apply(plan_id='{saved.id}') asks the user to approve it through the client (MCP elicitation), "
            "when the client supports that"
        )
    if "confirm" in methods:
        ways.append(
            f"once the user has seen this diff and agrees, fix_apply(plan_id='{saved.id}', confirm='{saved.id}')"
        )
    if "policy" in methods and _policy_may_cover(saved):
        ways.append("an operator may pre-approve such actions by policy (fix.auto_approve)")
    if not ways:
        return "This server accepts no approval for this plan (fix.approval): it cannot be applied through CloudPilot."
    if "confirm" in methods:
        return "Show this diff to the user. To apply: " + "; or ".join(ways) + "."
    return "Show this diff to the user. A person must approve it: " + "; or ".join(ways) + "."


# -- safety ----------------------------------------------------------------------------------------------------
def check_allowed(rt: Runtime, change: Change, override: str | None, kind: str | None = None) -> None:
    """Refuse what the server's safety settings forbid: writes off, deletions and critical changes without
    --allow-destructive, protected namespaces (the objects in them and the Namespace object itself).
    `kind`: the resolved kind, when known."""
    safety = rt.settings.safety
    if not safety.allow_write:
        raise NotAllowed(
            "CloudPilot is read-only: changes are switched off.",
            hint="An operator starts the server with --allow-write to allow changes.",
        )
    if change.operation == "delete" and not safety.allow_destructive:
        raise NotAllowed(f"Deleting {change.target.short()} needs --allow-destructive, which is off.")
    if change.risk == "critical" and not safety.allow_destructive:
        raise NotAllowed(
            f"Changing {change.target.short()} is a critical change (cluster-wide privileges or a whole namespace): "
            "it needs --allow-destructive (safety.allow_destructive), which is off."
        )
    ns = change.target.namespace
    if _is_namespace(kind or change.target.kind):
        ns = change.target.name  # a Namespace object belongs to the namespace it is
    rt.check_namespace(ns)
    if ns and ns in safety.protected_namespaces:
        if override != ns:
            raise NotAllowed(
                f"Namespace {ns!r} is protected (safety.protected_namespaces): CloudPilot refuses to change "
                f"{change.target.short()}.",
                hint=f"If the change is really meant, an operator sets fix.allow_protected_override and the call "
                f"passes override_protected='{ns}'.",
            )
        if not rt.settings.fix.allow_protected_override:
            raise NotAllowed(
                f"override_protected={ns!r} was given, but this server does not allow overriding protected namespaces.",
                hint="An operator must set fix.allow_protected_override.",
            )


def _is_namespace(kind: str) -> bool:
    return kind.lower() in ("namespace", "namespaces", "ns")


def check_privileges(rt: Runtime, item: Item) -> None:
    """Mark a cluster-wide privilege change critical; refuse it unless deletions are allowed."""
    reason = privileged(item.group, item.kind, item.live, item.desired)
    if reason is None:
        return
    item.change.risk = "critical"
    item.change.blast.notes.append(f"cluster-wide privilege change: {reason}")
    if not rt.settings.safety.allow_destructive:
        raise NotAllowed(
            f"Changing {item.label} is a cluster-wide privilege change ({reason}): it needs --allow-destructive "
            "(safety.allow_destructive), which is off.",
            hint="An operator who means it starts the server with --allow-destructive; such plans are never "
            "pre-approved by policy.",
        )


def _policy_may_cover(saved: SavedPlan) -> bool:
    """Whether fix.auto_approve could ever pre-approve this plan (never deletions, patches, overrides, critical)."""
    actions = {a for i in saved.items for a in i.change.actions()}
    return (
        bool(actions)
        and not saved.override_protected
        and not any(a == "delete" or a.startswith("patch_") for a in actions)
        and not any(i.change.risk == "critical" for i in saved.items)
    )


def pre_approved(saved: SavedPlan, settings: Settings) -> bool:
    """True when this server accepts policy approval and fix.auto_approve names every action of the plan."""
    if "policy" not in approval_methods(settings, principal().transport):
        return False
    actions = {a for i in saved.items for a in i.change.actions()}
    return _policy_may_cover(saved) and actions <= set(settings.fix.auto_approve)


# -- planning --------------------------------------------------------------------------------------------------
def audit_log(rt: Runtime) -> AuditLog:
    log = rt.__dict__.get("_audit_log")
    if log is None:
        log = rt.__dict__["_audit_log"] = AuditLog(rt.store)
    return log


async def propose(rt: Runtime, conn: Connection, plan: Plan, source: str, override: str | None = None) -> PlanView:
    """Dry-run every change on the server, diff it, save the plan and record it. A refusal (safety settings,
    RBAC, a change that would reveal or store a masked value) is recorded too."""
    items, unchanged = [], []
    who = _who(conn)
    for change in plan.changes:
        change.why, change.expected = [mask_text(w) for w in change.why], mask_text(change.expected)
        with audited_refusal(rt, conn, change, source):
            check_allowed(rt, change, override)
            info = await rt.call(conn.resolve, change.target.kind)
            check_allowed(rt, change, override, info.kind)
            item = await rt.call(materialise, conn, change)
            check_privileges(rt, item)
        change.evidence = scrub(redact(change.evidence), hidden_values(item.live) | hidden_values(item.desired))
        if item.diff or change.operation == "delete":
            items.append(item)
        else:
            unchanged.append(
                Refusal(
                    finding=", ".join(change.findings) or "request",
                    object=change.target,
                    reason="already in the requested state: the dry run changes nothing",
                )
            )
    if not items and not plan.refused:
        what = ", ".join(r.object.short() for r in unchanged)
        raise InvalidInput(f"Nothing to change: {what} already in the requested state (the dry run changes nothing).")
    refused = [r.model_copy(update={"reason": mask_text(r.reason)}) for r in plan.refused]
    plan = plan.model_copy(update={"changes": [i.change for i in items], "refused": refused + unchanged})
    created = datetime.now(UTC)
    saved = SavedPlan(
        id=f"p-{secrets.token_hex(5)}",
        cluster=conn.name,
        identity=conn.identity,
        client=who["client"],
        principal=who["principal"],
        source=source,
        created_at=created.isoformat(timespec="seconds"),
        expires_at=(created + timedelta(minutes=rt.settings.fix.plan_ttl_minutes)).isoformat(timespec="seconds"),
        override_protected=override,
        plan=plan,
        items=items,
    )
    log = audit_log(rt)
    log.save_plan(saved.id, conn.name, saved.expires_at, at_rest(saved), status="planned" if items else "empty")
    for item in items:
        log.record(
            "planned",
            plan_id=saved.id,
            **who,
            object=item.label,
            diff=item.diff,
            result=f"{source}; risk {item.change.risk}",
        )
    if not items:
        log.record("planned", plan_id=saved.id, **who, result=f"{source}; nothing to apply")
    logger.info("cluster=%s plan %s: %d change(s) from %s", conn.name, saved.id, len(items), source)
    return view(saved, "planned" if items else "empty", rt.settings)


def _who(conn: Connection) -> dict[str, str]:
    return {"cluster": conn.name, "identity": conn.identity, "client": client_name(), "principal": principal().name}


@contextlib.contextmanager
def audited_refusal(rt: Runtime, conn: Connection, change: Change, source: str) -> Iterator[None]:
    """Record a refusal (safety settings, RBAC) of a change being planned, then let it propagate."""
    try:
        yield
    except (NotAllowed, Forbidden) as e:
        audit_log(rt).record(
            "refused", plan_id=None, **_who(conn), object=change.target.short(), result=f"{source}: {e.message}"
        )
        raise


def at_rest(saved: SavedPlan) -> dict[str, Any]:
    """The plan as stored: no live object, no dry-run result, no pod template copied from a ReplicaSet (a
    rollback's template is looked up again by its revision when the plan is applied)."""
    body = saved.model_dump(mode="json")
    for change in [i["change"] for i in body["items"]] + body["plan"]["changes"]:
        for edit in change["edits"]:
            if edit["action"] == "set_template":
                edit["params"].pop("template", None)
    return body


def materialise(conn: Connection, change: Change) -> Item:
    """Read the live object and ask the server (dry run) what the change would make of it."""
    for _ in range(4):
        try:
            return _materialise(conn, change)
        except Conflict:  # a controller wrote the object between our read and the dry run: read it again
            continue
    return _materialise(conn, change)


def _materialise(conn: Connection, change: Change) -> Item:
    info = conn.resolve(change.target.kind)
    ns = change.target.namespace if info.namespaced else None
    if info.namespaced and not ns:
        raise InvalidInput(f"{info.kind} is namespaced: pass its namespace.")
    path = info.path(ns, change.target.name)
    try:
        live = conn.get(path)
    except NotFound:
        if change.patch is None or change.patch.type != "apply":
            raise
        live = None
    values = hidden_values(live)
    with masked_errors(values):
        _check_patch(info, change, live, values)
        desired = _dry_run(conn, info, path, change, live)
        values |= hidden_values(desired)
        if change.patch is not None and carries(change.patch.body, values):
            raise _carried(change)
        moved = exposures(live, desired)
        if moved:
            raise NotAllowed(
                f"The change would show values CloudPilot masks at {', '.join(moved[:3])} of {change.target.short()} "
                "(a masked value moved to, or left in, a place that is not masked): refused.",
                hint="Change credentials with your secret tooling; CloudPilot does not move them.",
            )
    meta = (live or {}).get("metadata") or {}
    return Item(
        change=change,
        path=path,
        group=info.group,
        resource=info.resource,
        kind=info.kind,
        uid=meta.get("uid"),
        resource_version=meta.get("resourceVersion"),
        shown=shown(live),
        diff=diff(live, desired),
        live=live,
        desired=desired,
    )


def _dry_run(
    conn: Connection, info: ResourceInfo, path: str, change: Change, live: dict[str, Any] | None
) -> dict[str, Any] | None:
    dry: dict[str, Any] = {"dryRun": "All", "fieldManager": FIELD_MANAGER}
    if change.operation == "delete":
        # with a DeleteOptions body the API server reads dryRun from the body, not from the query
        conn.request(
            "DELETE", path, query={"dryRun": "All"}, body={"propagationPolicy": "Background", "dryRun": ["All"]}
        )
        return None
    if change.patch is not None:
        if change.patch.type == "apply":
            dry["force"] = False  # a field another manager owns is a conflict, not taken over
        body = change.patch.body
        return conn.request("PATCH", path, query=dry, body=body, content_type=PATCH_TYPES[change.patch.type])
    assert live is not None
    try:
        edited = apply_edits(live, _with_templates(conn, info, live, change.edits))
    except EditError as e:
        raise InvalidInput(f"Cannot plan on {change.target.short()}: {e}") from e
    result: dict[str, Any] = conn.request("PUT", path, query=dry, body=_for_write(edited))
    return result


def _with_templates(conn: Connection, info: ResourceInfo, live: dict[str, Any], edits: list[Edit]) -> list[Edit]:
    """The edits, with the pod template of a rollback looked up by its revision when a saved plan left it out."""
    out = []
    for edit in edits:
        if edit.action == "set_template" and "template" not in edit.params:
            ns = live["metadata"]["namespace"]
            sets = conn.get(f"/apis/apps/v1/namespaces/{ns}/replicasets").get("items", [])
            found = revision_template(live, sets, edit.params.get("revision"))
            if isinstance(found, str):
                raise InvalidInput(found, hint="rollout_history shows the revisions kept.")
            edit = edit.model_copy(update={"params": {**edit.params, "template": found[1]}})
        out.append(edit)
    return out


def _check_patch(info: ResourceInfo, change: Change, live: dict[str, Any] | None, values: set[str]) -> None:
    """Refuse, before the patch is sent, patches that write Secret data, read masked values (JSON-patch copy,
    move or test) or carry a masked value of the object."""
    patch = change.patch
    if patch is None:
        return
    body, label = patch.body, change.target.short()
    try:
        read = masked_read(live, body) if patch.type == "json" else None
    except ValueError as e:
        raise InvalidInput(f"The JSON patch has an invalid pointer: {e}.") from None
    if read:
        op, where, pointer = read
        raise NotAllowed(
            f"The JSON patch's {op} operation reads {where}={pointer[:80]!r} of {label}, a value CloudPilot masks "
            "(Secret data or a credential-like setting): refused, since the plan would reveal it.",
            hint="Copy, move or test only values that resource_get shows unmasked.",
        )
    if info.group == "" and info.kind == "Secret" and writes_secret_data(patch.type, body):
        raise NotAllowed(
            f"CloudPilot does not write Secret data: the patch touches data or stringData of {label}. Plans and audit "
            "records are kept on disk, and secret values are never stored there.",
            hint="Change secret values with your secret tooling (kubectl, an external secrets operator); "
            "rollout_restart then restarts the workloads that read them.",
        )
    if carries(body, values):
        raise _carried(change)


def _carried(change: Change) -> NotAllowed:
    kind = change.patch.type if change.patch else "change"
    what = "manifest" if kind == "apply" else f"{kind} patch"
    return NotAllowed(
        f"The {what} for {change.target.short()} contains a value CloudPilot masks (a credential or Secret data). "
        "CloudPilot keeps plans and audit records on disk and never stores such values, so it does not write them.",
        hint="Keep credentials in a Secret created with your secret tooling and refer to it (env valueFrom."
        "secretKeyRef, envFrom, a volume).",
    )


@contextlib.contextmanager
def masked_errors(values: set[str]) -> Iterator[None]:
    """Mask credential-like text and the given values in any CloudPilot error raised inside (an API server's
    refusal may quote the object it refused)."""
    try:
        yield
    except CloudPilotError as e:
        e.message = scrub_text(e.message, values)
        e.hint = scrub_text(e.hint, values) if e.hint else e.hint
        e.args = (f"{e.message} {e.hint}" if e.hint else e.message,)
        raise


def content(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a person changes in an object: no status, no server bookkeeping."""
    if obj is None:
        return None
    out = {k: copy.deepcopy(v) for k, v in obj.items() if k != "status"}
    meta = out.get("metadata") or {}
    for key in _VOLATILE:
        meta.pop(key, None)
    annotations = meta.get("annotations") or {}
    for key in _CONTROLLER_ANNOTATIONS:
        annotations.pop(key, None)
    if not annotations:
        meta.pop("annotations", None)
    return out


def shown(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """An object's content as read tools show it, masked values masked wherever they occur."""
    if obj is None:
        return None
    out: dict[str, Any] = scrub(redact(content(obj)), hidden_values(obj))
    return out


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """Unified diff of two objects' redacted YAML (status and server bookkeeping left out). Values masked in
    either object are masked wherever they occur in both. A Secret's data is summarised as the keys that change,
    with sizes; when other masked values change, a last line says so without showing them."""
    values = hidden_values(before) | hidden_values(after)
    is_secret = "Secret" in ((before or {}).get("kind"), (after or {}).get("kind"))

    def text(obj: dict[str, Any] | None, masked: bool = True) -> list[str]:
        if obj is None:
            return []
        body = content(obj) or {}
        if is_secret:
            for key in SECRET_FIELDS:
                body.pop(key, None)
        out = scrub(redact(body), values) if masked else body
        return yaml.dump(out, Dumper=_Dumper, sort_keys=True, width=120).splitlines(keepends=True)

    def changed(a: list[str], b: list[str]) -> int:
        return sum(1 for line in difflib.ndiff(a, b) if line[:1] in "+-")

    lines = difflib.unified_diff(text(before), text(after), "live", "after", n=2)
    out = "".join(line if line.endswith("\n") else line + "\n" for line in lines).rstrip("\n")
    notes = secret_key_changes(before, after) if is_secret else []
    if not is_secret and changed(text(before, False), text(after, False)) > changed(text(before), text(after)):
        notes.append("# masked values (secret data or credential-like settings) change too")
    return "\n".join([out, *notes]) if out else "\n".join(notes)


def _for_write(obj: dict[str, Any], resource_version: str | None = None) -> dict[str, Any]:
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = dict(out.get("metadata") or {})
    meta.pop("managedFields", None)
    if resource_version:
        meta["resourceVersion"] = resource_version
    out["metadata"] = meta
    return out


# -- applying --------------------------------------------------------------------------------------------------
# An apply writes, then verifies for at most an hour (fix_apply's cap); no audit row for longer means its process died.
STALE_APPLY_SECONDS = 3600 + 600


def load(rt: Runtime, plan_id: str) -> tuple[str, SavedPlan]:
    log = audit_log(rt)
    log.interrupt_stale(STALE_APPLY_SECONDS)
    found = log.plan(plan_id)
    if found is None:
        raise NotFound(
            f"No plan {plan_id!r}.",
            hint="Plans come from fix_plan or a change tool (scale, set_image, ...); audit_list shows recent ones.",
        )
    status, body = found
    return status, SavedPlan.model_validate(body)


def preflight(conn: Connection, items: list[Item]) -> None:
    """Ask the API server whether this identity may make every change, before making any."""
    for item in items:
        verb = {"delete": "delete"}.get(
            item.change.operation, "patch" if item.change.patch and item.change.patch.type == "apply" else "update"
        )
        t = item.change.target
        review = conn.request(
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            body={
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {
                    "resourceAttributes": {
                        "namespace": t.namespace or "",
                        "verb": verb,
                        "group": item.group,
                        "resource": item.resource,
                        "name": t.name,
                    }
                },
            },
        )
        status = review.get("status") or {}
        if not status.get("allowed"):
            reason = status.get("reason") or "no RBAC rule allows it"
            raise Forbidden(
                f"Forbidden: identity {conn.identity!r} may not {verb} {item.resource} {t.name!r}"
                + (f" in namespace {t.namespace!r}" if t.namespace else "")
                + f" in cluster {conn.name!r} ({reason}). Nothing was applied.",
                hint=f"Grant the identity RBAC permission to {verb} {item.resource}, or use a "
                "cluster/context with more rights.",
            )


def prepare(conn: Connection, item: Item) -> None:
    """Re-read the object and re-run the dry run before writing: the saved plan keeps neither the object nor the
    result, so they are held in memory for this apply only. The object must be the version planned on (a newer
    version that differs only in status, or in values read tools mask, is fine) and the dry run must give the
    diff that was approved; anything else is a conflict."""
    fresh = materialise(conn, item.change)
    planned_uid = item.uid or ((item.live or {}).get("metadata") or {}).get("uid")
    if (planned_uid or None) != (fresh.uid or None):
        what = "deleted" if fresh.uid is None else "created" if planned_uid is None else "deleted and re-created"
        raise Conflict(f"{item.label} was {what} since the plan was made.")
    if fresh.resource_version != item.resource_version and (item.shown is None or fresh.shown != item.shown):
        raise Conflict(f"{item.label} changed since the plan was made:\n{diff(item.shown, fresh.shown)[:1500]}")
    if fresh.diff != item.diff:
        raise Conflict(f"{item.label}: a dry run now gives a different result than the approved diff.")
    item.live, item.desired, item.resource_version = fresh.live, fresh.desired, fresh.resource_version


def write(conn: Connection, item: Item) -> dict[str, Any] | None:
    """Apply one item on the resourceVersion its diff was made from. A 409 caused only by status updates
    (the object's content is unchanged) is retried on the new version; any other change aborts."""
    prepare(conn, item)
    with masked_errors(hidden_values(item.live) | hidden_values(item.desired)):
        rv = item.resource_version
        for _ in range(5):
            try:
                return _send(conn, item, rv)
            except Conflict:
                current = _get_or_none(conn, item.path)
                if item.change.operation == "delete" and (
                    current is None or current["metadata"].get("deletionTimestamp")
                ):
                    # graceful deletion: the API server marks the object, then re-checks the precondition against
                    # its own write and answers 409 — the deletion did happen
                    return None
                if content(current) != content(item.live):
                    changed = diff(item.live, current)
                    raise Conflict(f"{item.label} changed since the plan was made:\n{changed[:1500]}") from None
                rv = (current or {}).get("metadata", {}).get("resourceVersion")
        raise Conflict(f"{item.label} kept changing while CloudPilot applied the plan.", hint="Try again shortly.")


def _send(conn: Connection, item: Item, rv: str | None) -> dict[str, Any] | None:
    change = item.change
    if change.operation == "delete":
        uid = (item.live or {}).get("metadata", {}).get("uid")
        conn.request(
            "DELETE",
            item.path,
            body={"propagationPolicy": "Background", "preconditions": {"uid": uid, "resourceVersion": rv}},
        )
        return None
    if change.patch is not None and change.patch.type == "apply":
        body = copy.deepcopy(change.patch.body)
        if rv:
            body.setdefault("metadata", {})["resourceVersion"] = rv
        return conn.request(
            "PATCH",
            item.path,
            query={"fieldManager": FIELD_MANAGER, "force": False},
            body=body,
            content_type=PATCH_TYPES["apply"],
        )
    assert item.desired is not None
    return conn.request("PUT", item.path, query={"fieldManager": FIELD_MANAGER}, body=_for_write(item.desired, rv))


def _get_or_none(conn: Connection, path: str) -> dict[str, Any] | None:
    try:
        return conn.get(path)
    except NotFound:
        return None


def restore(conn: Connection, item: Item, applied: dict[str, Any] | None) -> str:
    """Put back the previous state (read when the plan was applied), unless someone else changed the object since
    CloudPilot did."""
    with masked_errors(hidden_values(item.live) | hidden_values(applied)):
        return _restore(conn, item, applied)


def _restore(conn: Connection, item: Item, applied: dict[str, Any] | None) -> str:
    if item.change.operation == "delete":
        return "not rolled back: a deleted object is not re-created automatically"
    for _ in range(5):
        current = _get_or_none(conn, item.path)
        if item.live is None:
            if current is None:
                return "nothing to roll back: the object no longer exists"
            conn.request("DELETE", item.path, body={"preconditions": {"uid": current["metadata"]["uid"]}})
            return "rolled back: the created object was deleted"
        if current is None:
            return "not rolled back: the object was deleted meanwhile"
        previous, note = item.live, ""
        if applied is not None and content(current) != content(applied):
            if not _replicas_only(current, applied):
                return "not rolled back: someone else changed the object after CloudPilot did; left as it is"
            keep = (current.get("spec") or {}).get("replicas")  # an autoscaler's choice is not undone
            previous = copy.deepcopy(item.live)
            previous.setdefault("spec", {})["replicas"] = keep
            note = f" (replicas left at {keep}: changed meanwhile, e.g. by an autoscaler)"
        try:
            conn.request(
                "PUT",
                item.path,
                query={"fieldManager": FIELD_MANAGER},
                body=_for_write(previous, current["metadata"]["resourceVersion"]),
            )
        except Conflict:
            continue
        return "rolled back to the saved previous spec" + note
    return "not rolled back: the object kept changing"


def _replicas_only(current: dict[str, Any], applied: dict[str, Any]) -> bool:
    """Whether the object differs from what CloudPilot wrote in spec.replicas alone (an HPA scaled it)."""
    a, b = content(current) or {}, content(applied) or {}
    for obj in (a, b):
        (obj.get("spec") or {}).pop("replicas", None)
    return a == b


Outcome = Literal["verified", "rolled_back", "failed", "refused"]
