"""The Feishu/Lark app end to end: encrypted, signed event callbacks over HTTP into the SDK's dispatcher, the real
`lark_oapi` client against the local Open API stand-in, the long connection against its websocket, the autopilot on
the real control plane. Mention → progress patches → plan card → Approve by an allowed user → verified."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import anyio
import httpx
import pytest

from bots.feishu import LongConnection
from store import AuditLog
from tests.chat.conftest import APP_SECRET, FEI_ALICE, chat_settings, eventually, running
from tests.chat.feishu_mock import ENCRYPT_KEY, FeishuMock, card_action, message_event, signed
from tests.fix.scenarios import SCENARIOS, deployment, kubelet
from tools.fixloop import content

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

BAD_PROBE = SCENARIOS[0]
CHAT = "oc_ops"
APP = "cli_chat_test"


async def send(http: httpx.AsyncClient, event: dict[str, Any], **sign: Any) -> httpx.Response:
    body, headers = signed(event, ENCRYPT_KEY, **sign)
    return await http.post("/feishu/events", content=body, headers=headers)


async def press(http: httpx.AsyncClient, approval_id: str, open_id: str, message_id: str) -> httpx.Response:
    """An Approve click on the plan card, as Feishu's callback sends it."""
    value = {"action": "approve", "approval_id": approval_id}
    return await send(http, card_action(value, open_id=open_id, message_id=message_id, chat_id=CHAT, app_id=APP))


def plan_card(feishu: FeishuMock) -> dict[str, Any] | None:
    for m in feishu.messages(CHAT):
        if "approval_id" in json.dumps(m["content"]) and '"approve"' in json.dumps(m["content"]):
            return m
    return None


def card_text(feishu: FeishuMock, message_id: str) -> str:
    return json.dumps(
        next(m for m in feishu.messages(CHAT) if m["message_id"] == message_id)["content"], ensure_ascii=False
    )


async def test_mention_plan_card_and_approval_by_button(api, namespace, write_settings, tmp_path, feishu):
    BAD_PROBE.build(api, namespace)
    before = deployment(api, namespace)
    feishu.groups = {"g_sre": ["ou_carol"]}  # Carol approves as a member of an approver group
    settings = chat_settings(write_settings, tmp_path, None, feishu)
    async with running(settings) as (bots, http):
        root = feishu.add_message(CHAT, f"@CloudPilot autofix {namespace} web")
        event = message_event(f"autofix {namespace} web", open_id=FEI_ALICE, chat_id=CHAT, message_id=root, app_id=APP)
        assert (await send(http, event)).status_code == 200

        plan = await eventually(lambda: plan_card(feishu), "the plan card", 90)
        assert plan["root_id"] == root and plan["reply_in_thread"]  # in the thread of the question
        progress = next(m for m in feishu.messages(CHAT) if m["root_id"] == root)
        assert any(mid == progress["message_id"] for mid, _ in feishu.patches)  # edited in place
        approval_id = json.dumps(plan["content"]).split('"approval_id": "')[1].split('"')[0]

        refusal = await press(http, approval_id, "ou_mallory", plan["message_id"])
        toast = refusal.json()["toast"]
        assert refusal.status_code == 200 and toast["type"] == "warning" and "not an approver" in toast["content"]
        assert content(deployment(api, namespace)) == content(before)

        with kubelet(api, namespace, "ready"):
            answer = await press(http, approval_id, "ou_carol", plan["message_id"])
            assert answer.status_code == 200 and answer.json()["toast"]["type"] in ("info", "success")
            await eventually(
                lambda: "applied and verified" in card_text(feishu, plan["message_id"]), "the outcome on the card", 90
            )
        assert BAD_PROBE.fixed(deployment(api, namespace))
        approvers = {e.approver for e in AuditLog(bots.runtime.store).entries() if e.event == "approved"}
        assert approvers == {"feishu:ou_carol via feishu button"}, approvers

        again = await press(http, approval_id, FEI_ALICE, plan["message_id"])
        assert "already approved" in again.json()["toast"]["content"]


async def test_forged_and_replayed_callbacks_get_401(write_settings, tmp_path, feishu, caplog):
    settings = chat_settings(write_settings, tmp_path, None, feishu)
    caplog.set_level(logging.WARNING, logger="bots.feishu")
    async with running(settings) as (_, http):
        root = feishu.add_message(CHAT, "@CloudPilot pending")
        event = message_event("pending", open_id=FEI_ALICE, chat_id=CHAT, message_id=root, app_id=APP)
        body, headers = signed(event, ENCRYPT_KEY)
        forged = dict(headers, **{"X-Lark-Signature": "0" * 64})
        unsigned = {k: v for k, v in headers.items() if k != "X-Lark-Signature"}
        stale_body, stale = signed(event, ENCRYPT_KEY, timestamp=int(time.time()) - 3600)
        wrong_key_body, wrong_key = signed(event, "not-the-encrypt-key")
        for b, h in ((body, forged), (body, unsigned), (stale_body, stale), (wrong_key_body, wrong_key)):
            assert (await http.post("/feishu/events", content=b, headers=h)).status_code == 401
        assert (await http.post("/feishu/events", content=body, headers=headers)).status_code == 200
        assert (await http.post("/feishu/events", content=body, headers=headers)).status_code == 401  # replayed
        await eventually(lambda: [m for m in feishu.messages(CHAT) if m["root_id"] == root], "the one answer")
        await anyio.sleep(0.3)
        answers = [m for m in feishu.messages(CHAT) if m["root_id"] == root]
        assert len(answers) == 1 and "No plans are waiting" in json.dumps(answers[0]["content"])

        challenge = {
            "type": "url_verification",
            "challenge": "c-123",
            "token": settings.feishu.verification_token.get_secret_value(),
        }
        body, headers = signed(challenge, ENCRYPT_KEY)
        headers.pop("X-Lark-Signature")  # Feishu does not sign the URL check; it is encrypted with the key
        answer = await http.post("/feishu/events", content=body, headers=headers)
        assert answer.status_code == 200 and answer.json() == {"challenge": "c-123"}
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 5, refused
    assert not any(APP_SECRET in r or ENCRYPT_KEY in r for r in refused)


async def test_long_connection_answers_a_command(write_settings, tmp_path, feishu):
    settings = chat_settings(write_settings, tmp_path, None, feishu)
    settings = settings.model_copy(update={"feishu": settings.feishu.model_copy(update={"mode": "ws"})})
    async with running(settings) as (bots, _):
        assert bots.feishu_endpoint is None  # no public endpoint over the long connection
        assert bots.feishu_app is not None
        connection = LongConnection(bots.feishu_app, settings).start()
        try:
            await anyio.to_thread.run_sync(feishu.wait_connected)
            root = feishu.add_message(CHAT, "@CloudPilot help")
            event = message_event("help", open_id=FEI_ALICE, chat_id=CHAT, message_id=root, app_id=APP)
            frame = feishu.push_event(event)
            response = await anyio.to_thread.run_sync(feishu.wait_response, frame)
            assert response["code"] == 200
            answer = await eventually(lambda: [m for m in feishu.messages(CHAT) if m["root_id"] == root], "the answer")
            assert "diagnose <namespace>" in json.dumps(answer[0]["content"])
            again = feishu.push_event(event)  # Feishu redelivers an event it thinks was lost: answered once
            await anyio.to_thread.run_sync(feishu.wait_response, again)
            await anyio.sleep(0.3)
            assert len([m for m in feishu.messages(CHAT) if m["root_id"] == root]) == 1
        finally:
            await anyio.to_thread.run_sync(connection.stop)
