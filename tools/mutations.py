"""Change tools: scale, restart, roll back, set image/resources/probes, patch, server-side apply, cordon,
delete. Each one only makes a plan — a server dry run with its diff, risk and blast radius, saved under a
plan id — and `fix_apply` applies it after approval, verifies it, and rolls it back if it fails.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import Field

from connections.kube import Connection
from engines.diagnosis import ObjectRef
from engines.remediation import Change, Edit, Patch, Plan
from engines.remediation.blast import assess
from engines.remediation.planner import revision_template
from errors import Forbidden, InvalidInput, NotFound, quote
from guard import validate
from guard.yamlsafe import load_all
from runtime import Runtime, current
from tools.catalogue import tool
from tools.clusters import ClusterArg
from tools.fix import OverrideArg
from tools.fixloop import PlanView, audited_refusal, check_allowed, propose

logger = logging.getLogger(__name__)

Workload = Literal["Deployment", "StatefulSet", "DaemonSet"]
Scalable = Literal["Deployment", "StatefulSet", "ReplicaSet"]
ProbeKind = Literal["liveness", "readiness", "startup"]
Name = Annotated[str, Field(description="Object name.")]
Namespace = Annotated[str, Field(description="Namespace of the object.")]
ContainerArg = Annotated[str | None, Field(description="Container name; may be omitted when there is only one.")]
Why = Annotated[str | None, Field(description="Why the change is made (kept in the plan and the audit log).")]


async def _plan(change: Change, cluster: str | None, override: str | None, source: str) -> PlanView:
    """Work out the blast radius of one change, then dry-run, diff and save it as a plan."""
    rt = current()
    t = change.target
    if t.namespace:
        validate.namespace(t.namespace)
    validate.object_name(t.name)
    conn = await rt.connect(cluster)
    with audited_refusal(rt, conn, change, source):  # refused before anything is read
        check_allowed(rt, change, override)
    change.blast, change.risk = await rt.call(_assess, rt, conn, change)
    return await propose(rt, conn, Plan(changes=[change]), source, override)


NAMESPACE_CONTENTS = (
    ("Pod", "/api/v1/namespaces/{ns}/pods"),
    ("Deployment", "/apis/apps/v1/namespaces/{ns}/deployments"),
    ("StatefulSet", "/apis/apps/v1/namespaces/{ns}/statefulsets"),
    ("DaemonSet", "/apis/apps/v1/namespaces/{ns}/daemonsets"),
    ("Job", "/apis/batch/v1/namespaces/{ns}/jobs"),
    ("CronJob", "/apis/batch/v1/namespaces/{ns}/cronjobs"),
    ("Service", "/api/v1/namespaces/{ns}/services"),
)


def _assess(rt: Runtime, conn: Connection, change: Change) -> Any:
    t = change.target
    info = conn.resolve(t.kind)
    live = conn.get(info.path(t.namespace if info.namespaced else None, t.name))
    if info.kind == "Namespace" and info.group == "" and change.operation == "delete":
        return assess(change, live, [], [], inside=_namespace_contents(conn, t.name))
    found: dict[str, list[dict[str, Any]]] = {"poddisruptionbudgets": [], "horizontalpodautoscalers": []}
    unread = []
    if t.namespace and t.kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
        for resource, group in (("poddisruptionbudgets", "policy/v1"), ("horizontalpodautoscalers", "autoscaling/v2")):
            try:
                found[resource] = conn.get(f"/apis/{group}/namespaces/{t.namespace}/{resource}").get("items", [])
            except (Forbidden, NotFound) as e:
                logger.info(
                    "cluster=%s %s/%s/%s: %s not checked: %s",
                    conn.name,
                    t.namespace,
                    t.kind,
                    t.name,
                    resource,
                    e.message,
                )
                unread.append(resource)
    blast, risk = assess(change, live, found["poddisruptionbudgets"], found["horizontalpodautoscalers"])
    blast.notes += [f"{r} not checked: this identity may not list them" for r in unread]
    return blast, risk


def _namespace_contents(conn: Connection, ns: str) -> dict[str, int]:
    """How many pods and workloads a namespace holds (what deleting it deletes); kinds that cannot be counted
    with this identity are left out."""
    out = {}
    for kind, path in NAMESPACE_CONTENTS:
        try:
            out[kind] = conn.count(path.format(ns=ns))
        except (Forbidden, NotFound) as e:
            logger.info("cluster=%s namespace %s: %s not counted: %s", conn.name, ns, kind, e.message)
    return out


def _change(kind: str, name: str, namespace: str | None, edit: Edit, why: str | None, expected: str) -> Change:
    return Change(
        target=ObjectRef(kind=kind, name=name, namespace=namespace),
        edits=[edit],
        why=[why or "requested"],
        expected=expected,
    )


@tool("fix", access="write", idempotent=False, title="Scale a workload")
async def scale(
    kind: Scalable,
    name: Name,
    namespace: Namespace,
    replicas: Annotated[int, Field(ge=0, le=1000, description="Wanted replica count.")],
    why: Why = None,
    override_protected: OverrideArg = None,
    cluster: ClusterArg = None,
) -> PlanView:
    """Plan setting a workload's replica count (notes an HPA that would undo it). Apply with fix_apply."""
    edit = Edit(action="scale", params={"replicas": replicas})
    change = _change(kind, name, namespace, edit, why, f"{replicas} replica(s) running and ready")
    return await _plan(change, cluster, override_protected, "scale")


