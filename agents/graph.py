"""The team as one LangGraph `StateGraph`:

    START → supervisor ⇄ researcher | coder
            supervisor → fixer → (a plan) → approval ⏸ → apply → supervisor/notifier
            supervisor → notifier → END

Every node is one agent's step (`Turn`): it runs as the thread's asker, within the run's budget, traced. A
step that fails — the budget is used up, the model server is down, a bug — ends the run through the notifier
with what was found so far, so the thread stays usable. The approval node pauses the thread (an interrupt);
the checkpointer keeps it, so the decision can come from any process, later.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.errors import GraphBubbleUp
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command

from agents import coder, fixer, gate, notifier, researcher, supervisor
from agents.crew import BudgetExceeded, Crew, ModelFailed, Turn
from agents.state import TeamState

logger = logging.getLogger(__name__)

Step = Callable[[Turn, TeamState], Awaitable[dict[str, Any]]]


def build(crew: Crew, checkpointer: BaseCheckpointSaver[Any] | None = None) -> CompiledStateGraph[Any]:
    graph = StateGraph(TeamState)

    def node(name: str, step: Step, after: Callable[[TeamState], str]) -> Any:
        async def run(state: TeamState, config: RunnableConfig) -> Command[str]:
            thread_id = str(config.get("configurable", {}).get("thread_id", ""))
            turn = crew.turn(state, thread_id, name)
            try:
                update = await step(turn, state)
            except GraphBubbleUp:  # an interrupt: LangGraph's own control flow
                raise
            except (BudgetExceeded, ModelFailed) as e:
                turn.note("error", type(e).__name__, result=str(e))
                return Command(goto="notifier", update={"stopped": str(e), "budget": turn.budget})
            except Exception:
                reference = secrets.token_hex(4)
                logger.exception("agent %s failed on thread %s (reference %s)", name, thread_id, reference)
                turn.note("error", "exception", result=f"reference {reference}")
                why = f"the {name} failed inside CloudPilot (reference {reference}; the server log has details)"
                return Command(goto="notifier", update={"stopped": why, "budget": turn.budget})
            update["budget"] = turn.budget
            if name in ("researcher", "fixer", "coder"):
                update["visited"] = [*(state.get("visited") or []), name]
            goto = update.pop("_goto", None) or after({**state, **update})  # type: ignore[typeddict-item]
            return Command(goto=goto, update=update)

        graph.add_node(name, run, destinations=_DESTINATIONS[name])

    async def route(turn: Turn, state: TeamState) -> dict[str, Any]:
        goto, update = await supervisor.route(turn, state)
        return update | {"_goto": goto}

    def after_apply(state: TeamState) -> str:
        return "notifier" if state.get("mode") == "autofix" or crew.model is None else "supervisor"

    node("supervisor", route, lambda s: "notifier")  # the supervisor names its next step itself
    node("researcher", researcher.run, lambda s: "supervisor")
    node("coder", coder.run, lambda s: "supervisor")
    node("fixer", fixer.run, lambda s: "approval" if s.get("plan") else "supervisor")
    node("approval", gate.wait, lambda s: "apply")
    node("apply", gate.apply, after_apply)
    node("notifier", notifier.run, lambda s: END)
    graph.add_edge(START, "supervisor")
    return graph.compile(checkpointer=checkpointer, name="cloudpilot-team")


_DESTINATIONS: dict[str, tuple[str, ...]] = {
    "supervisor": ("researcher", "fixer", "coder", "notifier"),
    "researcher": ("supervisor", "notifier"),
    "coder": ("supervisor", "notifier"),
    "fixer": ("approval", "supervisor", "notifier"),
    "approval": ("apply", "notifier"),
    "apply": ("supervisor", "notifier"),
    "notifier": (END,),
}
