"""The notifier: tells people the outcome through `notifiers/` — with a severity, and "human help needed" when the
team is stuck, was stopped, or a fix failed. Deterministic: what it sends is built from the run's state, never
written by a model."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage

from agents.approvals import Approval
from agents.crew import Turn
from agents.state import TeamState
from notifiers import Notification, deliver
from notifiers.base import Proposal, Severity

NAME = "notifier"
FAILED = {"failed", "rolled_back", "conflict", "refused"}
DESTRUCTIVE_ACTIONS = {"set_template", "cordon"}  # a rollback replaces the pod template; a cordon drains a node


def final_answer(state: TeamState) -> str:
    """The run's answer: the supervisor's, else one made from what the team found and did."""
    if state.get("answer"):
        return str(state["answer"])
    lines = []
    root = state.get("root_cause")
    if root:
        lines.append(f"Root cause: {root['code']} {root['object']}: {root['summary']}")
    elif state.get("evidence") is not None and state.get("mode") == "autofix":
        lines.append("Diagnosis found nothing wrong.")
    plan, outcome = state.get("plan"), state.get("outcome")
    if plan:
        lines.append(f"Plan {plan['plan_id']} (risk {plan['risk']}): {plan['title']}")
    elif state.get("declined"):
        lines.append(f"No plan: {state['declined']}")
    if outcome:
        lines.append(outcome["text"])
    if state.get("stopped"):
        lines.append(f"Stopped: {state['stopped']}. What was found so far is above.")
    return "\n".join(lines) or "Nothing to report."


def notification(state: TeamState, thread_id: str) -> Notification | None:
    """What to tell people, or None for a plain question with nothing to act on."""
    outcome = (state.get("outcome") or {}).get("status")
    stopped, declined = state.get("stopped"), state.get("declined")
    autofix = state.get("mode") == "autofix"
    if not (outcome or stopped or autofix):
        return None
    root = state.get("root_cause") or {}
    request = state.get("request") or {}
    severity: Severity
    if outcome in FAILED:
        severity, help_needed, title = "critical", True, f"Fix {outcome}"
    elif stopped:
        severity, help_needed, title = "warning", True, "The team stopped before finishing"
    elif outcome in ("verified", "rejected"):
        severity, help_needed, title = "info", False, f"Fix {outcome}"
    elif autofix and declined:
        severity, help_needed, title = "warning", bool(root), "No automatic fix"
    else:
        severity, help_needed, title = "info", False, "Autofix report"
    fields = {
        "namespace": request.get("namespace", ""),
        "root cause": f"{root.get('code', '')} {root.get('object', '')}".strip(),
        "plan": (state.get("plan") or {}).get("plan_id", ""),
        "outcome": outcome or "",
        "asked by": (state.get("user") or {}).get("name", ""),
    }
    return Notification(
        title=title,
        text=final_answer(state),
        severity=severity,
        human_help=help_needed,
        thread_id=thread_id,
        fields={k: v for k, v in fields.items() if v},
    )


async def run(turn: Turn, state: TeamState) -> dict[str, Any]:
    answer = final_answer(state)
    note = notification(state, turn.thread_id)
    if note is not None and turn.crew.notifiers:
        results = await deliver(turn.crew.notifiers, note, turn.crew.settings.notify.min_severity)
        turn.note("notify", note.title, result=str(results)[:300])
        turn.say("notify", f"notified: {note.title} ({note.severity})")
    update: dict[str, Any] = {"answer": answer}
    if not state.get("answer"):
        update["messages"] = [AIMessage(answer, name=NAME)]
    return update


# -- a plan waiting for people -----------------------------------------------------------------------------------
def proposal(ticket: Approval, first: str = "") -> Notification:
    """The plan message: summary, diff and (until decided) the Approve / Reject buttons of chat sinks. `first` names
    the first approver when the two-person rule waits for a second."""
    s = ticket.summary
    diff = "\n".join(str(c.get("diff", "")) for c in s.get("changes", []))
    fields = {"risk": str(s.get("risk", "?")), "asked by": ticket.requested_by, "expires": ticket.expires_at}
    if first:
        fields["approvals"] = f"{first} (1 of 2): a second approver is needed"
    namespaces = plan_namespaces(ticket)
    return Notification(
        title=f"Plan {ticket.plan_id} needs approval",
        text=str(s.get("title", "")),
        severity="warning",
        thread_id=ticket.thread_id,
        cluster=str(s.get("cluster") or "") or None,
        namespace=namespaces[0] if len(namespaces) == 1 else None,
        fields=fields,
        proposal=Proposal(
            approval_id=ticket.id,
            plan_id=ticket.plan_id,
            risk=str(s.get("risk", "?")),
            title=str(s.get("title", "")),
            diff=diff,
            expires_at=ticket.expires_at,
            destructive=destructive(ticket),
        ),
        key=f"approval:{ticket.id}",
    )


def plan_namespaces(ticket: Approval) -> list[str]:
    """The namespaces a plan touches ("" for cluster-scoped objects), from objects shown as "Kind ns/name"."""
    found = []
    for change in ticket.summary.get("changes", []):
        target = str(change.get("object", "")).split(" ", 1)[-1]
        found.append(target.split("/", 1)[0] if "/" in target else "")
    return sorted(set(found)) or [""]


def destructive(ticket: Approval) -> bool:
    """A plan that replaces a pod template, cordons a node, or that the planner rates high risk or worse."""
    s = ticket.summary
    return str(s.get("risk")) in ("high", "critical") or bool(DESTRUCTIVE_ACTIONS & set(s.get("actions", [])))
