"""cloudpilot bot — run the Slack and Feishu/Lark apps that the settings configure (see the README's "Chat" section):
mentions and DMs answered in threads, Approve / Reject buttons, short commands, and the chat outbox's deliveries."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from bots.serve import Bots
from cli import run
from runtime import Runtime
from settings import Settings
from store import Store


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cloudpilot bot", description=__doc__)
    p.add_argument("--config", type=Path, help="YAML settings file")
    p.set_defaults(command="bot")
    return p


def main(argv: list[str]) -> int:
    return run("bot", parser(), argv, command)


def command(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(settings, store))
    return 0


async def _serve(settings: Settings, store: Store) -> None:
    async with Bots.open(Runtime(settings, store)) as bots:
        await bots.serve()