@tool("fix", access="write", idempotent=False, title="Restart a workload's pods")
async def rollout_restart(
    kind: Workload,
    name: Name,
    namespace: Namespace,
    why: Why = None,
    override_protected: OverrideArg = None,
    cluster: ClusterArg = None,
) -> PlanView:
    """Plan a rolling restart (like kubectl rollout restart): every pod re-created, as the rollout strategy
    allows. Apply with fix_apply."""
    edit = Edit(action="restart", params={"at": datetime.now(UTC).isoformat(timespec="seconds")})
    change = _change(kind, name, namespace, edit, why, "every pod re-created and ready")
    return await _plan(change, cluster, override_protected, "rollout_restart")


@tool("fix", access="write", idempotent=False, title="Roll a Deployment back")
async def rollout_undo(
    name: Name,
    namespace: Namespace,
    to_revision: Annotated[
        int | None,
        Field(ge=1, description="Revision to return to (rollout_history lists them); default: the previous one."),
    ] = None,
    why: Why = None,
    override_protected: OverrideArg = None,
    cluster: ClusterArg = None,
) -> PlanView:
    """Plan rolling a Deployment back to an earlier revision's pod template (like kubectl rollout undo).
    Apply with fix_apply."""
    rt = current()
    conn = await rt.connect(cluster)
    dep = await rt.call(
        conn.get, f"/apis/apps/v1/namespaces/{validate.namespace(namespace)}/deployments/{validate.object_name(name)}"
    )
    sets = await rt.call(conn.get, f"/apis/apps/v1/namespaces/{namespace}/replicasets")
    found = revision_template(dep, sets.get("items", []), to_revision)
    if isinstance(found, str):
        raise InvalidInput(found, hint="rollout_history shows the revisions kept.")
    revision, template = found
    edit = Edit(action="set_template", params={"revision": revision, "template": template})
    change = _change("Deployment", name, namespace, edit, why, f"pods run revision {revision}'s template again")
    return await _plan(change, cluster, override_protected, "rollout_undo")


@tool("fix", access="write", idempotent=False, title="Set a container image")
async def set_image(
    kind: Workload,
    name: Name,
    namespace: Namespace,
    image: Annotated[str, Field(description="New image reference, e.g. shop/web:1.4.2.")],
    container: ContainerArg = None,
    why: Why = None,
    override_protected: OverrideArg = None,
    cluster: ClusterArg = None,
) -> PlanView:
    """Plan changing one container's image (a rolling update). Apply with fix_apply."""
    edit = Edit(action="set_image", container=container, params={"image": image})
    change = _change(kind, name, namespace, edit, why, f"pods run {image}")
    return await _plan(change, cluster, override_protected, "set_image")


@tool("fix", access="write", idempotent=False, title="Set container resources")
async def set_resources(
    kind: Workload,
    name: Name,
    namespace: Namespace,
    requests: Annotated[dict[str, str] | None, Field(description="e.g. {'cpu': '250m', 'memory': '256Mi'}.")] = None,
    limits: Annotated[dict[str, str] | None, Field(description="e.g. {'memory': '512Mi'}.")] = None,
    container: ContainerArg = None,
    why: Why = None,
    override_protected: OverrideArg = None,
    cluster: ClusterArg = None,
) -> PlanView:
    """Plan setting a container's resource requests and/or limits (a rolling update). Apply with fix_apply."""
    if not requests and not limits:
        raise InvalidInput("Give requests and/or limits to set.")
    edit = Edit(
        action="set_resources",
        container=container,
        params={k: v for k, v in (("requests", requests), ("limits", limits)) if v},
    )
    change = _change(kind, name, namespace, edit, why, f"container resources {edit.params}")
    return await _plan(change, cluster, override_protected, "set_resources")


