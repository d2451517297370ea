"""Signals in, incidents out: group them (`engines.incidents`), keep them in the store with a timeline, tell the
routed channel when one opens, reopens or resolves, and start the team's investigation — the autopilot: diagnose,
RCA, plan. The report names what changed just before (the change history) and what the written policy decides: a
plan it allows is approved by the policy, through the same fix loop and audit; any other waits for a person's
approval in chat. An incident resolves when its signals go quiet, its alerts and broken states clear, or the fix
planned for it is verified. In a maintenance window incidents are recorded, not announced and not acted on."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from agents.api import Reply, Team
from engines.incidents import Change, Grouper, Incident, Signal
from engines.incidents.history import History, Ranked
from engines.incidents.policy import Autofix, Decision, HourlyLimit, Policy, load_policy
from errors import CloudPilotError, InvalidInput
from notifiers import Notification, Notifier, deliver
from ops.metrics import METRICS
from runtime import Principal, Runtime
from store.audit import AuditLog
from store.incidents import Incidents

logger = logging.getLogger(__name__)

WATCHER = Principal("cloudpilot watch", frozenset({"read", "write"}), transport="watch")
_CODE = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|IST\d{4}")  # finding codes: POD_IMAGE_PULL, IST0101


def policy_from_settings(runtime: Runtime) -> Policy:
    """The written policy of `watch.policy_file` (none: every fix waits for a person)."""
    path = runtime.settings.watch.policy_file
    if path is None:
        return Policy()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(
            f"The policy file {path} cannot be read ({exc.strerror}).", hint="Fix watch.policy_file or unset it."
        ) from None
    return load_policy(text, str(path))


class Pipeline:
    def __init__(
        self,
        runtime: Runtime,
        *,
        team: Team | None = None,
        sinks: Sequence[Notifier] = (),
        clock: Callable[[], float] = time.time,
        policy: Policy | None = None,
    ) -> None:
        w = runtime.settings.watch
        self.runtime, self.settings = runtime, w
        self.grouper = Grouper(window=w.window_seconds, quiet=w.quiet_seconds, flap_limit=w.flap_limit)
        self.history = History()
        self.policy = policy if policy is not None else policy_from_settings(runtime)
        self.autofix = Autofix(self.policy)
        self.incidents = Incidents(runtime.store)
        self.audit = AuditLog(runtime.store)
        self.team, self.sinks, self.clock = team, sinks, clock
        self.plans: dict[int, str] = {}  # incident id → the plan made for it
        self.tasks: set[asyncio.Task[Any]] = set()
        self.investigations = asyncio.Semaphore(w.investigations_at_once)
        self.investigated = HourlyLimit(w.investigations_per_hour)
        self.taken = 0

    async def take(self, s: Signal) -> Change | None:
        """One signal; returns what it changed (None for a repeat)."""
        self.taken += 1
        if not s.at:
            s = dataclasses.replace(s, at=self.clock())
        change = self.grouper.add(s)
        METRICS.events_processed.labels(source=s.source, result=change.kind if change else "repeat").inc()
        if change is not None:
            await self._record(change)
        return change

    async def tick(self) -> list[Change]:
        """Resolve what went quiet or was fixed; call every few seconds."""
        now = self.clock()
        changes = self.grouper.expire(now)
        self.history.forget(now)
        for incident_id, plan_id in list(self.plans.items()):
            found = self.audit.plan(plan_id)
            if found and found[0] == "verified":
                incident = next((i for i in self.grouper.open.values() if i.ref == incident_id), None)
                if incident is not None:
                    self.incidents.note(incident_id, "fixed", f"plan {plan_id} applied and verified")
                    changes.append(self.grouper.resolve(incident, now))
                del self.plans[incident_id]
            elif found and found[0] in ("rejected", "rolled_back", "failed", "expired", "conflict"):
                del self.plans[incident_id]
        for change in changes:
            await self._record(change)
        return changes

    async def _record(self, change: Change) -> None:
        incident = change.incident
        incident.ref = self.incidents.save(incident.ref, _values(incident))
        s = change.signal
        text = f"{s.reason} on {s.object}: {s.message}" if s else change.kind
        self.incidents.note(incident.ref, change.kind, text, at=s.at if s else self.clock())
        muted = None  # a plain update is neither told nor acted on: no window to look up
        if change.kind != "updated":
            muted = self.policy.maintenance_at(incident.cluster, namespace_of(incident), self.clock())
        if muted and change.kind in ("opened", "reopened"):
            self.incidents.note(incident.ref, "muted", f"maintenance window {muted}: not announced, not acted on")
        tell = change.kind in ("opened", "resolved") or (change.kind == "reopened" and not incident.flapping)
        if tell and self.sinks and not muted:
            preceding = (
                []
                if change.kind == "resolved"
                else self.history.preceding(incident.cluster, incident.root, incident.opened_at)
            )
            await deliver(self.sinks, notification(incident, change, preceding))
            self.incidents.note(incident.ref, "notified", f"{change.kind} sent")
        if change.kind == "opened" and self.team is not None and self.settings.investigate and not muted:
            task = asyncio.create_task(self._investigate(incident))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _investigate(self, incident: Incident) -> None:
        kind, _, where = incident.root.partition(" ")
        namespace, _, name = where.rpartition("/")
        if not namespace:  # cluster-scoped (a Node): diagnosis is per namespace; say so, do nothing
            self.incidents.note(incident.ref, "investigation", f"{incident.root} is cluster-wide: not investigated")
            return
        now = self.clock()
        if self.investigated.full(now):
            self.incidents.note(
                incident.ref,
                "investigation",
                f"not investigated: {self.settings.investigations_per_hour} investigations in the last hour "
                "(watch.investigations_per_hour)",
            )
            return
        self.investigated.add(now)
        assert self.team is not None
        async with self.investigations:
            summary = "; ".join(f"{r} ×{n}" for r, n in incident.reasons.most_common(5))
            try:
                reply = await self.team.autofix(
                    namespace,
                    deployment=name if kind == "Deployment" else None,
                    event=f"{incident.root}: {summary}",
                    cluster=incident.cluster,
                    thread_id=f"incident-{incident.ref}",
                    user=WATCHER,
                )
            except CloudPilotError as exc:
                self.incidents.note(incident.ref, "investigation", f"failed: {exc.message}")
                return
            # asked after the investigation: every watch has delivered what preceded the first signal by now
            preceding = self.history.preceding(incident.cluster, incident.root, incident.opened_at)
            for r in preceding:
                self.incidents.note(incident.ref, "change", change_line(r))
            decision = self._note_reply(incident, reply, preceding)
            if self.sinks:
                await deliver(self.sinks, report(incident, reply, preceding, decision))
            if decision is not None and decision.verdict == "auto" and reply.approval is not None:
                await self._apply_by_policy(incident, reply, decision)

    def _note_reply(self, incident: Incident, reply: Reply, preceding: list[Ranked]) -> Decision | None:
        self.incidents.save(incident.ref, {**_values(incident), "thread_id": reply.thread_id})
        root = reply.root_cause or {}
        if root:
            self.incidents.note(
                incident.ref, "finding", f"{root.get('code')} {root.get('object')}: {root.get('summary')}"
            )
        if reply.approval is not None:
            ticket = reply.approval
            self.plans[incident.ref] = ticket.plan_id
            changes = ticket.summary.get("changes") or []
            decision = self.autofix.decide(
                cluster=incident.cluster,
                namespace=namespace_of(incident),
                findings=plan_findings(root, changes),
                actions={a for c in changes for a in c.get("actions", [])},
                risk=str(ticket.summary.get("risk", "high")),
                changes=[(r.edit.kind, r.seconds_before) for r in preceding],
                at=self.clock(),
            )
            self.incidents.note(incident.ref, "policy", f"{decision.verdict}: {decision.reason}")
            if decision.verdict != "auto":
                self.incidents.note(incident.ref, "plan", f"plan {ticket.plan_id} waits for approval {ticket.id}")
            return decision
        if reply.plan:
            self.plans[incident.ref] = reply.plan["plan_id"]
            self.incidents.note(incident.ref, "plan", f"plan {reply.plan['plan_id']}: {reply.status}")
        else:
            self.incidents.note(incident.ref, "investigation", reply.answer[:500])
        return None

    async def _apply_by_policy(self, incident: Incident, reply: Reply, decision: Decision) -> None:
        """Approve the plan as the policy's rule: the same fix loop (dry-run diff, apply, verify, audit) as a
        person's approval, with the rule named as the approver."""
        assert self.team is not None and reply.approval is not None
        ticket = reply.approval
        approver = Principal(f"watch policy rule {decision.rule}", frozenset({"read", "write"}), transport="policy")
        self.autofix.started(self.clock())
        try:
            done = await self.team.decide(ticket.id, approve=True, decider=approver, reason=decision.reason)
        except CloudPilotError as exc:  # a person decided first, or the plan expired
            self.incidents.note(incident.ref, "action", f"not applied by the policy: {exc.message}")
            self.autofix.finished(False)
            return
        status = (done.outcome or {}).get("status", "unknown")
        self.autofix.finished(status == "verified")
        self.incidents.note(incident.ref, "action", f"plan {ticket.plan_id} applied by {approver.name}: {status}")
        if self.sinks:
            await deliver(self.sinks, policy_report(incident, ticket.plan_id, approver.name, status))


