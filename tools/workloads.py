"""Workloads (deployments, statefulsets, daemonsets, jobs, cronjobs), rollouts, and resource usage."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from connections import namespaces
from errors import CloudPilotError, Unsupported
from guard import validate
from runtime import attempt, current, validate_limit
from tools.catalogue import tool
from tools.clusters import ClusterArg
from tools.results import Page, Result, age, paginate, table

WorkloadKind = Literal["Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"]
RolloutKind = Literal["Deployment", "StatefulSet", "DaemonSet"]
_PATHS = {
    "Deployment": ("apps/v1", "deployments"),
    "StatefulSet": ("apps/v1", "statefulsets"),
    "DaemonSet": ("apps/v1", "daemonsets"),
    "Job": ("batch/v1", "jobs"),
    "CronJob": ("batch/v1", "cronjobs"),
}
Namespace = Annotated[str | None, Field(description="Namespace; omit for all namespaces.")]


def _path(kind: str, namespace: str | None, name: str | None = None) -> str:
    gv, plural = _PATHS[kind]
    path = f"/apis/{gv}" + (f"/namespaces/{namespace}" if namespace else "") + f"/{plural}"
    return path + (f"/{name}" if name else "")


class WorkloadRow(BaseModel):
    kind: str
    namespace: str
    name: str
    ready: str = Field(description="ready/desired (jobs: succeeded/completions; cronjobs: active)")
    up_to_date: int | None = None
    available: int | None = None
    status: str = Field(description="Healthy, Progressing, Degraded, Failed, Suspended, Complete, ...")
    detail: str = ""
    images: list[str] = []
    age: str


class WorkloadList(Result):
    cluster: str
    namespace: str | None
    workloads: list[WorkloadRow]
    errors: dict[str, str] = {}
    page: Page

    def render(self) -> str:
        rows = [
            [w.kind, w.namespace, w.name, w.ready, w.up_to_date, w.available, w.status, w.detail, w.images, w.age]
            for w in self.workloads
        ]
        head = ["KIND", "NAMESPACE", "NAME", "READY", "UP-TO-DATE", "AVAILABLE", "STATUS", "DETAIL", "IMAGES", "AGE"]
        errs = [f"could not read {k}: {v}" for k, v in self.errors.items()]
        return "\n".join(filter(None, [table(head, rows), self.page.footer(), *errs]))


@tool("core", title="List workloads")
async def workloads_list(
    namespace: Namespace = None,
    kinds: Annotated[list[WorkloadKind] | None, Field(description="Default: all five.")] = None,
    problems_only: bool = False,
    limit: int | None = None,
    continue_token: Annotated[str | None, Field(description="From the previous page.")] = None,
    cluster: ClusterArg = None,
) -> WorkloadList:
    """Deployments, StatefulSets, DaemonSets, Jobs and CronJobs with readiness, rollout state and images;
    degraded ones first. The status says why (e.g. ProgressDeadlineExceeded, BackoffLimitExceeded, Suspended)."""
    rt = current()
    validate.namespace(namespace)
    rt.check_namespace(namespace)
    limit = validate_limit(limit, rt.settings.output.default_limit)
    conn = await rt.connect(cluster)
    wanted: list[str] = list(kinds or _PATHS)
    results = await asyncio.gather(*(attempt(rt.call(conn.list_items, _path(k, namespace))) for k in wanted))
    failures = [r for r in results if isinstance(r, CloudPilotError)]
    if len(failures) == len(results):
        raise failures[0]  # nothing could be read: an error, not an empty listing
    rows, errors = [], {}
    for kind, res in zip(wanted, results, strict=True):
        if isinstance(res, CloudPilotError):
            errors[kind] = str(res)
            continue
        rows += [workload_row(kind, o) for o in res[0] if rt.namespace_visible(o["metadata"]["namespace"])]
    if namespace and not rows:
        await namespaces.require(rt, conn, namespace)
    if problems_only:
        rows = [r for r in rows if r.status not in _GOOD]
    rows.sort(key=lambda r: (r.status in _GOOD, r.kind, r.namespace, r.name))
    shown, page = paginate(rows, limit, continue_token)
    return WorkloadList(cluster=conn.name, namespace=namespace, workloads=shown, errors=errors, page=page)


_GOOD = {"Healthy", "Complete", "Scheduled", "Suspended"}


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind), {})


def _images(obj: dict[str, Any], kind: str) -> list[str]:
    spec = obj.get("spec") or {}
    tpl = (spec.get("jobTemplate") or {}).get("spec", {}).get("template") if kind == "CronJob" else spec.get("template")
    return [c.get("image", "") for c in ((tpl or {}).get("spec") or {}).get("containers") or []]


def workload_row(kind: str, obj: dict[str, Any]) -> WorkloadRow:
    """One workload's readiness and rollout state, as `kubectl get` and `kubectl rollout status` judge it."""
    meta, spec, st = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    row = WorkloadRow(
        kind=kind,
        namespace=meta["namespace"],
        name=meta["name"],
        ready="",
        status="Healthy",
        images=_images(obj, kind),
        age=age(meta.get("creationTimestamp")),
    )
    if kind in ("Deployment", "StatefulSet"):
        want = int(spec.get("replicas", 1))
        ready = int(st.get("readyReplicas") or 0)
        row.ready, row.up_to_date = f"{ready}/{want}", int(st.get("updatedReplicas") or 0)
        row.available = int(st.get("availableReplicas") or 0)
        row.status, row.detail = rollout_state(kind, obj)
    elif kind == "DaemonSet":
        want, ready = int(st.get("desiredNumberScheduled") or 0), int(st.get("numberReady") or 0)
        row.ready, row.up_to_date = f"{ready}/{want}", int(st.get("updatedNumberScheduled") or 0)
        row.available = int(st.get("numberAvailable") or 0)
        row.status, row.detail = rollout_state(kind, obj)
        if st.get("numberMisscheduled"):
            row.status, row.detail = "Degraded", f"{st['numberMisscheduled']} misscheduled"
    elif kind == "Job":
        done = int(st.get("succeeded") or 0)
        row.ready = f"{done}/{spec.get('completions', 1)}"
        failed = _condition(obj, "Failed")
        if failed.get("status") == "True":
            row.status, row.detail = "Failed", f"{failed.get('reason')}: {failed.get('message', '')}"[:160]
        elif _condition(obj, "Complete").get("status") == "True":
            row.status = "Complete"
        elif st.get("failed"):
            row.status, row.detail = (
                "Degraded",
                f"{st['failed']} failed pods (backoffLimit {spec.get('backoffLimit', 6)})",
            )
        else:
            row.status = "Running"
    else:  # CronJob
        row.ready = f"{len(st.get('active') or [])} active"
        row.status = "Suspended" if spec.get("suspend") else "Scheduled"
        row.detail = (
            f"schedule {spec.get('schedule')}, last {age(st.get('lastScheduleTime'))} ago, "
            f"last success {age(st.get('lastSuccessfulTime'))} ago"
        )
    return row