@tool("fix", access="write", idempotent=False, title="Set or fix a probe")
async def set_probe(
    kind: Workload,
    name: Name,
    namespace: Namespace,
    probe: ProbeKind,
    handler: Annotated[
        dict[str, Any] | None,
        Field(
            description="Replace the check, e.g. {'tcpSocket': {'port': "
            "8080}} or {'httpGet': {'path': '/healthz', 'port': 8080}}."
        ),
    ] = None,
    timing: Annotated[
        dict[str, int] | None,
        Field(
            description="e.g. {'periodSeconds': 10, 'timeoutSeconds': 3, "
            "'failureThreshold': 3, 'initialDelaySeconds': 10}."
        ),
    ] = None,
    container: ContainerArg = None,
    why: Why = None,
    override_protected: OverrideArg = None,
    cluster: ClusterArg = None,
) -> PlanView:
    """Plan changing a container's liveness/readiness/startup probe: its check and/or its timing (a rolling
    update). Apply with fix_apply."""
    if not handler and not timing:
        raise InvalidInput("Give a handler and/or timing to change.")
    params: dict[str, Any] = {
        "probe": probe,
        **({"handler": handler} if handler else {}),
        **({"timing": timing} if timing else {}),
    }
    edit = Edit(action="set_probe", container=container, params=params)
    change = _change(kind, name, namespace, edit, why, f"the {probe} probe passes")
    return await _plan(change, cluster, override_protected, "set_probe")


@tool("fix", access="write", idempotent=False, title="Patch an object")
async def resource_patch(
    kind: Annotated[str, Field(description="Kind, plural or short name, e.g. Deployment, svc, configmaps.")],
    name: Name,
    patch: Annotated[
        dict[str, Any] | list[dict[str, Any]],
        Field(description="The patch: an object for strategic/merge, a list of operations for json."),
    ],
    patch_type: Annotated[Literal["strategic", "merge", "json"], Field(description="Patch format.")] = "strategic",
    namespace: Annotated[str | None, Field(description="Namespace (omit for cluster-scoped kinds).")] = None,
    why: Why = None,
    override_protected: OverrideArg = None,
    cluster: ClusterArg = None,
) -> PlanView:
    """Plan a strategic-merge, JSON-merge or JSON patch of any object; the plan shows the server's dry-run
    result as a diff. Apply with fix_apply."""
    _check_patch_size(patch)
    if patch_type == "json" and not isinstance(patch, list):
        raise InvalidInput(
            "A json patch is a list of operations, e.g. [{'op': 'replace', 'path': '/spec/replicas', 'value': 3}]."
        )
    if patch_type != "json" and not isinstance(patch, dict):
        raise InvalidInput(f"A {patch_type} patch is an object, e.g. {{'spec': {{'replicas': 3}}}}.")
    change = Change(
        target=ObjectRef(kind=kind, name=name, namespace=namespace),
        patch=Patch(type=patch_type, body=patch),
        why=[why or "requested"],
        expected="patched",
    )
    return await _plan(change, cluster, override_protected, f"resource_patch ({patch_type})")


@tool("fix", access="write", idempotent=False, title="Apply a manifest (server-side)")
async def resource_apply(
    manifest: Annotated[
        str, Field(description="One object as YAML or JSON, with apiVersion, kind and metadata.name (and namespace).")
    ],
    why: Why = None,
    override_protected: OverrideArg = None,
    cluster: ClusterArg = None,
) -> PlanView:
    """Plan a server-side apply of a manifest (creates or updates the object; fields owned by another manager
    are a conflict, not taken over). Apply with fix_apply."""
    rt = current()
    docs = [d for d in load_all(manifest, rt.settings.limits, "manifest") if d]
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise InvalidInput(f"Give exactly one object (got {len(docs)}); apply several with several calls.")
    doc = docs[0]
    kind, name, namespace = _identify(doc)
    change = Change(
        target=ObjectRef(kind=kind, name=name, namespace=namespace),
        patch=Patch(type="apply", body=doc),
        why=[why or "requested"],
        expected="stored as in the manifest",
    )
    conn = await rt.connect(cluster)
    return await propose(rt, conn, Plan(changes=[change]), "resource_apply", override_protected)


