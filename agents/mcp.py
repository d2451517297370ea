"""The agent team as MCP tools (toolset `agents`): ask on a thread, run the autofix workflow, list and decide
approvals, read a thread's trace. Declared here as catalogue entries (`ToolSpec`) so the server registers them
on the same guarded path as every other tool, while `tools/` knows nothing of agents.

A model proposes, a person decides: an MCP client is often a model, so `approval_decide` approves only what the
client's *user* confirms through MCP elicitation — or, where this server accepts the confirm method for the
transport (a local stdio user, by default), the call itself. A rejection never needs confirming.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Annotated, Any

from pydantic import Field

from agents.api import Event, Reply, Team
from errors import NotAllowed
from runtime import Runtime, approval_methods, ask_confirmation, current, principal, report_progress
from settings import Settings
from tools.catalogue import ToolSpec
from tools.results import Result, clip

ThreadArg = Annotated[
    str | None, Field(description="Continue this thread (from an earlier answer); omit to start a new one.")
]


class TeamAnswer(Result):
    """Where the thread stands: the answer, and the approval a plan waits for, if any."""

    thread_id: str
    status: str = Field(description="answered, awaiting_approval or stopped")
    answer: str
    approval_id: str | None = None
    plan_id: str | None = None
    risk: str | None = None
    outcome: str | None = None

    def render(self) -> str:
        lines = [f"thread {self.thread_id} · {self.status}", self.answer]
        if self.approval_id:
            lines.append(
                f"Approval {self.approval_id} waits for a person (plan {self.plan_id}, risk {self.risk}): show the "
                "diff above to the user; approval_decide asks them."
            )
        return clip("\n".join(lines), 12_000)


class PendingApprovals(Result):
    """Plans waiting for a person's decision."""

    approvals: list[dict[str, Any]]

    def render(self) -> str:
        if not self.approvals:
            return "No approvals are pending."
        return "\n".join(a["line"] for a in self.approvals)


class ThreadTrace(Result):
    """Every step of a thread: agent, kind, tool or model call, masked arguments, duration, tokens."""

    thread_id: str
    steps: list[str]

    def render(self) -> str:
        return clip("\n".join([f"thread {self.thread_id}: {len(self.steps)} step(s)", *self.steps]), 20_000)


# -- the team of this runtime --------------------------------------------------------------------------------------
async def team_of(rt: Runtime) -> Team:
    """The runtime's team, opened on first use and kept until `close_team`."""
    lock = rt.__dict__.setdefault("_team_lock", asyncio.Lock())
    async with lock:
        team: Team | None = rt.__dict__.get("_team")
        if team is None:
            stack = AsyncExitStack()
            team = await stack.enter_async_context(Team.open(rt))
            rt.__dict__["_team"], rt.__dict__["_team_stack"] = team, stack
        return team


async def close_team(rt: Runtime) -> None:
    stack = rt.__dict__.pop("_team_stack", None)
    rt.__dict__.pop("_team", None)
    if stack is not None:
        await stack.aclose()


def _caller() -> Any:
    return replace(principal(), transport="agent")


async def _progress(event: Event) -> None:
    if event.kind != "token":  # tokens are too fine-grained for progress notifications
        await report_progress(0, None, f"{event.agent}: {event.text}"[:300])


def _answer(reply: Reply) -> TeamAnswer:
    approval = reply.approval
    return TeamAnswer(
        thread_id=reply.thread_id,
        status=reply.status,
        answer=reply.answer,
        approval_id=approval.id if approval else None,
        plan_id=approval.plan_id if approval else None,
        risk=str(approval.summary.get("risk")) if approval else None,
        outcome=(reply.outcome or {}).get("status"),
    )


# -- the tools --------------------------------------------------------------------------------------------------------
async def agents_ask(
    question: Annotated[str, Field(description="A question in plain language, e.g. 'why is checkout slow?'.")],
    thread_id: ThreadArg = None,
) -> TeamAnswer:
    """Ask CloudPilot's agent team (supervisor, researcher, fixer, coder) a question about the cluster. It gathers
    evidence with the read tools, names the root cause and, when asked to fix, makes a plan that waits for a
    person's approval. Needs a model configured on the server (llm.*); progress is reported while it works."""
    team = await team_of(current())
    return _answer(await team.ask(question, user=_caller(), thread_id=thread_id, on_event=_progress))


