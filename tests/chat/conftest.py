"""Fixtures of the chat tests: a write-enabled server with a Slack and a Feishu app pointed at the local stand-ins,
approvers on allow-lists, and helpers that wait for what the bots do in the background."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from bots.serve import Bots
from runtime import Runtime
from settings import BotSettings, FeishuSettings, Settings, SlackSettings
from tests.agents.conftest import team_settings
from tests.chat.feishu_mock import ENCRYPT_KEY, VERIFICATION_TOKEN, FeishuMock
from tests.chat.slack_mock import SlackMock

SIGNING_SECRET = "slack-signing-secret-DO-NOT-LEAK"
BOT_TOKEN = "xoxb-bot-token-DO-NOT-LEAK"
APP_TOKEN = "xapp-app-token-DO-NOT-LEAK"
APP_SECRET = "feishu-app-secret-DO-NOT-LEAK"
ALICE, BOB, MALLORY = "U0ALICE", "U0BOB", "U0MALLORY"
FEI_ALICE, FEI_BOB = "ou_alice", "ou_bob"


@pytest.fixture
def slack() -> Iterator[SlackMock]:
    with SlackMock(bot_token=BOT_TOKEN, app_token=APP_TOKEN) as server:
        yield server


@pytest.fixture
def feishu() -> Iterator[FeishuMock]:
    with FeishuMock(app_id="cli_chat_test", app_secret=APP_SECRET) as server:
        yield server


def chat_settings(
    base: Settings, tmp_path: Path, slack: SlackMock | None, feishu: FeishuMock | None, **bots: Any
) -> Settings:
    """`base` as the team runs it in tests (`team_settings`) with the apps of the stand-ins that are given, Alice and
    Bob as approvers everywhere."""
    approvers = {
        "slack_users": [ALICE, BOB],
        "slack_groups": ["S0OPS"],
        "feishu_users": [FEI_ALICE, FEI_BOB],
        "feishu_groups": ["g_sre"],
    }
    update: dict[str, Any] = {
        "bots": BotSettings.model_validate({"approvers": [approvers], "progress_seconds": 0} | bots),
    }
    if slack is not None:
        update["slack"] = SlackSettings(
            bot_token=BOT_TOKEN,
            signing_secret=SIGNING_SECRET,
            app_token=APP_TOKEN,
            api_url=slack.base_url,
            default_channel="C0ALERTS",
        )
    if feishu is not None:
        update["feishu"] = FeishuSettings(
            app_id="cli_chat_test",
            app_secret=APP_SECRET,
            verification_token=VERIFICATION_TOKEN,
            encrypt_key=ENCRYPT_KEY,
            domain=feishu.domain,
            default_chat="oc_alerts",
        )
    return team_settings(base, tmp_path, **update)


@asynccontextmanager
async def running(settings: Settings, model: Any = None) -> AsyncIterator[tuple[Bots, httpx.AsyncClient]]:
    """The bots over a fresh runtime, and an HTTP client posting to their endpoints (in process, over ASGI)."""
    rt = Runtime(settings)
    try:
        async with Bots.open(rt, model=model) as bots:
            transport = httpx.ASGITransport(app=bots.routes())
            async with httpx.AsyncClient(transport=transport, base_url="http://bot") as http:
                yield bots, http
    finally:
        rt.close()


async def eventually(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll `check` until it returns something truthy (what the bots do runs in the background, on this loop)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        await anyio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
