"""The embedded SQLite store: registered clusters (and, later, the audit log)."""

from store.sqlite import ClusterRecord, Store

__all__ = ["ClusterRecord", "Store"]
