"""The researcher: gathers evidence with the read tools (cluster, Istio, diagnosis, events, logs, metrics, RCA,
runbooks) and names the root cause. Never changes anything."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage

import prompts
from agents import autopilot
from agents.crew import Turn
from agents.react import react
from agents.state import TeamState
from guard.pipeline import Answer
from tools.catalogue import ToolSpec
from tools.diagnose import Diagnosis

NAME = "researcher"
TOOLSETS = {"core", "istio", "diagnose", "rca", "runbooks", "incidents"}
ANALYSIS = frozenset({"rca_from_csv", "correlate_series", "forecast_series", "recommend_replicas"})  # the coder's


def allowed(turn: Turn) -> list[ToolSpec]:
    return turn.crew.tools(turn.user, toolsets=TOOLSETS, access={"read"}, exclude=ANALYSIS)


async def run(turn: Turn, state: TeamState) -> dict[str, Any]:
    if state.get("mode") == "autofix" or turn.crew.model is None:
        found = await autopilot.research(turn, state.get("request") or {})
        report = found.pop("report")
        return found | {"messages": [AIMessage(report, name=NAME)]}
    kept: dict[str, Any] = {}

    def keep(tool: str, answer: Answer) -> None:
        if tool == "diagnose" and isinstance(answer.result, Diagnosis) and answer.result.findings:
            top = answer.result.findings[0]
            kept.setdefault("root_cause", {"code": top.code, "object": top.object.short(), "summary": top.summary})
            kept.setdefault(
                "evidence", [f"{f.code} {f.object.short()}: {f.summary}" for f in answer.result.findings[:10]]
            )

    report = await react(turn, prompts.load(NAME), state.get("task") or _question(state), allowed(turn), on_answer=keep)
    return kept | {"messages": [AIMessage(report, name=NAME)]}


def _question(state: TeamState) -> str:
    messages = state.get("messages") or []
    return str(messages[-1].content) if messages else ""
