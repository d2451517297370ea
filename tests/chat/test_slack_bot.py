"""The Slack app end to end: signed requests over HTTP into the bolt app, the real `slack_sdk` client against the local
Slack stand-in, the agent team (a scripted model through the real `langchain-openai` client, or the autopilot) on
the real control plane. Mention → progress edits → answer in the thread → plan with buttons → clicks."""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from runtime import Principal
from store import AuditLog, open_store
from store.incidents import Incidents
from tests.agents.brain import fixing_team
from tests.chat.conftest import (
    ALICE,
    APP_TOKEN,
    BOB,
    BOT_TOKEN,
    MALLORY,
    SIGNING_SECRET,
    chat_settings,
    eventually,
    running,
)
from tests.chat.slack_mock import SlackMock, block_action, event_body, mention, signed_headers, slash
from tests.fix.scenarios import SCENARIOS, deployment, kubelet
from tests.llm.server import ScriptedLLM, Text
from tools.fixloop import content

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180), pytest.mark.stores]  # store-backed: SQLite, then PostgreSQL

BAD_PROBE = SCENARIOS[0]  # a liveness probe on a path the container does not serve
CHANNEL = "C0OPS"
LLM_KEY = "sk-chat-test-DO-NOT-LEAK"


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM(api_key=LLM_KEY) as server:
        yield server


async def post_event(http: httpx.AsyncClient, event: dict[str, Any], **sign: Any) -> httpx.Response:
    body = json.dumps(event_body(event))
    headers = signed_headers(body, SIGNING_SECRET, **sign) | {"Content-Type": "application/json"}
    return await http.post("/slack/events", content=body, headers=headers)


async def click(http: httpx.AsyncClient, slack: SlackMock, action: str, approval_id: str, user: str, ts: str) -> None:
    payload = block_action(action, approval_id, user=user, channel=CHANNEL, message_ts=ts)
    body = urllib.parse.urlencode({"payload": json.dumps(payload)})
    headers = signed_headers(body, SIGNING_SECRET) | {"Content-Type": "application/x-www-form-urlencoded"}
    answer = await http.post("/slack/events", content=body, headers=headers)
    assert answer.status_code == 200, answer.text


def plan_message(slack: SlackMock) -> dict[str, Any] | None:
    """The thread's message that carries Approve / Reject buttons."""
    for m in slack.messages(CHANNEL):
        for block in m.get("blocks") or []:
            if block.get("type") == "actions" and any(
                e.get("action_id") == "cloudpilot_approve" for e in block.get("elements", [])
            ):
                return m
    return None


def shown(message: dict[str, Any]) -> str:
    return json.dumps(message.get("blocks") or message.get("text"))


def ephemeral_to(slack: SlackMock, user: str, start: int = 0) -> list[str]:
    return [e["text"] for e in slack.ephemerals[start:] if e["user"] == user]


async def test_mention_to_verified_fix_approved_with_a_button(api, namespace, write_settings, tmp_path, slack, llm):
    BAD_PROBE.build(api, namespace)
    before = deployment(api, namespace)
    llm.respond = fixing_team(namespace, BAD_PROBE.event_text)
    settings = chat_settings(write_settings, tmp_path, slack, None)
    settings = settings.model_copy(
        update={
            "llm": settings.llm.model_copy(
                update={"base_url": llm.base_url, "model": "scripted", "api_key": LLM_KEY, "max_retries": 1}
            )
        }
    )
    async with running(settings, model="settings") as (bots, http):
        root = "1700000100.000100"
        answer = await post_event(
            http, mention(f"fix the crashing web pods in {namespace}", user=ALICE, channel=CHANNEL, ts=root)
        )
        assert answer.status_code == 200

        plan = await eventually(lambda: plan_message(slack), "the plan with its buttons", 90)
        thread = [m for m in slack.messages(CHANNEL) if m.get("thread_ts") == root]
        assert plan in thread and len(thread) >= 2, thread  # the answer and the plan, both in the thread
        progress = [u for u in slack.updates if u["ts"] == thread[0]["ts"]]
        assert any("diagnose" in u.get("text", "") for u in progress), progress  # edited in place while working
        assert "Working on it" not in thread[0]["text"]  # and finally replaced by the answer
        approval_id = next(e["value"] for b in plan["blocks"] if b["type"] == "actions" for e in b["elements"])
        assert content(deployment(api, namespace)) == content(before)  # nothing changed before a decision

        await click(http, slack, "cloudpilot_approve", approval_id, MALLORY, plan["ts"])  # not on the allow-list
        refusal = await eventually(lambda: ephemeral_to(slack, MALLORY), "the refusal")
        assert "not an approver" in refusal[0] and "nothing was changed" in refusal[0]
        assert content(deployment(api, namespace)) == content(before)
        assert [a.id for a in bots.bot.team.pending()] == [approval_id]

        with kubelet(api, namespace, "ready"):
            await click(http, slack, "cloudpilot_approve", approval_id, ALICE, plan["ts"])
            done = await eventually(
                lambda: (
                    "applied and verified" in shown(next(m for m in slack.messages(CHANNEL) if m["ts"] == plan["ts"]))
                ),
                "the plan message to show the outcome",
                90,
            )
        assert done
        assert BAD_PROBE.fixed(deployment(api, namespace))
        updated = next(m for m in slack.messages(CHANNEL) if m["ts"] == plan["ts"])
        assert "cloudpilot_approve" not in shown(updated)  # the buttons are gone

        audit = AuditLog(bots.runtime.store).entries()
        approvers = {e.approver for e in audit if e.event == "approved"}
        assert approvers == {f"slack:{ALICE} ({ALICE.lower()}) via slack button"}, approvers

        start = len(slack.ephemerals)
        await click(http, slack, "cloudpilot_approve", approval_id, BOB, plan["ts"])  # a second click
        again = await eventually(lambda: ephemeral_to(slack, BOB, start), "the answer to a second click")
        assert "already approved" in again[0] and "Nothing was changed" in again[0]
    assert LLM_KEY not in json.dumps([c.params for c in slack.calls])


