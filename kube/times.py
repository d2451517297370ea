"""Timestamps as the Kubernetes API writes them (RFC 3339, `Z` for UTC)."""

from __future__ import annotations

from datetime import datetime


def parse_time(value: str | None) -> datetime | None:
    """The instant of an API timestamp; None when absent or unreadable."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
