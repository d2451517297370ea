"""The audit log and saved plans, in the store (SQLite or PostgreSQL).

Every step of a change is a row: planned, approved, refused, applied, conflict, verified, failed,
rolled_back, rejected — with who asked (the authenticated principal, and the client's self-declared name apart
from it), who approved and how, the cluster identity, the object, the diff and the outcome. Plans are saved as
JSON, so a plan made in one call, or by one server process, is applied in the next; what a plan keeps is decided by
`tools.fixloop` (never the objects themselves, nor any masked value).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from store.migrations import Tx, add_columns, migrate
from store.sqlite import Store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    event TEXT NOT NULL,
    plan_id TEXT,
    cluster TEXT NOT NULL DEFAULT '',
    identity TEXT NOT NULL DEFAULT '',
    client TEXT NOT NULL DEFAULT '',
    principal TEXT NOT NULL DEFAULT '',
    approver TEXT NOT NULL DEFAULT '',
    object TEXT NOT NULL DEFAULT '',
    diff TEXT NOT NULL DEFAULT '',
    result TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_plan ON audit (plan_id);
CREATE TABLE IF NOT EXISTS plans (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    cluster TEXT NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL
);
"""


def _forget_plan_objects(tx: Tx) -> None:
    """Plans saved by earlier versions kept whole objects (live and dry-run result, Secret data included):
    keep only their uid and drop the objects, overwriting the old bytes (SQLite's secure_delete)."""
    rows = tx.execute("SELECT id, body FROM plans WHERE body LIKE '%\"live\"%'")
    if not rows:
        return
    sqlite = tx.dialect == "sqlite"
    previous = tx.execute("PRAGMA secure_delete")[0][0] if sqlite else 0
    if sqlite:
        tx.execute("PRAGMA secure_delete=ON")
    try:
        for row in rows:
            body = json.loads(row["body"])
            for item in body.get("items") or []:
                live = item.pop("live", None) or {}
                item.pop("desired", None)
                item.setdefault("uid", (live.get("metadata") or {}).get("uid"))
            tx.execute("UPDATE plans SET body = ? WHERE id = ?", (json.dumps(body), row["id"]))
    finally:
        if sqlite:
            tx.execute(f"PRAGMA secure_delete={int(previous)}")


MIGRATIONS = (
    _SCHEMA,
    add_columns("audit", {c: "TEXT NOT NULL DEFAULT ''" for c in ("principal", "approver")}),  # files from before
    _forget_plan_objects,
)
EVENTS = (
    "planned",
    "approved",
    "refused",
    "applied",
    "conflict",
    "verified",
    "failed",
    "rolled_back",
    "interrupted",
    "rejected",
)


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: str
    event: str
    plan_id: str | None
    cluster: str
    identity: str
    client: str
    object: str
    diff: str
    result: str
    principal: str = ""
    approver: str = ""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class AuditLog:
    """Append-only records of changes, and the plans they belong to."""

    def __init__(self, store: Store) -> None:
        self.store = store
        migrate(store, "audit", MIGRATIONS)

    def record(
        self,
        event: str,
        *,
        plan_id: str | None,
        cluster: str = "",
        identity: str = "",
        client: str = "",
        principal: str = "",
        approver: str = "",
        object: str = "",
        diff: str = "",
        result: str = "",
    ) -> int:
        if event not in EVENTS:
            raise ValueError(f"unknown audit event {event!r}")
        rows = self.store.execute(
            "INSERT INTO audit (at, event, plan_id, cluster, identity, client, principal, approver, object, diff, "
            "result) VALUES (?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
            (now(), event, plan_id, cluster, identity, client, principal, approver, object, diff, result),
        )
        return int(rows[0]["id"])

    def entries(
        self,
        *,
        plan_id: str | None = None,
        object: str | None = None,
        event: str | None = None,
        cluster: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> list[AuditEntry]:
        """Newest first; `object` matches a substring of 'Kind namespace/name'."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("plan_id", plan_id), ("event", event), ("cluster", cluster)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        if object:
            where.append("object LIKE ?")
            params.append(f"%{object}%")
        if before:
            where.append("id < ?")
            params.append(before)
        sql = "SELECT * FROM audit" + (" WHERE " + " AND ".join(where) if where else "")  # nosec B608
        rows = self.store.execute(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
        return [_entry(r) for r in rows]

    def entry(self, entry_id: int) -> AuditEntry | None:
        rows = self.store.execute("SELECT * FROM audit WHERE id = ?", (entry_id,))
        return _entry(rows[0]) if rows else None

    # -- plans -----------------------------------------------------------------------------------------
    def save_plan(
        self, plan_id: str, cluster: str, expires_at: str, body: dict[str, Any], status: str = "planned"
    ) -> None:
        self.store.execute(
            "INSERT INTO plans (id, created_at, expires_at, cluster, status, body) VALUES (?,?,?,?,?,?) "
            "ON CONFLICT (id) DO UPDATE SET created_at = excluded.created_at, expires_at = excluded.expires_at, "
            "cluster = excluded.cluster, status = excluded.status, body = excluded.body",
            (plan_id, now(), expires_at, cluster, status, json.dumps(body)),
        )

    def plan(self, plan_id: str) -> tuple[str, dict[str, Any]] | None:
        """(status, body) of a saved plan."""
        rows = self.store.execute("SELECT status, body FROM plans WHERE id = ?", (plan_id,))
        return (rows[0]["status"], json.loads(rows[0]["body"])) if rows else None

    def interrupt_stale(self, older_than_seconds: float) -> list[str]:
        """Plans still 'applying' with no audit activity for longer than any apply can last belong to a process
        that died mid-apply: mark them 'interrupted' and record what had been written, for a person to check.
        Returns their ids."""
        cutoff = (datetime.now(UTC) - timedelta(seconds=older_than_seconds)).isoformat(timespec="seconds")
        stale = self.store.execute(
            "SELECT p.id, p.cluster FROM plans p WHERE p.status = 'applying' AND NOT EXISTS "
            "(SELECT 1 FROM audit a WHERE a.plan_id = p.id AND a.at > ?)",
            (cutoff,),
        )
        ids = []
        for row in stale:
            if not self.set_plan_status(row["id"], "interrupted", expect="applying"):
                continue  # someone else got there first
            written = [e.object for e in self.entries(plan_id=row["id"], event="applied")]
            self.record(
                "interrupted",
                plan_id=row["id"],
                cluster=row["cluster"],
                object=", ".join(written),
                result="the process applying this plan stopped before verifying it; "
                + (f"written and not verified: {', '.join(written)}" if written else "nothing was written"),
            )
            ids.append(row["id"])
        return ids

    def set_plan_status(self, plan_id: str, status: str, expect: str | None = None) -> bool:
        """Move a plan to `status`; with `expect`, only from that status (so two callers cannot both apply)."""
        if expect is None:
            rows = self.store.execute("UPDATE plans SET status = ? WHERE id = ? RETURNING id", (status, plan_id))
        else:
            rows = self.store.execute(
                "UPDATE plans SET status = ? WHERE id = ? AND status = ? RETURNING id", (status, plan_id, expect)
            )
        return bool(rows)


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(**dict(row))