def rollout_state(kind: str, obj: dict[str, Any]) -> tuple[str, str]:
    """(status, why) of a rollout, following kubectl rollout status."""
    meta, spec, st = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    if int(meta.get("generation") or 0) > int(st.get("observedGeneration") or 0):
        return "Progressing", "waiting for the controller to observe the new spec"
    if kind == "Deployment":
        progressing = _condition(obj, "Progressing")
        if progressing.get("reason") == "ProgressDeadlineExceeded":
            return "Failed", f"ProgressDeadlineExceeded: {progressing.get('message', '')}"[:200]
        want = int(spec.get("replicas", 1))
        updated, total = int(st.get("updatedReplicas") or 0), int(st.get("replicas") or 0)
        available = int(st.get("availableReplicas") or 0)
        if updated < want:
            return "Progressing", f"{updated} of {want} new replicas updated"
        if total > updated:
            return "Progressing", f"{total - updated} old replicas pending termination"
        if available < updated:
            return "Degraded" if want else "Healthy", f"{available} of {updated} updated replicas available"
        return "Healthy", ""
    if kind == "StatefulSet":
        want = int(spec.get("replicas", 1))
        ready, updated = int(st.get("readyReplicas") or 0), int(st.get("updatedReplicas") or 0)
        if st.get("updateRevision") and st.get("currentRevision") != st.get("updateRevision") and updated < want:
            return "Progressing", f"{updated} of {want} pods updated"
        if ready < want:
            return "Degraded", f"{ready} of {want} pods ready"
        return "Healthy", ""
    want = int(st.get("desiredNumberScheduled") or 0)
    updated, available = int(st.get("updatedNumberScheduled") or 0), int(st.get("numberAvailable") or 0)
    if updated < want:
        return "Progressing", f"{updated} of {want} updated pods scheduled"
    if available < want:
        return "Degraded", f"{available} of {want} pods available"
    return "Healthy", ""


