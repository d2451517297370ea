"""The Feishu/Lark app (lark-oapi): @-mentions and DMs answered in threads as cards, text commands, Approve / Reject
buttons on plan cards — through the event webhook (`POST /feishu/events`, also the card callback URL) or the long
connection (`lark.ws`).

The webhook needs `feishu.encrypt_key`: every request is then encrypted and signed. Before the SDK sees it, a request
must carry a valid `X-Lark-Signature`, a timestamp within `bots.replay_window_seconds` and a nonce not seen before
(the SDK checks no time and no replay); only the URL-verification challenge comes unsigned, and it must decrypt to
exactly that. Anything else gets 401 and a warning in the log. Over the long connection (opened with the app secret)
events are de-duplicated by event id.

The SDK calls handlers synchronously, so they run in a worker thread and hand the work to the bot's event loop. A
card click gets its answer as a toast within the 3 seconds Feishu waits; applying a fix takes longer, so the card is
then patched with the outcome when it is known.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
import json
import logging
import re
import threading
from typing import Any

import anyio
import lark_oapi as lark
from lark_oapi.api.contact.v3 import SimplelistGroupMemberRequest
from lark_oapi.api.im.v1 import (
    P2ImMessageReceiveV1,
    PatchMessageRequest,
    PatchMessageRequestBody,
    ReplyMessageRequest,
    ReplyMessageRequestBody,
)
from lark_oapi.core.utils.decryptor import AESCipher
from lark_oapi.event.callback.model.p2_card_action_trigger import (
    CallBackToast,
    P2CardActionTrigger,
    P2CardActionTriggerResponse,
)
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from bots.chat import Bot, ChatUser, Click, GroupMembers, thread_key
from bots.replay import ReplayGuard
from errors import InvalidInput
from notifiers import Notification
from notifiers.cards import card
from notifiers.feishu import problem
from settings import Settings

logger = logging.getLogger(__name__)

TEXT_LIMIT = 4000  # one answer card's markdown
TOAST_WAIT_SECONDS = 2.5  # Feishu waits 3 s for a card callback's answer
MAX_GROUP_PAGES = 20  # 2,000 members: a bigger approver group is a mistake
_MENTION = re.compile(r"@_user_\d+")


def text_card(text: str) -> dict[str, Any]:
    return {
        "config": {"wide_screen_mode": True, "update_multi": True},
        "elements": [{"tag": "markdown", "content": text}],
    }


class FeishuThread:
    """A Feishu thread: replies to the thread's root message, as cards (so progress can be patched in place)."""

    limit = TEXT_LIMIT

    def __init__(self, client: lark.Client, root_message_id: str) -> None:
        self.client, self.root = client, root_message_id

    async def post(self, text: str, note: Notification | None = None) -> str:
        content = card(note) if note else text_card(text)
        body = (
            ReplyMessageRequestBody.builder()
            .msg_type("interactive")
            .content(json.dumps(content, ensure_ascii=False))
            .reply_in_thread(True)
            .build()
        )
        request = ReplyMessageRequest.builder().message_id(self.root).request_body(body).build()
        response = await self.client.im.v1.message.areply(request)
        failed = problem("im.message.reply", response)
        if failed:
            raise failed
        return str(response.data.message_id)

    async def edit(self, ref: str, text: str, note: Notification | None = None) -> None:
        await patch(self.client, ref, card(note) if note else text_card(text))


async def patch(client: lark.Client, message_id: str, content: dict[str, Any]) -> None:
    body = PatchMessageRequestBody.builder().content(json.dumps(content, ensure_ascii=False)).build()
    request = PatchMessageRequest.builder().message_id(message_id).request_body(body).build()
    failed = problem("im.message.patch", await client.im.v1.message.apatch(request))
    if failed:
        raise failed


