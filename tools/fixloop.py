"""The fix loop behind every change, whoever asks: dry-run and diff, a saved plan, approval, apply with
optimistic concurrency, verify, roll back on failure, and an audit record for each step.

`propose` turns a `engines.remediation.Plan` into concrete items (live object, server dry-run result, diff)
and saves them under a plan id. `apply_plan` applies a saved, approved plan. Nothing here writes without
an audit row written first.
"""

from __future__ import annotations

import copy
import difflib
import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field

from connections.kube import Connection
from engines.remediation import Blast, Change, EditError, Plan, Refusal, apply_edits
from errors import Conflict, Forbidden, InvalidInput, NotAllowed, NotFound
from guard.mask import redact
from runtime import Runtime, client_name
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
    """One change made concrete against the live object: what it was, what the server says it will be."""

    change: Change
    path: str
    group: str
    resource: str
    live: dict[str, Any] | None = None  # the object before: what a rollback restores
    desired: dict[str, Any] | None = None  # the server's dry-run result
    resource_version: str | None = None
    diff: str = ""

    @property
    def label(self) -> str:
        return self.change.target.short()


class SavedPlan(BaseModel):
    """A plan as stored: its items, who made it and where."""

    id: str
    cluster: str
    identity: str
    client: str
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
    if not changes:
        step = "Nothing to apply."
    elif pre_approved(saved, settings):
        step = f"Pre-approved by policy fix.auto_approve: apply with fix_apply(plan_id='{saved.id}')."
    else:
        step = (
            f"Show this diff to the user. To apply: fix_apply(plan_id='{saved.id}', confirm='{saved.id}') "
            "once they agree (clients with elicitation are asked directly)."
        )
    return PlanView(
        plan_id=saved.id,
        cluster=saved.cluster,
        status=status,
        risk=saved.plan.risk,
        expires_at=saved.expires_at,
        changes=changes,
        refused=saved.plan.refused,
        next_step=step,
    )


# -- safety ----------------------------------------------------------------------------------------------------
def check_allowed(rt: Runtime, change: Change, override: str | None) -> None:
    """Refuse what the server's safety settings forbid: writes off, deletions off, protected namespaces."""
    safety = rt.settings.safety
    if not safety.allow_write:
        raise NotAllowed(
            "CloudPilot is read-only: changes are switched off.",
            hint="An operator starts the server with --allow-write to allow changes.",
        )
    if change.operation == "delete" and not safety.allow_destructive:
        raise NotAllowed(f"Deleting {change.target.short()} needs --allow-destructive, which is off.")
    ns = change.target.namespace
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


def pre_approved(saved: SavedPlan, settings: Settings) -> bool:
    """True when the policy pre-approves every action of the plan (never deletions, patches or overrides)."""
    allowed = set(settings.fix.auto_approve)
    actions = {a for i in saved.items for a in i.change.actions()}
    return (
        bool(actions)
        and actions <= allowed
        and not saved.override_protected
        and not any(a == "delete" or a.startswith("patch_") for a in actions)
    )


# -- planning --------------------------------------------------------------------------------------------------
def audit_log(rt: Runtime) -> AuditLog:
    log = rt.__dict__.get("_audit_log")
    if log is None:
        log = rt.__dict__["_audit_log"] = AuditLog(rt.store)
    return log


