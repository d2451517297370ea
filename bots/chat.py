"""What a chat bot does, whatever the platform: answer in the thread, show progress by editing one message,
run the short commands, and turn Approve / Reject clicks into decisions — by allowed people only.

The platforms (bots/slack.py, bots/feishu.py) verify requests and translate payloads; this module holds the rules.
One chat thread is one agent thread: its id is "<platform>:<channel>:<thread root>", so follow-ups keep context
and survive restarts (the team's checkpoints).
"""

from __future__ import annotations

import fnmatch
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from agents.api import Approval, Event, Reply, Team, destructive, plan_namespaces, proposal
from errors import CloudPilotError
from notifiers import Notification
from notifiers.text import split
from runtime import Principal
from settings import Settings
from store.migrations import migrate
from store.sqlite import Store

logger = logging.getLogger(__name__)

HELP = (
    "Ask me anything about the cluster in plain words (mention me, or DM me). Commands:\n"
    "• `overview [cluster]` — nodes, workloads, pods and warnings at a glance\n"
    "• `diagnose <namespace>` — what is wrong there, with evidence and fixes\n"
    "• `autofix <namespace> [deployment]` — diagnose, plan a fix and ask for approval (no model needed)\n"
    "• `pending` — plans waiting for an approval\n"
    "• `incidents` — what the event pipeline has open; `incident <number>` — one with its timeline\n"
    "• `ack <number>` — acknowledge an incident: you are handling it\n"
    "• `help` — this text\n"
    "Plans come with Approve / Reject buttons; only the configured approvers can use them."
)
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS chat_approvals (
    approval_id TEXT PRIMARY KEY,
    first_by TEXT NOT NULL,
    first_label TEXT NOT NULL,
    at TEXT NOT NULL
);
"""
MIGRATIONS = (_SCHEMA,)


@dataclass(frozen=True)
class ChatUser:
    """A person as the platform identified them in a signed request (never as they describe themselves)."""

    platform: str  # slack | feishu
    id: str  # Slack user id, Feishu open_id
    name: str = ""

    @property
    def label(self) -> str:
        """How the audit log names them: "slack:U123 (alice)"."""
        return f"{self.platform}:{self.id}" + (f" ({self.name})" if self.name else "")

    def principal(self, *scopes: str) -> Principal:
        return Principal(self.label, frozenset(scopes), transport=self.platform)


class Thread(Protocol):
    """Where the bot answers: one chat thread on one platform."""

    limit: int  # the most characters of one message

    async def post(self, text: str, note: Notification | None = None) -> str:
        """Post a message (plain text, or `note` rendered natively with its buttons); return its reference."""
        ...

    async def edit(self, ref: str, text: str, note: Notification | None = None) -> None: ...


@dataclass(frozen=True)
class Click:
    """What a button click did: a private answer to the clicker, and/or the plan message shown anew."""

    ephemeral: str = ""
    note: Notification | None = None  # the plan message as it should look now
    status: str = ""  # the outcome line that replaces the buttons ("" keeps them: a second approver is needed)


Members = Callable[[str], Awaitable[set[str]]]  # a user group's member ids (Slack, Feishu)
Working = Callable[[str, Notification], Awaitable[None]]  # show a status line on the plan message


class GroupMembers:
    """Members of a platform's user groups, read by `fetch` and kept for five minutes (a click should not wait on
    the platform's API each time). A group that cannot be read has no members: nobody is let in by mistake."""

    TTL_SECONDS = 300.0

    def __init__(self, fetch: Members) -> None:
        self.fetch = fetch
        self._cache: dict[str, tuple[float, set[str]]] = {}

    async def members(self, group: str) -> set[str]:
        hit = self._cache.get(group)
        if hit and time.monotonic() - hit[0] < self.TTL_SECONDS:
            return hit[1]
        found = await self.fetch(group)
        self._cache[group] = (time.monotonic(), found)
        return found