def feishu_groups(client: lark.Client) -> GroupMembers:
    """Members (open_ids) of Feishu user groups (`contact.v3.group_member`, scope contact:group:readonly)."""

    async def fetch(group: str) -> set[str]:
        found: set[str] = set()
        page = ""
        for _ in range(MAX_GROUP_PAGES):
            request = SimplelistGroupMemberRequest.builder().group_id(group).member_id_type("open_id")
            request = request.member_type("user").page_size(100)
            response = await client.contact.v3.group_member.asimplelist(
                (request.page_token(page) if page else request).build()
            )
            if problem("contact.group_member.simplelist", response) is not None:
                logger.warning("Feishu user group %s could not be read: code %s", group, response.code)
                return set()
            found |= {m.member_id for m in response.data.memberlist or [] if m.member_id}
            page = response.data.page_token or ""
            if not response.data.has_more or not page:
                break
        return found

    return GroupMembers(fetch)


class FeishuApp:
    """The event handlers, shared by the webhook and the long connection."""

    def __init__(self, bot: Bot, settings: Settings, client: lark.Client, loop: asyncio.AbstractEventLoop) -> None:
        self.bot, self.settings, self.client, self.loop = bot, settings, client, loop
        self.events = ReplayGuard(settings.bots.replay_window_seconds)
        self.groups = feishu_groups(client)
        self.tasks: set[concurrent.futures.Future[Any]] = set()
        feishu = settings.feishu
        key = feishu.encrypt_key.get_secret_value() if feishu.encrypt_key else ""
        token = feishu.verification_token.get_secret_value() if feishu.verification_token else ""
        self.dispatcher = (
            lark.EventDispatcherHandler.builder(key, token)
            .register_p2_im_message_receive_v1(self.on_message)
            .register_p2_card_action_trigger(self.on_card)
            .build()
        )

    # -- handlers (called by the SDK, in a worker thread) ---------------------------------------------------------
    def on_message(self, data: P2ImMessageReceiveV1) -> None:
        header, event = data.header, data.event
        if event is None or event.message is None or event.sender is None or header is None:
            return
        if self.events.refuse(header.create_time, str(header.event_id)):  # Feishu redelivers; answer once
            return
        message = event.message
        if event.sender.sender_type != "user" or message.message_type != "text":
            return
        if message.chat_type != "p2p" and not message.mentions:
            return  # in groups, only when mentioned
        text = _MENTION.sub("", str(json.loads(message.content or "{}").get("text", ""))).strip()
        open_id = str(event.sender.sender_id.open_id if event.sender.sender_id else "")
        root = str(message.root_id or message.message_id)
        thread = thread_key("feishu", str(message.chat_id), root)
        self._spawn(self.bot.message(ChatUser("feishu", open_id), text, thread, FeishuThread(self.client, root)))

    def on_card(self, data: P2CardActionTrigger) -> P2CardActionTriggerResponse:
        event = data.event
        value = (event.action.value if event and event.action else None) or {}
        open_id = str(event.operator.open_id if event and event.operator else "")
        message_id = str(event.context.open_message_id if event and event.context else "")
        if value.get("action") not in ("approve", "reject") or not open_id:
            return _toast("info", "Nothing to do for this button.")
        user = ChatUser("feishu", open_id)

        async def working(line: str, note: Notification) -> None:
            await patch(self.client, message_id, card(note, 1, line))

        async def decide() -> Click:
            click = await self.bot.click(
                user, str(value.get("approval_id", "")), value["action"] == "approve", self.groups.members, working
            )
            if click.note is not None:
                await patch(self.client, message_id, card(click.note, 1, click.status))
            return click

        future = self._spawn(decide())
        try:
            click = future.result(timeout=TOAST_WAIT_SECONDS)
        except TimeoutError:
            return _toast("info", "Working on it: this card shows the outcome when it is known.")
        if click.ephemeral:
            return _toast("warning", click.ephemeral)
        return _toast("success", click.status or "Done.")

    def _spawn(self, work: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(_logged(work), self.loop)
        self.tasks.add(future)
        future.add_done_callback(self.tasks.discard)
        return future


async def _logged(work: Any) -> Any:
    try:
        return await work
    except Exception:  # a boundary: one chat message's failure must not go unseen, nor take the bot down
        logger.exception("Feishu handler failed")
        raise


def _toast(kind: str, text: str) -> P2CardActionTriggerResponse:
    response = P2CardActionTriggerResponse()
    response.toast = CallBackToast({"type": kind, "content": text[:300]})
    return response


class FeishuEndpoint:
    """`POST /feishu/events`: signature, timestamp and nonce checks, then the SDK's dispatcher (in a thread)."""

    def __init__(self, app: FeishuApp, settings: Settings) -> None:
        if settings.feishu.encrypt_key is None or settings.feishu.verification_token is None:
            raise InvalidInput(
                "The Feishu event webhook needs feishu.encrypt_key and feishu.verification_token: requests are then "
                "encrypted and signed.",
                hint="Set both in the app's Events & Callbacks page and in CloudPilot's settings, or use mode ws.",
            )
        self.app = app
        self.key = settings.feishu.encrypt_key.get_secret_value()
        self.replay = ReplayGuard(settings.bots.replay_window_seconds)

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        headers = {k.title(): v for k, v in request.headers.items()}  # the SDK looks headers up case-sensitively
        why = self.refuse(body, headers)
        if why:
            client = request.client.host if request.client else "?"
            logger.warning("Feishu request from %s refused: %s", client, why)
            return PlainTextResponse("unauthorized", status_code=401)
        raw = lark.RawRequest()
        raw.uri, raw.body, raw.headers = str(request.url.path), body, headers
        answer = await anyio.to_thread.run_sync(self.app.dispatcher.do, raw)
        if answer.status_code != 200:
            return PlainTextResponse("refused", status_code=401)
        return Response(answer.content, status_code=200, media_type="application/json")

    def refuse(self, body: bytes, headers: dict[str, str]) -> str | None:
        signature = headers.get("X-Lark-Signature", "")
        timestamp, nonce = headers.get("X-Lark-Request-Timestamp", ""), headers.get("X-Lark-Request-Nonce", "")
        if not signature:
            return None if self._is_challenge(body) else "unsigned request"
        expected = hashlib.sha256((timestamp + nonce + self.key).encode() + body).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return "forged signature"
        return self.replay.refuse(timestamp, f"{nonce}/{signature}")

    def _is_challenge(self, body: bytes) -> bool:
        try:
            sealed = json.loads(body).get("encrypt", "")
            opened = json.loads(AESCipher(self.key).decrypt_str(sealed))
        except (ValueError, AttributeError, TypeError):
            return False
        return isinstance(opened, dict) and opened.get("type") == "url_verification"


class LongConnection:
    """The `lark.ws` client in a daemon thread. The SDK drives one module-level event loop and has no stop, so there
    is one per process, and `stop` ends that loop's work and closes the socket."""

    def __init__(self, app: FeishuApp, settings: Settings) -> None:
        feishu = settings.feishu
        if not feishu.app_id or feishu.app_secret is None:
            raise InvalidInput("The Feishu long connection needs feishu.app_id and feishu.app_secret.")
        import lark_oapi.ws.client as ws_module

        self.loop = ws_module.loop
        self.app, self.settings = app, settings
        self.client: Any = None  # made in the thread: its constructor starts a task on the current loop
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="feishu-ws", daemon=True)

    def start(self) -> LongConnection:
        self.thread.start()
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        feishu = self.settings.feishu
        assert feishu.app_id and feishu.app_secret
        try:
            self.client = lark.ws.Client(
                feishu.app_id,
                feishu.app_secret.get_secret_value(),
                event_handler=self.app.dispatcher,
                domain=feishu.domain,
                log_level=lark.LogLevel.WARNING,
            )
            self.client.start()  # returns when the loop is stopped
        except BaseException as exc:  # a boundary: the thread reports, never dies silently
            self.error = exc
        finally:
            self.done.set()
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()  # cancelling (not an Exception) keeps the SDK from reconnecting
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        if self.client is not None:
            self.loop.run_until_complete(self.client._disconnect())

    def stop(self, timeout: float = 10.0) -> None:
        while not self.done.wait(0.05):
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)