def _check_patch_size(patch: Any) -> None:
    limits = current().settings.limits
    size = len(orjson.dumps(patch, default=str))
    if size > limits.patch_bytes:
        raise InvalidInput(
            f"The patch is {size:,} bytes; the limit is {limits.patch_bytes:,}.", hint="Patch less at once."
        )
    if _depth(patch, limits.yaml_depth) > limits.yaml_depth:
        raise InvalidInput(f"The patch is nested deeper than {limits.yaml_depth} levels.")


def _depth(value: Any, cap: int, level: int = 0) -> int:
    """How deep `value` nests (counting stops just past `cap`)."""
    if level > cap or not isinstance(value, (dict, list)):
        return level
    children = value.values() if isinstance(value, dict) else value
    return max((_depth(v, cap, level + 1) for v in children), default=level + 1)


_API_VERSION = re.compile(r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?v[0-9]+((alpha|beta)[0-9]+)?$")
_KIND = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,62}$")


def _identify(doc: dict[str, Any]) -> tuple[str, str, str | None]:
    """(kind.group, name, namespace) of a manifest, each checked before it is sent anywhere."""
    meta: dict[str, Any] = doc["metadata"] if isinstance(doc.get("metadata"), dict) else {}
    api_version, kind, name, ns = doc.get("apiVersion"), doc.get("kind"), meta.get("name"), meta.get("namespace")
    if not api_version or not kind or not name:
        raise InvalidInput("The manifest needs apiVersion, kind and metadata.name.")
    for what, value, rule in (("apiVersion", api_version, _API_VERSION), ("kind", kind, _KIND)):
        if not isinstance(value, str) or not rule.match(value):
            raise InvalidInput(f"The manifest's {what} {quote(str(value))} is not a valid {what}.")
    if not isinstance(name, str) or len(name) > 253:
        raise InvalidInput(f"The manifest's metadata.name {quote(str(name))} is not a valid object name.")
    if ns is not None and (not isinstance(ns, str) or len(ns) > 63):
        raise InvalidInput(f"The manifest's metadata.namespace {quote(str(ns))} is not a valid namespace.")
    validate.object_name(name)
    validate.namespace(ns)
    group = api_version.split("/")[0] if "/" in api_version else ""
    return (f"{kind}.{group}" if group else kind), name, ns


@tool("fix", access="write", idempotent=False, title="Cordon a node")
async def node_cordon(
    name: Annotated[str, Field(description="Node name.")], why: Why = None, cluster: ClusterArg = None
) -> PlanView:
    """Plan marking a node unschedulable (running pods stay). Apply with fix_apply."""
    change = _change(
        "Node",
        name,
        None,
        Edit(action="cordon", params={"unschedulable": True}),
        why,
        "no new pods are scheduled on the node",
    )
    return await _plan(change, cluster, None, "node_cordon")


@tool("fix", access="write", idempotent=False, title="Uncordon a node")
async def node_uncordon(
    name: Annotated[str, Field(description="Node name.")], why: Why = None, cluster: ClusterArg = None
) -> PlanView:
    """Plan marking a node schedulable again. Apply with fix_apply."""
    change = _change(
        "Node", name, None, Edit(action="cordon", params={"unschedulable": False}), why, "the node accepts new pods"
    )
    return await _plan(change, cluster, None, "node_uncordon")


@tool("fix", access="destructive", idempotent=False, title="Delete a pod")
async def pod_delete(
    name: Name,
    namespace: Namespace,
    why: Why = None,
    override_protected: OverrideArg = None,
    cluster: ClusterArg = None,
) -> PlanView:
    """Plan deleting one pod (its controller, if any, creates a replacement). Apply with fix_apply."""
    change = Change(
        target=ObjectRef(kind="Pod", name=name, namespace=namespace),
        operation="delete",
        why=[why or "requested"],
        expected="the pod is gone (replaced by its controller, if any)",
    )
    return await _plan(change, cluster, override_protected, "pod_delete")


@tool("fix", access="destructive", idempotent=False, title="Delete an object")
async def resource_delete(
    kind: Annotated[str, Field(description="Kind, plural or short name.")],
    name: Name,
    namespace: Annotated[str | None, Field(description="Namespace (omit for cluster-scoped kinds).")] = None,
    why: Why = None,
    override_protected: OverrideArg = None,
    cluster: ClusterArg = None,
) -> PlanView:
    """Plan deleting any object (and, in the background, what it owns). Apply with fix_apply."""
    change = Change(
        target=ObjectRef(kind=kind, name=name, namespace=namespace),
        operation="delete",
        why=[why or "requested"],
        expected="the object is gone",
    )
    return await _plan(change, cluster, override_protected, "resource_delete")
