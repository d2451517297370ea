"""The webhook sink: each notification POSTed as JSON, signed, to one http(s) URL; and `verify_signature` for
receivers.

Signing (Stripe's and Slack's scheme): the sender puts the Unix time in `X-CloudPilot-Timestamp` and
`sha256=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>` in `X-CloudPilot-Signature`. A receiver recomputes it
over the raw bytes it received, compares in constant time, and rejects old timestamps, so a captured request cannot
be replayed later. `X-CloudPilot-Delivery` (and the body's `id`) stays the same across retries: de-duplicate by it.

Delivery: no redirects followed (the signed body goes only where configured); connection errors, timeouts, 429 and
5xx are retried (2 retries, backoff 0.5 s then 1 s); other answers are final. Error messages name the receiver as
scheme://host:port only: never the path, query or user info, which may carry credentials, and never the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time

import anyio
import httpx
from pydantic import SecretStr

from errors import InvalidInput
from notifiers.base import DeliveryError, Notification

logger = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-CloudPilot-Timestamp"
SIGNATURE_HEADER = "X-CloudPilot-Signature"
DELIVERY_HEADER = "X-CloudPilot-Delivery"


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """The `X-CloudPilot-Signature` value of `body` sent at `timestamp`."""
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: str | bytes,
    timestamp: str,
    body: bytes | str,
    signature: str,
    max_age_seconds: float = 300,
    *,
    now: float | None = None,
) -> bool:
    """Whether a received webhook is authentic and fresh: for receivers.

    Args:
        secret: The shared `notify.webhook_secret`.
        timestamp: The `X-CloudPilot-Timestamp` header.
        body: The raw request body, exactly as received (not re-serialised JSON).
        signature: The `X-CloudPilot-Signature` header.
        max_age_seconds: Reject timestamps further than this from now (either way), against replays.
        now: The current Unix time (default: the clock).

    Returns:
        True only when the signature matches (compared in constant time) and the timestamp is fresh.
    """
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - sent) > max_age_seconds:
        return False
    raw = body.encode() if isinstance(body, str) else body
    return hmac.compare_digest(sign(secret, timestamp, raw).encode(), signature.encode())


class WebhookNotifier:
    """POSTs each notification as signed JSON (see the module doc)."""

    def __init__(
        self,
        url: str,
        secret: str | SecretStr,
        *,
        timeout_seconds: float = 10.0,
        retries: int = 2,
        backoff_seconds: float = 0.5,
        name: str = "webhook",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError):
            raise InvalidInput("notify.webhook_url is not a valid URL.") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise InvalidInput(
                f"notify.webhook_url must be an http:// or https:// URL with a host, not a {parsed.scheme or 'bare'!r}"
                " URL."
            )
        key = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if not key:
            raise InvalidInput("A webhook needs notify.webhook_secret: every delivery is signed.")
        self.name = name
        self.target = f"{parsed.scheme}://{parsed.host}" + (f":{parsed.port}" if parsed.port else "")
        self._url = parsed
        self._key = key.encode()
        self._timeout = timeout_seconds
        self._retries = retries
        self._backoff = backoff_seconds
        self._transport = transport

    def __repr__(self) -> str:
        return f"WebhookNotifier({self.name!r}, {self.target!r})"

    async def send(self, n: Notification) -> None:
        body = json.dumps(n.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()
        attempts = self._retries + 1
        problem = ""
        async with httpx.AsyncClient(
            timeout=self._timeout, follow_redirects=False, transport=self._transport
        ) as client:
            for attempt in range(attempts):
                if attempt:
                    await anyio.sleep(self._backoff * 2 ** (attempt - 1))
                timestamp = str(int(time.time()))
                headers = {
                    "Content-Type": "application/json",
                    "User-Agent": "cloudpilot-webhook",
                    TIMESTAMP_HEADER: timestamp,
                    SIGNATURE_HEADER: sign(self._key, timestamp, body),
                    DELIVERY_HEADER: n.id,
                }
                try:
                    async with client.stream("POST", self._url, content=body, headers=headers) as response:
                        status, phrase = response.status_code, response.reason_phrase
                except httpx.TransportError as exc:  # connect/read errors and timeouts: worth another try
                    problem = self._transport_problem(exc)
                    logger.info("webhook %s attempt %d/%d: %s", self.target, attempt + 1, attempts, problem)
                    continue
                if 200 <= status < 300:
                    return
                problem = f"HTTP {status} {phrase}".strip()
                if status != 429 and status < 500:
                    hint = "Redirects are not followed." if 300 <= status < 400 else "Not retried."
                    raise DeliveryError(f"webhook {self.target} answered {problem}.", hint=hint)
                logger.info("webhook %s attempt %d/%d: %s", self.target, attempt + 1, attempts, problem)
        raise DeliveryError(f"webhook {self.target}: {problem} after {attempts} attempts.")

    def _transport_problem(self, exc: httpx.TransportError) -> str:
        # The text comes from the socket layer ("Connection refused", "timed out"). Keep its first line, short,
        # and should a library ever put the URL in it, show the bare target instead.
        detail = (str(exc).splitlines() or [""])[0].replace(str(self._url), self.target)[:120]
        return type(exc).__name__ + (f": {detail}" if detail else "")
