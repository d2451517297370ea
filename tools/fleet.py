"""Fleet tools: the overview, the diagnosis and the problem pods of every cluster at once.

Each cluster is read concurrently by the code the single-cluster tools use, through the same caches. One
deadline bounds the whole call: a cluster that has not answered by then is named in `unreachable` with the
reason, and the clusters that did answer are reported as usual.

Nothing waits on a hung cluster. Its read is left to end in the background at its own request timeouts, and a
later call joins that read instead of starting another, so a hung cluster costs at most one read per tool.
Before reading, each cluster is asked GET /version (timeout: the deadline plus a second) in a thread of its
own: a cluster that does not answer holds that one thread, not the dozens of lists a diagnosis sends at once,
and a stopped cluster is reported even while its last overview is still cached.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, Literal

import anyio
from pydantic import BaseModel, Field

from connections.kube import OPERATOR_ADD, Connection
from errors import CloudPilotError, InvalidInput, NotFound, quote
from runtime import Runtime, current, progress_to, report_progress, validate_limit
from tools import snapshot
from tools.catalogue import tool
from tools.clusters import clusters_list
from tools.diagnose import Severity, diagnose_cluster
from tools.overview import NodeCounts, PodCounts, overview
from tools.pods import PodLine, pod_line
from tools.results import Result, table

logger = logging.getLogger(__name__)

NAME_CHARS = 253  # longest cluster name accepted
ERROR_CHARS = 400  # longest reason given for one cluster
LISTED_NAMES = 20  # most names an error or note lists

ClusterNames = Annotated[
    list[str] | None, Field(description="Clusters to read (clusters_list names them); default: all, once per server.")
]
Timeout = Annotated[
    float | None,
    Field(gt=0, description="Seconds to wait for the clusters; at most (and by default) k8s.fanout_timeout_seconds."),
]
Refresh = Annotated[bool, Field(description="Read the clusters instead of recent cached data.")]


# -- results ---------------------------------------------------------------------------------------------------
class Unanswered(BaseModel):
    cluster: str
    error: str


class Fleet(Result):
    """What every fleet result says besides its rows."""

    asked: int = Field(description="Clusters read.")
    unreachable: list[Unanswered] = Field(default_factory=list, description="Clusters that did not answer, and why.")
    notes: list[str] = Field(default_factory=list)
    timeout_seconds: float

    def _render(self, rows: str) -> str:
        answered = self.asked - len(self.unreachable)
        lines = [f"{answered} of {self.asked} clusters answered (waited at most {self.timeout_seconds:g} s)", rows]
        if self.unreachable:
            lines.append("did not answer:")
            lines += [f"- {u.cluster}: {u.error}" for u in self.unreachable]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(filter(None, lines))


class ClusterHealth(BaseModel):
    cluster: str
    health: Literal["healthy", "degraded", "partial"] = Field(
        description="degraded: nodes not ready or pods unhealthy; partial: some kinds could not be read (errors)."
    )
    nodes: NodeCounts
    pods: PodCounts
    namespaces: int | None = None
    errors: list[str] = Field(default_factory=list, description="Kinds not read; cluster_overview says why.")
    from_cache: bool = False


class FleetOverview(Fleet):
    clusters: list[ClusterHealth]

    def render(self) -> str:
        rows = [
            [
                c.cluster,
                c.health,
                f"{c.nodes.ready}/{c.nodes.total}",
                c.pods.total,
                c.pods.unhealthy,
                c.pods.pending,
                c.pods.failed,
                c.namespaces,
                ("not read: " + ",".join(c.errors) if c.errors else "") + (" (cached)" if c.from_cache else ""),
            ]
            for c in self.clusters
        ]
        head = ["CLUSTER", "HEALTH", "NODES READY", "PODS", "UNHEALTHY", "PENDING", "FAILED", "NAMESPACES", "NOTE"]
        return self._render(table(head, rows) if rows else "")


class FindingLine(BaseModel):
    severity: str
    code: str
    object: str
    summary: str


class ClusterFindings(BaseModel):
    cluster: str
    counts: dict[str, int] = Field(description="Findings per severity.")
    total: int = Field(description="Findings at min_severity or worse; `findings` holds the worst of them.")
    findings: list[FindingLine]
    notes: list[str] = Field(default_factory=list)


class FleetDiagnosis(Fleet):
    clusters: list[ClusterFindings]

    def render(self) -> str:
        parts = []
        for c in self.clusters:
            counts = ", ".join(f"{c.counts.get(s, 0)} {s}" for s in ("critical", "warning", "info"))
            lines = [f"cluster {c.cluster}: {counts}"]
            lines += [f"  [{f.severity}] {f.code} {f.object}: {f.summary}" for f in c.findings]
            if c.total > len(c.findings):
                lines.append(f"  (showing {len(c.findings)} of {c.total}; diagnose(cluster={c.cluster!r}) shows all)")
            lines += [f"  note: {n}" for n in c.notes]
            parts.append("\n".join(lines))
        return self._render("\n".join(parts))


class ClusterPods(BaseModel):
    cluster: str
    total: int = Field(description="Pods not Running+ready or Completed; `pods` lists the first.")
    by_status: dict[str, int]
    pods: list[PodLine]


class FleetPods(Fleet):
    clusters: list[ClusterPods]

    def render(self) -> str:
        parts = []
        for c in self.clusters:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(c.by_status.items(), key=lambda kv: -kv[1]))
            head = f"cluster {c.cluster}: {c.total} problem pods" + (f" ({counts})" if counts else "")
            cols = ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "LAST TERMINATION"]
            rows = [[p.namespace, p.name, p.ready, p.status, p.restarts, p.age, p.last_termination] for p in c.pods]
            more = f"\n(showing {len(c.pods)} of {c.total})" if c.total > len(c.pods) else ""
            parts.append(head + ("\n" + table(cols, rows) + more if rows else ""))
        return self._render("\n".join(parts))


# -- the tools ---------------------------------------------------------------------------------------------------
@tool("core", title="Overview of every cluster")
async def fleet_overview(
    clusters: ClusterNames = None, timeout_seconds: Timeout = None, force_refresh: Refresh = False
) -> FleetOverview:
    """Health of every cluster at once: nodes ready, pods by phase and unhealthy, namespaces. Clusters that do
    not answer in time are listed in `unreachable` with the reason; the others are reported."""
    rt = current()
    names, notes, wait = await _plan(rt, clusters, timeout_seconds)
    answers, unreachable = await _fan_out(rt, names, f"overview:{force_refresh}", partial(_health, force_refresh), wait)
    rows = [answers[n] for n in names if n in answers]
    return FleetOverview(clusters=rows, asked=len(names), unreachable=unreachable, notes=notes, timeout_seconds=wait)


async def _health(refresh: bool, conn: Connection) -> ClusterHealth:
    o = await overview(conn, refresh)
    degraded = o.nodes.not_ready > 0 or o.pods.unhealthy > 0
    return ClusterHealth(
        cluster=conn.name,
        health="partial" if o.errors else "degraded" if degraded else "healthy",
        nodes=o.nodes,
        pods=o.pods,
        namespaces=o.namespaces,
        errors=sorted(o.errors),
        from_cache=o.from_cache,
    )


@tool("diagnose", title="Diagnose every cluster")
async def fleet_diagnose(
    clusters: ClusterNames = None,
    min_severity: Annotated[Severity, Field(description="Leave out less severe findings.")] = "warning",
    limit_per_cluster: Annotated[
        int | None, Field(ge=1, le=50, description="Findings per cluster (default 5).")
    ] = None,
    timeout_seconds: Timeout = None,
    force_refresh: Refresh = False,
) -> FleetDiagnosis:
    """Run diagnose on every cluster at once: finding counts and the worst findings of each. Clusters that do
    not answer in time are listed in `unreachable` with the reason. Drill down with diagnose(cluster=...)."""
    rt = current()
    limit = validate_limit(limit_per_cluster, 5, maximum=50)
    names, notes, wait = await _plan(rt, clusters, timeout_seconds)

    async def read(conn: Connection) -> ClusterFindings:
        d = await diagnose_cluster(rt, conn, None, None, min_severity, limit, force_refresh)
        lines = [
            FindingLine(severity=f.severity, code=f.code, object=f.object.short(), summary=f.summary)
            for f in d.findings
        ]
        return ClusterFindings(
            cluster=conn.name,
            counts=d.counts,
            total=d.total,
            findings=lines,
            notes=[_line(n, 200) for n in d.notes[:3]],
        )

    answers, unreachable = await _fan_out(rt, names, f"diagnose:{min_severity}:{limit}:{force_refresh}", read, wait)
    rows = [answers[n] for n in names if n in answers]
    return FleetDiagnosis(clusters=rows, asked=len(names), unreachable=unreachable, notes=notes, timeout_seconds=wait)


@tool("core", title="Problem pods of every cluster")
async def fleet_problem_pods(
    clusters: ClusterNames = None,
    limit_per_cluster: Annotated[int | None, Field(ge=1, le=100, description="Pods per cluster (default 10).")] = None,
    timeout_seconds: Timeout = None,
    force_refresh: Refresh = False,
) -> FleetPods:
    """Pods that are not Running+ready or Completed, in every cluster at once, with counts by status. Clusters
    that do not answer in time are listed in `unreachable` with the reason."""
    rt = current()
    limit = validate_limit(limit_per_cluster, 10, maximum=100)
    names, notes, wait = await _plan(rt, clusters, timeout_seconds)

    async def read(conn: Connection) -> ClusterPods:
        bad = sorted((p for p in await snapshot.pods(rt, conn, force_refresh) if not p.healthy), key=_pod_order)
        by_status = Counter(p.reason for p in bad)
        return ClusterPods(
            cluster=conn.name, total=len(bad), by_status=dict(by_status), pods=[pod_line(p) for p in bad[:limit]]
        )

    answers, unreachable = await _fan_out(rt, names, f"pods:{limit}:{force_refresh}", read, wait)
    rows = [answers[n] for n in names if n in answers]
    return FleetPods(clusters=rows, asked=len(names), unreachable=unreachable, notes=notes, timeout_seconds=wait)


def _pod_order(p: snapshot.PodRow) -> tuple[str, str]:
    return p.namespace, p.name


# -- which clusters ------------------------------------------------------------------------------------------------
async def _plan(rt: Runtime, clusters: list[str] | None, timeout: float | None) -> tuple[list[str], list[str], float]:
    """(the clusters to read, notes about the choice, the wait in seconds), or InvalidInput."""
    k8s = rt.settings.k8s
    if timeout is not None and not 0 < timeout <= k8s.fanout_timeout_seconds:
        raise InvalidInput(
            f"timeout_seconds must be more than 0 and at most {k8s.fanout_timeout_seconds:g} "
            f"(k8s.fanout_timeout_seconds), got {quote(timeout)}.",
            hint="Omit it to wait the longest allowed.",
        )
    wait = timeout or k8s.fanout_timeout_seconds
    if clusters is not None:
        _check_names(clusters, k8s.fanout_max_clusters)
    listing = await clusters_list()
    notes = [listing.kubeconfig_error] if listing.kubeconfig_error else []
    known = [e.name for e in listing.clusters]
    if clusters is not None:
        names = list(dict.fromkeys(clusters))
        unknown = [n for n in names if n not in known]
        if unknown:
            more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
            raise InvalidInput(
                f"Unknown cluster {quote(unknown[0])}{more}: neither a registered cluster nor a kubeconfig context.",
                hint=f"Known clusters: {_names(known)}. {OPERATOR_ADD}",
            )
        return names, notes, wait
    names, same = [], {}
    first_by_server: dict[str, str] = {}
    for e in sorted(listing.clusters, key=lambda e: not e.default):  # stable: the default cluster first
        server = (e.server or "").rstrip("/").lower()
        if server and server in first_by_server:
            same[e.name] = first_by_server[server]
            continue
        if server:
            first_by_server[server] = e.name
        names.append(e.name)
    if not names:
        raise NotFound(
            "No cluster is configured: none is registered and no kubeconfig has a context.", hint=OPERATOR_ADD
        )
    if same:
        notes.append(
            f"Read once per API server, so not read again: {_names([f'{a} (as {b})' for a, b in same.items()])}."
        )
    cap = k8s.fanout_max_clusters
    if len(names) > cap:
        notes.append(
            f"Only the first {cap} of {len(names)} clusters were read (k8s.fanout_max_clusters); not read: "
            f"{_names(names[cap:])}. Pass clusters to choose."
        )
        names = names[:cap]
    return names, notes, wait


def _check_names(clusters: list[str], cap: int) -> None:
    if not clusters:
        raise InvalidInput("clusters is empty: name at least one cluster, or omit clusters to read them all.")
    if len(clusters) > cap:
        raise InvalidInput(
            f"clusters names {len(clusters)} clusters; one call reads at most {cap} (k8s.fanout_max_clusters).",
            hint="Split them over several calls.",
        )
    for name in clusters:
        if not name or len(name) > NAME_CHARS:
            raise InvalidInput(f"Cluster name {quote(name)} is not a name: 1 to {NAME_CHARS} characters.")


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:LISTED_NAMES]) or "none"
    return shown + (f" … ({len(names) - LISTED_NAMES} more)" if len(names) > LISTED_NAMES else "")


# -- reading them all at once ------------------------------------------------------------------------------------
@dataclass
class _Visit:
    """One cluster's read in progress: how far it got, for the message when it does not finish in time."""

    stage: str = "connect"
    server: str = ""


