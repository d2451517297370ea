"""Pods: a triage listing (unhealthy first, counts by status), one pod in detail, and its logs."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, Field

from connections import namespaces
from errors import InvalidInput
from guard import validate
from guard.mask import mask_text, redact
from kube.podstatus import pod_reason
from runtime import current, validate_limit
from tools import snapshot
from tools.catalogue import tool
from tools.clusters import ClusterArg
from tools.events import EventLine, events_table, object_events
from tools.results import ALIGN_MAX_ROWS, Page, Result, age, paginate, render_object, table
from tools.snapshot import PodRow

Namespace = Annotated[str | None, Field(description="Namespace; omit for all namespaces.")]
LabelSelector = Annotated[str | None, Field(description="e.g. app=web,tier!=db or env in (prod,stage)")]
FieldSelector = Annotated[str | None, Field(description="e.g. status.phase=Pending or spec.nodeName=node-1")]
Output = Literal["summary", "yaml", "json"]
_LISTING_TTL = 120.0


class PodLine(BaseModel):
    namespace: str
    name: str
    ready: str
    status: str = Field(description="As `kubectl get pods` shows it: Running, CrashLoopBackOff, OOMKilled, ...")
    restarts: int
    age: str
    node: str | None = None
    last_termination: str | None = Field(None, description="Last container termination reason (exit code).")


class PodList(Result):
    cluster: str
    namespace: str | None
    by_status: dict[str, int] = Field(description="Count of pods per status, over the whole listing.")
    unhealthy_by_namespace: dict[str, int] = Field(default_factory=dict, description="Top namespaces by unhealthy.")
    pods: list[PodLine]
    page: Page

    def render(self) -> str:
        total = sum(self.by_status.values())
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.by_status.items(), key=lambda kv: -kv[1]))
        head = f"{total} pods in {self.namespace or 'all namespaces'}: {counts}"
        if self.unhealthy_by_namespace:
            head += "\nunhealthy by namespace: " + ", ".join(f"{k} {v}" for k, v in self.unhealthy_by_namespace.items())
        cols = ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "NODE", "LAST TERMINATION"]
        parts = [head]
        if self.namespace:
            parts.append(table(cols, [_pod_cells(p) for p in self.pods]))
        else:  # grouped by namespace: the namespace is said once, not on every row
            groups: dict[str, list[PodLine]] = {}
            for p in self.pods:
                groups.setdefault(p.namespace, []).append(p)
            for ns, members in groups.items():
                rows = [_pod_cells(p) for p in members]
                parts.append(f"namespace {ns}:\n" + table(cols, rows, align=len(self.pods) <= ALIGN_MAX_ROWS))
        parts.append(self.page.footer())
        return "\n".join(filter(None, parts))


def _pod_cells(p: PodLine) -> list[Any]:
    return [p.name, p.ready, p.status, p.restarts, p.age, p.node, p.last_termination]


@tool("core", title="List pods")
async def pods_list(
    namespace: Namespace = None,
    label_selector: LabelSelector = None,
    field_selector: FieldSelector = None,
    problems_only: bool = False,
    limit: int | None = None,
    continue_token: Annotated[str | None, Field(description="From the previous page.")] = None,
    cluster: ClusterArg = None,
) -> PodList:
    """List pods for triage: counts by status over all matches, then the pods themselves with unhealthy
    ones first (status as kubectl shows it, ready x/y, restarts, age, node, last termination reason).
    Use problems_only to see only pods that are not Running+ready or Completed."""
    rt = current()
    validate.namespace(namespace)
    validate.label_selector(label_selector)
    validate.field_selector(field_selector)
    rt.check_namespace(namespace)
    limit = validate_limit(limit, rt.settings.output.default_limit)
    conn = await rt.connect(cluster)

    def load_rows() -> list[PodRow]:
        path = f"/api/v1/namespaces/{namespace}/pods" if namespace else "/api/v1/pods"
        items = snapshot.list_pods(conn, path, {"labelSelector": label_selector, "fieldSelector": field_selector})
        rows = [snapshot.pod_row(p) for p in items if rt.namespace_visible(p["metadata"].get("namespace", ""))]
        rows.sort(key=lambda p: (p.healthy, p.namespace, p.name))
        return rows

    async def load() -> list[PodRow]:
        return await rt.call(load_rows)

    key = (conn.name, "pods_list", namespace, label_selector, field_selector)
    rows, _ = await rt.cache.get(key, _LISTING_TTL, load, refresh=continue_token is None)
    if namespace and not rows:
        await namespaces.require(rt, conn, namespace)
    by_status = Counter(p.reason for p in rows)
    bad = Counter(p.namespace for p in rows if not p.healthy)
    listed = [p for p in rows if not p.healthy] if problems_only else rows
    shown, page = paginate(listed, limit, continue_token)
    return PodList(
        cluster=conn.name,
        namespace=namespace,
        by_status=dict(by_status),
        unhealthy_by_namespace=dict(bad.most_common(10)) if not namespace else {},
        pods=[pod_line(p) for p in shown],
        page=page,
    )


def pod_line(p: PodRow) -> PodLine:
    """One listing line (pods_list, fleet_problem_pods)."""
    return PodLine(
        namespace=p.namespace,
        name=p.name,
        ready=f"{p.ready}/{p.total}",
        status=p.reason,
        restarts=p.restarts,
        age=age(p.created),
        node=p.node,
        last_termination=p.last_termination,
    )


class ContainerDetail(BaseModel):
    name: str
    image: str
    init: bool = False
    ready: bool = False
    state: str
    restarts: int = 0
    last_termination: str | None = None
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    ports: list[str] = []
    probes: dict[str, str] = {}


class PodDetail(Result):
    cluster: str
    namespace: str
    name: str
    status: str
    phase: str
    node: str | None
    pod_ip: str | None
    qos: str | None
    owner: str | None
    conditions: dict[str, str]
    containers: list[ContainerDetail]
    events: list[EventLine]
    manifest: str | None = Field(None, description="The redacted object, when yaml/json output was asked for.")

    def render(self) -> str:
        if self.manifest:
            return self.manifest
        lines = [
            f"pod {self.namespace}/{self.name}: {self.status} (phase {self.phase}) on {self.node or '-'} "
            f"ip {self.pod_ip or '-'} qos {self.qos or '-'} owner {self.owner or '-'}",
            "conditions: " + ", ".join(f"{k}={v}" for k, v in self.conditions.items()),
        ]
        for c in self.containers:
            lines.append(
                f"{'init ' if c.init else ''}container {c.name}: {c.state}, ready={c.ready}, "
                f"restarts={c.restarts}{', last ' + c.last_termination if c.last_termination else ''}; "
                f"image {c.image}; requests {c.requests or '-'} limits {c.limits or '-'}; "
                f"ports {','.join(c.ports) or '-'}; " + "; ".join(f"{k} {v}" for k, v in c.probes.items())
            )
        lines.append(events_table(self.events))
        return "\n".join(lines)


@tool("core", title="Get a pod")
async def pod_get(name: str, namespace: str, output: Output = "summary", cluster: ClusterArg = None) -> PodDetail:
    """One pod in detail: status, node, IP, QoS, owner, conditions, each container's image, state, readiness,
    restarts, last termination (reason, exit code), requests/limits, ports and probes, plus its recent events.
    output=yaml/json adds the whole (redacted) object."""
    rt = current()
    validate.object_name(name, "pod name")
    validate.namespace(namespace)
    rt.check_namespace(namespace)
    conn = await rt.connect(cluster)
    pod, events = await asyncio.gather(
        rt.call(conn.get, f"/api/v1/namespaces/{namespace}/pods/{name}"),
        object_events(conn.name, namespace, "Pod", name),
    )
    return pod_detail(conn.name, pod, events, output)


def pod_detail(cluster: str, pod: dict[str, Any], events: list[EventLine], output: Output) -> PodDetail:
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    statuses = {("init", s["name"]): s for s in status.get("initContainerStatuses") or []}
    statuses |= {("main", s["name"]): s for s in status.get("containerStatuses") or []}
    containers = []
    for init, key in ((True, "initContainers"), (False, "containers")):
        for c in spec.get(key) or []:
            st = statuses.get(("init" if init else "main", c["name"])) or {}
            state = st.get("state") or {}
            label = next(iter(state), "waiting")
            detail = state.get(label) or {}
            term = (st.get("lastState") or {}).get("terminated")
            res = c.get("resources") or {}
            containers.append(
                ContainerDetail(
                    name=c["name"],
                    image=c.get("image", ""),
                    init=init,
                    ready=bool(st.get("ready")),
                    state=f"{label}"
                    + (f" ({detail.get('reason')})" if detail.get("reason") else "")
                    + (f" exit {detail['exitCode']}" if "exitCode" in detail else ""),
                    restarts=int(st.get("restartCount") or 0),
                    last_termination=f"{term.get('reason')} (exit {term.get('exitCode')})" if term else None,
                    requests=res.get("requests") or {},
                    limits=res.get("limits") or {},
                    ports=[
                        f"{p.get('containerPort')}/{p.get('protocol', 'TCP')}"
                        + (f" {p['name']}" if p.get("name") else "")
                        for p in c.get("ports") or []
                    ],
                    probes={
                        k: probe_text(c[k]) for k in ("livenessProbe", "readinessProbe", "startupProbe") if c.get(k)
                    },
                )
            )
    owner = next((f"{o['kind']}/{o['name']}" for o in meta.get("ownerReferences") or []), None)
    return PodDetail(
        cluster=cluster,
        namespace=meta["namespace"],
        name=meta["name"],
        status=pod_reason(pod),
        phase=status.get("phase", "Unknown"),
        node=spec.get("nodeName"),
        pod_ip=status.get("podIP"),
        qos=status.get("qosClass"),
        owner=owner,
        conditions={c["type"]: c["status"] for c in status.get("conditions") or []},
        containers=containers,
        events=events,
        manifest=render_object(redact(pod), output) if output != "summary" else None,
    )


def probe_text(probe: dict[str, Any]) -> str:
    if "httpGet" in probe:
        how = f"http-get {probe['httpGet'].get('path', '/')}:{probe['httpGet'].get('port')}"
    elif "tcpSocket" in probe:
        how = f"tcp :{probe['tcpSocket'].get('port')}"
    elif "exec" in probe:
        how = "exec " + " ".join(probe["exec"].get("command") or [])[:60]
    elif "grpc" in probe:
        how = f"grpc :{probe['grpc'].get('port')}"
    else:
        how = "?"
    return (
        f"{how} delay={probe.get('initialDelaySeconds', 0)}s timeout={probe.get('timeoutSeconds', 1)}s "
        f"period={probe.get('periodSeconds', 10)}s failures={probe.get('failureThreshold', 3)}"
    )


class PodLogs(Result):
    cluster: str
    namespace: str
    pod: str
    container: str
    previous: bool
    lines: int
    cut: bool = Field(description="True when older lines were left out to stay within the byte cap.")
    note: str | None = Field(None, description="Why fewer lines than asked for could be read, if so.")
    text: str

    def render(self) -> str:
        head = (
            f"logs of {self.namespace}/{self.pod} container {self.container}"
            f"{' (previous instance)' if self.previous else ''}: {self.lines} lines"
            f"{', cut to the byte cap (newest kept)' if self.cut else ''}"
        )
        return "\n".join(filter(None, [head, self.note and f"note: {self.note}", self.text]))


LOG_FETCH_BYTES = 8 * 1024 * 1024  # most log bytes read from the API server for one call
GREP_TAIL_LINES = 10_000  # lines searched by grep


@tool("core", title="Pod logs")
async def pod_logs(
    name: str,
    namespace: str,
    container: Annotated[str | None, Field(description="Needed when the pod has several containers.")] = None,
    previous: Annotated[bool, Field(description="Logs of the previous (crashed) instance.")] = False,
    tail_lines: Annotated[int, Field(ge=1, le=10000, description="Newest lines returned (at most 10,000).")] = 200,
    since_seconds: Annotated[int | None, Field(ge=1)] = None,
    grep: Annotated[
        str | None,
        Field(description="Keep only lines matching this regex (case-insensitive), among the last 10,000 lines."),
    ] = None,
    max_bytes: Annotated[
        int | None,
        Field(
            ge=100,
            description="Byte cap; the newest lines are kept. Default output.log_max_bytes; at most 4 times that "
            "and never more than the output size limit.",
        ),
    ] = None,
    cluster: ClusterArg = None,
) -> PodLogs:
    """A container's logs, newest last: tail, since, previous instance, a grep filter and a byte cap.
    Credential-looking values are masked."""
    rt = current()
    validate.object_name(name, "pod name")
    validate.namespace(namespace)
    rt.check_namespace(namespace)
    try:
        pattern = re.compile(grep, re.IGNORECASE) if grep else None
    except re.error as e:
        raise InvalidInput(f"grep {grep!r} is not a valid regular expression: {e}.") from e
    out = rt.settings.output
    room = min(out.log_max_bytes * 4, out.max_structured_bytes * 9 // 10 - 2_000)
    cap = min(max_bytes or out.log_max_bytes, room)
    conn = await rt.connect(cluster)
    base = f"/api/v1/namespaces/{namespace}/pods/{name}"
    if container is None:
        pod = await rt.call(conn.get, base)
        container = default_container(pod)
    query = {
        "container": container,
        "previous": previous,
        "tailLines": tail_lines if not pattern else GREP_TAIL_LINES,
        "sinceSeconds": since_seconds,
        "limitBytes": LOG_FETCH_BYTES,
    }
    raw = await rt.call(conn.request, "GET", base + "/log", query=query, accept="*/*", raw=True)
    note = None
    if len(raw) >= LOG_FETCH_BYTES:  # the API server stopped at limitBytes: the newest lines were not sent
        raw = raw[: raw.rfind(b"\n") + 1]
        note = (
            f"the last {query['tailLines']} lines are more than {LOG_FETCH_BYTES // 1024 // 1024} MiB, so only their "
            "oldest part was read; lower tail_lines or pass since_seconds to see the newest"
        )
    lines = raw.decode("utf-8", "replace").splitlines()
    if pattern:
        lines = [ln for ln in lines if pattern.search(ln)][-tail_lines:]
    kept, cut = newest_lines(lines, cap * 2)  # before masking: whole lines only, so no secret is split
    kept, cut_after = newest_lines(mask_text("\n".join(kept)).split("\n") if kept else [], cap)
    text = "\n".join(kept)
    return PodLogs(
        cluster=conn.name,
        namespace=namespace,
        pod=name,
        container=container,
        previous=previous,
        lines=len(kept),
        cut=cut or cut_after,
        note=note,
        text=text,
    )


def newest_lines(lines: list[str], cap: int) -> tuple[list[str], bool]:
    """The newest lines that fit in `cap` bytes, counted as JSON-escaped text (never more than as UTF-8), and
    whether any were left out. A single line longer than `cap` keeps its end."""
    kept: list[str] = []
    used = 0
    for line in reversed(lines):
        size = len(orjson.dumps(line)) - 1  # escaped bytes, plus the newline joining it
        if used + size > cap:
            if not kept:
                kept.append(_line_end(line, cap))
            return kept[::-1], True
        kept.append(line)
        used += size
    return kept[::-1], False


def _line_end(line: str, cap: int) -> str:
    tail = line[-cap:]
    while tail and len(orjson.dumps(tail)) - 2 > cap:
        tail = tail[len(tail) // 10 + 1 :]
    return tail


def default_container(pod: dict[str, Any]) -> str:
    names = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    preferred = ((pod.get("metadata") or {}).get("annotations") or {}).get("kubectl.kubernetes.io/default-container")
    if preferred in names:
        return str(preferred)
    if len(names) == 1:
        return names[0]
    raise InvalidInput(
        f"Pod {pod['metadata']['name']!r} has {len(names)} containers: {', '.join(names)}.",
        hint="Pass one of them as `container`.",
    )
