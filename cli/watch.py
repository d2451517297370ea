"""cloudpilot watch — notice incidents without being asked: watch the clusters' events, receive Alertmanager and other
systems' events, group them into incidents, tell the routed channel, and have the team investigate and plan a fix
(which still waits for a person's approval)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

import notifiers
from agents.api import Team
from cli import run
from runtime import Runtime
from settings import Settings
from store import Store
from watch.pipeline import Pipeline
from watch.service import Service


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cloudpilot watch", description=__doc__)
    p.add_argument("--config", type=Path, help="YAML settings file")
    p.set_defaults(command="watch")
    return p


def main(argv: list[str]) -> int:
    return run("watch", parser(), argv, command)


def command(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_watch(settings, store))
    return 0


async def _watch(settings: Settings, store: Store) -> None:
    rt = Runtime(settings, store)
    outbox = notifiers.outbox_from_settings(settings, store)
    sinks = notifiers.from_settings(settings, store, outbox)  # one outbox for the team, the pipeline and the worker
    async with Team.open(rt, sinks=sinks) as team:
        service = Service(rt, Pipeline(rt, team=team, sinks=sinks))
        tasks = [asyncio.create_task(service.run())]
        if outbox is not None:
            tasks.append(asyncio.create_task(outbox.run()))
        await asyncio.gather(*tasks)
