"""The embedded SQLite store: registered clusters, the audit log and saved fix plans."""

from store.audit import AuditEntry, AuditLog
from store.sqlite import ClusterRecord, Store

__all__ = ["AuditEntry", "AuditLog", "ClusterRecord", "Store"]
