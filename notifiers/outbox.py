"""The chat outbox: notifications for Slack and Feishu are written to the store first, then delivered by a worker.

- **Nothing lost**: `enqueue` commits a row before anything is sent; a restart picks up every row not yet sent.
- **Nothing doubled**: a row is posted once. A row whose post may have landed (a crash or a timeout mid-send) is
  first looked up on the platform (`Channel.find`: Slack message metadata, Feishu's idempotency uuid) before it
  is posted again.
- **Retries**: 429 and 5xx answers wait as long as the platform's `Retry-After` asks (else exponential backoff,
  at most five minutes) and keep a channel's messages in order; a row still undelivered after
  `notify.give_up_after_minutes` is marked failed and logged.
- **De-duplication**: the same alert (`Notification.dedup_key`) to the same place within
  `notify.dedup_window_seconds` is one message: its count goes up and the message is edited, not posted again.
- **Rate limits**: at most `notify.per_channel_per_second` sends (posts and edits) per channel.
- **Several workers** (the bot process, the HTTP server, a CLI run) may share one store: each takes a row with a
  short lease first (a conditional UPDATE), so no two send the same row; a dead worker's lease simply lapses.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from errors import CloudPilotError
from notifiers.base import DeliveryError, Notification, prepared
from ops.metrics import METRICS
from store.migrations import migrate
from store.sqlite import Store

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 300.0
BATCH = 500  # rows taken per pass; the rest wait for the next

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dest TEXT NOT NULL,
    dedup_key TEXT NOT NULL,
    notification TEXT NOT NULL,
    count INTEGER NOT NULL DEFAULT 1,
    shown INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    ref TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    due REAL NOT NULL,
    created REAL NOT NULL,
    last_seen REAL NOT NULL,
    error TEXT NOT NULL DEFAULT '',
    lease REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, due);
CREATE INDEX IF NOT EXISTS outbox_key ON outbox (dest, dedup_key, created);
"""
MIGRATIONS = (_SCHEMA,)


class RetryLater(DeliveryError):
    """The platform asked us to wait (429) or is failing (5xx, a timeout): try again after `after` seconds, or
    after the outbox's backoff when the platform gave no time."""

    def __init__(self, message: str, after: float | None = None) -> None:
        super().__init__(message)
        self.after = after


class Channel(Protocol):
    """A chat platform that can post a notification, edit it later, and find one it already posted."""

    name: str  # the destination prefix: "slack" or "feishu"

    async def post(self, n: Notification, to: str, count: int) -> str:
        """Post `n` (seen `count` times) to channel/chat `to`; return the message's reference."""
        ...

    async def update(self, ref: str, n: Notification, to: str, count: int) -> None:
        """Edit the message `ref` to show `n` seen `count` times."""
        ...

    async def find(self, n: Notification, to: str) -> str | None:
        """The reference of a message already posted for `n.id`, if the platform can tell (crash recovery)."""
        ...


@dataclass(frozen=True)
class Row:
    id: int
    dest: str
    count: int
    shown: int
    status: str  # queued | sending | sent | failed
    ref: str
    attempts: int
    created: float
    notification: Notification

    @property
    def channel(self) -> str:
        return self.dest.partition(":")[0]

    @property
    def to(self) -> str:
        return self.dest.partition(":")[2]