async def test_two_person_rule_and_a_group_member(api, namespace, write_settings, tmp_path, slack):
    BAD_PROBE.build(api, namespace)
    slack.usergroups = {"S0OPS": ["U0CAROL"]}
    settings = chat_settings(write_settings, tmp_path, slack, None, two_person_namespaces=[namespace])
    async with running(settings) as (bots, http):
        root = "1700000200.000100"
        await post_event(http, mention(f"autofix {namespace} web", user=ALICE, channel=CHANNEL, ts=root))
        plan = await eventually(lambda: plan_message(slack), "the plan with its buttons", 90)
        approval_id = next(e["value"] for b in plan["blocks"] if b["type"] == "actions" for e in b["elements"])

        await click(http, slack, "cloudpilot_approve", approval_id, ALICE, plan["ts"])
        first = await eventually(lambda: ephemeral_to(slack, ALICE), "the first approval's answer")
        assert "second approver is needed" in first[0]
        assert "1 of 2" in shown(next(m for m in slack.messages(CHANNEL) if m["ts"] == plan["ts"]))
        assert bots.bot.team.pending()  # still waiting

        await click(http, slack, "cloudpilot_approve", approval_id, ALICE, plan["ts"])  # the same person again
        again = await eventually(lambda: ephemeral_to(slack, ALICE)[1:], "the answer to the same approver")
        assert "needs someone else" in again[0]
        assert bots.bot.team.pending()

        with kubelet(api, namespace, "ready"):
            await click(http, slack, "cloudpilot_approve", approval_id, "U0CAROL", plan["ts"])  # in group S0OPS
            await eventually(
                lambda: (
                    "applied and verified" in shown(next(m for m in slack.messages(CHANNEL) if m["ts"] == plan["ts"]))
                ),
                "the outcome",
                90,
            )
        approvers = {e.approver for e in AuditLog(bots.runtime.store).entries() if e.event == "approved"}
        assert approvers == {f"slack:{ALICE} ({ALICE.lower()}) + slack:U0CAROL (u0carol) via slack button"}, approvers


async def test_reject_and_expired_buttons(api, namespace, write_settings, tmp_path, slack):
    BAD_PROBE.build(api, namespace)
    before = deployment(api, namespace)
    settings = chat_settings(write_settings, tmp_path, slack, None)
    async with running(settings) as (bots, http):
        await post_event(http, mention(f"autofix {namespace} web", user=BOB, channel=CHANNEL, ts="1700000300.000100"))
        plan = await eventually(lambda: plan_message(slack), "the plan", 90)
        approval_id = next(e["value"] for b in plan["blocks"] if b["type"] == "actions" for e in b["elements"])
        await click(http, slack, "cloudpilot_reject", approval_id, BOB, plan["ts"])
        await eventually(
            lambda: "nothing was applied" in shown(next(m for m in slack.messages(CHANNEL) if m["ts"] == plan["ts"])),
            "the rejection on the message",
        )
        assert content(deployment(api, namespace)) == content(before)
        events = [e.event for e in AuditLog(bots.runtime.store).entries()]
        assert "rejected" in events and "applied" not in events

        await click(http, slack, "cloudpilot_approve", "ap-0000000000", ALICE, plan["ts"])  # a stale button
        stale = await eventually(lambda: ephemeral_to(slack, ALICE), "the stale button's answer")
        assert "no approval" in stale[0] and "Nothing was changed" in stale[0]

        # an approval past its expiry: made so in the store, as time would
        await post_event(http, mention(f"autofix {namespace} web", user=BOB, channel=CHANNEL, ts="1700000400.000100"))
        second = await eventually(
            lambda: [
                m for m in slack.messages(CHANNEL) if m.get("thread_ts") == "1700000400.000100" and plan_message_in(m)
            ],
            "the second plan",
            90,
        )
        second_id = next(e["value"] for b in second[0]["blocks"] if b["type"] == "actions" for e in b["elements"])
        bots.runtime.store.execute(
            "UPDATE approvals SET expires_at = '2000-01-01T00:00:00+00:00' WHERE id = ?", (second_id,)
        )
        await click(http, slack, "cloudpilot_approve", second_id, ALICE, second[0]["ts"])
        expired = await eventually(lambda: ephemeral_to(slack, ALICE)[1:], "the expired button's answer")
        assert "expired" in expired[0]
        assert content(deployment(api, namespace)) == content(before)


