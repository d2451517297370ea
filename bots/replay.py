"""Replay protection for signed chat requests: a request is refused when its timestamp is outside the window, or
when the same signature (or nonce) was already accepted within it — a captured request cannot be sent again.

Slack's SDK checks the timestamp only; Feishu's checks neither. Memory is bounded: entries older than the window
are dropped, and at most `MAX_SEEN` are kept (the oldest go first; they are the closest to expiring anyway).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

MAX_SEEN = 100_000


class ReplayGuard:
    def __init__(self, window_seconds: int, clock: Callable[[], float] = time.time) -> None:
        self.window = window_seconds
        self.clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def refuse(self, timestamp: str | None, key: str) -> str | None:
        """Why this request must be refused, or None (and it is remembered, so a second one is refused)."""
        try:
            sent = float(timestamp or "")
        except ValueError:
            return "no valid timestamp"
        if sent > 1e12:  # milliseconds
            sent /= 1000
        now = self.clock()
        if abs(now - sent) > self.window:
            return f"timestamp is {abs(now - sent):.0f}s away from now (the window is {self.window}s)"
        self._forget(now)
        if not key or key in self._seen:
            return "replayed (this signature was already used)"
        self._seen[key] = now
        return None

    def _forget(self, now: float) -> None:
        while self._seen and (len(self._seen) >= MAX_SEEN or next(iter(self._seen.values())) < now - self.window):
            self._seen.popitem(last=False)
