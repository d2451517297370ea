"""Every module of agents/ imports without a model configured, in a fresh interpreter with no LLM settings."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import agents

ROOT = Path(__file__).resolve().parents[2]


def test_every_agents_module_imports_without_a_model(tmp_path: Path) -> None:
    names = sorted(f"agents.{m.name}" for m in pkgutil.iter_modules(agents.__path__))
    assert {"agents.api", "agents.graph", "agents.supervisor", "agents.researcher", "agents.fixer"} <= set(names)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDPILOT_", "OPENAI_"))}
    env |= {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path)}
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\nprint(len(sys.argv) - 1)"
    done = subprocess.run(
        [sys.executable, "-c", code, *names], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == str(len(names))


async def test_no_model_means_a_clear_message_and_the_autopilot_still_runs(runtime, tmp_path) -> None:
    from agents.api import Team
    from runtime import Principal

    async with Team.open(runtime, sinks=[]) as team:  # the settings name no model
        assert team.crew.model is None
        reply = await team.ask("why is checkout slow?", user=Principal("p", frozenset({"read"})))
    assert reply.status == "answered"
    assert "No language model is configured" in reply.answer and "CLOUDPILOT_LLM__BASE_URL" in reply.answer
    assert "autofix works without" in reply.answer.lower() or "autofix workflow works" in reply.answer
