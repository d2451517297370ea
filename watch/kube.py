"""A Kubernetes watch that loses nothing and repeats nothing.

List once, then watch from the list's resourceVersion with bookmarks. When the connection drops (the API server
restarts, a load balancer cuts it) the watch resumes from the last resourceVersion it saw; when the server says that
version is too old (410 Gone) it lists again. Every object version is delivered once: a relist offers only what
changed since (and deletes what disappeared), so a consumer never counts an Event twice.

A watch can also resume where another process stopped (leader election, `watch.takeover`): given that process's
cursor it lists the collection as it was at that version (state, not news), then watches from there.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from connections.kube import Connection
from errors import InvalidInput, TemporaryError, Unreachable

logger = logging.getLogger(__name__)

Deliver = Callable[[str, dict[str, Any]], None]  # ("ADDED" | "MODIFIED" | "DELETED", the object)
Checkpoint = Callable[[str], None]  # every event delivered so far is up to this resourceVersion
MAX_BACKOFF_SECONDS = 30.0


class Watch:
    """One collection (e.g. `/api/v1/events`, `/api/v1/namespaces/shop/pods`) on one cluster."""

    def __init__(self, conn: Connection, path: str, *, timeout_seconds: int = 300, page: int = 500) -> None:
        self.conn, self.path = conn, path
        self.timeout, self.page = timeout_seconds, page
        self.seen: dict[str, str] = {}  # uid → the resourceVersion delivered
        self.resource_version = ""
        self.relists = 0
        self.resumes = 0
        self.stopped = ""  # why it stopped for good (the server refused it), set by whoever runs it
        self._response: Any = None
        self._stop = threading.Event()
        self._checkpoint: Checkpoint | None = None

    def run(
        self,
        deliver: Deliver,
        stop: threading.Event,
        resource_version: str | None = None,
        *,
        prime: Deliver | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> None:
        """Deliver changes until `stop` is set (checked between events; `close` ends the request in flight).

        Args:
            resource_version: Watch from this version without listing first.
            prime: With `resource_version` (a cursor another process saved): list the collection as it was at that
                version into `prime` first — what it had already delivered, to know, not to act on.
            checkpoint: Called on this thread after the events up to a version were delivered (and after each
                list and bookmark): the cursor to save once the consumer has taken them.
        """
        self._stop, self._checkpoint = stop, checkpoint
        backoff = 0.5
        while True:  # the first list: a cluster that does not answer yet is tried again, not given up
            try:
                if resource_version and prime is not None:
                    start = self.resume(resource_version, prime, deliver)
                else:
                    start = resource_version or self.relist(deliver)
                break
            except TemporaryError as exc:
                logger.warning("watch %s: %s; listing again in %.1f s", self.path, exc.message, backoff)
                if stop.wait(backoff):
                    return
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
        self._advance(start)
        backoff = 0.5
        while not stop.is_set():
            try:
                query = {"resourceVersion": self.resource_version, "allowWatchBookmarks": True,
                         "timeoutSeconds": self.timeout}  # fmt: skip
                for event in self.conn.watch(self.path, query, timeout=self.timeout + 30, opened=self._opened):
                    if not self._take(event, deliver):
                        break
                    if stop.is_set():
                        return
                backoff = 0.5
            except Unreachable as exc:
                if stop.is_set():
                    return  # closed on purpose
                logger.warning("watch %s: %s; resuming from %s", self.path, exc.message, self.resource_version)
                self.resumes += 1
                if stop.wait(backoff):
                    return
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def close(self) -> None:
        """End the watch request in flight (from another thread, after setting `stop`): no wait for its timeout."""
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):  # already finished, or the connection is gone
                response.shutdown()

    def _opened(self, response: Any) -> None:
        self._response = response
        if self._stop.is_set():  # closed while this request was being opened
            self.close()

    def resume(self, version: str, prime: Deliver, deliver: Deliver) -> str:
        """The collection as it was at `version` into `prime`; returns the version to watch from: `version`, or —
        when the server cannot list at it (410: compacted; a version it does not know) — a fresh list's, offered to
        `deliver` as news (the incidents taken over absorb what was news already)."""
        try:
            items = self._list_at(version)
        except (InvalidInput, TemporaryError) as exc:  # 410 Gone; 504 for a version newer than the server's
            logger.info("watch %s: cannot list at version %s (%s); listing again", self.path, version, exc.message)
            return self.relist(deliver)
        for obj in items:
            meta = obj.get("metadata") or {}
            self.seen[str(meta.get("uid", ""))] = str(meta.get("resourceVersion", ""))
            prime("ADDED", obj)
        return version

    def _list_at(self, version: str) -> list[dict[str, Any]]:
        """Every item as of exactly `version`; the pages after the first carry only the continue token (which holds
        the version: the API server refuses both)."""
        query: dict[str, Any] = {"limit": self.page, "resourceVersion": version, "resourceVersionMatch": "Exact"}
        items: list[dict[str, Any]] = []
        while True:
            doc = self.conn.request("GET", self.path, query=query)
            items.extend(doc.get("items") or [])
            token = (doc.get("metadata") or {}).get("continue")
            if not token:
                return items
            query = {"limit": self.page, "continue": token}

    def relist(self, deliver: Deliver) -> str:
        """List everything now: offer what is new or changed, delete what is gone; return the list's version."""
        items, meta = self.conn.list_items(self.path, {"limit": self.page})
        present = set()
        for obj in items:
            uid = (obj.get("metadata") or {}).get("uid", "")
            present.add(uid)
            self._offer("ADDED" if uid not in self.seen else "MODIFIED", obj, deliver)
        for uid in set(self.seen) - present:
            del self.seen[uid]
            deliver("DELETED", {"metadata": {"uid": uid}})
        self.relists += 1
        return str(meta.get("resourceVersion", ""))

    def _take(self, event: dict[str, Any], deliver: Deliver) -> bool:
        """Handle one watch event; False when the watch must start over (after a relist)."""
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                logger.info("watch %s: version %s expired; listing again", self.path, self.resource_version)
                self._advance(self.relist(deliver))
                return False
            raise Unreachable(f"The watch of {self.path} failed: {str(obj.get('message', obj))[:300]}", delay=5.0)
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if kind != "BOOKMARK":
            self._offer(str(kind), obj, deliver)
        if version:
            self._advance(str(version))
        return True

    def _advance(self, version: str) -> None:
        self.resource_version = version
        if version and self._checkpoint is not None:
            self._checkpoint(version)

    def _offer(self, kind: str, obj: dict[str, Any], deliver: Deliver) -> None:
        meta = obj.get("metadata") or {}
        uid, version = str(meta.get("uid", "")), str(meta.get("resourceVersion", ""))
        if kind == "DELETED":
            if self.seen.pop(uid, None) is not None:
                deliver(kind, obj)
            return
        if self.seen.get(uid) == version:
            return  # this version was delivered already (a relist after a gap, a replayed event)
        self.seen[uid] = version
        deliver(kind, obj)