async def agents_autofix(
    namespace: Annotated[str, Field(description="Namespace of the problem.")],
    deployment: Annotated[str | None, Field(description="The Deployment to fix; omit for the namespace.")] = None,
    event: Annotated[
        str | None, Field(description="What was seen, e.g. 'readiness probe failed: 404'; narrows the plan.")
    ] = None,
    cluster: Annotated[str | None, Field(description="Cluster name (clusters_list); omit for the default.")] = None,
) -> TeamAnswer:
    """Run the autofix workflow without a model: diagnose → RCA (with Prometheus) → plan → wait for approval →
    apply → verify → notify. Returns the root cause and the plan's approval id; nothing changes until a person
    approves it (approval_decide)."""
    team = await team_of(current())
    reply = await team.autofix(
        namespace, user=_caller(), deployment=deployment, event=event, cluster=cluster, on_event=_progress
    )
    return _answer(reply)


async def approvals_list() -> PendingApprovals:
    """Plans of the agent team that wait for a person's decision, with their risk and who asked."""
    team = await team_of(current())
    return PendingApprovals(approvals=[{"id": a.id, "plan_id": a.plan_id, "line": a.line()} for a in team.pending()])


async def approval_decide(
    approval_id: Annotated[str, Field(description="The approval id (ap-...) from an answer or approvals_list.")],
    approve: Annotated[bool, Field(description="true to apply the plan, false to reject it.")],
    reason: Annotated[str, Field(description="Why (kept in the audit log).", max_length=500)] = "",
) -> TeamAnswer:
    """Decide a pending approval. Approving asks the user to confirm (MCP elicitation) with the plan's diff,
    then applies and verifies it; rejecting applies nothing and is audited."""
    rt = current()
    team = await team_of(rt)
    who = _caller()
    if approve:
        approve = await _confirmed(rt.settings, team, approval_id)
    reply = await team.decide(approval_id, approve=approve, decider=who, reason=reason, on_event=_progress)
    return _answer(reply)


async def thread_trace(
    thread_id: Annotated[str, Field(description="The thread id.")],
    limit: Annotated[int, Field(ge=1, le=2000, description="Most recent steps shown.")] = 200,
) -> ThreadTrace:
    """The steps of an agent thread: which agent, which tool or model call, arguments (secrets masked),
    duration and tokens."""
    team = await team_of(current())
    return ThreadTrace(thread_id=thread_id, steps=[s.line() for s in team.trace(thread_id, limit)])


async def _confirmed(settings: Settings, team: Team, approval_id: str) -> bool:
    """The user's own yes to this plan; refused when the server cannot tell the user from the model."""
    methods = approval_methods(settings, principal().transport)
    ticket = team.crew.approvals.check(approval_id)  # unknown, expired, decided: a clear error before asking
    if "elicitation" in methods:
        plan = ticket.summary
        diff = "\n".join(c.get("diff", "") for c in plan.get("changes", []))
        question = clip(f"Apply plan {ticket.plan_id} (risk {plan.get('risk')}): {plan.get('title')}?\n{diff}", 6000)
        answer = await ask_confirmation(question)
        if answer is not None:
            return answer
    if "confirm" in methods:
        return True  # a local user's own call (stdio), which their client shows them before it runs
    raise NotAllowed(
        f"Approval {approval_id} needs the user's own confirmation, and this client cannot ask for it.",
        hint="Approve it from a terminal (`cloudpilot approvals approve ID`) or a chat bot; rejecting works here.",
    )


def agent_tools(settings: Settings) -> list[ToolSpec]:
    """The `agents` toolset, when the server exposes it (writes on for the ones that plan or apply)."""
    if "agents" not in settings.server.toolsets:
        return []
    writes = settings.safety.allow_write
    specs = [
        ToolSpec(agents_ask, "agents_ask", "agents", "read", False, "Ask the agent team"),
        ToolSpec(approvals_list, "approvals_list", "agents", "read", True, "List pending approvals"),
        ToolSpec(thread_trace, "thread_trace", "agents", "read", True, "Show a thread's trace"),
    ]
    if writes:
        specs += [
            ToolSpec(agents_autofix, "agents_autofix", "agents", "write", False, "Autofix a workload"),
            ToolSpec(approval_decide, "approval_decide", "agents", "write", False, "Approve or reject a plan"),
        ]
    return specs
