"""The notifier interface: a `Notification`, the `Notifier` protocol every sink implements, and `deliver`, the one
road a notification takes out of the server (severity filter, masking, size cap, concurrent sends, per-sink
results, failures logged without secrets).

A sink only formats and sends. It may assume what it is given is already masked and bounded: callers go through
`deliver`, never straight to `send`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, get_args, runtime_checkable

import anyio

from errors import CloudPilotError
from guard.mask import mask_text
from ops.metrics import METRICS

logger = logging.getLogger(__name__)

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[Severity, ...] = get_args(Severity)
RANK: Mapping[str, int] = {s: i for i, s in enumerate(SEVERITIES)}
Grade = Literal["info", "warning", "critical", "human-help"]  # what people see: a severity, or "someone must act"

MAX_TEXT_CHARS = 16_000  # Slack's section text stops at 3,000 and a message at 40,000; a webhook needs no novel
MAX_TITLE_CHARS = 200
MAX_FIELD_CHARS = 500
REASON_CHARS = 200  # the most of a failure's message a result or a log line repeats


@dataclass(frozen=True)
class Notification:
    """What happened, for people: one incident message, rendered by each sink in its own way.

    Attributes:
        title: One line, e.g. "Fix rolled_back".
        text: The body (plain text, may span lines): what was found and done.
        severity: info, warning or critical; sinks below `notify.min_severity` are not sent.
        human_help: Someone has to act (the team is stuck, was stopped, or a fix failed); chat sinks mention people.
        thread_id: The agent thread this belongs to, so a chat sink can reply in the same conversation.
        fields: Short labelled facts shown as a table: cluster, namespace, root cause, plan, outcome, asked by.
        links: Label → URL (a dashboard, the runbook, the plan); shown as buttons or links.
        id: Unique per notification (not per delivery attempt): receivers de-duplicate retried deliveries by it.
        created_at: When it was made (UTC).
        cluster: The cluster it is about (routing rules match it).
        namespace: The namespace it is about (routing rules and approver lists match it).
        proposal: A fix waiting for a decision: chat sinks show its diff with Approve / Reject buttons.
        key: Alerts with the same key within `notify.dedup_window_seconds` are one message, updated with a count.
            Default: the title, severity, cluster, namespace and fields (so a repeat of the same alert matches).
    """

    title: str
    text: str
    severity: Severity = "info"
    human_help: bool = False
    thread_id: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    cluster: str | None = None
    namespace: str | None = None
    proposal: Proposal | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        if self.severity not in RANK:
            raise ValueError(f"severity must be one of {list(SEVERITIES)}, not {self.severity!r}")

    @property
    def grade(self) -> Grade:
        """The severity people see: "human-help" when someone has to act, else the severity."""
        return "human-help" if self.human_help else self.severity

    @property
    def footer(self) -> str:
        """The last line of a chat message: CloudPilot · grade · cluster · namespace (those known)."""
        parts = ["CloudPilot", self.grade]
        parts += [f"cluster {self.cluster}"] if self.cluster else []
        parts += [f"namespace {self.namespace}"] if self.namespace else []
        return " · ".join(parts)

    @property
    def dedup_key(self) -> str:
        """Same alert, same key: the explicit `key`, else a digest of what makes the alert what it is."""
        if self.key:
            return self.key
        basis = json.dumps(
            [
                self.title,
                self.severity,
                self.cluster,
                self.namespace,
                sorted(self.fields.items()),
                self.proposal.approval_id if self.proposal else None,
            ],
            ensure_ascii=False,
        )
        return hashlib.sha256(basis.encode()).hexdigest()[:32]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (the webhook's body; a chat sink's raw material)."""
        return {
            "id": self.id,
            "created_at": self.created_at.isoformat(),
            "severity": self.severity,
            "human_help": self.human_help,
            "title": self.title,
            "text": self.text,
            "fields": dict(self.fields),
            "links": dict(self.links),
            "thread_id": self.thread_id,
            "cluster": self.cluster,
            "namespace": self.namespace,
            "proposal": dataclasses.asdict(self.proposal) if self.proposal else None,
            "key": self.key,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Notification:
        """The inverse of `to_dict` (the outbox stores notifications this way)."""
        values = dict(data)
        values["created_at"] = datetime.fromisoformat(values["created_at"])
        if values.get("proposal"):
            values["proposal"] = Proposal(**values["proposal"])
        return cls(**values)


@dataclass(frozen=True)
class Proposal:
    """A fix waiting for a person: chat sinks show the diff with Approve / Reject buttons carrying `approval_id`.

    Attributes:
        approval_id: The pending approval the buttons decide (agents.approvals).
        plan_id: The plan it applies.
        risk: low / medium / high, as the planner rated it.
        title: One line: each object and its actions.
        diff: The dry-run diff (already masked by the planner; masked again on the way out).
        expires_at: When the approval lapses (ISO 8601).
        destructive: The plan deletes or replaces something (the two-person rule may apply).
    """

    approval_id: str
    plan_id: str
    risk: str
    title: str
    diff: str
    expires_at: str = ""
    destructive: bool = False

    def by_command(self) -> str:
        """How to decide it where there are no buttons (incoming webhooks, custom bots)."""
        return f"Approve or reject with `cloudpilot approvals approve|reject {self.approval_id}`."

    def terms(self) -> str:
        """The small print under the diff: when it expires, and whether two approvers may be needed."""
        parts = [f"Expires {self.expires_at}"] if self.expires_at else []
        if self.destructive:
            parts.append("destructive: two approvals may be needed")
        return " · ".join(parts)


@runtime_checkable
class Notifier(Protocol):
    """A sink: the log, a signed webhook, and next Slack and Feishu.

    `send` raises on failure (a `DeliveryError` with a message safe to show: no secret, no URL credentials);
    `deliver` turns that into a result. It is given a notification already masked and bounded.
    """

    name: str

    async def send(self, n: Notification) -> None: ...


class DeliveryError(CloudPilotError):
    """A sink could not deliver. The message names the sink and the cause and never holds a secret."""


@dataclass(frozen=True)
class DeliveryResult:
    """What happened at one sink: sent, failed (with a short reason) or skipped (below the minimum severity)."""

    sink: str
    status: Literal["sent", "failed", "skipped"]
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.sink}: {self.status}" + (f" ({self.reason})" if self.reason else "")


