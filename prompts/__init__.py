"""Prompt texts, kept as files and loaded by name: system prompts for the agents, templates for MCP clients."""

from __future__ import annotations

from importlib import resources


def load(name: str) -> str:
    """The text of prompts/<name>.md."""
    return resources.files(__package__).joinpath(f"{name}.md").read_text(encoding="utf-8")
