"""One SQLite file, created private (0600), shared by the cluster registry and the audit log.

`Store` is also the interface every owner of a table uses (`execute` with `?` placeholders, rows readable by name
and by position, `transaction` for migrations): `store.postgres.PostgresStore` is the same interface on
PostgreSQL, for several replicas. SQL at the call sites is portable (SQLite and PostgreSQL): `ON CONFLICT`, not
`INSERT OR ...`; `RETURNING` for atomic claims; no `?` inside string literals.

Secrets (tokens, kubeconfigs, CA data) are stored here so that registered clusters survive restarts;
they are read only by `connections.kube` to connect and are never part of any tool result.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from store.migrations import Tx, add_columns, migrate

_SCHEMA = """
CREATE TABLE IF NOT EXISTS clusters (
    name TEXT PRIMARY KEY,
    server TEXT NOT NULL,
    token TEXT,
    kubeconfig TEXT,
    context TEXT,
    ca_cert TEXT,
    insecure_skip_tls_verify INTEGER NOT NULL DEFAULT 0,
    description TEXT NOT NULL DEFAULT '',
    added_at TEXT NOT NULL,
    trusted INTEGER NOT NULL DEFAULT 0
);
"""
BUSY_SECONDS = 30.0  # how long a statement waits for another process's write to finish
MIGRATIONS = (
    _SCHEMA,
    add_columns("clusters", {"trusted": "INTEGER NOT NULL DEFAULT 0"}),  # records from before it: untrusted
)


@dataclass(frozen=True)
class ClusterRecord:
    """A registered cluster. `token`, `kubeconfig` and `ca_cert` never leave the server.

    `trusted` marks a record an operator added on the server's machine (`cloudpilot clusters add`): only then
    may its kubeconfig run exec plugins or read local files.
    """

    name: str
    server: str
    token: str | None = None
    kubeconfig: str | None = None
    context: str | None = None
    ca_cert: str | None = None
    insecure_skip_tls_verify: bool = False
    description: str = ""
    added_at: str = ""
    trusted: bool = False

    @property
    def auth(self) -> str:
        return "kubeconfig" if self.kubeconfig else ("token" if self.token else "none")


class Store:
    """Thread-safe access to the SQLite file (one connection under a lock)."""

    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.where = str(self.path)  # where the store is, for messages (PostgreSQL's: its URL without the password)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        self.migrated: set[str] = set()  # components whose migrations this process has checked
        with self._lock:
            self._db.execute(f"PRAGMA busy_timeout={int(BUSY_SECONDS * 1000)}")
            _wal(self._db)
        migrate(self, "clusters", MIGRATIONS)

    def __repr__(self) -> str:
        return f"Store(sqlite {self.path})"

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        """Run one statement under the store's lock; rows read by name (`row["id"]`) or position (`row[0]`)."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def executescript(self, script: str) -> None:
        with self._lock:
            self._db.executescript(script)

    @contextmanager
    def transaction(self, lock: str) -> Iterator[Tx]:
        """One transaction holding the database's write lock (`BEGIN IMMEDIATE`: one writer across processes), so
        migrations run once however many processes open the file together. `lock` names what is migrated (on
        PostgreSQL it picks an advisory lock; here the file has one)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(self.dialect, lambda sql, params=(): self._db.execute(sql, params).fetchall(), _columns(self))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # -- cluster registry (portable SQL: shared by the PostgreSQL store) ----------------------------------------
    def add_cluster(self, record: ClusterRecord, replace: bool = False) -> ClusterRecord:
        added = datetime.now(UTC).isoformat(timespec="seconds")
        on_conflict = (
            "DO UPDATE SET server = excluded.server, token = excluded.token, kubeconfig = excluded.kubeconfig, "
            "context = excluded.context, ca_cert = excluded.ca_cert, "
            "insecure_skip_tls_verify = excluded.insecure_skip_tls_verify, description = excluded.description, "
            "added_at = excluded.added_at, trusted = excluded.trusted"
            if replace
            else "DO NOTHING"
        )
        done = self.execute(
            "INSERT INTO clusters (name, server, token, kubeconfig, context, ca_cert, insecure_skip_tls_verify, "
            f"description, added_at, trusted) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (name) {on_conflict} "  # nosec B608
            "RETURNING name",
            (
                record.name,
                record.server,
                record.token,
                record.kubeconfig,
                record.context,
                record.ca_cert,
                int(record.insecure_skip_tls_verify),
                record.description,
                added,
                int(record.trusted),
            ),
        )
        if not done:
            raise KeyError(record.name)
        return self.get_cluster(record.name)  # type: ignore[return-value]

    def get_cluster(self, name: str) -> ClusterRecord | None:
        rows = self.execute("SELECT * FROM clusters WHERE name = ?", (name,))
        return _record(rows[0]) if rows else None

    def list_clusters(self) -> list[ClusterRecord]:
        return [_record(r) for r in self.execute("SELECT * FROM clusters ORDER BY name")]

    def remove_cluster(self, name: str) -> bool:
        return bool(self.execute("DELETE FROM clusters WHERE name = ? RETURNING name", (name,)))


def _wal(db: sqlite3.Connection) -> None:
    """Switch a file to write-ahead logging (once per file: the mode stays). The switch needs the file to itself
    and SQLite does not wait for that (no busy timeout) while another process, starting too, migrates: retry."""
    deadline = time.monotonic() + BUSY_SECONDS
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _columns(store: Store) -> Any:
    """The column names of a table (callers hold the lock)."""
    return lambda table: {row["name"] for row in store._db.execute(f"PRAGMA table_info({table})")}


def _record(row: Any) -> ClusterRecord:
    data = dict(row)
    data["insecure_skip_tls_verify"] = bool(data["insecure_skip_tls_verify"])
    data["trusted"] = bool(data["trusted"])
    return ClusterRecord(**data)
