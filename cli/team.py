"""What the agent-team commands share: the team on this machine's settings, progress lines, and the inline
approval prompt. The commands reach the team only through `agents.api`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace

from agents.api import Event, Reply, Team
from runtime import LOCAL, Principal, Runtime
from settings import Settings
from store import Store

OPERATOR: Principal = replace(LOCAL, transport="cli")  # the person at this terminal; the OS account is the identity


def runtime(settings: Settings, store: Store) -> Runtime:
    return Runtime(settings, store)


class Progress:
    """Streams the team's work to stderr: one line per step, model tokens as they arrive."""

    def __init__(self, out: Callable[[str], object] | None = None) -> None:
        self.out = out or (lambda text: sys.stderr.write(text))
        self.in_tokens = False

    def __call__(self, event: Event) -> None:
        if event.kind == "token":
            self.out(event.text)
            self.in_tokens = True
            return
        if self.in_tokens:
            self.out("\n")
            self.in_tokens = False
        self.out(f"  · {event.agent}: {event.text}\n")


def show(reply: Reply) -> None:
    print(reply.answer)
    if reply.approval is None and reply.outcome:
        print(f"[{reply.outcome['status']}]")


def interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


async def settle(team: Team, reply: Reply, ask: Callable[[str], str] | None = None) -> Reply:
    """A plan waits: ask inline on a terminal (y approve, n reject with a reason, Enter to leave it pending);
    elsewhere leave it pending and say how to decide it."""
    approval = reply.approval
    if approval is None:
        return reply
    ask = ask or input
    if not interactive():
        print(
            f"Approval {approval.id} is pending. Decide it with: cloudpilot approvals approve {approval.id} "
            f"[--reason R]  |  cloudpilot approvals reject {approval.id} --reason R"
        )
        return reply
    choice = ask(f"Apply plan {approval.plan_id} (risk {approval.summary.get('risk')})? [y / n / Enter = later] ")
    choice = choice.strip().lower()
    if choice in ("y", "yes"):
        decided = await team.decide(approval.id, approve=True, decider=OPERATOR, on_event=Progress())
    elif choice in ("n", "no"):
        reason = ask("Why not? ").strip()
        decided = await team.decide(approval.id, approve=False, decider=OPERATOR, reason=reason, on_event=Progress())
    else:
        print(f"Left pending: cloudpilot approvals approve|reject {approval.id}")
        return reply
    show(decided)
    return decided
