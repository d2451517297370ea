"""Timestamps as the Kubernetes API writes them (RFC 3339, `Z` for UTC)."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_time(value: object) -> datetime | None:
    """The instant of an API timestamp, always timezone-aware (a timestamp without an offset is UTC, as the API
    means it); None when absent, not a string, or unreadable."""
    if not value or not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when
