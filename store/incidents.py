"""Incidents in the store (SQLite or PostgreSQL): each with its status (open, acknowledged, resolved), what it is
about, and a timeline of what happened (signals, findings, plans, actions, notifications). Written by the event
pipeline; read by the MCP tools and the bots."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from store.migrations import migrate
from store.sqlite import Store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cluster TEXT NOT NULL,
    root TEXT NOT NULL,
    status TEXT NOT NULL,
    severity TEXT NOT NULL,
    opened_at REAL NOT NULL,
    last_at REAL NOT NULL,
    resolved_at REAL,
    reasons TEXT NOT NULL,
    objects TEXT NOT NULL,
    events INTEGER NOT NULL,
    reopened INTEGER NOT NULL DEFAULT 0,
    flapping INTEGER NOT NULL DEFAULT 0,
    acknowledged_by TEXT NOT NULL DEFAULT '',
    thread_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS incidents_status ON incidents (status, last_at);
CREATE TABLE IF NOT EXISTS incident_timeline (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id INTEGER NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incident_timeline_id ON incident_timeline (incident_id, at);
"""
MIGRATIONS = (_SCHEMA,)
COLUMNS = ("cluster", "root", "status", "severity", "opened_at", "last_at", "resolved_at", "reasons", "objects",
           "events", "reopened", "flapping", "acknowledged_by", "thread_id")  # fmt: skip
STATUS_KEEPS_ACK = "status = CASE WHEN status = 'acknowledged' AND ? = 'open' THEN status ELSE ? END"
TIMELINE_CHARS = 2000
MAX_TIMELINE = 500  # entries kept per incident (a flapping one would grow without end)


@dataclass(frozen=True)
class IncidentRecord:
    id: int
    cluster: str
    root: str
    status: str  # open | acknowledged | resolved
    severity: str
    opened_at: float
    last_at: float
    resolved_at: float | None
    reasons: dict[str, int]
    objects: list[str]
    events: int
    reopened: int
    flapping: bool
    acknowledged_by: str
    thread_id: str

    @property
    def title(self) -> str:
        top = ", ".join(r for r, _ in sorted(self.reasons.items(), key=lambda kv: -kv[1])[:3])
        return f"{self.root}: {top}" if top else self.root

    def line(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.opened_at))
        flags = " (flapping)" if self.flapping else ""
        return f"#{self.id} [{self.status}{flags}] {self.severity} {self.title} — {self.events} events since {when} UTC"


class Incidents:
    def __init__(self, store: Store) -> None:
        self.store = store
        # timeline order: SQLite's rowid (files from before have no id column; new ones alias it), else the id
        self._seq = "rowid" if store.dialect == "sqlite" else "id"
        migrate(store, "incidents", MIGRATIONS)

    def save(self, ref: int, values: dict[str, Any]) -> int:
        """Insert (ref 0) or update incident `ref` with `values` (the columns above); returns its id."""
        row = {**values, "reasons": json.dumps(values["reasons"]), "objects": json.dumps(values["objects"])}
        row["flapping"] = int(row.get("flapping", False))
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise ValueError(f"not incident columns: {sorted(unknown)}")
        names = [n for n in COLUMNS if n in row]  # fixed names only: no value ever becomes SQL
        if ref:  # an acknowledgement stands while the incident stays open
            sets = [STATUS_KEEPS_ACK if n == "status" else f"{n} = ?" for n in names]
            params = [x for n in names for x in ((row[n], row[n]) if n == "status" else (row[n],))]
            sql = "UPDATE incidents SET " + ", ".join(sets) + " WHERE id = ?"  # nosec B608
            self.store.execute(sql, (*params, ref))
            return ref
        sql = f"INSERT INTO incidents ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) RETURNING id"  # nosec B608
        found = self.store.execute(sql, tuple(row[n] for n in names))
        return int(found[0]["id"])

    def note(self, incident_id: int, kind: str, text: str, at: float | None = None) -> None:
        """Add to the timeline (signal, finding, plan, action, notified, resolved, ...)."""
        self.store.execute(
            "INSERT INTO incident_timeline (incident_id, at, kind, text) VALUES (?,?,?,?)",
            (incident_id, at if at is not None else time.time(), kind, text[:TIMELINE_CHARS]),
        )
        seq = self._seq
        self.store.execute(
            f"DELETE FROM incident_timeline WHERE incident_id = ? AND {seq} NOT IN (SELECT {seq} FROM "  # nosec B608
            f"incident_timeline WHERE incident_id = ? ORDER BY {seq} DESC LIMIT ?)",
            (incident_id, incident_id, MAX_TIMELINE),
        )

    def get(self, incident_id: int) -> IncidentRecord | None:
        rows = self.store.execute("SELECT * FROM incidents WHERE id = ?", (incident_id,))
        return _record(rows[0]) if rows else None

    def timeline(self, incident_id: int, limit: int = 100) -> list[tuple[float, str, str]]:
        rows = self.store.execute(
            f"SELECT at, kind, text FROM incident_timeline WHERE incident_id = ? ORDER BY {self._seq} LIMIT ?",  # nosec B608
            (incident_id, limit),
        )
        return [(r["at"], r["kind"], r["text"]) for r in rows]

    def list(self, status: str | None = None, limit: int = 50) -> list[IncidentRecord]:
        """Newest activity first; `status` open also includes acknowledged ones."""
        if status == "open":
            rows = self.store.execute(
                "SELECT * FROM incidents WHERE status IN ('open', 'acknowledged') ORDER BY last_at DESC LIMIT ?",
                (limit,),
            )
        else:
            rows = self.store.execute(
                "SELECT * FROM incidents WHERE ? IS NULL OR status = ? ORDER BY last_at DESC LIMIT ?",
                (status, status, limit),
            )
        return [_record(r) for r in rows]

    def acknowledge(self, incident_id: int, by: str) -> bool:
        """Mark an open incident as being handled by `by`; False when it is not open (unknown, resolved, acked)."""
        done = self.store.execute(
            "UPDATE incidents SET status = 'acknowledged', acknowledged_by = ? WHERE id = ? AND status = 'open' "
            "RETURNING id",
            (by, incident_id),
        )
        if done:
            self.note(incident_id, "acknowledged", f"acknowledged by {by}")
        return bool(done)


def _record(r: Any) -> IncidentRecord:
    d = dict(r)
    d["reasons"], d["objects"], d["flapping"] = json.loads(d["reasons"]), json.loads(d["objects"]), bool(d["flapping"])
    return IncidentRecord(**d)
