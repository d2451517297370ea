"""The team's shared state: what one thread remembers between steps, checkpointed after every step.

`messages` is the conversation a person sees (questions, the agents' reports, answers). Everything an agent did
to get there (its own tool calls and their results) lives in the thread's trace, not here, so the conversation
stays short and a failed step never leaves half a tool exchange in it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages

Mode = Literal["chat", "autofix"]


class Budget(TypedDict):
    steps: int
    tool_calls: int
    tokens_in: int
    tokens_out: int


class TeamState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    mode: Mode
    user: dict[str, Any]  # the asker: name, scopes (the principal every tool call of the run acts as)
    request: dict[str, Any]  # autofix: namespace, deployment, event, cluster
    task: str  # the supervisor's instruction to the agent it hands off to
    visited: list[str]  # agents that reported in this run
    evidence: list[str]  # the researcher's findings, most severe first ("CODE Kind/ns/name: summary")
    root_cause: dict[str, Any] | None  # code, object, summary
    plan: dict[str, Any] | None  # plan_id, risk, actions, diff, blast radius, expires_at, text
    declined: str | None  # why no plan was made
    decision: dict[str, Any] | None  # approve, by, reason, approval_id (after the approval step)
    outcome: dict[str, Any] | None  # status and text of applying the plan
    answer: str | None  # the run's final answer
    stopped: str | None  # why the team stopped early (budget, model failure)
    budget: Budget


def fresh_run() -> dict[str, Any]:
    """The per-run fields, reset at the start of each question or autofix on a thread."""
    return {
        "task": "",
        "visited": [],
        "evidence": [],
        "root_cause": None,
        "plan": None,
        "declined": None,
        "decision": None,
        "outcome": None,
        "answer": None,
        "stopped": None,
        "budget": Budget(steps=0, tool_calls=0, tokens_in=0, tokens_out=0),
    }
