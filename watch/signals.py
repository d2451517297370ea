"""What the sources deliver, as `Signal`s: Kubernetes Events (warnings with a critical reason) and generic JSON
events from other systems."""

from __future__ import annotations

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
