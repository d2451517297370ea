"""The chat outbox against the local Slack and Feishu stand-ins, through the real `slack_sdk` and `lark_oapi` clients:
429 storms with Retry-After, a restart mid-storm, a crash between a post and its record, de-duplication into one
updated message, per-channel pacing, routing, and the two webhooks."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from pydantic import SecretStr

from notifiers import Notification, Outbox, destinations
from notifiers.feishu import FeishuChannel, FeishuWebhookNotifier, client
from notifiers.slack import SlackChannel, SlackWebhookNotifier
from settings import Settings
from store import open_store
from tests.chat.feishu_mock import FeishuMock
from tests.chat.slack_mock import SlackMock

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60), pytest.mark.stores]  # `store`: SQLite, then PostgreSQL

TOKEN = "xoxb-outbox-test"


@pytest.fixture
def slack() -> Iterator[SlackMock]:
    with SlackMock(bot_token=TOKEN) as server:
        yield server


@pytest.fixture
def feishu() -> Iterator[FeishuMock]:
    with FeishuMock(app_id="cli_outbox", app_secret="outbox-secret") as server:
        yield server


def slack_channel(slack: SlackMock) -> SlackChannel:
    return SlackChannel.from_token(SecretStr(TOKEN), slack.base_url)


def feishu_channel(feishu: FeishuMock) -> FeishuChannel:
    return FeishuChannel(client("cli_outbox", SecretStr("outbox-secret"), feishu.domain))


def alert(i: int, **kw: Any) -> Notification:
    return Notification(title=f"Pod web-{i} crash-looping", text=f"restart #{i}", severity="warning", **kw)


def posted_ids(slack: SlackMock, channel: str) -> list[str]:
    return [p["metadata"]["event_payload"]["id"] for p in slack.posts(channel)]


async def test_a_429_storm_delivers_every_message_exactly_once_in_order(slack, store):
    slack.fail("chat.postMessage", 5, status=429, retry_after=1)
    box = Outbox(store, [slack_channel(slack)], per_channel_per_second=50)
    sent = {c: [alert(i) for i in range(10)] for c in ("C1", "C2")}
    for i in range(10):
        for channel, notes in sent.items():
            box.enqueue(notes[i], [f"slack:{channel}"])
    started = time.monotonic()
    await box.drain(timeout=30)
    assert time.monotonic() - started >= 1.0  # the storm's Retry-After was waited out, not hammered
    assert len(slack.rejected) == 5
    for channel, notes in sent.items():
        assert posted_ids(slack, channel) == [n.id for n in notes]  # each once, in order
    assert {r.status for r in box.rows()} == {"sent"} and box.backlog() == 0


async def test_the_outbox_survives_a_restart_mid_storm(slack, store_settings):
    first = open_store(Settings(store=store_settings))
    box = Outbox(first, [slack_channel(slack)], per_channel_per_second=50)
    notes = [alert(i) for i in range(12)]
    slack.fail_all(status=429, retry_after=1, seconds=600)  # until the restart below
    for n in notes:
        box.enqueue(n, ["slack:C1"])
    async with anyio.create_task_group() as worker:  # the worker runs into the storm, then the process "stops"
        worker.start_soon(box.run)
        with anyio.fail_after(30):
            while not slack.rejected:
                await anyio.sleep(0.02)
        worker.cancel_scope.cancel()
    first.close()
    assert slack.posts() == [] and slack.rejected  # nothing got through before the restart
    slack.fail_all(seconds=0)  # the storm is over

    second = open_store(Settings(store=store_settings))
    try:
        await Outbox(second, [slack_channel(slack)], per_channel_per_second=50).drain(timeout=30)
    finally:
        second.close()
    assert posted_ids(slack, "C1") == [n.id for n in notes]


async def test_a_post_that_landed_before_a_crash_is_found_not_repeated(slack, store):
    channel = slack_channel(slack)
    box = Outbox(store, [channel])
    note = alert(1)
    [row_id] = box.enqueue(note, ["slack:C1"])
    # the crash: the post reached Slack, the process died before recording it
    store.execute("UPDATE outbox SET status = 'sending' WHERE id = ?", (row_id,))
    await channel.post(box.rows()[0].notification, "C1", 1)
    await Outbox(store, [channel]).drain(timeout=10)
    assert posted_ids(slack, "C1") == [note.id]
    assert box.rows()[0].status == "sent"


async def test_feishu_storm_and_idempotent_repost(feishu, store):
    feishu.fail("im.message.create", 3, status=429, reset=1)
    channel = feishu_channel(feishu)
    box = Outbox(store, [channel], per_channel_per_second=50)
    notes = [alert(i) for i in range(5)]
    for n in notes:
        box.enqueue(n, ["feishu:oc_1"])
    await box.drain(timeout=30)
    cards = feishu.messages("oc_1")
    assert [c["content"]["header"]["title"]["content"] for c in cards] == [f"[warning] {n.title}" for n in notes]
    assert len(feishu.rejected) == 3

    again = alert(99)
    [row_id] = box.enqueue(again, ["feishu:oc_1"])
    await channel.post(box.rows()[-1].notification, "oc_1", 1)  # landed, then a crash before the record
    store.execute("UPDATE outbox SET status = 'sending' WHERE id = ?", (row_id,))
    await box.drain(timeout=10)
    assert len(feishu.messages("oc_1")) == 6  # the repost carried the same uuid: still one message


async def test_repeats_within_the_window_become_one_updated_message(slack, feishu, store):
    box = Outbox(
        store, [slack_channel(slack), feishu_channel(feishu)], dedup_window_seconds=600, per_channel_per_second=50
    )
    for _ in range(5):
        box.enqueue(alert(7, namespace="shop"), ["slack:C1", "feishu:oc_1"])
        await box.drain(timeout=10)
    assert len(slack.posts("C1")) == 1 and len(feishu.messages("oc_1")) == 1
    message = slack.messages("C1")[0]
    assert "(×5)" in message["text"] and "(×5)" in json.dumps(message["blocks"], ensure_ascii=False)
    assert "(×5)" in feishu.messages("oc_1")[0]["content"]["header"]["title"]["content"]
    box.enqueue(alert(8, namespace="shop"), ["slack:C1"])  # another alert is another message
    await box.drain(timeout=10)
    assert len(slack.posts("C1")) == 2


async def test_outside_the_window_a_repeat_is_a_new_message(slack, store):
    now = [1_000_000.0]
    box = Outbox(store, [slack_channel(slack)], dedup_window_seconds=60, clock=lambda: now[0])
    box.enqueue(alert(1), ["slack:C1"])
    await box.pump()
    now[0] += 61
    box.enqueue(alert(1), ["slack:C1"])
    await box.pump()
    assert len(slack.posts("C1")) == 2


async def test_sends_into_one_channel_are_paced(slack, store):
    box = Outbox(store, [slack_channel(slack)], per_channel_per_second=10)
    for i in range(6):
        box.enqueue(alert(i), ["slack:C1"])
        box.enqueue(alert(i + 100), ["slack:C2"])
    started = time.monotonic()
    await box.drain(timeout=20)
    assert len(slack.posts("C1")) == 6 and len(slack.posts("C2")) == 6
    assert time.monotonic() - started >= 0.5  # 6 posts into one channel at 10/s take at least 0.5 s


async def test_a_permanent_error_fails_the_row_and_keeps_the_rest(slack, store):
    box = Outbox(store, [slack_channel(slack)], per_channel_per_second=50)
    slack.fail("chat.postMessage", 1, status=200, retry_after=None, body='{"ok": false, "error": "channel_not_found"}')
    box.enqueue(alert(1), ["slack:C404"])
    await box.drain(timeout=10)
    box.enqueue(alert(2), ["slack:C1"])
    await box.drain(timeout=10)
    statuses = {r.dest: (r.status, r.notification.title) for r in box.rows()}
    assert statuses["slack:C404"][0] == "failed" and statuses["slack:C1"][0] == "sent"
    failed = store.execute("SELECT error FROM outbox WHERE status = 'failed'")
    assert "channel_not_found" in failed[0]["error"] and TOKEN not in failed[0]["error"]


def test_routing_rules_and_defaults():
    settings = Settings(
        slack={"bot_token": "x", "default_channel": "C0DEF"},
        feishu={"app_id": "a", "app_secret": "s", "default_chat": "oc_def"},
        notify={
            "routes": [
                {"to": "slack:C0PAGE", "min_grade": "critical"},
                {"to": "feishu:oc_shop", "namespaces": ["shop*"]},
                {"to": "slack:C0PROD", "clusters": ["prod-*"], "min_grade": "warning"},
            ]
        },
    )
    both = ["slack", "feishu"]
    info = Notification("t", "x", namespace="web")
    assert destinations(info, both, settings) == ["slack:C0DEF", "feishu:oc_def"]  # nothing matched: defaults
    shop = Notification("t", "x", namespace="shop-eu")
    assert destinations(shop, both, settings) == ["feishu:oc_shop"]
    help_ = Notification("t", "x", severity="warning", human_help=True, cluster="prod-1", namespace="shop")
    assert destinations(help_, both, settings) == ["slack:C0PAGE", "feishu:oc_shop", "slack:C0PROD"]
    assert destinations(help_, ["slack"], settings) == ["slack:C0PAGE", "slack:C0PROD"]  # feishu not configured
    with pytest.raises(ValueError, match="to"):
        Settings(notify={"routes": [{"to": "email:ops@example.com"}]})


async def test_slack_incoming_webhook_retries_after_429(slack):
    slack.fail("respond", 1, status=429, retry_after=1)
    sink = SlackWebhookNotifier(SecretStr(slack.response_url("hook")))
    await sink.send(alert(1))
    assert len(slack.responses) == 1 and "crash-looping" in slack.responses[0]["text"]


async def test_feishu_custom_bot_webhook_is_signed(feishu):
    feishu.hook_secret = {"tok-1": "hook-secret"}
    good = FeishuWebhookNotifier(SecretStr(f"{feishu.domain}/open-apis/bot/v2/hook/tok-1"), SecretStr("hook-secret"))
    await good.send(alert(1))
    assert len(feishu.hooks) == 1 and feishu.hooks[0][1]["card"]["header"]["template"] == "orange"
    bad = FeishuWebhookNotifier(SecretStr(f"{feishu.domain}/open-apis/bot/v2/hook/tok-1"), SecretStr("wrong"))
    with pytest.raises(Exception, match="code 19021"):
        await bad.send(alert(2))
    assert len(feishu.hooks) == 1
