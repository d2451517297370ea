"""cloudpilot watch — notice incidents without being asked: watch the clusters' events, receive Alertmanager and other
systems' events, group them into incidents, tell the routed channel, and have the team investigate and plan a fix
(which still waits for a person's approval)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from cli import run
from engines.incidents.policy import Policy
from errors import CloudPilotError
from runtime import Runtime
from settings import Settings
from store import Store
from watch.pipeline import policy_from_settings
from watch.service import serve


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cloudpilot watch", description=__doc__)
    p.add_argument("--config", type=Path, help="YAML settings file")
    p.add_argument(
        "--check-policy",
        action="store_true",
        help="validate watch.policy_file, say what it allows, and exit (nothing is watched)",
    )
    p.set_defaults(command="watch")
    return p


def main(argv: list[str]) -> int:
    return run("watch", parser(), argv, command)


def command(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    if args.check_policy:
        print(describe(policy_from_settings(Runtime(settings, store)), settings.watch.policy_file))
        return 0
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(until_stopped(serve(Runtime(settings, store))))
    except Exception as exc:  # a refusal that stops the pipeline (no RBAC for Leases, ...) is a message, not a trace
        refusal = first_refusal(exc)
        if refusal is None:
            raise
        print(f"cloudpilot watch: {refusal}", file=sys.stderr)
        return 1
    return 0


def first_refusal(exc: BaseException) -> CloudPilotError | None:
    """The CloudPilotError in `exc`, or in the task group's exception group it arrived in."""
    if isinstance(exc, CloudPilotError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = first_refusal(inner)
            if found is not None:
                return found
    return None


async def until_stopped(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` until SIGTERM or SIGINT cancels it, so that it stops cleanly: its watches end and, with
    watch.leader_election, its Leases are released for another replica to take over at once."""
    task = asyncio.ensure_future(main)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def describe(policy: Policy, path: Path | None) -> str:
    if path is None:
        return "No watch.policy_file: every fix waits for a person's approval."
    lines = [f"{path}: valid" + (" (dry run: nothing is applied automatically)" if policy.dry_run else "")]
    for rule in policy.rules:
        after = f" after a {rule.after_change} within {rule.within_minutes} min" if rule.after_change else ""
        lines.append(
            f"- rule {rule.name}: {', '.join(rule.actions)} for {', '.join(rule.findings)} in namespaces "
            f"{', '.join(rule.namespaces)} of clusters {', '.join(rule.clusters)}{after}, risk up to {rule.max_risk}"
        )
    lines += [f"- maintenance window {w.name}" for w in policy.maintenance]
    limits = policy.limits
    lines.append(
        f"- at most {limits.per_hour} automatic fixes an hour; stop after {limits.failures_before_stop} failures"
    )
    return "\n".join(lines)
