"""The Feishu stand-in, exercised through the real lark_oapi SDK (HTTP client, webhook dispatcher, long connection)."""

from __future__ import annotations

import json
import threading
import time

import lark_oapi as lark
import pytest
import requests
from lark_oapi.api.im.v1 import (
    CreateMessageRequest,
    CreateMessageRequestBody,
    PatchMessageRequest,
    PatchMessageRequestBody,
    ReplyMessageRequest,
    ReplyMessageRequestBody,
)
from lark_oapi.core.exception import ObtainAccessTokenException
from lark_oapi.event.callback.model.p2_card_action_trigger import P2CardActionTrigger, P2CardActionTriggerResponse

from tests.chat.feishu_mock import (
    ENCRYPT_KEY,
    VERIFICATION_TOKEN,
    FeishuMock,
    card_action,
    hook_sign,
    message_event,
    signed,
)

CARD = {"header": {"title": {"tag": "plain_text", "content": "pod crashloop"}}, "elements": []}


def _client(feishu: FeishuMock) -> lark.Client:
    return lark.Client.builder().app_id("cli_test").app_secret("secret").domain(feishu.domain).build()


def _create(client: lark.Client, content: dict, uuid: str) -> lark.BaseResponse:
    body = CreateMessageRequestBody.builder().receive_id("oc_1").msg_type("interactive")
    body = body.content(json.dumps(content)).uuid(uuid).build()
    req = CreateMessageRequest.builder().receive_id_type("chat_id").request_body(body).build()
    return client.im.v1.message.create(req)


def test_messages_uuid_idempotency_patch_reply_and_rate_limit() -> None:
    with FeishuMock() as feishu:
        client = _client(feishu)
        first = _create(client, CARD, "u-1")
        assert first.success(), first.msg
        again = _create(client, CARD, "u-1")
        assert again.data.message_id == first.data.message_id
        assert [m["message_id"] for m in feishu.messages("oc_1")] == [first.data.message_id]

        patched = {**CARD, "elements": [{"tag": "markdown", "content": "fixed"}]}
        req = PatchMessageRequest.builder().message_id(first.data.message_id)
        req = req.request_body(PatchMessageRequestBody.builder().content(json.dumps(patched)).build()).build()
        assert client.im.v1.message.patch(req).success()
        assert feishu.messages()[0]["content"] == patched and feishu.patches == [(first.data.message_id, patched)]
        unknown = client.im.v1.message.patch(
            PatchMessageRequest.builder()
            .message_id("om_nope")
            .request_body(PatchMessageRequestBody.builder().content("{}").build())
            .build()
        )
        assert unknown.code == 230001

        reply_body = ReplyMessageRequestBody.builder().msg_type("text").content(json.dumps({"text": "ok"})).build()
        reply = client.im.v1.message.reply(
            ReplyMessageRequest.builder().message_id(first.data.message_id).request_body(reply_body).build()
        )
        assert reply.success() and reply.data.root_id == first.data.message_id

        feishu.fail("im.message.create", times=1, reset=3)
        limited = _create(client, CARD, "u-2")
        assert limited.code == 99991400 and limited.raw.status_code == 429
        assert limited.raw.headers["x-ogw-ratelimit-reset"] == "3"
        assert len(feishu.rejected) == 1 and len(feishu.messages()) == 2
        assert _create(client, CARD, "u-2").success()


async def test_acreate_and_bad_credentials() -> None:
    with FeishuMock(app_id="cli_async") as feishu:
        client = lark.Client.builder().app_id("cli_async").app_secret("secret").domain(feishu.domain).build()
        body = CreateMessageRequestBody.builder().receive_id("ou_9").msg_type("text").content('{"text": "hi"}').build()
        req = CreateMessageRequest.builder().receive_id_type("open_id").request_body(body).build()
        resp = await client.im.v1.message.acreate(req)
        assert resp.success() and feishu.messages()[0]["content"] == {"text": "hi"}

        # the SDK caches tenant tokens per app_id process-wide, so a bad secret needs a fresh app_id
        bad = lark.Client.builder().app_id("cli_bad").app_secret("nope").domain(feishu.domain).build()
        with pytest.raises(ObtainAccessTokenException):
            bad.im.v1.message.create(req)


def test_no_token_and_custom_bot_hook() -> None:
    with FeishuMock() as feishu:
        bare = requests.post(f"{feishu.domain}/open-apis/im/v1/messages?receive_id_type=chat_id", json={}, timeout=5)
        assert bare.status_code == 400 and bare.json()["code"] != 0
        feishu.hook_secret = {"tok": "s3cret"}
        ts = int(time.time())
        good = {"timestamp": str(ts), "sign": hook_sign(ts, "s3cret"), "msg_type": "text", "content": {"text": "hi"}}
        assert requests.post(f"{feishu.domain}/open-apis/bot/v2/hook/tok", json=good, timeout=5).json()["code"] == 0
        stale = {**good, "timestamp": str(ts - 7200), "sign": hook_sign(ts - 7200, "s3cret")}
        assert (
            requests.post(f"{feishu.domain}/open-apis/bot/v2/hook/tok", json=stale, timeout=5).json()["code"] == 19021
        )
        assert [t for t, _ in feishu.hooks] == ["tok"]


def _dispatcher(seen: list, done: threading.Event | None = None) -> lark.EventDispatcherHandler:
    def on_message(data: lark.im.v1.P2ImMessageReceiveV1) -> None:
        seen.append(json.loads(data.event.message.content)["text"])
        if done:
            done.set()

    def on_card(data: P2CardActionTrigger) -> P2CardActionTriggerResponse:
        seen.append(data.event.action.value)
        return P2CardActionTriggerResponse({"toast": {"type": "success", "content": "ok"}})

    builder = lark.EventDispatcherHandler.builder(ENCRYPT_KEY, VERIFICATION_TOKEN)
    return builder.register_p2_im_message_receive_v1(on_message).register_p2_card_action_trigger(on_card).build()


def _raw(body: bytes, headers: dict) -> lark.RawRequest:
    req = lark.RawRequest()
    req.uri, req.body, req.headers = "/webhook/event", body, headers
    return req


def test_signed_encrypted_webhook_events() -> None:
    seen: list = []
    handler = _dispatcher(seen)
    body, headers = signed(message_event("restart nginx"), ENCRYPT_KEY)
    assert handler.do(_raw(body, headers)).status_code == 200
    body, headers = signed(card_action({"action": "approve", "id": "p1"}), ENCRYPT_KEY)
    assert handler.do(_raw(body, headers)).status_code == 200
    assert seen == ["@_user_1 restart nginx", {"action": "approve", "id": "p1"}]

    body, headers = signed(message_event("x"), ENCRYPT_KEY)
    assert handler.do(_raw(body, {**headers, "X-Lark-Signature": "0" * 64})).status_code == 500
    body, headers = signed(message_event("x", token="wrong"), ENCRYPT_KEY)
    assert handler.do(_raw(body, headers)).status_code == 500
    assert len(seen) == 2
