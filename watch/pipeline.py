"""Signals in, incidents out: group them (`engines.incidents`), keep them in the store with a timeline, tell the
routed channel when one opens, reopens or resolves, and start the team's investigation — the autopilot: diagnose,
RCA, plan — whose plan then waits for a person's approval in chat like any other. An incident resolves when its
signals go quiet, its alerts resolve, or the fix the team planned for it is verified."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from agents.api import Reply, Team
from engines.incidents import Change, Grouper, Incident, Signal
from errors import CloudPilotError
from notifiers import Notification, Notifier, deliver
from runtime import Principal, Runtime
from store.audit import AuditLog
from store.incidents import Incidents

logger = logging.getLogger(__name__)

WATCHER = Principal("cloudpilot watch", frozenset({"read", "write"}), transport="watch")


class Pipeline:
    def __init__(
        self,
        runtime: Runtime,
        *,
        team: Team | None = None,
        sinks: Sequence[Notifier] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        w = runtime.settings.watch
        self.runtime, self.settings = runtime, w
        self.grouper = Grouper(window=w.window_seconds, quiet=w.quiet_seconds, flap_limit=w.flap_limit)
        self.incidents = Incidents(runtime.store)
        self.audit = AuditLog(runtime.store)
        self.team, self.sinks, self.clock = team, sinks, clock
        self.plans: dict[int, str] = {}  # incident id → the plan the team made for it
        self.tasks: set[asyncio.Task[Any]] = set()
        self.taken = 0

    async def take(self, s: Signal) -> Change | None:
        """One signal; returns what it changed (None for a repeat)."""
        self.taken += 1
        if not s.at:
            s = dataclasses.replace(s, at=self.clock())
        change = self.grouper.add(s)
        if change is not None:
            await self._record(change)
        return change

    async def tick(self) -> list[Change]:
        """Resolve what went quiet or was fixed; call every few seconds."""
        changes = self.grouper.expire(self.clock())
        for incident_id, plan_id in list(self.plans.items()):
            found = self.audit.plan(plan_id)
            if found and found[0] == "verified":
                incident = next((i for i in self.grouper.open.values() if i.ref == incident_id), None)
                if incident is not None:
                    self.incidents.note(incident_id, "fixed", f"plan {plan_id} applied and verified")
                    changes.append(self.grouper.resolve(incident, self.clock()))
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
        tell = change.kind in ("opened", "resolved") or (change.kind == "reopened" and not incident.flapping)
        if tell and self.sinks:
            await deliver(self.sinks, notification(incident, change))
            self.incidents.note(incident.ref, "notified", f"{change.kind} sent")
        if change.kind == "opened" and self.team is not None and self.settings.investigate:
            task = asyncio.create_task(self._investigate(incident))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _investigate(self, incident: Incident) -> None:
        kind, _, where = incident.root.partition(" ")
        namespace, _, name = where.rpartition("/")
        if not namespace:  # cluster-scoped (a Node): diagnosis is per namespace; say so, do nothing
            self.incidents.note(incident.ref, "investigation", f"{incident.root} is cluster-wide: not investigated")
            return
        assert self.team is not None
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
        self._note_reply(incident, reply)

    def _note_reply(self, incident: Incident, reply: Reply) -> None:
        self.incidents.save(incident.ref, {**_values(incident), "thread_id": reply.thread_id})
        root = reply.root_cause or {}
        if root:
            self.incidents.note(
                incident.ref, "finding", f"{root.get('code')} {root.get('object')}: {root.get('summary')}"
            )
        if reply.approval is not None:
            self.plans[incident.ref] = reply.approval.plan_id
            self.incidents.note(
                incident.ref, "plan", f"plan {reply.approval.plan_id} waits for approval {reply.approval.id}"
            )
        elif reply.plan:
            self.plans[incident.ref] = reply.plan["plan_id"]
            self.incidents.note(incident.ref, "plan", f"plan {reply.plan['plan_id']}: {reply.status}")
        else:
            self.incidents.note(incident.ref, "investigation", reply.answer[:500])


def notification(incident: Incident, change: Change) -> Notification:
    """What the channel is told when an incident opens, comes back or resolves."""
    namespace = incident.root.partition(" ")[2].rpartition("/")[0] or None
    top = ", ".join(f"{r} ×{n}" for r, n in incident.reasons.most_common(4))
    verb = {"opened": "opened", "reopened": "back", "resolved": "resolved"}.get(change.kind, change.kind)
    lines = [f"{top}."] if top else []
    if change.signal and change.signal.message:
        lines.append(f"Latest: {change.signal.message}")
    lines.append(f"{incident.events} events from {len(incident.objects)} objects: {', '.join(incident.objects[:5])}")
    if incident.flapping:
        lines.append(f"Flapping: back {incident.reopened} times within the hour.")
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
