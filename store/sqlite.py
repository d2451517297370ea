"""One SQLite file, created private (0600), shared by the cluster registry and the audit log.

Secrets (tokens, kubeconfigs, CA data) are stored here so that registered clusters survive restarts;
they are read only by `connections.kube` to connect and are never part of any tool result.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

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
    """Thread-safe access to the SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            self._migrate()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _migrate(self) -> None:
        """Bring a file made by an older version up to date (callers hold the lock)."""
        columns = {row["name"] for row in self._db.execute("PRAGMA table_info(clusters)")}
        if "trusted" not in columns:  # records from before `trusted` existed are untrusted
            self._db.execute("ALTER TABLE clusters ADD COLUMN trusted INTEGER NOT NULL DEFAULT 0")

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        """Run one statement under the store's lock (for the other tables: audit log, plans)."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def executescript(self, script: str) -> None:
        with self._lock:
            self._db.executescript(script)

    # -- cluster registry ------------------------------------------------------------------------
    def add_cluster(self, record: ClusterRecord, replace: bool = False) -> ClusterRecord:
        added = datetime.now(UTC).isoformat(timespec="seconds")
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        with self._lock:
            try:
                self._db.execute(
                    f"{verb} INTO clusters (name, server, token, kubeconfig, context, ca_cert, "
                    "insecure_skip_tls_verify, description, added_at, trusted) VALUES (?,?,?,?,?,?,?,?,?,?)",
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
            except sqlite3.IntegrityError as e:
                raise KeyError(record.name) from e
        return self.get_cluster(record.name)  # type: ignore[return-value]

    def get_cluster(self, name: str) -> ClusterRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM clusters WHERE name = ?", (name,)).fetchone()
        return _record(row) if row else None

    def list_clusters(self) -> list[ClusterRecord]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM clusters ORDER BY name").fetchall()
        return [_record(r) for r in rows]

    def remove_cluster(self, name: str) -> bool:
        with self._lock:
            cur = self._db.execute("DELETE FROM clusters WHERE name = ?", (name,))
        return cur.rowcount > 0


def _record(row: sqlite3.Row) -> ClusterRecord:
    data = dict(row)
    data["insecure_skip_tls_verify"] = bool(data["insecure_skip_tls_verify"])
    data["trusted"] = bool(data["trusted"])
    return ClusterRecord(**data)
