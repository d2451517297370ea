"""Feishu/Lark: a `FeishuChannel` for the outbox (interactive cards through `lark-oapi`: create with an idempotency
uuid, so a repost after a crash is the same message; patch to update) and `FeishuWebhookNotifier` for custom-bot
webhooks (signed with the bot's secret).

Errors become the outbox's vocabulary: HTTP 429 or code 99991400 (frequency limit) → `RetryLater` after
`x-ogw-ratelimit-reset`; 5xx → `RetryLater()`; any other non-zero code → a `DeliveryError` with Feishu's code and
message. No message ever holds the app secret, the tenant token or the webhook URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import anyio
import httpx
import lark_oapi as lark
from lark_oapi.api.im.v1 import (
    CreateMessageRequest,
    CreateMessageRequestBody,
    PatchMessageRequest,
    PatchMessageRequestBody,
)
from pydantic import SecretStr

from notifiers.base import DeliveryError, Notification
from notifiers.cards import card
from notifiers.outbox import RetryLater

RATE_LIMITED = 99991400


def client(app_id: str, app_secret: SecretStr, domain: str, timeout_seconds: float = 10.0) -> lark.Client:
    """A lark-oapi client that logs warnings only (its debug logs would show request details)."""
    return (
        lark.Client.builder()
        .app_id(app_id)
        .app_secret(app_secret.get_secret_value())
        .domain(domain)
        .timeout(timeout_seconds)
        .log_level(lark.LogLevel.WARNING)
        .build()
    )


def problem(api: str, response: Any) -> DeliveryError | None:
    """None when the call succeeded, else what it means for delivery."""
    raw = getattr(response, "raw", None)
    status = getattr(raw, "status_code", None) or 0
    code = getattr(response, "code", None)
    if status == 429 or code == RATE_LIMITED:
        headers = {k.lower(): v for k, v in (getattr(raw, "headers", None) or {}).items()}
        try:
            after: float | None = max(float(headers.get("x-ogw-ratelimit-reset", "")), 0.0)
        except ValueError:
            after = None
        return RetryLater(f"Feishu {api}: rate limited", after)
    if status >= 500:
        return RetryLater(f"Feishu {api}: HTTP {status}")
    if code != 0:
        return DeliveryError(f"Feishu {api}: code {code} {str(getattr(response, 'msg', ''))[:200]}")
    return None


class FeishuChannel:
    """Posts and patches interactive cards in Feishu chats through the Open API."""

    name = "feishu"

    def __init__(self, lark_client: lark.Client) -> None:
        self.client = lark_client

    async def post(self, n: Notification, to: str, count: int) -> str:
        body = (
            CreateMessageRequestBody.builder()
            .receive_id(to)
            .msg_type("interactive")
            .content(json.dumps(card(n, count), ensure_ascii=False))
            .uuid(idempotency_key(n, to))
            .build()
        )
        request = CreateMessageRequest.builder().receive_id_type("chat_id").request_body(body).build()
        response = await self.client.im.v1.message.acreate(request)
        failed = problem("im.message.create", response)
        if failed:
            raise failed
        return str(response.data.message_id)

    async def update(self, ref: str, n: Notification, to: str, count: int) -> None:
        body = PatchMessageRequestBody.builder().content(json.dumps(card(n, count), ensure_ascii=False)).build()
        request = PatchMessageRequest.builder().message_id(ref).request_body(body).build()
        failed = problem("im.message.patch", await self.client.im.v1.message.apatch(request))
        if failed:
            raise failed

    async def find(self, n: Notification, to: str) -> str | None:
        return None  # posting again with the same uuid returns the message already made: no lookup needed


def idempotency_key(n: Notification, to: str) -> str:
    """Feishu's `uuid` (≤ 50 characters): the same notification to the same chat is one message."""
    return hashlib.sha256(f"{n.id}/{to}".encode()).hexdigest()[:40]


def webhook_sign(secret: str, timestamp: int) -> str:
    """A custom bot's signature: HMAC-SHA256 keyed with "<timestamp>\\n<secret>" over nothing, base64."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


class FeishuWebhookNotifier:
    """A custom bot in one group: cards, post only (no buttons: approve with the CLI or the MCP tool)."""

    name = "feishu-webhook"

    def __init__(
        self, url: SecretStr, secret: SecretStr | None, timeout_seconds: float = 10.0, attempts: int = 3
    ) -> None:
        self._url = url
        self._secret = secret
        self._timeout = timeout_seconds
        self._attempts = attempts

    async def send(self, n: Notification) -> None:
        status = n.proposal.by_command() if n.proposal else ""
        payload: dict[str, Any] = {"msg_type": "interactive", "card": card(n, 1, status)}
        outcome = ""
        async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as http:
            for attempt in range(self._attempts):
                if self._secret is not None:
                    stamp = int(time.time())
                    payload |= {"timestamp": str(stamp), "sign": webhook_sign(self._secret.get_secret_value(), stamp)}
                try:
                    answer = await http.post(self._url.get_secret_value(), json=payload)
                except httpx.TransportError as exc:
                    outcome = type(exc).__name__
                else:
                    code = _code(answer)
                    if answer.status_code == 200 and code == 0:
                        return
                    outcome = f"HTTP {answer.status_code} code {code}"
                    if answer.status_code != 429 and answer.status_code < 500 and code != RATE_LIMITED:
                        raise DeliveryError(f"Feishu webhook answered {outcome}.")
                if attempt + 1 < self._attempts:
                    await anyio.sleep(2.0**attempt)
        raise DeliveryError(f"Feishu webhook: {outcome} after {self._attempts} attempts.")


def _code(answer: httpx.Response) -> int | None:
    try:
        body = answer.json()
    except ValueError:
        return None
    code = body.get("code", body.get("StatusCode")) if isinstance(body, dict) else None
    return int(code) if isinstance(code, int) else None