class Bot:
    """The rules of the chat bots, over the agent team's Python API."""

    def __init__(self, team: Team, settings: Settings, store: Store) -> None:
        self.team = team
        self.settings = settings
        self.store = store
        migrate(store, "chat_approvals", MIGRATIONS)

    # -- messages -------------------------------------------------------------------------------------------------
    async def message(self, user: ChatUser, text: str, thread_id: str, out: Thread) -> None:
        """A mention or DM: a command, or a question for the team answered in the thread with live progress."""
        text = text.strip()
        answer = await self.command(user, text)
        if answer is not None:
            await self._say(out, answer)
            return
        ref = await out.post("Working on it…")
        progress = Progress(out, ref, self.settings.bots.progress_seconds)
        asker = user.principal("read", "write")  # planning is a dry run; applying needs an approver's click
        words = text.split()
        try:
            if words[0].lower() == "autofix" and 2 <= len(words) <= 3:
                deployment = words[2] if len(words) == 3 else None
                reply = await self.team.autofix(
                    words[1], deployment=deployment, user=asker, thread_id=thread_id, on_event=progress.event
                )
            else:
                reply = await self.team.ask(text, user=asker, thread_id=thread_id, on_event=progress.event)
        except CloudPilotError as exc:
            await out.edit(ref, exc.message + (f"\n{exc.hint}" if exc.hint else ""))
            return
        await self.show(reply, out, ref)

    async def show(self, reply: Reply, out: Thread, ref: str | None = None) -> None:
        """The team's reply in the thread: the answer (split if long) and, for a plan, the plan with its buttons."""
        if reply.approval is None:
            pieces = split(reply.answer, out.limit) or ["(no answer)"]
        else:  # the plan message below says what it waits for, with its buttons
            pieces = split(reply.answer.split("\n\nWaiting for approval")[0], out.limit) or ["A plan is ready."]
        if ref is None:
            ref = await out.post(pieces[0])
        else:
            await out.edit(ref, pieces[0])
        for piece in pieces[1:]:
            await out.post(piece)
        if reply.approval is not None:
            await out.post(f"Plan {reply.approval.plan_id} needs approval", proposal(reply.approval))

    async def command(self, user: ChatUser, text: str) -> str | None:
        """The answer to a short command, or None when `text` is a question for the team."""
        words = text.split()
        if not words:
            return HELP
        verb, rest = words[0].lower().lstrip("/"), words[1:]
        reader = user.principal("read")
        try:
            if verb == "help":
                return HELP
            if verb == "overview" and len(rest) <= 1:
                return await self.team.read("cluster_overview", {"cluster": rest[0]} if rest else {}, user=reader)
            if verb == "diagnose" and len(rest) == 1 and _NAME.match(rest[0]):
                return await self.team.read("diagnose", {"namespace": rest[0], "limit": 20}, user=reader)
            if verb == "diagnose":
                return "Usage: `diagnose <namespace>`, e.g. `diagnose shop`."
            if verb == "incidents" and not rest:
                return await self.team.read("incidents_list", {"status": "open"}, user=reader)
            if verb == "incident" and (number := _number(rest)):
                return await self.team.read("incident_get", {"incident_id": number}, user=reader)
            if verb in ("ack", "acknowledge") and (number := _number(rest)):
                return self.team.acknowledge(number, user=user.principal("read"))
            if verb == "pending" and not rest:
                waiting = self.team.pending()
                return "\n".join(a.line() for a in waiting) if waiting else "No plans are waiting for approval."
        except CloudPilotError as exc:
            return exc.message + (f"\n{exc.hint}" if exc.hint else "")
        return None

    # -- approvals ------------------------------------------------------------------------------------------------
    async def click(
        self,
        user: ChatUser,
        approval_id: str,
        approve: bool,
        members: Members | None = None,
        working: Working | None = None,
    ) -> Click:
        """An Approve or Reject button. Stale, expired or already-decided plans, and people not on the allow-list,
        get a private answer and change nothing. `working` shows "applying…" on the plan message while the fix is
        applied and verified."""
        try:
            ticket = self.team.approval(approval_id)
        except CloudPilotError as exc:
            return Click(ephemeral=f"{exc.message} Nothing was changed.")
        if not await self.may_decide(user, ticket, members):
            logger.warning("approval %s: %s is not an approver of %s; refused", ticket.id, user.label, where(ticket))
            return Click(ephemeral=f"You are not an approver for {where(ticket)}; nothing was changed.")
        decider = user.principal("read", "write")
        if approve and self.needs_two(ticket):
            first = self._first(ticket.id)
            if first is None:
                first = self._record_first(ticket.id, user)  # the one stored: two first clicks at once, one wins
                if first[0] == f"{user.platform}:{user.id}":
                    note = proposal(ticket, first=user.label)
                    return Click(ephemeral="Your approval is recorded; a second approver is needed.", note=note)
            if first[0] == f"{user.platform}:{user.id}":
                return Click(ephemeral="You already approved this plan; the two-person rule needs someone else.")
            decider = Principal(f"{first[1]} + {user.label}", frozenset({"read", "write"}), transport=user.platform)
        if working is not None:
            verb = "Approved" if approve else "Rejected"
            doing = "applying and verifying…" if approve else "recording…"
            try:
                await working(f"{verb} by {decider.name}: {doing}", proposal(ticket))
            except Exception as exc:  # a message we cannot edit (deleted, archived) must not stop the decision
                logger.warning("could not show progress on the plan message: %s", type(exc).__name__)
        try:
            reply = await self.team.decide(ticket.id, approve=approve, decider=decider, reason=f"via {user.platform}")
        except CloudPilotError as exc:
            return Click(ephemeral=f"{exc.message} Nothing was changed.")
        return Click(note=proposal(ticket), status=outcome_line(reply, decider.name))

    async def may_decide(self, user: ChatUser, ticket: Approval, members: Members | None) -> bool:
        cluster = str(ticket.summary.get("cluster") or "")
        namespaces = plan_namespaces(ticket)
        for rule in self.settings.bots.approvers:
            if not any(fnmatch.fnmatchcase(cluster, c) for c in rule.clusters):
                continue
            if not all(any(fnmatch.fnmatchcase(ns, n) for n in rule.namespaces) for ns in namespaces):
                continue
            slack = user.platform == "slack"
            if user.id in (rule.slack_users if slack else rule.feishu_users):
                return True
            groups = rule.slack_groups if slack else rule.feishu_groups
            if members is not None and any([user.id in await members(group) for group in groups]):
                return True
        return False

    def needs_two(self, ticket: Approval) -> bool:
        bots = self.settings.bots
        protected = any(
            fnmatch.fnmatchcase(ns, g) for ns in plan_namespaces(ticket) for g in bots.two_person_namespaces
        )
        return protected or (bots.two_person_destructive and destructive(ticket))

    def _first(self, approval_id: str) -> tuple[str, str] | None:
        rows = self.store.execute(
            "SELECT first_by, first_label FROM chat_approvals WHERE approval_id = ?", (approval_id,)
        )
        return (rows[0]["first_by"], rows[0]["first_label"]) if rows else None

    def _record_first(self, approval_id: str, user: ChatUser) -> tuple[str, str]:
        """Store `user` as the first approver unless someone got there first; return whoever is first."""
        self.store.execute(
            "INSERT INTO chat_approvals (approval_id, first_by, first_label, at) VALUES (?,?,?,?) "
            "ON CONFLICT (approval_id) DO NOTHING",
            (approval_id, f"{user.platform}:{user.id}", user.label, datetime.now(UTC).isoformat(timespec="seconds")),
        )
        first = self._first(approval_id)
        assert first is not None
        return first

    async def _say(self, out: Thread, text: str) -> None:
        for piece in split(text, out.limit) or ["(nothing to show)"]:
            await out.post(piece)


