"""Signals into incidents: de-duplicate, group by root object within a window, reopen (not duplicate) what flaps,
resolve what clears. Pure and clock-free: the caller passes signals in and calls `expire(now)` now and then, which
also forgets what no longer matters, so memory stays flat however long it runs."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from engines.incidents.model import Signal

MAX_OBJECTS = 50  # objects listed per incident (the count goes on)


@dataclass
class Incident:
    """Something broken, with every signal that said so.

    Attributes:
        id: Increasing per grouper (the store gives the lasting id).
        root: The root object key ("Deployment shop/web").
        reasons: Reason → how many times (repeats included).
        objects: The objects named (pods, the workload), at most MAX_OBJECTS.
        firing: Alert keys still firing: an incident with alerts resolves when all of them have.
        reopened: How often it came back after resolving; `flapping` once that reaches the limit.
    """

    id: int
    cluster: str
    root: str
    opened_at: float
    last_at: float
    status: Literal["open", "resolved"] = "open"
    reasons: Counter[str] = field(default_factory=Counter)
    objects: list[str] = field(default_factory=list)
    signals: int = 0
    events: int = 0
    firing: set[str] = field(default_factory=set)
    reopened: int = 0
    flapping: bool = False
    resolved_at: float | None = None
    severity: str = "warning"
    ref: int = 0  # its id in the store, once stored

    def take(self, s: Signal) -> None:
        self.last_at = max(self.last_at, s.at)
        self.reasons[s.reason] += s.count
        self.signals += 1
        self.events += s.count
        if s.object not in self.objects and len(self.objects) < MAX_OBJECTS:
            self.objects.append(s.object)
        if s.source != "kube":  # alerts and other senders say when it clears; Kubernetes events do not
            self.firing.add(s.fingerprint)
        if s.severity == "critical":
            self.severity = "critical"


@dataclass(frozen=True)
class Change:
    """What a signal or the passing of time did: worth telling people unless it is a plain repeat."""

    kind: Literal["opened", "updated", "reopened", "resolved"]
    incident: Incident
    signal: Signal | None = None


class Grouper:
    """Incidents by (cluster, root object).

    Args:
        window: A signal this long after an incident's last one starts a new incident (seconds).
        quiet: An open incident with no signal for this long, and no alert still firing, resolves.
        dedup: A repeat of the same signal within this is counted, not treated as news.
        flap_limit: Reopened this many times within `flap_window`, an incident is flapping: it keeps reopening
            as the same incident, and says so, instead of paging again each time.
    """

    def __init__(
        self,
        *,
        window: float = 600.0,
        quiet: float = 900.0,
        dedup: float = 300.0,
        flap_limit: int = 3,
        flap_window: float = 3600.0,
    ) -> None:
        self.window, self.quiet, self.dedup = window, quiet, dedup
        self.flap_limit, self.flap_window = flap_limit, flap_window
        self.open: dict[tuple[str, str], Incident] = {}
        self.closed: dict[tuple[str, str], Incident] = {}  # recently resolved, for reopening
        self.seen: dict[str, tuple[float, int]] = {}  # fingerprint → (last seen, last count)
        self._ids = itertools.count(1)

    def add(self, s: Signal) -> Change | None:
        """Take one signal. Returns what changed, or None for a repeat of something already known."""
        where = (s.cluster, s.root)
        if s.resolved:
            return self._resolve_alert(where, s)
        fp = s.fingerprint
        previous = self.seen.get(fp)
        self.seen[fp] = (s.at, s.count)
        incident = self.open.get(where)
        if previous is not None and s.at - previous[0] <= self.dedup and incident is not None:
            more = s.count - previous[1] if s.key and s.count >= previous[1] else s.count  # an Event's count grows
            incident.events += max(more, 0)
            incident.reasons[s.reason] += max(more, 0)
            incident.last_at = max(incident.last_at, s.at)
            return None
        if incident is not None and s.at - incident.last_at <= self.window:
            incident.take(s)
            return Change("updated", incident, s)
        if incident is not None:  # the same root, long after: the old one is over
            self._close(where, incident, incident.last_at)
        back = self.closed.get(where)
        if back is not None and s.at - (back.resolved_at or 0) <= self.flap_window:
            del self.closed[where]
            back.status, back.resolved_at, back.opened_at = "open", None, s.at
            back.reopened += 1
            back.flapping = back.reopened >= self.flap_limit
            back.take(s)
            self.open[where] = back
            return Change("reopened", back, s)
        incident = Incident(next(self._ids), s.cluster, s.root, opened_at=s.at, last_at=s.at)
        incident.take(s)
        self.open[where] = incident
        return Change("opened", incident, s)

    def expire(self, now: float) -> list[Change]:
        """Resolve incidents quiet for `quiet` seconds with nothing firing; forget old repeats and closed incidents."""
        changes = []
        for where, incident in list(self.open.items()):
            if not incident.firing and now - incident.last_at >= self.quiet:
                self._close(where, incident, now)
                changes.append(Change("resolved", incident))
        self.seen = {fp: v for fp, v in self.seen.items() if now - v[0] <= max(self.dedup, self.window)}
        self.closed = {w: i for w, i in self.closed.items() if now - (i.resolved_at or 0) <= self.flap_window}
        return changes

    def resolve(self, incident: Incident, at: float) -> Change:
        """Resolve an open incident now (its fix was verified)."""
        self._close((incident.cluster, incident.root), incident, at)
        return Change("resolved", incident)

    def _resolve_alert(self, where: tuple[str, str], s: Signal) -> Change | None:
        incident = self.open.get(where)
        if incident is None or s.fingerprint not in incident.firing:
            return None
        incident.firing.discard(s.fingerprint)
        incident.last_at = max(incident.last_at, s.at)
        if incident.firing:
            return None
        self._close(where, incident, s.at)
        return Change("resolved", incident, s)

    def _close(self, where: tuple[str, str], incident: Incident, at: float) -> None:
        incident.status, incident.resolved_at = "resolved", at
        self.open.pop(where, None)
        self.closed[where] = incident
