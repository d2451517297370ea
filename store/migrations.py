"""Numbered schema migrations per component (clusters, audit, approvals, outbox, ...), applied once.

Several replicas may start together on one database: each component's pending migrations run in one transaction
that first takes a lock only one process can hold (a PostgreSQL advisory lock named after the component; SQLite's
`BEGIN IMMEDIATE` write lock), then reads `schema_migrations` again, so a migration another process has just
applied is skipped rather than run twice. A migration is SQL (statements separated by `;`, no `;` inside them) or a
function of the transaction, for changes that depend on what is there (a column an old file lacks).

Files made before migrations existed already have the tables: the first migration of each component is its
`CREATE TABLE IF NOT EXISTS` schema, and later ones check before they change anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    component TEXT NOT NULL,
    version INTEGER NOT NULL,
    applied_at TEXT NOT NULL,
    PRIMARY KEY (component, version)
)
"""


@dataclass(frozen=True)
class Tx:
    """What a migration can do inside its transaction."""

    dialect: str  # sqlite | postgres
    execute: Callable[..., list[Any]]  # (sql, params=()) with `?` placeholders
    columns: Callable[[str], set[str]]  # a table's column names


Migration = str | Callable[[Tx], None]


class Migratable(Protocol):
    migrated: set[str]

    def transaction(self, lock: str) -> Any: ...


def migrate(store: Migratable, component: str, migrations: Sequence[Migration]) -> list[int]:
    """Apply the component's migrations not yet recorded; returns the versions this call applied."""
    if component in store.migrated:
        return []
    if "schema_migrations" not in store.migrated:  # its own lock: two components may create it at once
        with store.transaction("schema_migrations") as tx:
            tx.execute(TABLE.strip())
        store.migrated.add("schema_migrations")
    with store.transaction(component) as tx:
        done = {
            int(r[0]) for r in tx.execute("SELECT version FROM schema_migrations WHERE component = ?", (component,))
        }
        applied = []
        for version, migration in enumerate(migrations, start=1):
            if version in done:
                continue
            if isinstance(migration, str):
                for statement in statements(migration):
                    tx.execute(statement)
            else:
                migration(tx)
            tx.execute(
                "INSERT INTO schema_migrations (component, version, applied_at) VALUES (?, ?, ?)",
                (component, version, datetime.now(UTC).isoformat(timespec="seconds")),
            )
            applied.append(version)
    store.migrated.add(component)
    return applied


def statements(script: str) -> list[str]:
    """The statements of a schema script (split on `;`: schema scripts keep semicolons out of their literals)."""
    return [s.strip() for s in script.split(";") if s.strip()]


def add_columns(table: str, columns: dict[str, str]) -> Callable[[Tx], None]:
    """A migration adding the columns a table made by an older version lacks (fixed names and types only)."""

    def step(tx: Tx) -> None:
        present = tx.columns(table)
        for name, ddl in columns.items():
            if name not in present:
                tx.execute(f"ALTER TABLE {table} ADD COLUMN {name} {ddl}")

    return step
