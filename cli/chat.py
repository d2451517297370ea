"""cloudpilot chat [--thread ID] — talk to the agent team at a terminal. Progress streams as it works; a plan is
approved inline. Commands: /new (a new thread), /trace (this thread's steps), /quit."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from agents.api import Team
from cli import run
from cli.team import OPERATOR, Progress, runtime, settle, show
from errors import CloudPilotError
from settings import Settings
from store import Store


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cloudpilot chat", description=__doc__)
    p.add_argument("--thread", help="continue this thread")
    p.add_argument("--config", type=Path, help="YAML settings file")
    p.set_defaults(command="chat")
    return p


def main(argv: list[str]) -> int:
    return run("chat", parser(), argv, command)


def command(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    return asyncio.run(_chat(args.thread, settings, store))


async def _chat(thread: str | None, settings: Settings, store: Store) -> int:
    rt = runtime(settings, store)
    async with Team.open(rt) as team:
        print("CloudPilot chat — /new, /trace, /quit")
        while True:
            try:
                line = input("you> ").strip()
            except EOFError:
                return 0
            if line in ("/quit", "/exit"):
                return 0
            if line == "/new":
                thread = None
                continue
            if line == "/trace":
                for step in team.trace(thread) if thread else []:
                    print(step.line())
                continue
            if not line:
                continue
            try:
                reply = await team.ask(line, user=OPERATOR, thread_id=thread, on_event=Progress())
            except CloudPilotError as e:
                print(f"! {e}")
                continue
            thread = reply.thread_id
            show(reply)
            await settle(team, reply)