async def propose(rt: Runtime, conn: Connection, plan: Plan, source: str, override: str | None = None) -> PlanView:
    """Dry-run every change on the server, diff it, save the plan and record it. A refusal (safety settings,
    RBAC) is recorded too."""
    items, unchanged = [], []
    for change in plan.changes:
        try:
            check_allowed(rt, change, override)
            item = await rt.call(materialise, conn, change)
        except (NotAllowed, Forbidden) as e:
            audit_log(rt).record(
                "refused",
                plan_id=None,
                cluster=conn.name,
                identity=conn.identity,
                client=client_name(),
                object=change.target.short(),
                result=f"{source}: {e.message}",
            )
            raise
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
    plan = plan.model_copy(update={"changes": [i.change for i in items], "refused": plan.refused + unchanged})
    created = datetime.now(UTC)
    saved = SavedPlan(
        id=f"p-{secrets.token_hex(5)}",
        cluster=conn.name,
        identity=conn.identity,
        client=client_name(),
        source=source,
        created_at=created.isoformat(timespec="seconds"),
        expires_at=(created + timedelta(minutes=rt.settings.fix.plan_ttl_minutes)).isoformat(timespec="seconds"),
        override_protected=override,
        plan=plan,
        items=items,
    )
    log = audit_log(rt)
    log.save_plan(
        saved.id, conn.name, saved.expires_at, saved.model_dump(mode="json"), status="planned" if items else "empty"
    )
    who = {"plan_id": saved.id, "cluster": conn.name, "identity": conn.identity, "client": saved.client}
    for item in items:
        log.record("planned", **who, object=item.label, diff=item.diff, result=f"{source}; risk {item.change.risk}")
    if not items:
        log.record("planned", **who, result=f"{source}; nothing to apply")
    logger.info("cluster=%s plan %s: %d change(s) from %s", conn.name, saved.id, len(items), source)
    return view(saved, "planned" if items else "empty", rt.settings)


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
    dry: dict[str, Any] = {"dryRun": "All", "fieldManager": FIELD_MANAGER}
    if change.operation == "delete":
        # with a DeleteOptions body the API server reads dryRun from the body, not from the query
        conn.request(
            "DELETE", path, query={"dryRun": "All"}, body={"propagationPolicy": "Background", "dryRun": ["All"]}
        )
        desired = None
    elif change.patch is not None:
        body = change.patch.body
        if change.patch.type == "apply":
            dry["force"] = False  # a field another manager owns is a conflict, not taken over
        desired = conn.request("PATCH", path, query=dry, body=body, content_type=PATCH_TYPES[change.patch.type])
    else:
        assert live is not None
        try:
            edited = apply_edits(live, change.edits)
        except EditError as e:
            raise InvalidInput(f"Cannot plan on {change.target.short()}: {e}") from e
        desired = conn.request("PUT", path, query=dry, body=_for_write(edited))
    rv = (live or {}).get("metadata", {}).get("resourceVersion")
    return Item(
        change=change,
        path=path,
        group=info.group,
        resource=info.resource,
        live=live,
        desired=desired,
        resource_version=rv,
        diff=diff(live, desired),
    )


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


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> str:
    """Unified diff of two objects' redacted YAML (status and server bookkeeping left out). When masked values
    (secret data, credential-like env values) change too, a last line says so without showing them."""

    def text(obj: dict[str, Any] | None, masked: bool = True) -> list[str]:
        if obj is None:
            return []
        shown = redact(content(obj)) if masked else content(obj)
        return yaml.dump(shown, Dumper=_Dumper, sort_keys=True, width=120).splitlines(keepends=True)

    def changed(a: list[str], b: list[str]) -> int:
        return sum(1 for line in difflib.ndiff(a, b) if line[:1] in "+-")

    lines = difflib.unified_diff(text(before), text(after), "live", "after", n=2)
    out = "".join(line if line.endswith("\n") else line + "\n" for line in lines).rstrip("\n")
    if changed(text(before, False), text(after, False)) > changed(text(before), text(after)):
        out += ("\n" if out else "") + "# masked values (secret data or credential-like settings) change too"
    return out


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


def write(conn: Connection, item: Item) -> dict[str, Any] | None:
    """Apply one item on the resourceVersion its diff was made from. A 409 caused only by status updates
    (the object's content is unchanged) is retried on the new version; any other change aborts."""
    rv = item.resource_version
    for _ in range(5):
        try:
            return _send(conn, item, rv)
        except Conflict:
            current = _get_or_none(conn, item.path)
            if item.change.operation == "delete" and (current is None or current["metadata"].get("deletionTimestamp")):
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
    """Put back the saved previous state, unless someone else changed the object since CloudPilot did."""
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
