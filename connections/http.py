"""The HTTP client the read-only API connections share (Prometheus, Jaeger): base URL, bearer token, timeout,
TLS verification, and the URL as messages may show it (without any user:password part)."""

from __future__ import annotations

from typing import Protocol, Self
from urllib.parse import urlsplit, urlunsplit

import httpx


class ApiSettings(Protocol):
    url: str | None
    bearer_token: str | None
    timeout_seconds: float
    verify_tls: bool


def shown(url: str) -> str:
    """The URL without any user:password part, for messages."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class ApiClient:
    """An `httpx.Client` on `settings.url`; subclasses check that a URL is configured before calling this."""

    def __init__(self, settings: ApiSettings, transport: httpx.BaseTransport | None = None) -> None:
        if not settings.url:  # subclasses refuse a missing URL first, with their own Unsupported
            raise ValueError("no URL configured")
        self.url = settings.url.rstrip("/")
        self.shown = shown(self.url)
        headers = {"Authorization": f"Bearer {settings.bearer_token}"} if settings.bearer_token else {}
        self._client = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=settings.timeout_seconds,
            verify=settings.verify_tls,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
