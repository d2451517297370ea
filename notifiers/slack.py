"""Slack: a `SlackChannel` for the outbox (Web API `chat.postMessage` / `chat.update` with Block Kit, found again
after a crash by its message metadata) and `SlackWebhookNotifier` for incoming webhooks (post only).

Errors become the outbox's vocabulary: 429 → `RetryLater(Retry-After)`, 5xx → `RetryLater()`, anything else
(`channel_not_found`, `not_in_channel`, `invalid_auth`) → a `DeliveryError` naming Slack's error code. No message
ever holds the token or the webhook URL.
"""

from __future__ import annotations

from typing import Any

import anyio
from pydantic import SecretStr
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from notifiers.base import DeliveryError, Notification
from notifiers.blocks import message
from notifiers.outbox import RetryLater

EVENT_TYPE = "cloudpilot_notification"  # the metadata type a posted notification carries (its id inside)


def retry_after(headers: Any) -> float | None:
    """Seconds from a `Retry-After` header (Slack sends whole seconds), or None."""
    for name in ("Retry-After", "retry-after"):
        value = headers.get(name) if headers else None
        if value:
            try:
                return max(float(value[0] if isinstance(value, list) else value), 0.0)
            except ValueError:
                return None
    return None


def problem(method: str, exc: SlackApiError) -> DeliveryError:
    """What a failed Web API call means for delivery: retry later (429, 5xx) or give up (the rest)."""
    status = exc.response.status_code
    code = exc.response.get("error", "") if isinstance(exc.response.data, dict) else ""
    if status == 429 or code == "ratelimited":
        return RetryLater(f"Slack {method}: rate limited", retry_after(exc.response.headers))
    if status >= 500:
        return RetryLater(f"Slack {method}: HTTP {status}")
    return DeliveryError(f"Slack {method}: {code or f'HTTP {status}'}")


class SlackChannel:
    """Posts and edits notifications in Slack channels through the Web API."""

    name = "slack"

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    @classmethod
    def from_token(cls, token: SecretStr, api_url: str, timeout_seconds: float = 10.0) -> SlackChannel:
        return cls(AsyncWebClient(token=token.get_secret_value(), base_url=api_url, timeout=int(timeout_seconds)))

    async def post(self, n: Notification, to: str, count: int) -> str:
        text, blocks = message(n, count)
        metadata = {"event_type": EVENT_TYPE, "event_payload": {"id": n.id}}
        try:
            answer = await self.client.chat_postMessage(
                channel=to, text=text, blocks=blocks, metadata=metadata, unfurl_links=False, unfurl_media=False
            )
        except SlackApiError as exc:
            raise problem("chat.postMessage", exc) from None
        return str(answer["ts"])

    async def update(self, ref: str, n: Notification, to: str, count: int) -> None:
        text, blocks = message(n, count)
        try:
            await self.client.chat_update(channel=to, ts=ref, text=text, blocks=blocks)
        except SlackApiError as exc:
            raise problem("chat.update", exc) from None

    async def find(self, n: Notification, to: str) -> str | None:
        """The ts of a message this notification already became (its metadata holds the id), if any."""
        try:
            answer = await self.client.conversations_history(
                channel=to, oldest=f"{n.created_at.timestamp() - 1:.6f}", include_all_metadata=True, limit=200
            )
        except SlackApiError as exc:
            raise problem("conversations.history", exc) from None
        for found in answer.get("messages") or []:
            meta = found.get("metadata") or {}
            if meta.get("event_type") == EVENT_TYPE and (meta.get("event_payload") or {}).get("id") == n.id:
                return str(found["ts"])
        return None


class SlackWebhookNotifier:
    """An incoming webhook: one channel, post only (no edits, no buttons: approve with the CLI or the MCP tool)."""

    name = "slack-webhook"

    def __init__(self, url: SecretStr, timeout_seconds: float = 10.0, attempts: int = 3) -> None:
        self._client = AsyncWebhookClient(url.get_secret_value(), timeout=int(timeout_seconds))
        self._attempts = attempts

    async def send(self, n: Notification) -> None:
        status = n.proposal.by_command() if n.proposal else ""
        text, blocks = message(n, 1, status)
        for attempt in range(self._attempts):
            answer = await self._client.send(text=text, blocks=blocks)
            if answer.status_code == 200:
                return
            if answer.status_code != 429 and answer.status_code < 500:
                raise DeliveryError(f"Slack webhook answered HTTP {answer.status_code}: {answer.body[:100]}")
            wait = retry_after(answer.headers) or 2.0**attempt
            if attempt + 1 < self._attempts:
                await anyio.sleep(min(wait, 30.0))
        raise DeliveryError(f"Slack webhook: HTTP {answer.status_code} after {self._attempts} attempts.")
