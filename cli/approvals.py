"""cloudpilot approvals [list] | approve ID [--reason R] | reject ID --reason R — decide the agent team's plans as
the person at this terminal (the OS account is recorded as the approver). cloudpilot trace THREAD — a thread's
steps."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from agents.api import Team
from cli import UsageError, run
from cli.team import OPERATOR, Progress, runtime, show
from settings import Settings
from store import Store


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, help="YAML settings file")
    p = argparse.ArgumentParser(prog="cloudpilot approvals", description=__doc__, parents=[common])
    sub = p.add_subparsers(dest="command")
    sub.add_parser("list", help="pending approvals", parents=[common])
    for verb in ("approve", "reject"):
        one = sub.add_parser(verb, help=f"{verb} a pending plan", parents=[common])
        one.add_argument("id")
        one.add_argument("--reason", default="", help="why (kept in the audit log)")
    return p


def main(argv: list[str]) -> int:
    return run("approvals", parser(), argv or ["list"], command)


def command(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    if args.command == "reject" and not args.reason.strip():
        raise UsageError("a rejection needs --reason (it goes into the audit log)")
    return asyncio.run(_approvals(args, settings, store))


async def _approvals(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    async with Team.open(runtime(settings, store), model=None) as team:
        if args.command == "list":
            pending = team.pending()
            print("\n".join(a.line() for a in pending) if pending else "No approvals are pending.")
            return 0
        reply = await team.decide(
            args.id, approve=args.command == "approve", decider=OPERATOR, reason=args.reason, on_event=Progress()
        )
        show(reply)
        return 0 if (reply.outcome or {}).get("status") in ("verified", "rejected") else 1


def trace_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cloudpilot trace", description="Every step of an agent thread.")
    p.add_argument("thread")
    p.add_argument("--config", type=Path, help="YAML settings file")
    p.set_defaults(command="trace")
    return p


def trace_main(argv: list[str]) -> int:
    return run("trace", trace_parser(), argv, trace)


def trace(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    async def steps() -> int:
        async with Team.open(runtime(settings, store), model=None) as team:
            found = team.trace(args.thread)
            print("\n".join(s.line() for s in found) if found else f"No steps recorded for thread {args.thread}.")
        return 0

    return asyncio.run(steps())