class RolloutStatus(Result):
    cluster: str
    kind: str
    namespace: str
    name: str
    done: bool
    status: str
    message: str
    revision: str | None = None
    conditions: dict[str, str] = {}

    def render(self) -> str:
        conds = ", ".join(f"{k}: {v}" for k, v in self.conditions.items())
        return (
            f"{self.kind} {self.namespace}/{self.name} revision {self.revision or '-'}: {self.status}"
            f"{' — ' + self.message if self.message else ''}{' (rollout complete)' if self.done else ''}"
            f"\n{conds}"
        ).strip()


@tool("core", title="Rollout status")
async def rollout_status(kind: RolloutKind, name: str, namespace: str, cluster: ClusterArg = None) -> RolloutStatus:
    """Whether a Deployment/StatefulSet/DaemonSet rollout is complete, progressing or failed, and why
    (like `kubectl rollout status`, without waiting)."""
    rt = current()
    validate.object_name(name)
    validate.namespace(namespace)
    rt.check_namespace(namespace)
    conn = await rt.connect(cluster)
    obj = await rt.call(conn.get, _path(kind, namespace, name))
    status, why = rollout_state(kind, obj)
    meta = obj["metadata"]
    revision = (meta.get("annotations") or {}).get("deployment.kubernetes.io/revision") or (
        obj.get("status") or {}
    ).get("updateRevision")
    return RolloutStatus(
        cluster=conn.name,
        kind=kind,
        namespace=namespace,
        name=name,
        done=status == "Healthy",
        status=status,
        message=why,
        revision=revision,
        conditions={
            c["type"]: f"{c['status']} {c.get('reason', '')}".strip()
            for c in (obj.get("status") or {}).get("conditions") or []
        },
    )


class Revision(BaseModel):
    revision: int
    name: str = Field(description="ReplicaSet or ControllerRevision name")
    images: list[str]
    change_cause: str | None = None
    replicas: int | None = None
    created: str
    current: bool = False


class RolloutHistory(Result):
    cluster: str
    kind: str
    namespace: str
    name: str
    revisions: list[Revision]

    def render(self) -> str:
        rows = [
            [("* " if r.current else "  ") + str(r.revision), r.name, r.images, r.replicas, r.change_cause, r.created]
            for r in self.revisions
        ]
        return f"{self.kind} {self.namespace}/{self.name} history (* = current):\n" + table(
            ["REVISION", "FROM", "IMAGES", "REPLICAS", "CHANGE-CAUSE", "AGE"], rows
        )


@tool("core", title="Rollout history")
async def rollout_history(kind: RolloutKind, name: str, namespace: str, cluster: ClusterArg = None) -> RolloutHistory:
    """The revisions of a Deployment (its ReplicaSets) or StatefulSet/DaemonSet (ControllerRevisions):
    number, images, change-cause, age, and which is current — what a rollback would return to."""
    rt = current()
    validate.object_name(name)
    validate.namespace(namespace)
    rt.check_namespace(namespace)
    conn = await rt.connect(cluster)
    owner = await rt.call(conn.get, _path(kind, namespace, name))
    return RolloutHistory(
        cluster=conn.name, kind=kind, namespace=namespace, name=name, revisions=await revisions(conn, kind, owner)
    )


