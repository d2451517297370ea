"""The supervisor: reads the conversation and hands off to the researcher, fixer or coder with a task (a
handoff tool call), or answers. In an autofix run, or without a model, it routes deterministically."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

import prompts
from agents.crew import UNTRUSTED_NOTE, Turn, fence
from agents.llm import NOT_CONFIGURED
from agents.state import TeamState

NAME = "supervisor"
AGENTS = ("researcher", "fixer", "coder")
MAX_HANDOFFS = 6  # per run; then the supervisor must answer with what it has
HISTORY = 30  # messages of the conversation shown to the model

HANDOFFS = [
    {
        "type": "function",
        "function": {
            "name": f"transfer_to_{agent}",
            "description": f"Hand the work to the {agent}, with a precise task (objects, namespace, codes).",
            "parameters": {
                "type": "object",
                "properties": {"task": {"type": "string", "description": "What the agent should do."}},
                "required": ["task"],
            },
        },
    }
    for agent in AGENTS
]


def autopilot_route(state: TeamState) -> str:
    visited = state.get("visited") or []
    if "researcher" not in visited:
        return "researcher"
    if state.get("root_cause") and "fixer" not in visited and not state.get("outcome"):
        return "fixer"
    return "notifier"


async def route(turn: Turn, state: TeamState) -> tuple[str, dict[str, Any]]:
    """Where the run goes next, and what to record on the way."""
    if state.get("mode") == "autofix":
        return autopilot_route(state), {}
    model = turn.crew.model
    if model is None:
        return "notifier", {"answer": NOT_CONFIGURED, "messages": [AIMessage(NOT_CONFIGURED, name=NAME)]}
    must_answer = bool(state.get("outcome")) or len(state.get("visited") or []) >= MAX_HANDOFFS
    bound = model if must_answer else model.bind_tools(HANDOFFS)
    reply = await turn.chat(bound, _prompt(state, must_answer))
    for call in reply.tool_calls:
        agent = call["name"].removeprefix("transfer_to_")
        if agent in AGENTS:
            task = str((call.get("args") or {}).get("task") or "")
            turn.note("handoff", agent, arguments={"task": task})
            turn.say("handoff", f"→ {agent}: {task[:160]}")
            return agent, {"task": task}
    answer = str(reply.content).strip() or "The team has no answer."
    return "notifier", {"answer": answer, "messages": [AIMessage(answer, name=NAME)]}


def _prompt(state: TeamState, must_answer: bool) -> list[BaseMessage]:
    system = prompts.load(NAME) + "\n\n" + UNTRUSTED_NOTE + _status(state, must_answer)
    shown: list[BaseMessage] = [SystemMessage(system)]
    for m in (state.get("messages") or [])[-HISTORY:]:
        if isinstance(m, AIMessage) and m.name in AGENTS:
            shown.append(HumanMessage(f"Report from the {m.name}:\n" + fence(m.name, str(m.content))))
        elif isinstance(m, AIMessage):
            shown.append(AIMessage(str(m.content)))
        else:
            shown.append(m)
    return shown


def _status(state: TeamState, must_answer: bool) -> str:
    lines = []
    plan, outcome, declined = state.get("plan"), state.get("outcome"), state.get("declined")
    if plan:
        lines.append(f"Plan {plan['plan_id']} (risk {plan['risk']}): {plan['title']}.")
    if outcome:
        lines.append(f"Outcome: {outcome['status']}: {outcome['text'][:1500]}")
    elif declined and "fixer" in (state.get("visited") or []):
        lines.append(f"The fixer made no plan: {declined[:800]}")
    if must_answer:
        lines.append("Write the final answer now, without calling a tool.")
    return ("\n\nStatus of this run:\n" + "\n".join(lines)) if lines else ""