def plan_findings(root: dict[str, Any], changes: list[dict[str, Any]]) -> set[str]:
    """The finding codes a plan answers: the root cause's, and the code heading each change's reason ("CODE: why").
    Only those structured places: a code quoted in cluster text (a diff, a message) never counts."""
    heads = [str(why).split(":", 1)[0] for c in changes for why in c.get("why") or []]
    return {code for code in [str(root.get("code", "")), *heads] if _CODE.fullmatch(code)}


def namespace_of(incident: Incident) -> str | None:
    return incident.root.partition(" ")[2].rpartition("/")[0] or None


def change_line(r: Ranked) -> str:
    return f"{r.edit.summary} ({r.seconds_before:.0f} s before; {DISTANCE[min(r.distance, 3)]})"


DISTANCE = ("the same object", "linked to it", "same namespace", "elsewhere in the cluster")


def policy_report(incident: Incident, plan_id: str, approver: str, status: str) -> Notification:
    return Notification(
        title=f"Incident #{incident.ref}: plan {plan_id} applied automatically ({status})",
        text=f"Approved by {approver} under the written policy (watch.policy_file); see the audit log.",
        severity="info" if status == "verified" else "critical",
        cluster=incident.cluster,
        namespace=namespace_of(incident),
        fields={"incident": f"#{incident.ref}", "plan": plan_id, "outcome": status},
        key=f"incident:{incident.ref}:policy:{plan_id}",
        thread_id=f"incident-{incident.ref}",
    )


