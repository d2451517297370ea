"""The coder: data analysis on metric series — anomalies, correlation, forecasting, replica sizing — through the
engines' tools; and, only when `agents.sandbox` is on, small model-written Python in the sandbox
(agents/sandbox.py: no network, no credentials, CPU/memory/time limits)."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage
from langchain_core.tools import BaseTool, StructuredTool

import prompts
from agents.crew import Turn
from agents.react import react
from agents.state import TeamState
from tools.catalogue import ToolSpec

NAME = "coder"
ANALYSIS = frozenset(
    {"anomalies_in_query", "correlate_series", "forecast_series", "recommend_replicas", "rca_from_csv"}
)


def allowed(turn: Turn) -> list[ToolSpec]:
    return [s for s in turn.crew.tools(turn.user, toolsets={"rca"}, access={"read"}) if s.name in ANALYSIS]


def sandbox_tool(turn: Turn) -> BaseTool:
    from agents.sandbox import run_python

    settings = turn.crew.settings.agents

    async def python_sandbox(code: str, data: dict[str, Any] | None = None) -> str:
        """Run a short Python program (numpy and pandas available; no network, no files outside a temporary
        directory, no credentials) and return what it prints. `data` (e.g. series from the tools) is the
        program's `DATA`."""
        result = await run_python(code, settings, data)
        return f"{result.exit_reason} after {result.seconds:.1f}s\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"

    return StructuredTool.from_function(coroutine=python_sandbox, name="python_sandbox")


async def run(turn: Turn, state: TeamState) -> dict[str, Any]:
    if turn.crew.model is None:
        text = "The coder needs a model (llm.*); the analysis tools can be called directly."
        return {"messages": [AIMessage(text, name=NAME)]}
    extra = [sandbox_tool(turn)] if turn.crew.settings.agents.sandbox else []
    report = await react(turn, prompts.load(NAME), state.get("task") or "", allowed(turn), extra=extra)
    return {"messages": [AIMessage(report, name=NAME)]}
