"""The approval gate: the only way from a plan to a change.

`wait` pauses the thread on an `interrupt()` that carries the approval (plan id, diff, risk, blast radius) —
unless the operator's written policy (fix.auto_approve) pre-approves every action of the plan. `apply` runs
after the decision: approved → `fix_apply` through the guarded pipeline, as the person who decided (it writes,
verifies, rolls back on failure and audits); rejected → nothing is applied and the audit says so.

LangGraph re-runs an interrupted node from its start on resume, and a process can die at any point, so both
steps are idempotent: the approval is created once per plan, and `apply` acts only on a plan still "planned".
"""

from __future__ import annotations

from typing import Any

from langgraph.types import interrupt

from agents.crew import Turn
from agents.notifier import proposal
from agents.state import TeamState
from notifiers import deliver
from runtime import CHAT_TRANSPORTS, DECIDED_OUTSIDE, Principal, approval_methods, caller
from store.audit import AuditLog
from tools.fix import ApplyResult
from tools.fixloop import load, pre_approved

POLICY = "policy fix.auto_approve"


def policy_covers(turn: Turn, plan_id: str) -> bool:
    rt = turn.crew.runtime
    with caller("agents", None, turn.user):
        status, saved = load(rt, plan_id)
        return status == "planned" and pre_approved(saved, rt.settings)


async def wait(turn: Turn, state: TeamState) -> dict[str, Any]:
    plan = state.get("plan")
    assert plan is not None
    if "policy" in approval_methods(turn.crew.settings, "agent") and policy_covers(turn, plan["plan_id"]):
        turn.note("approval", plan["plan_id"], result=f"pre-approved by {POLICY}")
        return {"decision": {"approve": True, "by": POLICY, "reason": "", "approval_id": None, "scopes": ["write"]}}
    new = turn.crew.approvals.by_plan(plan["plan_id"]) is None  # the step re-runs on resume: announce once
    ticket = turn.crew.approvals.request(
        turn.thread_id, plan, turn.user.name, turn.crew.settings.agents.approval_ttl_minutes
    )
    if new and turn.user.transport not in CHAT_TRANSPORTS and turn.crew.notifiers:
        # asked from a terminal, an MCP client or an alert: the plan goes to chat with its buttons (a chat thread
        # shows it in place instead)
        await deliver(turn.crew.notifiers, proposal(ticket), turn.crew.settings.notify.min_severity)
    turn.say("approval", f"approval {ticket.id} needed for plan {plan['plan_id']}", approval_id=ticket.id)
    decision = interrupt(
        {
            "approval_id": ticket.id,
            "plan_id": plan["plan_id"],
            "risk": plan["risk"],
            "title": plan["title"],
            "changes": plan["changes"],
            "expires_at": ticket.expires_at,
        }
    )
    verdict = "approved" if decision["approve"] else "rejected"
    turn.note("approval", plan["plan_id"], result=f"{verdict} by {decision['by']}")
    return {"decision": decision}


async def apply(turn: Turn, state: TeamState) -> dict[str, Any]:
    plan, decision = state.get("plan"), state.get("decision")
    assert plan is not None and decision is not None
    plan_id = plan["plan_id"]
    log = AuditLog(turn.crew.runtime.store)
    found = log.plan(plan_id)
    status = found[0] if found else "unknown"
    if status != "planned":  # decided and acted on before (a re-run after a restart): report, never act twice
        return {"outcome": {"status": status, "text": f"Plan {plan_id} is {status}."}}
    if not decision["approve"]:
        if log.set_plan_status(plan_id, "rejected", expect="planned"):
            log.record(
                "rejected",
                plan_id=plan_id,
                cluster=plan.get("cluster", ""),
                client="agents",
                principal=turn.user.name,
                approver=decision["by"],
                object=", ".join(c["object"] for c in plan["changes"]),
                result=f"rejected by {decision['by']}" + (f": {decision['reason']}" if decision.get("reason") else ""),
            )
        text = f"Plan {plan_id} was rejected by {decision['by']}; nothing was applied."
        return {"outcome": {"status": "rejected", "text": text}}
    by_policy = decision["by"] == POLICY
    via = str(decision["via"]) if decision.get("via") in DECIDED_OUTSIDE else "agent"
    decider = turn.user if by_policy else Principal(decision["by"], frozenset(decision["scopes"]), transport=via)

    async def approved(_: str) -> bool:  # the person already saw the diff and decided, in the interrupt
        return True

    turn.say("apply", f"applying plan {plan_id}")
    turn.spend(tool_calls=1)
    answer = await turn.crew.pipeline.call(
        "fix_apply",
        {"plan_id": plan_id},
        principal=decider,
        client="agents",
        confirm=None if by_policy else approved,
    )
    turn.note("apply", "fix_apply", arguments={"plan_id": plan_id}, result=answer.text[:300])
    result = answer.result
    status = result.status if isinstance(result, ApplyResult) else "failed"
    return {"outcome": {"status": status, "text": answer.text}}
