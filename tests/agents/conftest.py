"""Fixtures of the agent-team tests: a write-enabled server whose threads live in the test's directory, people
who ask and approve, and a notifier that remembers what it was told."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from agents.api import Team
from notifiers import Notification
from runtime import Principal, Runtime
from settings import Settings

ALICE = Principal("alice (test)", frozenset({"read", "write"}), transport="agent")
BOB = Principal("bob (test)", frozenset({"read", "write"}), transport="agent")
READER = Principal("rita (test)", frozenset({"read"}), transport="agent")


class Recorder:
    """A notifier that keeps every notification."""

    name = "recorder"

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    async def send(self, n: Notification) -> None:
        self.sent.append(n)


def team_settings(write_settings: Settings, tmp_path: Path, **groups: Any) -> Settings:
    """Writes on, the team's threads in tmp_path, verification given 40 s, no log notifier; `groups` replace more."""
    return write_settings.model_copy(
        update={
            "agents": write_settings.agents.model_copy(update={"checkpoint_path": tmp_path / "threads.db"}),
            "fix": write_settings.fix.model_copy(update={"verify_timeout_seconds": 40}),
            "notify": write_settings.notify.model_copy(update={"log": False}),
            **groups,
        }
    )


@pytest.fixture
def settings(write_settings: Settings, tmp_path: Path) -> Settings:  # writes on, threads in tmp_path
    return team_settings(write_settings, tmp_path)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def team(runtime: Runtime, recorder: Recorder) -> Callable[..., AbstractAsyncContextManager[Team]]:
    """`async with team(model=...) as t:` — the team on the test runtime (no model unless given)."""

    def open_(model: Any = None) -> AbstractAsyncContextManager[Team]:
        return Team.open(runtime, model=model, sinks=[recorder])

    return open_