def prepared(n: Notification) -> Notification:
    """The notification as it may leave the server: every text masked, then cut to the sinks' sizes."""
    return dataclasses.replace(
        n,
        title=_cut(mask_text(n.title).replace("\n", " "), MAX_TITLE_CHARS),
        text=_cut(mask_text(n.text), MAX_TEXT_CHARS),
        fields={_cut(mask_text(k), 100): _cut(mask_text(v), MAX_FIELD_CHARS) for k, v in n.fields.items()},
        links={_cut(mask_text(k), 100): mask_text(v) for k, v in n.links.items()},
        thread_id=mask_text(n.thread_id) if n.thread_id else n.thread_id,
        proposal=dataclasses.replace(
            n.proposal, title=_cut(mask_text(n.proposal.title), MAX_FIELD_CHARS), diff=mask_text(n.proposal.diff)
        )
        if n.proposal
        else None,
    )


async def deliver(
    notifiers: Sequence[Notifier],
    n: Notification,
    min_severity: Severity = "info",
    *,
    timeout_seconds: float = 120.0,
) -> list[DeliveryResult]:
    """Send `n` to every sink at once; one failing (or hanging past `timeout_seconds`) never stops the others.

    Returns one result per sink, in the order given. Never raises for a sink's failure: each is logged as a
    warning with its sink name and a short, masked reason (no traceback, which could hold a URL or a header).
    """
    if RANK[n.severity] < RANK[min_severity]:
        return [DeliveryResult(s.name, "skipped", f"{n.severity} is below {min_severity}") for s in notifiers]
    ready = prepared(n)
    results: list[DeliveryResult] = [DeliveryResult(s.name, "failed", "not attempted") for s in notifiers]

    async def one(i: int, sink: Notifier) -> None:
        try:
            with anyio.fail_after(timeout_seconds):
                await sink.send(ready)
        except TimeoutError:
            results[i] = _failed(sink, f"no answer within {timeout_seconds:g}s")
        except Exception as exc:  # a boundary: one sink's failure becomes its result
            text = exc.message if isinstance(exc, CloudPilotError) else f"{type(exc).__name__}: {exc}"
            results[i] = _failed(sink, text)
        else:
            results[i] = DeliveryResult(sink.name, "sent")

    async with anyio.create_task_group() as tg:
        for i, sink in enumerate(notifiers):
            tg.start_soon(one, i, sink)
    for result in results:
        METRICS.notifications.labels(channel=result.sink, outcome=result.status).inc()
    return results


def _failed(sink: Notifier, reason: str) -> DeliveryResult:
    short = _cut(mask_text(reason).replace("\n", " "), REASON_CHARS)
    logger.warning("notification not delivered by %s: %s", sink.name, short)
    return DeliveryResult(sink.name, "failed", short)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