Key = tuple[int, str, str]  # (event loop, what is read, cluster)
Running = dict[Key, tuple[_Visit, "asyncio.Task[Any]"]]
# each runtime's reads in progress; a read leaves when it ends
_running: weakref.WeakKeyDictionary[Runtime, Running] = weakref.WeakKeyDictionary()


async def _fan_out(
    rt: Runtime, names: list[str], what: str, read: Callable[[Connection], Awaitable[Any]], wait: float
) -> tuple[dict[str, Any], list[Unanswered]]:
    """Run `read` on each cluster concurrently; return what came back within `wait` seconds, and why the rest
    did not. `what` names the read (with the arguments that change it): an unfinished read of the same `what`
    from an earlier call is joined, not started again."""
    loop = asyncio.get_running_loop()
    running = _running.setdefault(rt, {})
    limiter = anyio.CapacityLimiter(max(1, len(names)))  # the probes' own threads: none waits for a hung one
    reads: dict[str, tuple[_Visit, asyncio.Task[Any]]] = {}
    for name in names:
        key = (id(loop), what, name)
        if key not in running:
            visit = _Visit()
            with progress_to(None):  # the read may outlive this call: it must not report to this caller
                task = loop.create_task(_visit(rt, name, read, wait, limiter, visit))
            running[key] = (visit, task)
            task.add_done_callback(partial(_ended, running, key))
        reads[name] = running[key]
    names_of = {task: name for name, (_, task) in reads.items()}
    deadline = loop.time() + wait
    pending = set(names_of)
    while pending and (left := deadline - loop.time()) > 0:
        done, pending = await asyncio.wait(pending, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            await report_progress(len(names_of) - len(pending), len(names_of), f"{names_of[task]} done")
    answers: dict[str, Any] = {}
    unreachable = []
    for name, (visit, task) in reads.items():
        if not task.done():
            unreachable.append(Unanswered(cluster=name, error=_late(name, visit, wait)))
        elif task.cancelled():
            unreachable.append(
                Unanswered(cluster=name, error=f"The read of cluster {name!r} was cancelled; try again.")
            )
        elif (error := task.exception()) is not None:
            unreachable.append(Unanswered(cluster=name, error=_line(str(error), ERROR_CHARS)))
        else:
            answers[name] = task.result()
    return answers, unreachable


async def _visit(
    rt: Runtime,
    name: str,
    read: Callable[[Connection], Awaitable[Any]],
    wait: float,
    limiter: anyio.CapacityLimiter,
    visit: _Visit,
) -> Any:
    try:
        conn = await rt.connect(name)
        visit.stage, visit.server = "probe", conn.server
        # The transport only: any HTTP answer means the API server is there (`read` words 401/403 itself). The
        # request outlasts the deadline by a second, so a silent server is reported by the deadline's message.
        probe = partial(conn.send, "GET", "/version", timeout=wait + 1.0)
        await anyio.to_thread.run_sync(probe, limiter=limiter)
        visit.stage = "read"
        return await read(conn)
    except CloudPilotError:
        raise
    except Exception as e:
        reference = secrets.token_hex(4)
        logger.exception("fleet read of cluster %s failed (reference %s)", name, reference)
        raise CloudPilotError(
            f"CloudPilot failed reading cluster {name!r} (reference {reference}); the server log has the details."
        ) from e


def _ended(running: Running, key: Key, task: asyncio.Task[Any]) -> None:
    if key in running and running[key][1] is task:
        running.pop(key)
    if not task.cancelled():
        task.exception()  # retrieved: a read nobody waited for any more ends quietly


def _line(text: str, limit: int) -> str:
    """`text` on one line, cut to `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit].rstrip() + "… (cut)"


def _late(name: str, visit: _Visit, wait: float) -> str:
    where = f" at {visit.server}" if visit.server else ""
    if visit.stage == "connect":
        return f"Timed out after {wait:g} s opening cluster {name!r} (its kubeconfig or credentials did not load)."
    if visit.stage == "probe":
        return (
            f"Timed out after {wait:g} s: cluster {name!r}{where} did not answer GET /version. Check that its API "
            "server is running and reachable from CloudPilot."
        )
    return (
        f"Timed out after {wait:g} s: cluster {name!r}{where} answered, but reading it took longer. Try again "
        f"shortly, or use the single-cluster tool with cluster={name!r}."
    )
