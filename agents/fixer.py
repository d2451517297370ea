"""The fixer: turns a root cause into a plan with `fix_plan` or a change tool. Its allow-list holds the planning
tools only — it can never apply a plan; applying is the graph's step after a person's decision (agents/gate.py)."""

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
from tools.fixloop import PlanView

NAME = "fixer"
NEVER = frozenset({"fix_apply"})  # applying is not the fixer's: see agents/gate.py


def allowed(turn: Turn) -> list[ToolSpec]:
    return turn.crew.tools(turn.user, toolsets={"fix"}, access={"write", "destructive"}, exclude=NEVER) + [
        s for s in turn.crew.tools(turn.user, toolsets={"fix"}, access={"read"}) if s.name == "fix_plan_show"
    ]


async def run(turn: Turn, state: TeamState) -> dict[str, Any]:
    if not allowed(turn):
        why = (
            "No plan was made: this server is read-only (safety.allow_write is off) or you may only read. "
            "The suggested change is in the researcher's report."
        )
        return {"plan": None, "declined": why, "messages": [AIMessage(why, name=NAME)]}
    if state.get("mode") == "autofix" or turn.crew.model is None:
        made = await autopilot.plan(turn, state.get("request") or {})
        text = made["plan"]["text"] if made["plan"] else f"No plan: {made['declined']}"
        return made | {"messages": [AIMessage(text, name=NAME)]}
    plans: list[PlanView] = []

    def keep(tool: str, answer: Answer) -> None:
        if isinstance(answer.result, PlanView) and answer.result.changes:
            plans.append(answer.result)

    report = await react(turn, prompts.load(NAME), state.get("task") or "", allowed(turn), on_answer=keep)
    plan = autopilot.plan_summary(plans[-1]) if plans else None
    return {"plan": plan, "declined": None if plan else report, "messages": [AIMessage(report, name=NAME)]}
