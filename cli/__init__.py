"""Operator commands, run on the server's machine by someone with its shell (never reachable from a tool call):

cloudpilot clusters add|list|remove ...   clusters that need local files or exec plugins
cloudpilot tokens create|list|revoke ...  bearer tokens for the HTTP transport
cloudpilot chat | autofix NAMESPACE ...    the agent team at a terminal, plans approved inline
cloudpilot approvals [list|approve|reject] the team's pending plans; cloudpilot trace THREAD: a thread's steps
cloudpilot bot                             the Slack and Feishu/Lark apps, and the chat outbox's deliveries
cloudpilot watch                           incidents from cluster events and alerts (in progress)
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from pydantic import ValidationError

from errors import CloudPilotError
from settings import Settings, load_settings
from store import open_store

COMMANDS = {
    "clusters": "cli.clusters:main",
    "tokens": "cli.tokens:main",
    "chat": "cli.chat:main",
    "autofix": "cli.autofix:main",
    "approvals": "cli.approvals:main",
    "trace": "cli.approvals:trace_main",
    "bot": "cli.bot:main",
    "watch": "cli.watch:main",
}


def dispatch(argv: list[str]) -> int | None:
    """Run an operator command when `argv` names one; None when it does not (the server starts instead)."""
    if not argv or argv[0] not in COMMANDS:
        return None
    module, _, function = COMMANDS[argv[0]].partition(":")
    return int(getattr(importlib.import_module(module), function)(argv[1:]))


class UsageError(Exception):
    """The command line or a file it names is wrong (exit 2)."""


class Failed(Exception):
    """The command was understood but refused or did not succeed (exit 1)."""


def run(group: str, parser: argparse.ArgumentParser, argv: list[str], command: Callable[..., int]) -> int:
    """Parse `argv`, load settings (--config) and open the store, then run `command(args, settings, store)`:
    exit 0 done, 1 refused or failed, 2 bad usage. Messages go to stderr and never quote setting values."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse has printed the usage (or the help)
        return 0 if e.code in (0, None) else 2
    if not getattr(args, "command", None):
        parser.print_usage(sys.stderr)
        return 2
    try:
        settings: Settings = load_settings(args.config)
    except ValidationError as e:  # named fields and rules only, never the values (they may be secrets)
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        return error(group, f"invalid settings: {problems}", 2)
    except (FileNotFoundError, ValueError) as e:
        return error(group, f"cannot load settings: {e}", 2)
    try:
        store = open_store(settings)
    except CloudPilotError as e:  # the store cannot be reached: say so, without the URL's password
        return error(group, str(e), 1)
    try:
        return int(command(args, settings, store))
    except UsageError as e:
        return error(group, str(e), 2)
    except (Failed, CloudPilotError) as e:
        return error(group, str(e), 1)
    finally:
        store.close()


def error(group: str, message: str, code: int) -> int:
    print(f"cloudpilot {group}: {message}", file=sys.stderr)
    return code
