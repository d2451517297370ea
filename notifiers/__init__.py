"""Notifiers (Slack, Feishu/Lark) behind one small interface — the notifier agent and the bots use them.

Sinks today: the server log and a signed webhook; Slack and Feishu plug in as further `Notifier`s. Everything goes
out through `deliver` (severity filter, masking, size caps, per-sink results); `from_settings` builds the sinks
that `notify.*` configures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from errors import InvalidInput
from notifiers.base import (
    SEVERITIES,
    DeliveryError,
    DeliveryResult,
    Notification,
    Notifier,
    Severity,
    deliver,
    prepared,
)
from notifiers.log import LogNotifier
from notifiers.webhook import WebhookNotifier, sign, verify_signature

if TYPE_CHECKING:
    from settings import Settings

__all__ = [
    "SEVERITIES",
    "DeliveryError",
    "DeliveryResult",
    "LogNotifier",
    "Notification",
    "Notifier",
    "Severity",
    "WebhookNotifier",
    "deliver",
    "from_settings",
    "prepared",
    "sign",
    "verify_signature",
]


def from_settings(settings: Settings) -> list[Notifier]:
    """The sinks `settings.notify` asks for: the log when `log` is on, a webhook when `webhook_url` is set.

    Raises:
        InvalidInput: a webhook URL without `webhook_secret` (deliveries are always signed), or a URL that is not
            http(s).
    """
    notify = settings.notify
    sinks: list[Notifier] = []
    if notify.log:
        sinks.append(LogNotifier())
    if notify.webhook_url:
        if notify.webhook_secret is None or not notify.webhook_secret.get_secret_value():
            raise InvalidInput(
                "notify.webhook_url is set but notify.webhook_secret is not: webhook deliveries are always signed.",
                hint="Set CLOUDPILOT_NOTIFY__WEBHOOK_SECRET (share it with the receiver, which checks "
                "X-CloudPilot-Signature with notifiers.verify_signature), or unset the URL.",
            )
        sinks.append(WebhookNotifier(notify.webhook_url, notify.webhook_secret, timeout_seconds=notify.timeout_seconds))
    return sinks
