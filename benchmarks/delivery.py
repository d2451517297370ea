"""The chat delivery path, measured against the local Slack and Feishu stand-ins (the real `slack_sdk` and `lark_oapi`
clients over loopback HTTP) and the real control plane:

1. Notifications per second through the outbox (stored, routed, rendered, posted, recorded), beside the baseline
   of posting the same messages straight from a loop with no outbox (what a bare webhook-style notifier does); then
   through a 429 storm with Retry-After, counting duplicates and losses.
2. Time from an Approve click (a signed HTTP request into the Slack app) to the fix being written to the cluster
   (the audit's "applied" record; the rollout and its verification come after and are not counted), beside the
   baseline of the same decision made through the Python API (`Team.decide`, the CLI's path).

    python -m benchmarks.delivery [--messages 1000] [--channels 20] [--clicks 5]

Per-channel pacing is set high here (1000/s) to measure the machinery; production keeps Slack's 1/s per channel.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from functools import partial
from pathlib import Path

import httpx
from pydantic import SecretStr
from slack_sdk.web.async_client import AsyncWebClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bots.serve import Bots  # noqa: E402
from notifiers import Channel, Notification, Outbox  # noqa: E402
from notifiers.blocks import message  # noqa: E402
from notifiers.feishu import FeishuChannel, client  # noqa: E402
from notifiers.slack import SlackChannel  # noqa: E402
from runtime import Principal, Runtime  # noqa: E402
from settings import BotSettings, Settings, SlackSettings  # noqa: E402
from store import AuditLog, Store  # noqa: E402
from tests.chat.feishu_mock import FeishuMock  # noqa: E402
from tests.chat.slack_mock import SlackMock, block_action, signed_headers  # noqa: E402
from tests.cluster.controlplane import ControlPlane  # noqa: E402
from tests.fix.scenarios import SCENARIOS, kubelet  # noqa: E402

TOKEN, SECRET = "xoxb-bench", "bench-signing-secret"
OPERATOR = Principal("bench (operator)", frozenset({"read", "write"}), transport="direct")


def notes(n: int, channels: int, prefix: str) -> list[tuple[Notification, str]]:
    return [
        (Notification(f"{prefix} alert {i}", f"pod web-{i} restarted", severity="warning"), f"C{i % channels:03d}")
        for i in range(n)
    ]


async def through_outbox(channel: Channel, platform: str, work: list[tuple[Notification, str]], path: Path) -> float:
    store = Store(path)
    try:
        box = Outbox(store, [channel], per_channel_per_second=1000)
        started = time.perf_counter()
        for n, to in work:
            box.enqueue(n, [f"{platform}:{to}"])
        await box.drain(timeout=600)
        return time.perf_counter() - started
    finally:
        store.close()


async def direct(client_: AsyncWebClient, work: list[tuple[Notification, str]]) -> float:
    started = time.perf_counter()
    for n, to in work:
        text, blocks = message(n)
        await client_.chat_postMessage(channel=to, text=text, blocks=blocks)
    return time.perf_counter() - started


async def delivery(messages: int, channels: int, tmp: Path) -> list[tuple[str, str, str]]:
    rows = []
    with SlackMock(bot_token=TOKEN) as slack:
        web = AsyncWebClient(token=TOKEN, base_url=slack.base_url)
        work = notes(messages, channels, "direct")
        took = await direct(web, work)
        rows.append(("Slack, posted straight from a loop (baseline, no outbox)", f"{messages / took:,.0f}/s", "—"))

        work = notes(messages, channels, "outbox")
        took = await through_outbox(SlackChannel(web), "slack", work, tmp / "slack.db")
        posted = [p for p in slack.posts() if p["text"].startswith("[warning] outbox")]
        rows.append(("Slack through the outbox", f"{messages / took:,.0f}/s", f"{len(posted)}/{messages} once"))

        slack.fail_all(status=429, retry_after=1, seconds=2.0)
        work = notes(messages, channels, "storm")
        took = await through_outbox(SlackChannel(web), "slack", work, tmp / "storm.db")
        posted = [p["metadata"]["event_payload"]["id"] for p in slack.posts() if "storm" in p["text"]]
        once = len(set(posted)) == len(posted) == messages
        rows.append(
            (
                "Slack through the outbox, 2 s 429 storm (Retry-After 1 s)",
                f"{messages / took:,.0f}/s ({took:.1f} s)",
                f"{len(set(posted))}/{messages}, {'each once' if once else 'DUPLICATES OR LOSSES'}",
            )
        )
    with FeishuMock(app_id="cli_bench", app_secret="bench") as feishu:
        work = notes(messages, channels, "outbox")
        channel = FeishuChannel(client("cli_bench", SecretStr("bench"), feishu.domain))
        took = await through_outbox(channel, "feishu", work, tmp / "feishu.db")
        rows.append(
            ("Feishu cards through the outbox", f"{messages / took:,.0f}/s", f"{len(feishu.messages())}/{messages}")
        )
    return rows


async def until(check: Callable[[], bool], timeout: float = 60.0) -> float:
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > timeout:
            raise TimeoutError("the fix was not applied in time")
        await asyncio.sleep(0.002)
    return time.perf_counter()


async def clicks(count: int, tmp: Path) -> list[tuple[str, str, str]]:
    scenario = SCENARIOS[0]
    took: dict[str, list[float]] = {"click": [], "api": []}
    with ControlPlane(tmp / "cp") as cp, SlackMock(bot_token=TOKEN) as slack:
        settings = Settings(
            k8s={"kubeconfig": cp.kubeconfig, "context": None, "cache_ttl_seconds": 0},
            store={"path": tmp / "bench.db"},
            safety={"allow_write": True},
            agents={"checkpoint_path": tmp / "threads.db"},
            notify={"log": False},
            fix={"verify_timeout_seconds": 60},
        ).model_copy(
            update={
                "slack": SlackSettings(
                    bot_token=TOKEN, signing_secret=SECRET, api_url=slack.base_url, default_channel="C0BENCH"
                ),
                "bots": BotSettings(approvers=[{"slack_users": ["U0BENCH"]}]),
            }
        )
        rt = Runtime(settings)
        try:
            async with Bots.open(rt, model=None) as bots:
                transport = httpx.ASGITransport(app=bots.routes())
                async with httpx.AsyncClient(transport=transport, base_url="http://bot") as http:
                    for i in range(count * 2):
                        how = "click" if i % 2 == 0 else "api"
                        ns = f"bench-{i}"
                        cp.api("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
                        scenario.build(cp.api, ns)
                        reply = await bots.bot.team.autofix(ns, deployment="web", user=OPERATOR)
                        assert reply.approval is not None, reply.answer
                        plan_id = reply.approval.plan_id
                        applied = partial(was_applied, rt, plan_id)
                        with kubelet(cp.api, ns, "ready"):
                            started = time.perf_counter()
                            if how == "click":
                                await click(http, reply.approval.id, plan_ts(slack, reply.approval.id))
                            else:
                                decided = asyncio.ensure_future(
                                    bots.bot.team.decide(reply.approval.id, approve=True, decider=OPERATOR)
                                )
                            took[how].append(await until(applied) - started)
                            if how == "api":
                                await decided
                            else:
                                await until(lambda: "applied and verified" in json.dumps(slack.updates[-1:]), 90)
        finally:
            rt.close()
    return [
        ("Approve click → fix written (signed HTTP into the Slack app)", *_ms(took["click"])),
        ("Team.decide → fix written (baseline: the CLI's path)", *_ms(took["api"])),
    ]


def was_applied(rt: Runtime, plan_id: str) -> bool:
    return bool(AuditLog(rt.store).entries(plan_id=plan_id, event="applied"))


def plan_ts(slack: SlackMock, approval_id: str) -> str:
    return next(m["ts"] for m in slack.messages("C0BENCH") if approval_id in json.dumps(m.get("blocks")))


async def click(http: httpx.AsyncClient, approval_id: str, ts: str) -> None:
    payload = block_action("cloudpilot_approve", approval_id, user="U0BENCH", channel="C0BENCH", message_ts=ts)
    body = urllib.parse.urlencode({"payload": json.dumps(payload)})
    headers = signed_headers(body, SECRET) | {"Content-Type": "application/x-www-form-urlencoded"}
    answer = await http.post("/slack/events", content=body, headers=headers)
    assert answer.status_code == 200, answer.text


def _ms(values: list[float]) -> tuple[str, str]:
    ms = sorted(v * 1000 for v in values)
    return f"median {statistics.median(ms):.0f} ms", f"max {ms[-1]:.0f} ms (n={len(ms)})"


def table(title: str, header: tuple[str, str, str], rows: list[tuple[str, str, str]]) -> None:
    print(f"\n{title}\n| {' | '.join(header)} |\n|---|---|---|")
    for row in rows:
        print(f"| {' | '.join(row)} |")


async def main_async(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="cloudpilot-delivery-"))
    table(
        f"Delivery: {args.messages} notifications over {args.channels} channels",
        ("path", "throughput", "delivered"),
        await delivery(args.messages, args.channels, tmp),
    )
    if args.clicks:
        table("Approval to change", ("path", "time to applied", "worst"), await clicks(args.clicks, tmp))


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--clicks", type=int, default=5, help="approvals timed per path (0 skips the cluster part)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