def plan_message_in(m: dict[str, Any]) -> bool:
    return "cloudpilot_approve" in json.dumps(m.get("blocks") or [])


async def test_forged_stale_and_replayed_requests_get_401(write_settings, tmp_path, slack, caplog):
    settings = chat_settings(write_settings, tmp_path, slack, None)
    caplog.set_level(logging.WARNING, logger="bots.slack")
    async with running(settings) as (_bots, http):
        body = json.dumps(event_body(mention("help", user=ALICE, channel=CHANNEL)))
        plain = {"Content-Type": "application/json"}
        unsigned = await http.post("/slack/events", content=body, headers=plain)
        forged = await http.post("/slack/events", content=body, headers=signed_headers(body, "not-the-secret") | plain)
        stale = await http.post(
            "/slack/events",
            content=body,
            headers=signed_headers(body, SIGNING_SECRET, timestamp=int(time.time()) - 900) | plain,
        )
        assert (unsigned.status_code, forged.status_code, stale.status_code) == (401, 401, 401)
        assert slack.posts() == []  # none of them reached the bot

        good = signed_headers(body, SIGNING_SECRET) | plain
        first = await http.post("/slack/events", content=body, headers=good)
        assert first.status_code == 200
        replayed = await http.post("/slack/events", content=body, headers=good)
        assert replayed.status_code == 401
        await eventually(lambda: slack.posts(CHANNEL), "the one answer")
        assert len(slack.posts(CHANNEL)) == 1  # the replay did nothing
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 4, refused
    assert not any(SIGNING_SECRET in r or BOT_TOKEN in r for r in refused)


INCIDENT = {
    "cluster": "c1", "root": "Deployment shop/web", "status": "open", "severity": "critical", "opened_at": 1.0,
    "last_at": 2.0, "resolved_at": None, "reasons": {"BackOff": 3}, "objects": ["Pod shop/web-1"], "events": 3,
}  # fmt: skip


async def test_slash_commands_answer_privately(api, namespace, write_settings, tmp_path, slack, caplog):
    BAD_PROBE.build(api, namespace)
    settings = chat_settings(write_settings, tmp_path, slack, None)
    caplog.set_level(logging.DEBUG)  # every library's debug log too
    store = open_store(settings)
    Incidents(store).save(0, INCIDENT)
    store.close()
    async with running(settings) as (_bots, http):
        for i, text in enumerate(
            [
                "help",
                f"diagnose {namespace}",
                "pending",
                "diagnose ../etc",
                "incidents",
                "incident 7",
                "ack 1",
                "ack #1",
            ]
        ):
            fields = slash("/cloudpilot", text, user=ALICE, channel=CHANNEL, response_url=slack.response_url(f"r{i}"))
            body = urllib.parse.urlencode(fields)
            headers = signed_headers(body, SIGNING_SECRET) | {"Content-Type": "application/x-www-form-urlencoded"}
            assert (await http.post("/slack/events", content=body, headers=headers)).status_code == 200
        said = await eventually(
            lambda: len(slack.responses) == 8 and {r["id"]: r for r in slack.responses}, "8 answers"
        )
    assert "`diagnose <namespace>`" in said["r0"]["text"]
    assert "Deployment" in said["r1"]["text"] and namespace in said["r1"]["text"]
    assert said["r2"]["text"] == "No plans are waiting for approval."
    assert said["r3"]["text"].startswith("Usage: `diagnose <namespace>`")
    assert said["r4"]["text"].startswith("#1 [open] critical Deployment shop/web: BackOff")
    assert "There is no incident 7." in said["r5"]["text"]
    assert said["r6"]["text"].startswith(f"Incident #1 acknowledged by slack:{ALICE}")  # the verified Slack user
    assert said["r7"]["text"].startswith(f"Incident 1 is acknowledged by slack:{ALICE}")  # once only
    assert all(r["response_type"] == "ephemeral" for r in said.values())
    assert caplog.records  # the libraries did log, at length
    assert not any(secret in caplog.text for secret in (BOT_TOKEN, SIGNING_SECRET, APP_TOKEN))


