"""The Slack app (slack-bolt): mentions and DMs answered in threads, Approve / Reject buttons, the `/cloudpilot`
slash command — over HTTP (Events API + interactivity, `POST /slack/events`) or Socket Mode.

Over HTTP every request must carry a valid `X-Slack-Signature` made with the signing secret, a timestamp within
`bots.replay_window_seconds`, and a signature not seen before: anything else gets 401 and a warning in the log
(bolt checks the signature again behind this). Socket Mode needs no public endpoint: the websocket is opened with
the app-level token.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from bots.chat import HELP, Bot, ChatUser, Click, GroupMembers, thread_key
from bots.replay import ReplayGuard
from errors import InvalidInput
from notifiers import Notification
from notifiers.blocks import message
from settings import Settings

logger = logging.getLogger(__name__)

TEXT_LIMIT = 3000  # a section's text
_MENTION = re.compile(r"<@[A-Z0-9]+>")


class SlackThread:
    """A Slack thread: posts go to `channel` under `thread_ts`."""

    limit = TEXT_LIMIT

    def __init__(self, client: AsyncWebClient, channel: str, thread_ts: str) -> None:
        self.client, self.channel, self.thread_ts = client, channel, thread_ts

    async def post(self, text: str, note: Notification | None = None) -> str:
        shown, blocks = message(note) if note else (text, None)
        answer = await self.client.chat_postMessage(
            channel=self.channel, thread_ts=self.thread_ts, text=shown, blocks=blocks, unfurl_links=False
        )
        return str(answer["ts"])

    async def edit(self, ref: str, text: str, note: Notification | None = None) -> None:
        shown, blocks = message(note) if note else (text, None)
        await self.client.chat_update(channel=self.channel, ts=ref, text=shown, blocks=blocks or [])


def slack_groups(client: AsyncWebClient) -> GroupMembers:
    """Members of Slack user groups (`usergroups.users.list`, scope usergroups:read)."""

    async def fetch(group: str) -> set[str]:
        try:
            answer = await client.usergroups_users_list(usergroup=group)
        except SlackApiError as exc:
            logger.warning("Slack user group %s could not be read: %s", group, exc.response.get("error"))
            return set()
        return set(answer.get("users") or [])

    return GroupMembers(fetch)


def build(bot: Bot, settings: Settings, client: AsyncWebClient | None = None) -> AsyncApp:
    """The bolt app with every listener; `client` defaults to one built from `slack.bot_token`/`slack.api_url`."""
    slack = settings.slack
    if slack.bot_token is None:
        raise InvalidInput("The Slack bot needs slack.bot_token (CLOUDPILOT_SLACK__BOT_TOKEN or a secret file).")
    if slack.mode == "http" and slack.signing_secret is None:
        raise InvalidInput("The Slack bot over HTTP needs slack.signing_secret to verify requests.")
    client = client or AsyncWebClient(token=slack.bot_token.get_secret_value(), base_url=slack.api_url)
    app = AsyncApp(
        client=client,
        signing_secret=slack.signing_secret.get_secret_value() if slack.signing_secret else "socket-mode",
        request_verification_enabled=slack.mode == "http",
    )
    groups = slack_groups(client)

    async def answer(event: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("bot_id") or event.get("subtype"):
            return  # our own messages, edits, joins
        channel, root = str(event.get("channel", "")), str(event.get("thread_ts") or event.get("ts", ""))
        text = _MENTION.sub("", str(event.get("text", ""))).strip()
        user = ChatUser("slack", str(event.get("user", "")))
        await bot.message(user, text, thread_key("slack", channel, root), SlackThread(client, channel, root))

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], client: AsyncWebClient) -> None:
        await answer(event, client)

    @app.event("message")
    async def on_message(event: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("channel_type") == "im":  # DMs; channel messages count only when they mention the bot
            await answer(event, client)

    async def on_click(ack: Any, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        who = body.get("user") or {}
        user = ChatUser("slack", str(who.get("id", "")), str(who.get("username") or who.get("name") or ""))
        channel = str((body.get("channel") or {}).get("id", ""))
        ts = str((body.get("message") or {}).get("ts") or (body.get("container") or {}).get("message_ts", ""))
        approve = action.get("action_id") == "cloudpilot_approve"

        async def working(line: str, note: Notification) -> None:
            text, blocks = message(note, 1, line)
            await client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)

        click = await bot.click(user, str(action.get("value", "")), approve, groups.members, working)
        await show_click(client, channel, ts, user, click)

    app.action("cloudpilot_approve")(on_click)
    app.action("cloudpilot_reject")(on_click)

    @app.command("/cloudpilot")
    async def on_command(ack: Any, command: dict[str, Any], respond: Any) -> None:
        await ack()
        user = ChatUser("slack", str(command.get("user_id", "")), str(command.get("user_name", "")))
        text = str(command.get("text", ""))
        said = await bot.command(user, text)
        if said is None:
            said = "Mention @CloudPilot in a channel, or DM it, to ask a question: the answer comes in a thread.\n\n"
            said += HELP
        await respond(text=said[:TEXT_LIMIT], response_type="ephemeral")

    return app


async def show_click(client: AsyncWebClient, channel: str, ts: str, user: ChatUser, click: Click) -> None:
    if click.note is not None:
        text, blocks = message(click.note, 1, click.status)
        try:
            await client.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
        except SlackApiError as exc:  # the message is gone: say the outcome to the clicker instead
            logger.warning("plan message %s/%s not updated: %s", channel, ts, exc.response.get("error"))
            await client.chat_postEphemeral(channel=channel, user=user.id, text=click.status)
    if click.ephemeral:
        await client.chat_postEphemeral(channel=channel, user=user.id, text=click.ephemeral)


class SlackEndpoint:
    """`POST /slack/events`: signature, timestamp and replay checks, then bolt."""

    def __init__(self, app: AsyncApp, signing_secret: str, window_seconds: int) -> None:
        self.handler = AsyncSlackRequestHandler(app)
        self.verifier = SignatureVerifier(signing_secret)
        self.replay = ReplayGuard(window_seconds)

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        timestamp = request.headers.get("x-slack-request-timestamp")
        signature = request.headers.get("x-slack-signature", "")
        if not (timestamp or "").isdigit() or not signature:
            why: str | None = "unsigned request"
        elif not self.verifier.is_valid(body, timestamp or "", signature):
            why = "forged signature or a stale timestamp"
        else:
            why = self.replay.refuse(timestamp, signature)
        if why:
            client = request.client.host if request.client else "?"
            logger.warning("Slack request from %s refused: %s", client, why)
            return PlainTextResponse("unauthorized", status_code=401)
        return await self.handler.handle(request)


def socket_mode(app: AsyncApp, settings: Settings) -> AsyncSocketModeHandler:
    """The Socket Mode connection (opened with the app-level token through `apps.connections.open`)."""
    if settings.slack.app_token is None:
        raise InvalidInput("Socket Mode needs slack.app_token (xapp-…, with connections:write).")
    return AsyncSocketModeHandler(app, settings.slack.app_token.get_secret_value())
