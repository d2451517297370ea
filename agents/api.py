"""The agent team's Python API — what the CLI, the MCP `agents` tools and the chat bots call.

    async with Team.open(runtime) as team:
        reply = await team.ask("why is checkout slow?", user=alice)            # a new thread
        reply = await team.ask("fix it", user=alice, thread_id=reply.thread_id)  # the same conversation
        if reply.approval:                                                     # a plan waits for a person
            reply = await team.decide(reply.approval.id, approve=True, decider=bob, reason="LGTM")
        reply = await team.autofix("shop", deployment="web", event="readiness probe failed", user=alice)

Every call takes `on_event` to stream progress (tool calls, handoffs, model tokens, the approval request).
Threads and pending approvals are checkpointed in `agents.checkpoint_path` (or PostgreSQL with `store.url`), so
they survive a restart: a decision made in another process (or replica) resumes the thread where it paused.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.errors import GraphRecursionError
from langgraph.types import Command

import notifiers
from agents import graph
from agents.approvals import Approval, Approvals
from agents.crew import Crew, principal_record
from agents.llm import chat_model
from agents.notifier import destructive, final_answer, plan_namespaces, proposal
from agents.state import TeamState, fresh_run
from agents.trace import Step, Trace
from errors import Conflict, InvalidInput, NotAllowed
from guard import validate
from guard.bounds import clip
from guard.mask import mask_text
from ops.metrics import METRICS
from runtime import Principal, Runtime
from store.incidents import Incidents
from tools.incidents import acknowledge

QUESTION_CHARS = 8_000
EVENT_CHARS = 4_000
REASON_CHARS = 500
_THREAD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")

__all__ = ["Approval", "Event", "Reply", "Step", "Team", "destructive", "plan_namespaces", "proposal"]


@dataclass(frozen=True)
class Event:
    """Progress while the team works: kind is tool, token, handoff, approval, apply or notify."""

    kind: str
    text: str
    agent: str = ""
    data: dict[str, Any] = field(default_factory=dict)


OnEvent = Callable[[Event], Awaitable[None] | None]


@dataclass(frozen=True)
class Reply:
    """Where a thread stands after a call: answered, waiting for an approval, or stopped early."""

    thread_id: str
    status: str  # answered | awaiting_approval | stopped
    answer: str
    approval: Approval | None = None
    root_cause: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    outcome: dict[str, Any] | None = None
    budget: dict[str, Any] = field(default_factory=dict)


class Team:
    """The supervisor and its four agents over one runtime's tools."""

    def __init__(
        self,
        runtime: Runtime,
        checkpointer: BaseCheckpointSaver[Any],
        *,
        model: BaseChatModel | None = None,
        sinks: Sequence[notifiers.Notifier] | None = None,
    ) -> None:
        self.runtime = runtime
        self.crew = Crew(
            runtime,
            model,
            notifiers.from_settings(runtime.settings, runtime.store) if sinks is None else sinks,
            Trace(runtime.store),
            Approvals(runtime.store),
        )
        self.graph = graph.build(self.crew, checkpointer)
        self._locks: dict[str, asyncio.Lock] = {}

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        runtime: Runtime,
        *,
        model: BaseChatModel | str | None = "settings",
        sinks: Sequence[notifiers.Notifier] | None = None,
    ) -> AsyncIterator[Team]:
        """The team with its threads in `agents.checkpoint_path` (SQLite, readable by this user only) — or in the
        PostgreSQL store when `store.url` is set, shared by every replica — and the model of the `llm.*` settings
        (pass `model=None` for the autopilot only, or a chat model)."""
        chosen = chat_model(runtime.settings.llm) if model == "settings" else model
        url = runtime.settings.store.url
        if url is not None:
            from store.checkpoints import postgres_saver  # psycopg is loaded only when it is used

            async with postgres_saver(url.get_secret_value()) as shared:
                yield cls(runtime, shared, model=chosen if not isinstance(chosen, str) else None, sinks=sinks)
            return
        path = Path(runtime.settings.agents.checkpoint_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
            yield cls(runtime, saver, model=chosen if not isinstance(chosen, str) else None, sinks=sinks)

    # -- starting and continuing threads ------------------------------------------------------------------------
    async def ask(
        self, question: str, *, user: Principal, thread_id: str | None = None, on_event: OnEvent | None = None
    ) -> Reply:
        """A question in plain language, on a new thread or an existing one."""
        if not isinstance(question, str) or not question.strip():
            raise InvalidInput("Ask a question in plain language, e.g. 'why are the pods in shop crashing?'.")
        if len(question) > QUESTION_CHARS:
            raise InvalidInput(f"The question is {len(question)} characters; keep it under {QUESTION_CHARS}.")
        thread = await self._thread(thread_id)
        start = fresh_run() | {
            "mode": "chat",
            "user": principal_record(user),
            "request": {},
            "messages": [HumanMessage(mask_text(question), name="user")],
        }
        return await self._run(start, thread, on_event, user.transport)

    async def autofix(
        self,
        namespace: str,
        *,
        user: Principal,
        deployment: str | None = None,
        event: str | None = None,
        cluster: str | None = None,
        thread_id: str | None = None,
        on_event: OnEvent | None = None,
    ) -> Reply:
        """The seeds' auto-fix call, without a model: diagnose → RCA → plan → approval → apply → verify → notify."""
        ns = validate.namespace(namespace)
        if ns is None:
            raise InvalidInput("autofix needs the namespace of the problem.")
        request = {
            "namespace": ns,
            "deployment": validate.object_name(deployment, "deployment") if deployment else None,
            "event": mask_text(clip(event, EVENT_CHARS)) if event else None,
            "cluster": cluster,
        }
        thread = await self._thread(thread_id)
        what = f"autofix namespace {ns}" + (f" deployment {deployment}" if deployment else "")
        start = fresh_run() | {
            "mode": "autofix",
            "user": principal_record(user),
            "request": request,
            "messages": [HumanMessage(what + (f": {request['event']}" if event else ""), name="user")],
        }
        return await self._run(start, thread, on_event, user.transport)

    # -- approvals ----------------------------------------------------------------------------------------------
    def pending(self) -> list[Approval]:
        """Approvals waiting for a decision (expired ones are marked so and left out)."""
        return self.crew.approvals.pending()

    async def decide(
        self,
        approval_id: str,
        *,
        approve: bool,
        decider: Principal,
        reason: str = "",
        on_event: OnEvent | None = None,
    ) -> Reply:
        """Approve or reject a pending plan, as `decider` (authenticated by the caller: the CLI's local user, an
        MCP token, a chat platform's verified user). Resumes the paused thread; approving applies and verifies."""
        if approve and not decider.may("write"):
            raise NotAllowed(f"{decider.name} may not approve changes (needs the write scope).")
        reason = mask_text(clip(str(reason or ""), REASON_CHARS))
        ticket = self.crew.approvals.get(approval_id) if isinstance(approval_id, str) else None
        async with self._lock(ticket.thread_id if ticket else "-"):
            if ticket is not None and ticket.status in ("approved", "rejected") and await self._waits_on(ticket):
                # decided, but the process stopped before the thread resumed: resume with that decision
                decision = _decision(ticket.status == "approved", ticket.decided_by, ["write"], ticket.reason, ticket)
            else:
                ticket = self.crew.approvals.check(approval_id)
                if not await self._waits_on(ticket):
                    raise Conflict(
                        f"Thread {ticket.thread_id} no longer waits for approval {ticket.id}.",
                        hint="Ask again for a fresh plan.",
                    )
                if not self.crew.approvals.claim(ticket.id, approve, decider.name, reason):
                    raise Conflict(f"Approval {ticket.id} was decided by someone else just now.")
                decision = _decision(approve, decider.name, sorted(decider.scopes), reason, ticket, decider.transport)
            return await self._stream(Command(resume=decision), ticket.thread_id, on_event, decider.transport)

    def approval(self, approval_id: str) -> Approval:
        """The approval to decide, or a clear error: unknown (NotFound), expired (InvalidInput), already decided
        (Conflict) — what a chat button checks before anything else."""
        return self.crew.approvals.check(approval_id)

    # -- single read-only tools (chat commands) -------------------------------------------------------------------
    async def read(self, tool: str, arguments: dict[str, Any], *, user: Principal) -> str:
        """One read-only catalogue tool through the guarded pipeline, as `user`: its compact text answer.

        For short chat commands (overview, diagnose) that need no model. Tools that change anything are refused.
        """
        if not any(s.name == tool and s.access == "read" for s in self.crew.pipeline.visible(user)):
            raise NotAllowed(f"{tool!r} is not a read-only tool of this server.")
        answer = await self.crew.pipeline.call(tool, arguments, principal=user, client="chat")
        return answer.text

    def acknowledge(self, incident_id: int, *, user: Principal) -> str:
        """Mark an open incident of the event pipeline as handled by `user` (authenticated by the caller)."""
        record = acknowledge(Incidents(self.runtime.store), incident_id, user.name)
        return f"Incident #{record.id} acknowledged by {record.acknowledged_by}."

    # -- reading threads ------------------------------------------------------------------------------------------
    def trace(self, thread_id: str, limit: int = 500) -> list[Step]:
        """Every step of the thread: agent, tool or model call, masked arguments, duration, tokens."""
        return self.crew.trace.steps(self._thread_id(thread_id), limit)

    async def history(self, thread_id: str) -> list[tuple[str, str]]:
        """The conversation of a thread: (speaker, text) pairs."""
        snapshot = await self.graph.aget_state(_config(self._thread_id(thread_id)))
        messages = (snapshot.values or {}).get("messages", [])
        return [(getattr(m, "name", None) or m.type, str(m.content)) for m in messages]

    # -- running ------------------------------------------------------------------------------------------------
    async def _thread(self, thread_id: str | None) -> str:
        if thread_id is None:
            return "t-" + secrets.token_hex(6)
        thread = self._thread_id(thread_id)
        snapshot = await self.graph.aget_state(_config(thread))
        for pending in snapshot.interrupts:
            ticket = self.crew.approvals.get(str(pending.value.get("approval_id")))
            if ticket is not None and ticket.status == "pending" and not ticket.expired:
                raise Conflict(
                    f"Thread {thread} waits for approval {ticket.id} (plan {ticket.plan_id}).",
                    hint="Approve or reject it first, or start a new thread.",
                )
        return thread

    @staticmethod
    def _thread_id(thread_id: str) -> str:
        if not isinstance(thread_id, str) or not _THREAD_ID.match(thread_id):
            raise InvalidInput(
                "A thread id is 1-128 letters, digits, '.', '_', ':' or '-'.", hint="Omit it to start a new thread."
            )
        return thread_id

    def _lock(self, thread_id: str) -> asyncio.Lock:
        return self._locks.setdefault(thread_id, asyncio.Lock())

    async def _run(self, start: dict[str, Any], thread_id: str, on_event: OnEvent | None, source: str) -> Reply:
        async with self._lock(thread_id):
            return await self._stream(start, thread_id, on_event, source)

    async def _stream(self, work: Any, thread_id: str, on_event: OnEvent | None, source: str) -> Reply:
        """Run the graph on `work` and count the run in /metrics by `source` (the asker's transport) and outcome."""
        outcome = "error"
        try:
            reply = await self._stream_once(work, thread_id, on_event)
            outcome = reply.status
            return reply
        finally:
            METRICS.agent_runs.labels(source=source, outcome=outcome).inc()

    async def _stream_once(self, work: Any, thread_id: str, on_event: OnEvent | None) -> Reply:
        config = _config(thread_id)
        try:
            async for payload in self.graph.astream(work, config, stream_mode="custom"):
                if on_event is not None and isinstance(payload, dict):
                    shown = {k: v for k, v in payload.items() if k not in ("kind", "agent", "text")}
                    done = on_event(Event(payload["kind"], payload["text"], payload.get("agent", ""), shown))
                    if done is not None:
                        await done
        except GraphRecursionError:
            return Reply(thread_id, "stopped", "The team went round in circles and was stopped; nothing was changed.")
        return await self._reply(thread_id)

    async def _waits_on(self, ticket: Approval) -> bool:
        snapshot = await self.graph.aget_state(_config(ticket.thread_id))
        return any(i.value.get("approval_id") == ticket.id for i in snapshot.interrupts)

    async def _reply(self, thread_id: str) -> Reply:
        snapshot = await self.graph.aget_state(_config(thread_id))
        state: TeamState = snapshot.values or {}  # type: ignore[assignment]
        waiting = next((i for i in snapshot.interrupts if isinstance(i.value, dict)), None)
        approval = self.crew.approvals.get(str(waiting.value.get("approval_id"))) if waiting else None
        if approval is not None:
            plan = state.get("plan") or {}
            answer = (
                f"{final_answer({**state, 'answer': None})}\n\n{plan.get('text', '')}\n\n"
                f"Waiting for approval {approval.id} (expires {approval.expires_at})."
            )
            status = "awaiting_approval"
        else:
            answer = str(state.get("answer") or final_answer(state))
            status = "stopped" if state.get("stopped") else "answered"
        return Reply(
            thread_id=thread_id,
            status=status,
            answer=answer,
            approval=approval,
            root_cause=state.get("root_cause"),
            plan=state.get("plan"),
            outcome=state.get("outcome"),
            budget=dict(state.get("budget") or {}),
        )


def _config(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}, "recursion_limit": 60}


def _decision(
    approve: bool, by: str, scopes: list[str], reason: str, ticket: Approval, via: str = "agent"
) -> dict[str, Any]:
    return {"approve": approve, "by": by, "scopes": scopes, "reason": reason, "approval_id": ticket.id, "via": via}
