"""Notifiers: the server log, a signed webhook, Slack and Feishu/Lark — behind one small interface, used by the
notifier agent and the bots.

Everything goes out through `deliver` (severity filter, masking, size caps, per-sink results). Slack and Feishu apps
deliver through the persistent `Outbox` (retries honouring Retry-After, de-duplication, per-channel rate limits,
routing rules); their incoming/custom-bot webhooks post directly. `from_settings` builds what `notify.*`,
`slack.*` and `feishu.*` configure.
"""

from __future__ import annotations

from functools import partial
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
from notifiers.outbox import Channel, Outbox, OutboxNotifier, RetryLater
from notifiers.routing import destinations
from notifiers.webhook import WebhookNotifier, sign, verify_signature

if TYPE_CHECKING:
    from settings import Settings
    from store.sqlite import Store

__all__ = [
    "SEVERITIES",
    "Channel",
    "DeliveryError",
    "DeliveryResult",
    "LogNotifier",
    "Notification",
    "Notifier",
    "Outbox",
    "OutboxNotifier",
    "RetryLater",
    "Severity",
    "WebhookNotifier",
    "chat_channels",
    "deliver",
    "destinations",
    "from_settings",
    "outbox_from_settings",
    "prepared",
    "sign",
    "verify_signature",
]


def from_settings(settings: Settings, store: Store | None = None, outbox: Outbox | None = None) -> list[Notifier]:
    """The sinks the settings ask for: the log, a signed webhook, Slack/Feishu webhooks, and — given the store —
    the chat outbox when a Slack or Feishu app is configured. A process that runs the outbox's worker passes its
    `outbox`, so that one outbox (one set of clients, one pacing per channel) serves both.

    Raises:
        InvalidInput: a webhook URL without its secret (deliveries are always signed), or a URL that is not
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
    if settings.slack.webhook_url:
        from notifiers.slack import SlackWebhookNotifier

        sinks.append(SlackWebhookNotifier(settings.slack.webhook_url, notify.timeout_seconds))
    if settings.feishu.webhook_url:
        from notifiers.feishu import FeishuWebhookNotifier

        sinks.append(
            FeishuWebhookNotifier(settings.feishu.webhook_url, settings.feishu.webhook_secret, notify.timeout_seconds)
        )
    if outbox is None and store is not None:
        outbox = outbox_from_settings(settings, store)
    if outbox is not None:
        sinks.append(OutboxNotifier(outbox, partial(destinations, settings=settings), notify.timeout_seconds))
    return sinks


def chat_channels(settings: Settings) -> list[Channel]:
    """The Slack and Feishu apps configured (a bot token; an app id and secret)."""
    channels: list[Channel] = []
    if settings.slack.bot_token:
        from notifiers.slack import SlackChannel

        channels.append(
            SlackChannel.from_token(settings.slack.bot_token, settings.slack.api_url, settings.notify.timeout_seconds)
        )
    if settings.feishu.app_id and settings.feishu.app_secret:
        from notifiers.feishu import FeishuChannel, client

        channels.append(
            FeishuChannel(
                client(
                    settings.feishu.app_id,
                    settings.feishu.app_secret,
                    settings.feishu.domain,
                    settings.notify.timeout_seconds,
                )
            )
        )
    return channels


def outbox_from_settings(settings: Settings, store: Store) -> Outbox | None:
    """The chat outbox over `store`, or None when no chat app is configured."""
    channels = chat_channels(settings)
    if not channels:
        return None
    notify = settings.notify
    return Outbox(
        store,
        channels,
        dedup_window_seconds=notify.dedup_window_seconds,
        per_channel_per_second=notify.per_channel_per_second,
        give_up_after_minutes=notify.give_up_after_minutes,
    )
