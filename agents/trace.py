"""Every step of a thread — which agent, which tool or model call, its arguments (secrets masked), how long it
took and the tokens it used — kept in the store, viewable per thread."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from guard.bounds import clip
from guard.mask import mask_text, redact
from store.migrations import migrate
from store.sqlite import Store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS agent_steps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    thread_id TEXT NOT NULL,
    at TEXT NOT NULL,
    agent TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    arguments TEXT NOT NULL DEFAULT '',
    ms INTEGER NOT NULL DEFAULT 0,
    tokens_in INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0,
    result TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS agent_steps_thread ON agent_steps (thread_id, id);
"""
MIGRATIONS = (_SCHEMA,)
ARGUMENT_CHARS = 2_000
RESULT_CHARS = 500


@dataclass(frozen=True)
class Step:
    id: int
    at: str
    agent: str
    kind: str  # model, tool, handoff, approval, apply, notify, error
    name: str
    arguments: str
    ms: int
    tokens_in: int
    tokens_out: int
    result: str

    def line(self) -> str:
        tokens = f" tokens {self.tokens_in}/{self.tokens_out}" if self.tokens_in or self.tokens_out else ""
        args = f" {self.arguments}" if self.arguments else ""
        return f"{self.at} {self.agent:<10} {self.kind:<8} {self.name}{args} ({self.ms} ms{tokens}) → {self.result}"


class Trace:
    """The steps of every thread."""

    def __init__(self, store: Store) -> None:
        self.store = store
        migrate(store, "agent_steps", MIGRATIONS)

    def add(
        self,
        thread_id: str,
        agent: str,
        kind: str,
        name: str,
        *,
        arguments: Any = None,
        ms: float = 0,
        tokens_in: int = 0,
        tokens_out: int = 0,
        result: str = "",
    ) -> None:
        args = "" if arguments is None else json.dumps(redact(arguments), default=str, ensure_ascii=False)
        self.store.execute(
            "INSERT INTO agent_steps (thread_id, at, agent, kind, name, arguments, ms, tokens_in, tokens_out, result) "
            "VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                thread_id,
                datetime.now(UTC).isoformat(timespec="milliseconds"),
                agent,
                kind,
                name,
                clip(mask_text(args), ARGUMENT_CHARS),
                int(ms),
                tokens_in,
                tokens_out,
                clip(mask_text(result), RESULT_CHARS),
            ),
        )

    def steps(self, thread_id: str, limit: int = 500) -> list[Step]:
        rows = self.store.execute(
            "SELECT * FROM (SELECT * FROM agent_steps WHERE thread_id = ? ORDER BY id DESC LIMIT ?) AS recent "
            "ORDER BY id",
            (thread_id, limit),
        )
        return [Step(**{k: v for k, v in dict(row).items() if k != "thread_id"}) for row in rows]