async def test_socket_mode_mention_and_click(write_settings, tmp_path, slack):
    settings = chat_settings(write_settings, tmp_path, slack, None)
    settings = settings.model_copy(update={"slack": settings.slack.model_copy(update={"mode": "socket"})})
    async with running(settings) as (bots, _):
        assert bots.slack_endpoint is None  # no public endpoint in Socket Mode
        import anyio

        async with anyio.create_task_group() as tg:
            tg.start_soon(bots.serve)
            await anyio.to_thread.run_sync(slack.wait_connected)
            envelope = slack.push("events_api", event_body(mention("pending", user=ALICE, channel=CHANNEL)))
            await anyio.to_thread.run_sync(slack.wait_ack, envelope)
            answer = await eventually(lambda: slack.posts(CHANNEL), "the answer over Socket Mode")
            assert answer[0]["text"] == "No plans are waiting for approval."
            click_envelope = slack.push(
                "interactive", block_action("cloudpilot_approve", "ap-gone", user=ALICE, channel=CHANNEL)
            )
            await anyio.to_thread.run_sync(slack.wait_ack, click_envelope)
            stale = await eventually(lambda: ephemeral_to(slack, ALICE), "the stale click's answer")
            assert "no approval" in stale[0]
            tg.cancel_scope.cancel()


async def test_a_plan_made_elsewhere_reaches_the_channel_and_is_approved_there(
    api, namespace, write_settings, tmp_path, slack
):
    """Autofix from a terminal or an alert: the plan goes through the outbox to the default channel, with buttons."""
    BAD_PROBE.build(api, namespace)
    settings = chat_settings(write_settings, tmp_path, slack, None)
    async with running(settings) as (bots, http):
        operator = Principal("oncall (terminal)", frozenset({"read", "write"}), transport="direct")
        reply = await bots.bot.team.autofix(namespace, deployment="web", user=operator)
        assert reply.status == "awaiting_approval"
        [plan] = await eventually(lambda: slack.messages("C0ALERTS"), "the plan in the alerts channel")
        assert plan_message_in(plan) and reply.approval.id in json.dumps(plan["blocks"])
        with kubelet(api, namespace, "ready"):
            payload = block_action(
                "cloudpilot_approve", reply.approval.id, user=BOB, channel="C0ALERTS", message_ts=plan["ts"]
            )
            body = urllib.parse.urlencode({"payload": json.dumps(payload)})
            headers = signed_headers(body, SIGNING_SECRET) | {"Content-Type": "application/x-www-form-urlencoded"}
            assert (await http.post("/slack/events", content=body, headers=headers)).status_code == 200
            await eventually(lambda: "applied and verified" in shown(slack.messages("C0ALERTS")[0]), "the outcome", 90)
        assert BAD_PROBE.fixed(deployment(api, namespace))


async def test_a_follow_up_in_the_thread_keeps_the_conversation(write_settings, tmp_path, slack, llm):
    """One chat thread is one agent thread: the second question reaches the model with the first one before it."""
    llm.respond = lambda request: Text(f"answer {len(request['messages'])}")
    settings = chat_settings(write_settings, tmp_path, slack, None)
    settings = settings.model_copy(
        update={
            "llm": settings.llm.model_copy(
                update={"base_url": llm.base_url, "model": "scripted", "api_key": LLM_KEY, "max_retries": 1}
            )
        }
    )
    root = "1700000500.000100"
    async with running(settings, model="settings") as (_, http):
        await post_event(http, mention("which pods restart most?", user=ALICE, channel=CHANNEL, ts=root))
        await eventually(lambda: any("answer" in m["text"] for m in slack.messages(CHANNEL)), "the first answer")
        follow_up = mention("and since when?", user=ALICE, channel=CHANNEL, ts="1700000501.000100", thread_ts=root)
        await post_event(http, follow_up)
        await eventually(lambda: len([m for m in slack.messages(CHANNEL) if "answer" in m["text"]]) == 2, "the second")
        other = mention("and since when?", user=BOB, channel=CHANNEL, ts="1700000600.000100")  # a new thread
        await post_event(http, other)
        await eventually(lambda: len([m for m in slack.messages(CHANNEL) if "answer" in m["text"]]) == 3, "the third")
    asked = [json.dumps(r["messages"]) for r in llm.requests]
    second = next(r for r in asked if "since when" in r)
    assert "which pods restart most" in second  # the thread's earlier question came along
    third = [r for r in asked if "since when" in r][-1]
    assert "which pods restart most" not in third  # a new chat thread starts a new conversation
