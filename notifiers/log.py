"""The log sink: one line per notification in the server's log (stderr), at a level matching its severity."""

from __future__ import annotations

import logging

from notifiers.base import Notification

logger = logging.getLogger(__name__)

LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.CRITICAL}


class LogNotifier:
    """Writes `[severity] title: text | key=value ... | thread=... help=yes` as one line (newlines become ⏎)."""

    def __init__(self, name: str = "log", logger_: logging.Logger | None = None) -> None:
        self.name = name
        self._logger = logger_ or logger

    async def send(self, n: Notification) -> None:
        parts = [f"[{n.severity}] {n.title}: {n.text}"]
        if n.fields:
            parts.append(" ".join(f"{k}={v}" for k, v in n.fields.items()))
        if n.links:
            parts.append(" ".join(f"{k}<{v}>" for k, v in n.links.items()))
        tail = [f"id={n.id}"]
        if n.thread_id:
            tail.append(f"thread={n.thread_id}")
        if n.human_help:
            tail.append("human help needed")
        parts.append(" ".join(tail))
        line = " | ".join(parts).replace("\r\n", "\n").replace("\n", " ⏎ ")
        self._logger.log(LEVELS[n.severity], "notification %s", line)