async def revisions(conn: Any, kind: str, owner: dict[str, Any]) -> list[Revision]:
    """The owner's revisions, oldest first (also used by fix planning for rollbacks)."""
    rt = current()
    ns, uid = owner["metadata"]["namespace"], owner["metadata"]["uid"]
    path = f"/apis/apps/v1/namespaces/{ns}/" + ("replicasets" if kind == "Deployment" else "controllerrevisions")
    items, _ = await rt.call(conn.list_items, path)
    mine = [i for i in items if any(o.get("uid") == uid for o in i["metadata"].get("ownerReferences") or [])]
    out = []
    current_rev = (owner["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision")
    for i in mine:
        ann = i["metadata"].get("annotations") or {}
        if kind == "Deployment":
            number = int(ann.get("deployment.kubernetes.io/revision", 0))
            images = [c.get("image", "") for c in i["spec"]["template"]["spec"].get("containers") or []]
            replicas = int((i.get("status") or {}).get("replicas") or 0)
            is_current = str(number) == str(current_rev)
        else:
            number = int(i.get("revision") or 0)
            tpl = ((i.get("data") or {}).get("spec") or {}).get("template") or {}
            images = [c.get("image", "") for c in (tpl.get("spec") or {}).get("containers") or []]
            replicas = None
            is_current = i["metadata"]["name"] == (owner.get("status") or {}).get("updateRevision") or i["metadata"][
                "name"
            ].endswith((owner.get("status") or {}).get("currentRevision") or "\0")
        out.append(
            Revision(
                revision=number,
                name=i["metadata"]["name"],
                images=images,
                change_cause=ann.get("kubernetes.io/change-cause"),
                replicas=replicas,
                created=age(i["metadata"].get("creationTimestamp")),
                current=is_current,
            )
        )
    return sorted(out, key=lambda r: r.revision)


class UsageRow(BaseModel):
    namespace: str | None
    name: str
    cpu_cores: float
    memory_gib: float
    cpu_percent: float | None = Field(None, description="Of the node's allocatable (nodes only).")
    memory_percent: float | None = None


class Usage(Result):
    cluster: str
    kind: str
    rows: list[UsageRow]
    page: Page

    def render(self) -> str:
        rows = [
            [r.namespace, r.name, f"{r.cpu_cores:.3f}", f"{r.memory_gib:.3f}", r.cpu_percent, r.memory_percent]
            for r in self.rows
        ]
        return "\n".join(
            filter(
                None,
                [
                    table(["NAMESPACE", "NAME", "CPU(cores)", "MEMORY(GiB)", "CPU%", "MEMORY%"], rows),
                    self.page.footer(),
                ],
            )
        )


@tool("core", title="Resource usage")
async def resource_usage(
    kind: Literal["pods", "nodes"] = "pods",
    namespace: Namespace = None,
    limit: int | None = None,
    cluster: ClusterArg = None,
) -> Usage:
    """Live CPU and memory usage from metrics.k8s.io (metrics-server), heaviest first, like `kubectl top`.
    Says so clearly when the cluster does not serve metrics.k8s.io."""
    from kube.quantity import cores, gib

    rt = current()
    validate.namespace(namespace)
    rt.check_namespace(namespace)
    limit = validate_limit(limit, rt.settings.output.default_limit)
    conn = await rt.connect(cluster)
    served = await rt.call(conn.resources)
    if not any(r.group == "metrics.k8s.io" and r.resource == kind for r in served):
        raise Unsupported(
            f"Cluster {conn.name!r} does not serve metrics.k8s.io {kind}: metrics-server (or another "
            "metrics API provider) is not installed.",
            hint="Install metrics-server, or use Prometheus-based tools for usage.",
        )
    version = next(r.version for r in served if r.group == "metrics.k8s.io" and r.resource == kind)
    base = f"/apis/metrics.k8s.io/{version}"
    path = base + (f"/namespaces/{namespace}" if namespace and kind == "pods" else "") + f"/{kind}"
    items, _ = await rt.call(conn.list_items, path)
    rows = []
    alloc: dict[str, tuple[float, float]] = {}
    if kind == "nodes":
        nodes, _ = await rt.call(conn.list_items, "/api/v1/nodes")
        alloc = {
            n["metadata"]["name"]: (
                float(cores(n["status"]["allocatable"].get("cpu"))),
                float(gib(n["status"]["allocatable"].get("memory"))),
            )
            for n in nodes
        }
    for i in items:
        ns = i["metadata"].get("namespace")
        if ns and not rt.namespace_visible(ns):
            continue
        usages = [c.get("usage") or {} for c in i.get("containers") or []] if kind == "pods" else [i.get("usage") or {}]
        cpu = sum(float(cores(u.get("cpu"))) for u in usages)
        mem = sum(float(gib(u.get("memory"))) for u in usages)
        row = UsageRow(namespace=ns, name=i["metadata"]["name"], cpu_cores=round(cpu, 4), memory_gib=round(mem, 4))
        if kind == "nodes" and row.name in alloc and alloc[row.name][0]:
            row.cpu_percent = round(100 * cpu / alloc[row.name][0], 1)
            row.memory_percent = round(100 * mem / alloc[row.name][1], 1) if alloc[row.name][1] else None
        rows.append(row)
    if namespace and kind == "pods" and not rows:
        await namespaces.require(rt, conn, namespace)
    rows.sort(key=lambda r: (-r.cpu_cores, -r.memory_gib))
    shown, page = paginate(rows, limit, None)
    return Usage(cluster=conn.name, kind=kind, rows=shown, page=page)
