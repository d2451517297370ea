"""What a process takes over when it starts leading a cluster (watch.leader_election), so that across a change of
leader no event is lost and none is handled twice.

- **Cursors**: the leader stores, per watch, the resourceVersion up to which the pipeline has taken every event
  (`watch_cursors` in the shared store). The next leader watches from there: the API server sends exactly the
  events after it. Only when that version is gone (410, compacted) does it list again.
- **Incidents**: the cluster's open incidents (and those resolved within the flap window) are loaded from the store
  into the grouper, so a signal about a root that already has an incident updates it (or reopens it) instead of
  opening and announcing a second one.
- **State as of the cursor**: each collection is listed as it was at the cursor (resourceVersionMatch=Exact) and fed
  in as state, not news — the broken states already signalled, the objects' last versions for the change history,
  the Events already counted (uid and count) — so the events after the cursor are judged exactly as the last leader
  would have judged them.

When leadership ends, the cluster's state is dropped (`forget`): it is taken over again from the store next time.
"""

from __future__ import annotations

import time
from collections import Counter

from engines.incidents import Incident, Signal
from store.incidents import IncidentRecord
from store.migrations import migrate
from store.sqlite import Store
from watch.pipeline import Pipeline
from watch.signals import States

ADOPTED = 10_000  # incidents read per takeover (open ones first); more open incidents than this is an outage

# Portable SQL only (SQLite and PostgreSQL): the store may be either.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS watch_cursors (
    cluster TEXT NOT NULL,
    path TEXT NOT NULL,
    resource_version TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (cluster, path)
);
"""
MIGRATIONS = (_SCHEMA,)


class Cursors:
    """Per (cluster, watch path): the resourceVersion every event up to which the pipeline has taken."""

    def __init__(self, store: Store) -> None:
        self.store = store
        migrate(store, "watch_cursors", MIGRATIONS)

    def load(self, cluster: str) -> dict[str, str]:
        rows = self.store.execute("SELECT path, resource_version FROM watch_cursors WHERE cluster = ?", (cluster,))
        return {str(r["path"]): str(r["resource_version"]) for r in rows}

    def save(self, cluster: str, versions: dict[str, str]) -> None:
        now = time.time()
        for path, version in versions.items():
            self.store.execute(
                "INSERT INTO watch_cursors (cluster, path, resource_version, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (cluster, path) DO UPDATE SET resource_version = excluded.resource_version, "
                "updated_at = excluded.updated_at",
                (cluster, path, version, now),
            )


def adopt(pipeline: Pipeline, cluster: str) -> int:
    """Load the cluster's open incidents, and those resolved within the flap window (to reopen rather than open
    anew), from the store into the pipeline's grouper. Returns how many are open."""
    grouper, now = pipeline.grouper, pipeline.clock()
    opened = 0
    for record in pipeline.incidents.list("open", limit=ADOPTED):
        where = (record.cluster, record.root)
        if record.cluster == cluster and where not in grouper.open:
            grouper.open[where] = _incident(record)
            opened += 1
    for record in pipeline.incidents.list("resolved", limit=ADOPTED):
        where = (record.cluster, record.root)
        recent = record.resolved_at is not None and now - record.resolved_at <= grouper.flap_window
        if record.cluster == cluster and recent and where not in grouper.open and where not in grouper.closed:
            grouper.closed[where] = _incident(record)
    return opened


def remember(pipeline: Pipeline, s: Signal) -> None:
    """A signal the last leader already took (found in the state as of the cursor): known, not news. A broken state
    keeps its incident open again (firing) until it clears; an Event's count so far is what later versions of it
    are counted against."""
    grouper = pipeline.grouper
    grouper.seen[s.fingerprint] = (s.at, s.count)
    incident = grouper.open.get((s.cluster, s.root))
    if incident is not None and s.source != "kube":
        incident.firing.add(s.fingerprint)


def forget(pipeline: Pipeline, states: States, cluster: str) -> None:
    """Drop what this process knew of the cluster: another process leads it now and the store is the truth."""
    grouper, history = pipeline.grouper, pipeline.history
    for table in (grouper.open, grouper.closed):
        for where in [w for w in table if w[0] == cluster]:
            del table[where]
    states.live = {uid: v for uid, v in states.live.items() if v[0] != cluster}
    history.objects = {k: v for k, v in history.objects.items() if k[0] != cluster}
    history.edits.pop(cluster, None)


def _incident(r: IncidentRecord) -> Incident:
    return Incident(
        id=r.id,
        cluster=r.cluster,
        root=r.root,
        opened_at=r.opened_at,
        last_at=r.last_at,
        status="resolved" if r.status == "resolved" else "open",
        reasons=Counter(r.reasons),
        objects=list(r.objects),
        events=r.events,
        reopened=r.reopened,
        flapping=r.flapping,
        resolved_at=r.resolved_at,
        severity=r.severity,
        ref=r.id,
    )
