"""What the sources deliver, as `Signal`s: Kubernetes Events (warnings with a critical reason) and generic JSON
events from other systems."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engines.incidents import Signal, is_critical, root_of
from engines.incidents.model import explain
from engines.incidents.roots import key
from errors import InvalidInput
from settings import WatchSettings

MESSAGE_CHARS = 1000


def from_kube_event(event: dict[str, Any], cluster: str, settings: WatchSettings) -> Signal | None:
    """The signal of a Kubernetes Event, or None when it is not critical (normal events, other reasons)."""
    reason = str(event.get("reason") or "")
    if event.get("type") != "Warning" and reason not in settings.reasons_extra:
        return None
    if not is_critical(reason, settings.reasons_extra, settings.reasons_ignored):
        return None
    meta = event.get("metadata") or {}
    obj = event.get("involvedObject") or event.get("regarding") or {}
    kind, ns, name = str(obj.get("kind", "")), obj.get("namespace") or None, str(obj.get("name", ""))
    when = (
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or meta.get("creationTimestamp")
    )
    return Signal(
        source="kube",
        cluster=cluster,
        reason=reason,
        object=key(kind, ns, name),
        root=root_of(kind, ns, name),
        message=str(event.get("message") or event.get("note") or "")[:MESSAGE_CHARS],
        at=_seconds(when),
        count=max(int(event.get("count") or (event.get("series") or {}).get("count") or 1), 1),
        severity="critical" if reason in ("OOMKilling", "NodeNotReady", "SystemOOM", "Evicted") else "warning",
        key=str(meta.get("uid", "")),
    )


class GenericEvent(BaseModel):
    """What another system may POST to /events."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=128)
    kind: str = Field(min_length=1, max_length=64, description="Kind of the object: Deployment, Node, Service, …")
    name: str = Field(min_length=1, max_length=253)
    namespace: str | None = Field(None, max_length=63)
    cluster: str | None = Field(None, max_length=64)
    message: str = Field("", max_length=MESSAGE_CHARS)
    severity: str = Field("warning", pattern="^(warning|critical)$")
    resolved: bool = False
    key: str = Field("", max_length=256, description="The sender's id of this condition (repeats share it).")
    at: datetime | None = None


def from_generic(payload: Any, cluster: str) -> Signal:
    try:
        e = GenericEvent.model_validate(payload)
    except ValidationError as err:
        raise InvalidInput(
            f"Not a CloudPilot event ({explain(err)}).",
            hint='POST JSON like {"reason": "HighErrorRate", "kind": "Deployment", "namespace": "shop", '
            '"name": "checkout", "message": "...", "severity": "critical"}.',
        ) from None
    return Signal(
        source="http",
        cluster=e.cluster or cluster,
        reason=e.reason,
        object=key(e.kind, e.namespace, e.name),
        root=root_of(e.kind, e.namespace, e.name),
        message=e.message,
        at=e.at.timestamp() if e.at else 0.0,
        resolved=e.resolved,
        severity=e.severity,
        key=e.key,
    )


def _seconds(value: Any) -> float:
    if not value:
        return 0.0
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


class States:
    """Signals from the state of watched objects — a Pod waiting in ImagePullBackOff or killed for memory, a Node not
    Ready, a rollout past its progress deadline. A condition is signalled when it appears and resolved when it clears
    (or its object goes), so the incident it belongs to stays open exactly as long as something is still broken.
    Repeated updates of an object in the same state say nothing new."""

    def __init__(self, settings: WatchSettings) -> None:
        self.settings = settings
        self.live: dict[str, tuple[str, str, dict[str, Signal]]] = {}  # uid → (cluster, kind, condition → signal)

    def take(self, cluster: str, kind: str, event: str, obj: dict[str, Any], at: float) -> list[Signal]:
        meta = obj.get("metadata") or {}
        uid = str(meta.get("uid", ""))
        if not uid:
            return []
        now = {} if event == "DELETED" else self._conditions(cluster, kind, obj, at)
        before = self.live.pop(uid, (cluster, kind, {}))[2]
        if now:
            self.live[uid] = (cluster, kind, now)
        fresh = [s for c, s in now.items() if c not in before]
        cleared = [dataclasses.replace(s, resolved=True, at=at) for c, s in before.items() if c not in now]
        return fresh + cleared

    def _conditions(self, cluster: str, kind: str, obj: dict[str, Any], at: float) -> dict[str, Signal]:
        meta, status = obj.get("metadata") or {}, obj.get("status") or {}
        ns, name = meta.get("namespace") or None, str(meta.get("name", ""))
        found: dict[str, str] = {}  # reason → message
        if kind == "Pod":
            for cs in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
                if not isinstance(cs, dict):
                    continue
                waiting = (cs.get("state") or {}).get("waiting") or {}
                if waiting.get("reason"):
                    found[str(waiting["reason"])] = f"{cs.get('name')}: {waiting.get('message') or waiting['reason']}"
                last = (cs.get("lastState") or {}).get("terminated") or {}
                if last.get("reason") == "OOMKilled" and cs.get("restartCount", 0):
                    found["OOMKilled"] = f"{cs.get('name')} was killed for memory ({cs.get('restartCount')} restarts)"
        elif kind == "Node":
            ready = next(
                (c for c in status.get("conditions") or [] if isinstance(c, dict) and c.get("type") == "Ready"), {}
            )
            if ready and ready.get("status") != "True":
                found["NodeNotReady"] = str(ready.get("message") or "the node is not Ready")
        else:  # workloads: a rollout that stopped progressing
            for c in status.get("conditions") or []:
                if isinstance(c, dict) and c.get("reason") == "ProgressDeadlineExceeded" and c.get("status") == "False":
                    found["ProgressDeadlineExceeded"] = str(c.get("message") or "the rollout stopped progressing")
        uid, owners = str(meta.get("uid", "")), meta.get("ownerReferences") or []
        root = root_of(kind, ns, name, owners if isinstance(owners, list) else [])
        return {
            reason: Signal(
                source="state",
                cluster=cluster,
                reason=reason,
                object=key(kind, ns, name),
                root=root,
                message=message[:MESSAGE_CHARS],
                at=at,
                severity="critical" if reason in ("OOMKilled", "NodeNotReady") else "warning",
                key=f"{uid}:{reason}",
            )
            for reason, message in found.items()
            if is_critical(reason, self.settings.reasons_extra, self.settings.reasons_ignored)
        }
