"""The store: registered clusters, the audit log, saved fix plans and the other tables of their owners.

SQLite (one file) by default; PostgreSQL when `store.url` is set, for several replicas. `open_store` picks one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from store.audit import AuditEntry, AuditLog
from store.sqlite import ClusterRecord, Store

if TYPE_CHECKING:
    from settings import Settings

__all__ = ["AuditEntry", "AuditLog", "ClusterRecord", "Store", "open_store"]


def open_store(settings: Settings) -> Store:
    """The store the settings name: PostgreSQL at `store.url` if set, else the SQLite file at `store.path`."""
    if settings.store.url is not None:
        from store.postgres import PostgresStore  # psycopg is loaded only when it is used

        return PostgresStore(settings.store.url.get_secret_value(), pool_size=settings.store.pool_size)
    return Store(settings.store.path)