def report(incident: Incident, reply: Reply, preceding: Sequence[Ranked], decision: Decision | None) -> Notification:
    """The investigation's report: the finding, what changed just before, and what happens to the plan."""
    root = reply.root_cause or {}
    lines = [f"Finding: {root.get('code')} {root.get('object')}: {root.get('summary')}" if root else reply.answer[:500]]
    if preceding:
        lines.append("Changed before it broke:")
        lines += [f"{i}. {change_line(r)}" for i, r in enumerate(preceding, 1)]
    if reply.approval is not None and decision is not None:
        what = {
            "auto": "is applied now by the policy",
            "dry_run": "would be applied by the policy (dry run); a person decides",
            "hold": "waits (maintenance window)",
            "ask": "waits for a person's approval",
        }
        lines.append(f"Plan {reply.approval.plan_id} {what[decision.verdict]}: {decision.reason}")
    return Notification(
        title=f"Incident #{incident.ref} investigated: {incident.root}",
        text="\n".join(lines),
        severity="critical" if incident.severity == "critical" else "warning",
        cluster=incident.cluster,
        namespace=namespace_of(incident),
        fields={"incident": f"#{incident.ref}", "thread": reply.thread_id},
        key=f"incident:{incident.ref}:report",
        thread_id=f"incident-{incident.ref}",
    )


def notification(incident: Incident, change: Change, preceding: Sequence[Ranked] = ()) -> Notification:
    """What the channel is told when an incident opens, comes back or resolves."""
    namespace = namespace_of(incident)
    top = ", ".join(f"{r} ×{n}" for r, n in incident.reasons.most_common(4))
    verb = {"opened": "opened", "reopened": "back", "resolved": "resolved"}.get(change.kind, change.kind)
    lines = [f"{top}."] if top else []
    if change.signal and change.signal.message:
        lines.append(f"Latest: {change.signal.message}")
    lines.append(f"{incident.events} events from {len(incident.objects)} objects: {', '.join(incident.objects[:5])}")
    if incident.flapping:
        lines.append(f"Flapping: back {incident.reopened} times within the hour.")
    if preceding:
        lines.append("Changed before: " + "; ".join(change_line(r) for r in preceding[:3]))
    return Notification(
        title=f"Incident #{incident.ref} {verb}: {incident.root}",
        text="\n".join(lines),
        severity="info"
        if change.kind == "resolved"
        else ("critical" if incident.severity == "critical" else "warning"),
        cluster=incident.cluster,
        namespace=namespace,
        fields={"incident": f"#{incident.ref}", "root": incident.root, "status": incident.status},
        key=f"incident:{incident.ref}:{change.kind}:{incident.reopened}",
        thread_id=f"incident-{incident.ref}",
    )


def _values(incident: Incident) -> dict[str, Any]:
    return {
        "cluster": incident.cluster,
        "root": incident.root,
        "status": incident.status,
        "severity": incident.severity,
        "opened_at": incident.opened_at,
        "last_at": incident.last_at,
        "resolved_at": incident.resolved_at,
        "reasons": dict(incident.reasons),
        "objects": incident.objects,
        "events": incident.events,
        "reopened": incident.reopened,
        "flapping": incident.flapping,
    }