class Progress:
    """Streams the team's progress into one message, edited at most every `interval` seconds."""

    def __init__(self, out: Thread, ref: str, interval: float) -> None:
        self.out, self.ref, self.interval = out, ref, interval
        self.lines: list[str] = []
        self.shown = 0.0
        self.edits = 0

    async def event(self, event: Event) -> None:
        if event.kind not in ("tool", "handoff", "approval", "apply"):
            return  # model tokens would mean an edit per word
        self.lines.append(f"• {event.agent + ': ' if event.agent else ''}{event.text}"[:200])
        now = time.monotonic()
        if now - self.shown >= self.interval:
            self.shown = now
            self.edits += 1
            await self.out.edit(self.ref, "Working on it…\n" + "\n".join(self.lines[-8:]))


def outcome_line(reply: Reply, decider: str) -> str:
    outcome = reply.outcome or {}
    status = str(outcome.get("status", reply.status))
    first = str(outcome.get("text", "")).strip().splitlines()[:1]
    said = {
        "verified": f"Approved by {decider}: applied and verified.",
        "rolled_back": f"Approved by {decider}: applied, failed verification, rolled back.",
        "rejected": f"Rejected by {decider}; nothing was applied.",
    }
    return said.get(status, f"Decided by {decider}: {status}." + (f" {first[0]}" if first else ""))[:1000]


def where(ticket: Approval) -> str:
    namespaces = ", ".join(n or "(cluster-wide)" for n in plan_namespaces(ticket))
    return f"namespace {namespaces} in cluster {ticket.summary.get('cluster') or 'default'}"


def thread_key(platform: str, channel: str, root: str) -> str:
    """The agent thread of a chat thread: "slack:C123:1712345678.000100" (letters, digits, '.', ':', '_', '-')."""
    parts = [re.sub(r"[^A-Za-z0-9._-]", "-", p) for p in (platform, channel, root)]
    return ":".join(parts)[:128]


__all__ = ["Bot", "ChatUser", "Click", "GroupMembers", "Progress", "Thread", "proposal", "thread_key"]


def _number(words: list[str]) -> int | None:
    """The one incident number of a command ("42" or "#42"), else None."""
    if len(words) != 1 or len(words[0]) > 10 or not words[0].lstrip("#").isdigit():
        return None
    return int(words[0].lstrip("#")) or None
