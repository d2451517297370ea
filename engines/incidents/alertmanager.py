"""Alertmanager's webhook payload (version 4), validated, as signals: one per alert, firing or resolved, rooted at
the workload, pod, node or service its labels name."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engines.incidents.model import Signal, explain
from engines.incidents.roots import key, root_of

MAX_ALERTS = 1000  # Alertmanager sends at most max_alerts (default: all); a bigger batch is refused, not truncated
LABEL_CHARS = 256


class AlertmanagerError(ValueError):
    """The payload is not an Alertmanager webhook: says which field and what to do."""


class _Alert(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime | None = None
    endsAt: datetime | None = None
    fingerprint: str = ""


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore")

    version: str = "4"
    status: Literal["firing", "resolved"] = "firing"
    receiver: str = ""
    alerts: list[_Alert] = Field(max_length=MAX_ALERTS)


def signals_from_alertmanager(payload: Any, cluster: str) -> list[Signal]:
    """The signals of one webhook call.

    Raises:
        AlertmanagerError: not JSON-shaped like Alertmanager's webhook (names the field), too many alerts, or labels
            too long.
    """
    try:
        parsed = _Payload.model_validate(payload)
    except ValidationError as e:
        raise AlertmanagerError(
            f"Not an Alertmanager webhook payload ({explain(e)}). Point an Alertmanager receiver's webhook_configs url "
            "here; its body has version, status and alerts[] with status, labels, annotations, startsAt."
        ) from None
    found = []
    for alert in parsed.alerts:
        labels = alert.labels
        if any(len(k) > LABEL_CHARS or len(v) > LABEL_CHARS for k, v in labels.items()):
            raise AlertmanagerError(f"An alert's labels are longer than {LABEL_CHARS} characters; shorten them.")
        name = labels.get("alertname", "alert")
        at = alert.endsAt if alert.status == "resolved" and alert.endsAt else alert.startsAt
        found.append(
            Signal(
                source="alertmanager",
                cluster=labels.get("cluster", cluster),
                reason=name,
                object=_object(labels),
                root=_root(labels),
                message=(alert.annotations.get("summary") or alert.annotations.get("description") or "")[:1000],
                at=at.timestamp() if at else 0.0,
                resolved=alert.status == "resolved",
                severity="critical" if labels.get("severity") in ("critical", "page") else "warning",
                key=alert.fingerprint or _fallback_key(labels),
            )
        )
    return found


def _object(labels: dict[str, str]) -> str:
    ns = labels.get("namespace")
    for label, kind in (("pod", "Pod"), ("deployment", "Deployment"), ("statefulset", "StatefulSet"),
                        ("daemonset", "DaemonSet"), ("service", "Service"), ("node", "Node")):  # fmt: skip
        if labels.get(label):
            return key(kind, ns if kind != "Node" else None, labels[label])
    return key("Alert", ns, labels.get("alertname", "alert"))


def _root(labels: dict[str, str]) -> str:
    ns = labels.get("namespace")
    for label, kind in (("deployment", "Deployment"), ("statefulset", "StatefulSet"), ("daemonset", "DaemonSet")):
        if labels.get(label):
            return key(kind, ns, labels[label])
    if labels.get("pod"):
        return root_of("Pod", ns, labels["pod"])
    if labels.get("node") or (labels.get("instance") and not ns):
        return key("Node", None, labels.get("node") or labels["instance"])
    if labels.get("service"):
        return key("Service", ns, labels["service"])
    return key("Alert", ns, labels.get("alertname", "alert"))


def _fallback_key(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))[:2000]
