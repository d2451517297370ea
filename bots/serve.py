"""Running the bots: one process serves the Slack and Feishu apps that are configured, and delivers the chat outbox.

    cloudpilot bot            # HTTP: POST /slack/events, POST /feishu/events, GET /healthz on bots.host:bots.port
                              # (Slack in Socket Mode and Feishu over the long connection need no public endpoint)

`Bots.open` builds everything over one runtime and one agent team; `routes()` is the Starlette app for HTTP mode.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import lark_oapi as lark
import uvicorn
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import notifiers
from agents.api import Team
from bots import feishu, slack
from bots.chat import Bot
from errors import InvalidInput
from runtime import Runtime

logger = logging.getLogger(__name__)


@dataclass
class Bots:
    """The configured apps over one team: `slack_app` (bolt), `feishu_app`, and the chat outbox."""

    bot: Bot
    runtime: Runtime
    slack_app: AsyncApp | None = None
    slack_endpoint: slack.SlackEndpoint | None = None
    feishu_app: feishu.FeishuApp | None = None
    feishu_endpoint: feishu.FeishuEndpoint | None = None
    outbox: notifiers.Outbox | None = None
    background: list[Any] = field(default_factory=list)

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        runtime: Runtime,
        *,
        model: Any = "settings",
        slack_client: AsyncWebClient | None = None,
        feishu_client: lark.Client | None = None,
    ) -> AsyncIterator[Bots]:
        """Everything the settings configure; the outbox worker runs while the context is open."""
        settings = runtime.settings
        outbox = notifiers.outbox_from_settings(settings, runtime.store)
        sinks = notifiers.from_settings(settings, runtime.store, outbox)
        async with Team.open(runtime, model=model, sinks=sinks) as team:
            bots = cls(Bot(team, settings, runtime.store), runtime)
            if settings.slack.bot_token:
                bots.slack_app = slack.build(bots.bot, settings, slack_client)
                if settings.slack.mode == "http":
                    secret = settings.slack.signing_secret
                    assert secret is not None  # slack.build refused otherwise
                    bots.slack_endpoint = slack.SlackEndpoint(
                        bots.slack_app, secret.get_secret_value(), settings.bots.replay_window_seconds
                    )
            if settings.feishu.app_id and settings.feishu.app_secret:
                client = feishu_client or notifiers.feishu.client(
                    settings.feishu.app_id, settings.feishu.app_secret, settings.feishu.domain
                )
                bots.feishu_app = feishu.FeishuApp(bots.bot, settings, client, asyncio.get_running_loop())
                if settings.feishu.mode == "webhook":
                    bots.feishu_endpoint = feishu.FeishuEndpoint(bots.feishu_app, settings)
            if bots.slack_app is None and bots.feishu_app is None:
                raise InvalidInput(
                    "No chat app is configured.",
                    hint="Set slack.bot_token (+ signing_secret or app_token) or feishu.app_id and app_secret.",
                )
            bots.outbox = outbox
            async with anyio.create_task_group() as tg:
                if bots.outbox is not None:
                    tg.start_soon(bots.outbox.run)
                try:
                    yield bots
                finally:
                    tg.cancel_scope.cancel()

    def routes(self) -> Starlette:
        """The HTTP endpoints of the apps in HTTP/webhook mode, and /healthz."""
        routes = [Route("/healthz", _health, methods=["GET"])]
        if self.slack_endpoint is not None:
            routes.append(Route("/slack/events", self.slack_endpoint.handle, methods=["POST"]))
        if self.feishu_endpoint is not None:
            routes.append(Route("/feishu/events", self.feishu_endpoint.handle, methods=["POST"]))
        return Starlette(routes=routes)

    async def serve(self) -> None:
        """Serve until cancelled: HTTP endpoints, Socket Mode, the long connection — whichever are configured."""
        settings = self.runtime.settings
        connection = None
        if self.feishu_app is not None and settings.feishu.mode == "ws":
            connection = feishu.LongConnection(self.feishu_app, settings).start()
        try:
            async with anyio.create_task_group() as tg:
                if self.slack_app is not None and settings.slack.mode == "socket":
                    tg.start_soon(_socket_mode, slack.socket_mode(self.slack_app, settings))
                if self.slack_endpoint is not None or self.feishu_endpoint is not None:
                    config = uvicorn.Config(
                        self.routes(), host=settings.bots.host, port=settings.bots.port, log_level="warning"
                    )
                    tg.start_soon(uvicorn.Server(config).serve)
        finally:
            if connection is not None:
                connection.stop()


async def _socket_mode(handler: Any) -> None:
    try:
        await handler.connect_async()
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await handler.close_async()


async def _health(_: Request) -> JSONResponse:
    return JSONResponse({"ok": True})
