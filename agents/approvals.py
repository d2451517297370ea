"""Pending approvals: each plan the team wants to apply waits here for a person's decision.

The graph pauses on an `interrupt()` that carries the approval; this table is how a decision made anywhere (the
CLI, an MCP client, a chat bot, another server process after a restart) finds the thread to resume. A decision
is claimed with a conditional UPDATE, so two people approving at once cannot both win.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from errors import Conflict, InvalidInput, NotFound, quote
from store.migrations import migrate
from store.sqlite import Store

Status = Literal["pending", "approved", "rejected", "expired"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    thread_id TEXT NOT NULL,
    plan_id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    decided_by TEXT NOT NULL DEFAULT '',
    decided_at TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    summary TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS approvals_status ON approvals (status);
"""
MIGRATIONS = (_SCHEMA,)


@dataclass(frozen=True)
class Approval:
    id: str
    thread_id: str
    plan_id: str
    status: Status
    requested_by: str
    created_at: str
    expires_at: str
    decided_by: str
    decided_at: str
    reason: str
    summary: dict[str, Any]  # the plan as shown to the approver: risk, actions, objects, blast radius, diff

    @property
    def expired(self) -> bool:
        return datetime.fromisoformat(self.expires_at) < datetime.now(UTC)

    def line(self) -> str:
        s = self.summary
        return (
            f"{self.id} [{self.status}] plan {self.plan_id} (risk {s.get('risk', '?')}): {s.get('title', '')} — "
            f"asked by {self.requested_by}, expires {self.expires_at}"
            + (f"; {self.status} by {self.decided_by}" if self.decided_by else "")
        )


class Approvals:
    def __init__(self, store: Store) -> None:
        self.store = store
        migrate(store, "approvals", MIGRATIONS)

    def request(self, thread_id: str, plan: dict[str, Any], requested_by: str, ttl_minutes: int) -> Approval:
        """The approval of this plan: created once; the same one again when the graph re-runs the step."""
        existing = self.by_plan(plan["plan_id"])
        if existing is not None:
            return existing
        expires = datetime.now(UTC) + timedelta(minutes=ttl_minutes)
        plan_expiry = datetime.fromisoformat(plan["expires_at"])
        expires = min(expires, plan_expiry)  # never outlives its plan
        self.store.execute(
            "INSERT INTO approvals (id, thread_id, plan_id, status, requested_by, created_at, expires_at, summary) "
            "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
            (
                "ap-" + secrets.token_hex(5),
                thread_id,
                plan["plan_id"],
                "pending",
                requested_by,
                _now(),
                expires.isoformat(timespec="seconds"),
                json.dumps(plan),
            ),
        )
        found = self.by_plan(plan["plan_id"])
        assert found is not None
        return found

    def get(self, approval_id: str) -> Approval | None:
        rows = self.store.execute("SELECT * FROM approvals WHERE id = ?", (approval_id,))
        return _approval(rows[0]) if rows else None

    def by_plan(self, plan_id: str) -> Approval | None:
        rows = self.store.execute("SELECT * FROM approvals WHERE plan_id = ?", (plan_id,))
        return _approval(rows[0]) if rows else None

    def pending(self, limit: int = 100) -> list[Approval]:
        self.store.execute(
            "UPDATE approvals SET status = 'expired' WHERE status = 'pending' AND expires_at < ?", (_now(),)
        )
        rows = self.store.execute(
            "SELECT * FROM approvals WHERE status = 'pending' ORDER BY created_at LIMIT ?", (limit,)
        )
        return [_approval(r) for r in rows]

    def check(self, approval_id: str) -> Approval:
        """The approval to decide, or a clear error: unknown, expired, or already decided."""
        found = self.get(approval_id) if isinstance(approval_id, str) and len(approval_id) < 64 else None
        if found is None:
            raise NotFound(
                f"There is no approval {quote(approval_id, 60)}.",
                hint="List the pending ones (approvals_list, or `cloudpilot approvals`).",
            )
        if found.status == "pending" and found.expired:
            self.store.execute(
                "UPDATE approvals SET status = 'expired' WHERE id = ? AND status = 'pending'", (found.id,)
            )
            found = self.get(approval_id) or found
        if found.status == "expired":
            raise InvalidInput(
                f"Approval {found.id} expired at {found.expires_at}; nothing was applied.",
                hint="Ask again (a new question or autofix) for a fresh plan.",
            )
        if found.status != "pending":
            raise Conflict(
                f"Approval {found.id} was already {found.status} by {found.decided_by} at {found.decided_at}; "
                "it cannot be decided again.",
                hint="thread_trace shows what happened on its thread.",
            )
        return found

    def claim(self, approval_id: str, approve: bool, decided_by: str, reason: str) -> bool:
        """Record the decision if nobody decided first; False when someone did."""
        rows = self.store.execute(
            "UPDATE approvals SET status = ?, decided_by = ?, decided_at = ?, reason = ? "
            "WHERE id = ? AND status = 'pending' RETURNING id",
            ("approved" if approve else "rejected", decided_by, _now(), reason, approval_id),
        )
        return bool(rows)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _approval(row: Any) -> Approval:
    data = dict(row)
    data["summary"] = json.loads(data["summary"])
    return Approval(**data)
