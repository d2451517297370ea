"""Operator commands, run on the server's machine by someone with its shell (never reachable from a tool call):

cloudpilot clusters add|list|remove ...   clusters that need local files or exec plugins
cloudpilot tokens create|list|revoke ...  bearer tokens for the HTTP transport
"""

from __future__ import annotations

import importlib

COMMANDS = {"clusters": "cli.clusters", "tokens": "cli.tokens"}


def dispatch(argv: list[str]) -> int | None:
    """Run an operator command when `argv` names one; None when it does not (the server starts instead)."""
    if not argv or argv[0] not in COMMANDS:
        return None
    module = importlib.import_module(COMMANDS[argv[0]])
    return int(module.main(argv[1:]))
