"""cloudpilot autofix NAMESPACE [--deployment D] [--event TEXT] [--cluster C] — the autopilot, no model needed:
diagnose → RCA → plan → (your approval) → apply → verify → notify."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from agents.api import Team
from cli import run
from cli.team import OPERATOR, Progress, runtime, settle, show
from settings import Settings
from store import Store


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cloudpilot autofix", description=__doc__)
    p.add_argument("namespace")
    p.add_argument("--deployment", help="the Deployment to fix (default: what diagnosis finds in the namespace)")
    p.add_argument("--event", help="what was seen, e.g. 'readiness probe failed: 404'")
    p.add_argument("--cluster", help="cluster name (default cluster if omitted)")
    p.add_argument("--config", type=Path, help="YAML settings file")
    p.set_defaults(command="autofix")
    return p


def main(argv: list[str]) -> int:
    return run("autofix", parser(), argv, command)


def command(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    return asyncio.run(_autofix(args, settings, store))


async def _autofix(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    rt = runtime(settings, store)
    async with Team.open(rt) as team:
        reply = await team.autofix(
            args.namespace,
            user=OPERATOR,
            deployment=args.deployment,
            event=args.event,
            cluster=args.cluster,
            on_event=Progress(),
        )
        show(reply)
        reply = await settle(team, reply)
    return 0 if reply.status != "stopped" else 1