class Outbox:
    """The persistent queue and its worker (`run`, or `pump` passes)."""

    def __init__(
        self,
        store: Store,
        channels: Sequence[Channel],
        *,
        dedup_window_seconds: float = 600.0,
        per_channel_per_second: float = 1.0,
        give_up_after_minutes: float = 1440.0,
        lease_seconds: float = 120.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.channels: Mapping[str, Channel] = {c.name: c for c in channels}
        self.window = dedup_window_seconds
        self.spacing = 1.0 / per_channel_per_second
        self.give_up_after = give_up_after_minutes * 60
        self.lease = lease_seconds
        self._pumping = anyio.Lock()
        self.clock = clock
        self._last_send: dict[str, float] = defaultdict(float)
        self._wake = anyio.Event()
        migrate(store, "outbox", MIGRATIONS)

    # -- producing ----------------------------------------------------------------------------------------------
    def enqueue(self, n: Notification, destinations: Sequence[str]) -> list[int]:
        """Store `n` for each destination ("slack:C123", "feishu:oc_123") and wake the worker.

        The same alert within the window adds to the count of the row already there instead of a new row.
        Returns the row ids.
        """
        ready = prepared(n)
        body = json.dumps(ready.to_dict(), ensure_ascii=False)
        now = self.clock()
        ids = []
        for dest in dict.fromkeys(destinations):
            if dest.partition(":")[0] not in self.channels:
                raise DeliveryError(f"No chat channel is configured for {dest!r}.")
            ids.append(self._add(dest, ready.dedup_key, body, now))
        self._wake.set()
        return ids

    def _add(self, dest: str, key: str, body: str, now: float) -> int:
        # one statement each, under the store's lock: an increment that matches no row falls through to the insert
        bumped = self.store.execute(
            "UPDATE outbox SET count = count + 1, notification = ?, last_seen = ?, "
            "due = CASE WHEN status = 'sent' THEN ? ELSE due END "
            "WHERE id = (SELECT id FROM outbox WHERE dest = ? AND dedup_key = ? AND created >= ? "
            "AND status != 'failed' ORDER BY id DESC LIMIT 1) RETURNING id",
            (body, now, now, dest, key, now - self.window),
        )
        if bumped:
            return int(bumped[0]["id"])
        row = self.store.execute(
            "INSERT INTO outbox (dest, dedup_key, notification, status, due, created, last_seen) "
            "VALUES (?,?,?,'queued',?,?,?) RETURNING id",
            (dest, key, body, now, now, now),
        )
        return int(row[0]["id"])

    # -- reading ------------------------------------------------------------------------------------------------
    def rows(self, status: str | None = None, limit: int = 1000) -> list[Row]:
        found = self.store.execute(
            "SELECT * FROM outbox WHERE ? IS NULL OR status = ? ORDER BY id LIMIT ?", (status, status, limit)
        )
        return [_row(r) for r in found]

    def backlog(self) -> int:
        """Rows waiting to be posted or edited."""
        found = self.store.execute(
            "SELECT COUNT(*) AS n FROM outbox WHERE status IN ('queued', 'sending') "
            "OR (status = 'sent' AND count > shown)"
        )
        return int(found[0]["n"])

    # -- delivering ---------------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Deliver forever (until cancelled): each pass sends what is due, then sleeps until the next row is due or
        a new one arrives."""
        while True:
            self._wake = anyio.Event()
            await self.pump()
            wait = self._next_due()
            with anyio.move_on_after(min(max(wait - self.clock(), 0.05), 30.0) if wait else 30.0):
                await self._wake.wait()

    async def pump(self) -> int:
        """One pass over every row due now, channels in parallel, each channel's rows in order. Returns how many
        rows were delivered (posted or edited)."""
        async with self._pumping:
            return await self._pump()

    async def _pump(self) -> int:
        rows = self._due()
        by_dest: dict[str, list[Row]] = defaultdict(list)
        for row in rows:
            by_dest[row.dest].append(row)
        done = 0

        async def one_dest(dest_rows: list[Row]) -> None:
            nonlocal done
            for row in dest_rows:
                outcome = await self._deliver(row)
                if outcome == "wait":  # the channel is rate-limited or down: keep its order, stop here
                    return
                done += outcome == "done"

        async with anyio.create_task_group() as tg:
            for dest_rows in by_dest.values():
                tg.start_soon(one_dest, dest_rows)
        return done

    async def drain(self, timeout: float = 60.0) -> None:
        """Deliver until nothing is left to post or edit (tests, benchmarks, a graceful shutdown)."""
        with anyio.fail_after(timeout):
            while self.backlog():
                await self.pump()
                wait = self._next_due()
                if wait is not None and wait > self.clock():
                    await anyio.sleep(min(wait - self.clock(), 1.0))

    def _due(self) -> list[Row]:
        now = self.clock()
        found = self.store.execute(
            "SELECT * FROM outbox WHERE (status IN ('queued', 'sending') OR (status = 'sent' AND count > shown)) "
            "AND due <= ? AND lease < ? ORDER BY id LIMIT ?",
            (now, now, BATCH),
        )
        return [_row(r) for r in found]

    def _next_due(self) -> float | None:
        found = self.store.execute(
            "SELECT MIN(due) AS due FROM outbox WHERE status IN ('queued', 'sending') OR "
            "(status = 'sent' AND count > shown)"
        )
        return found[0]["due"] if found and found[0]["due"] is not None else None

    async def _deliver(self, row: Row) -> str:
        """Post or edit one row. Returns done, wait (retry later: stop this channel for now) or failed."""
        channel = self.channels.get(row.channel)
        if channel is None:
            return self._fail(row, f"no {row.channel} channel is configured")
        if self.clock() - row.created > self.give_up_after:
            return self._fail(row, f"still undelivered after {self.give_up_after / 60:g} minutes")
        await self._pace(row.dest)
        now = self.clock()
        claimed = self.store.execute(
            "UPDATE outbox SET lease = ?, status = CASE WHEN status = 'queued' THEN 'sending' ELSE status END "
            "WHERE id = ? AND lease < ? AND (status IN ('queued', 'sending') OR (status = 'sent' AND count > shown)) "
            "RETURNING *",
            (now + self.lease, row.id, now),
        )
        if not claimed:
            return "busy"  # another worker has it, or finished it between our look and our claim
        try:
            outcome = await self._attempt(channel, _row(claimed[0]), may_have_landed=row.status == "sending")
            METRICS.notifications.labels(channel=row.channel, outcome={"done": "delivered"}.get(outcome, outcome)).inc()
            return outcome
        except BaseException:  # cancelled mid-send: free the row now rather than when the lease lapses
            self.store.execute("UPDATE outbox SET lease = 0 WHERE id = ?", (row.id,))
            raise

    async def _attempt(self, channel: Channel, row: Row, may_have_landed: bool) -> str:
        try:
            if row.status == "sent":
                await channel.update(row.ref, row.notification, row.to, row.count)
                self.store.execute(
                    "UPDATE outbox SET shown = ?, error = '', lease = 0 WHERE id = ?", (row.count, row.id)
                )
                return "done"
            ref = await channel.find(row.notification, row.to) if may_have_landed else None
            if ref is None:
                ref = await channel.post(row.notification, row.to, row.count)
            # a repeat that arrived while posting leaves count > shown: the next pass edits the message
            self.store.execute(
                "UPDATE outbox SET status = 'sent', ref = ?, shown = ?, error = '', lease = 0 WHERE id = ?",
                (ref, row.count, row.id),
            )
            return "done"
        except RetryLater as exc:  # the platform refused it: nothing landed
            delay = exc.after if exc.after is not None else _backoff(row.attempts)
            self.store.execute(
                "UPDATE outbox SET due = ?, attempts = attempts + 1, error = ?, lease = 0, "
                "status = CASE WHEN status = 'sending' THEN 'queued' ELSE status END WHERE id = ?",
                (self.clock() + delay, exc.message[:300], row.id),
            )
            self._hold(row, self.clock() + delay)
            logger.info("%s: retrying in %.1fs (%s)", row.dest, delay, exc.message[:200])
            return "wait"
        except CloudPilotError as exc:
            return self._fail(row, exc.message)
        except Exception as exc:  # a boundary: a timeout or a library's surprise is a retry, never a lost row
            # the post may have landed: the row stays 'sending', so the next attempt looks for it before posting
            until = self.clock() + _backoff(row.attempts)
            self.store.execute(
                "UPDATE outbox SET due = ?, attempts = attempts + 1, error = ?, lease = 0 WHERE id = ?",
                (until, type(exc).__name__, row.id),
            )
            self._hold(row, until)
            logger.warning("%s: unexpected %s; will retry", row.dest, type(exc).__name__)
            return "wait"

    def _hold(self, row: Row, until: float) -> None:
        """The channel's later rows wait too, so its messages keep their order."""
        self.store.execute(  # the CASE is SQLite's MAX(a, b) and PostgreSQL's GREATEST(a, b)
            "UPDATE outbox SET due = CASE WHEN due > ? THEN due ELSE ? END "
            "WHERE dest = ? AND id > ? AND status IN ('queued', 'sending')",
            (until, until, row.dest, row.id),
        )

    async def _pace(self, dest: str) -> None:
        now = self.clock()
        wait = self._last_send[dest] + self.spacing - now
        self._last_send[dest] = max(now, self._last_send[dest] + self.spacing)
        if wait > 0:
            await anyio.sleep(wait)

    def _fail(self, row: Row, reason: str) -> str:
        self.store.execute(
            "UPDATE outbox SET status = 'failed', error = ?, lease = 0 WHERE id = ?", (reason[:300], row.id)
        )
        logger.warning("notification %s to %s failed: %s", row.notification.id, row.dest, reason[:200])
        return "failed"


def _backoff(attempts: int) -> float:
    base: float = min(MAX_BACKOFF_SECONDS, 2.0**attempts)
    return base * (0.75 + random.random() / 2)  # nosec B311


def _row(r: Any) -> Row:
    return Row(
        id=r["id"],
        dest=r["dest"],
        count=r["count"],
        shown=r["shown"],
        status=r["status"],
        ref=r["ref"],
        attempts=r["attempts"],
        created=r["created"],
        notification=Notification.from_dict(json.loads(r["notification"])),
    )


class OutboxNotifier:
    """The outbox as a `Notifier`: `send` routes the notification, stores it, and delivers what can go at once
    (for at most `timeout_seconds`); what cannot (rate limits, outages) waits for the next pass of any worker."""

    name = "chat"

    def __init__(
        self, outbox: Outbox, route: Callable[[Notification, Sequence[str]], list[str]], timeout_seconds: float
    ):
        self.outbox = outbox
        self.route = route
        self.timeout = timeout_seconds

    async def send(self, n: Notification) -> None:
        dests = self.route(n, list(self.outbox.channels))
        if not dests:
            return
        self.outbox.enqueue(n, dests)
        with anyio.move_on_after(self.timeout):
            await self.outbox.pump()
