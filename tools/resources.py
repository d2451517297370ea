"""Any kind, CRDs included, found through discovery: list, get, describe, and events."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from connections.kube import TABLE, ResourceInfo
from errors import InvalidInput
from guard import validate
from guard.mask import redact
from runtime import current, validate_limit
from tools.catalogue import tool
from tools.clusters import ClusterArg
from tools.events import EventLine, events_table, object_events
from tools.results import Page, Result, clip, render_object, select_fields, strip_managed, table

Kind = Annotated[
    str, Field(description="Kind, plural or short name: Deployment, pods, svc, virtualservices.networking.istio.io")
]
Namespace = Annotated[str | None, Field(description="Namespace; omit for all (or for cluster-scoped kinds).")]
Fields = Annotated[
    list[str] | None,
    Field(description="Dotted paths to keep, e.g. ['spec.replicas', 'status.conditions'] (yaml/json output)."),
]
Output = Literal["summary", "yaml", "json", "names"]


class KindInfo(BaseModel):
    kind: str
    name: str = Field(description="resource.group, usable as `kind` in other tools")
    api_version: str
    namespaced: bool
    short_names: list[str]
    verbs: list[str]


class KindList(Result):
    cluster: str
    kinds: list[KindInfo]

    def render(self) -> str:
        return table(
            ["KIND", "NAME", "APIVERSION", "NAMESPACED", "SHORT"],
            [[k.kind, k.name, k.api_version, k.namespaced, k.short_names] for k in self.kinds],
        )


@tool("core", title="API resources")
async def api_resources(
    group: Annotated[str | None, Field(description="Only this API group, e.g. apps, networking.istio.io")] = None,
    cluster: ClusterArg = None,
) -> KindList:
    """Kinds the cluster serves (built-in and CRDs) at their preferred version, like kubectl api-resources."""
    rt = current()
    conn = await rt.connect(cluster)
    found = await rt.call(conn.resources)
    kinds = [
        KindInfo(
            kind=r.kind,
            name=r.full_name,
            api_version=r.api_version,
            namespaced=r.namespaced,
            short_names=list(r.short_names),
            verbs=list(r.verbs),
        )
        for r in found
        if group is None or r.group == group
    ]
    return KindList(cluster=conn.name, kinds=sorted(kinds, key=lambda k: (k.name.partition(".")[2], k.kind)))


class ResourceList(Result):
    cluster: str
    kind: str
    namespace: str | None
    columns: list[str] = []
    rows: list[list[Any]] = []
    objects: list[dict[str, Any]] = []
    output: str
    page: Page

    def render(self) -> str:
        if self.output in ("yaml", "json"):
            body = render_object(self.objects, self.output)
        else:
            body = table(self.columns, self.rows)
        return "\n".join(
            filter(None, [f"{self.kind} in {self.namespace or 'all namespaces'}:", body, self.page.footer()])
        )


@tool("core", title="List resources")
async def resources_list(
    kind: Kind,
    namespace: Namespace = None,
    label_selector: Annotated[str | None, Field(description="e.g. app=web")] = None,
    field_selector: Annotated[str | None, Field(description="e.g. metadata.name=x")] = None,
    output: Output = "summary",
    fields: Fields = None,
    limit: int | None = None,
    continue_token: Annotated[str | None, Field(description="From the previous page.")] = None,
    cluster: ClusterArg = None,
) -> ResourceList:
    """List objects of any kind (CRDs included). summary gives the columns `kubectl get` shows; names just
    the names; yaml/json the (redacted) objects, optionally cut to `fields`. Paged with limit/continue_token."""
    rt = current()
    validate.namespace(namespace)
    validate.label_selector(label_selector)
    validate.field_selector(field_selector)
    rt.check_namespace(namespace)
    limit = validate_limit(limit, rt.settings.output.default_limit, maximum=1000)
    conn = await rt.connect(cluster)
    info = await rt.call(conn.resolve, kind)
    if "list" not in info.verbs and info.verbs:
        raise InvalidInput(f"{info.full_name} cannot be listed (verbs: {', '.join(info.verbs)}).")
    path = info.path(namespace)
    query: dict[str, Any] = {
        "labelSelector": label_selector,
        "fieldSelector": field_selector,
        "limit": limit,
        "continue": continue_token,
    }
    tabular = output in ("summary", "names")
    if tabular:
        query["includeObject"] = "Metadata"
    doc = await rt.call(conn.request, "GET", path, query=query, accept=TABLE if tabular else "application/json")
    meta = doc.get("metadata") or {}
    result = ResourceList(
        cluster=conn.name,
        kind=info.full_name,
        namespace=namespace,
        output=output,
        page=Page(total=0, returned=0, continue_token=meta.get("continue") or None),
    )
    if tabular:
        _fill_table(result, doc, info, namespace, names_only=output == "names")
        returned = len(doc.get("rows") or [])
    else:
        items = [i for i in doc.get("items") or [] if rt.namespace_visible(i["metadata"].get("namespace", ""))]
        objs = [redact(strip_managed({"kind": info.kind, **i} if info.kind == "Secret" else i)) for i in items]
        result.objects = [select_fields(o, fields) for o in objs] if fields else objs
        returned = len(doc.get("items") or [])
    result.page.returned = returned
    result.page.total = returned + int(meta.get("remainingItemCount") or 0)
    return result


def _fill_table(
    result: ResourceList, doc: dict[str, Any], info: ResourceInfo, namespace: str | None, names_only: bool
) -> None:
    rt = current()
    cols = [(i, c["name"]) for i, c in enumerate(doc.get("columnDefinitions") or []) if c.get("priority", 0) == 0]
    show_ns = info.namespaced and not namespace
    result.columns = (["NAMESPACE"] if show_ns else []) + (["NAME"] if names_only else [c.upper() for _, c in cols])
    for row in doc.get("rows") or []:
        ns = ((row.get("object") or {}).get("metadata") or {}).get("namespace", "")
        if not rt.namespace_visible(ns):
            continue
        cells = row.get("cells") or []
        values = [cells[0]] if names_only else [cells[i] if i < len(cells) else None for i, _ in cols]
        result.rows.append(([ns] if show_ns else []) + values)


class ResourceDetail(Result):
    cluster: str
    kind: str
    name: str
    namespace: str | None
    text: str
    events: list[EventLine] = []

    def render(self) -> str:
        parts = [f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}:", self.text]
        parts.append(events_table(self.events))
        return "\n".join(parts)


@tool("core", title="Get a resource")
async def resource_get(
    kind: Kind,
    name: str,
    namespace: Namespace = None,
    output: Literal["yaml", "json"] = "yaml",
    fields: Fields = None,
    cluster: ClusterArg = None,
) -> ResourceDetail:
    """One object of any kind as YAML or JSON (redacted; managedFields dropped), optionally cut to `fields`."""
    rt = current()
    info, obj = await _fetch(kind, name, namespace, cluster)
    if fields:
        obj = select_fields(obj, fields)
    text = clip(render_object(obj, output), rt.settings.output.max_chars)
    return ResourceDetail(
        cluster=rt.connection(cluster).name,
        kind=info.kind,
        name=name,
        namespace=namespace if info.namespaced else None,
        text=text,
    )


@tool("core", title="Describe a resource")
async def resource_describe(
    kind: Kind, name: str, namespace: Namespace = None, cluster: ClusterArg = None
) -> ResourceDetail:
    """An object of any kind with its spec and status (redacted) and the events about it, newest first —
    what `kubectl describe` is used for."""
    rt = current()
    conn = await rt.connect(cluster)
    (info, obj), events = await asyncio.gather(
        _fetch(kind, name, namespace, cluster), _events_for(conn.name, kind, name, namespace)
    )
    body = {k: v for k, v in obj.items() if k not in ("apiVersion",)}
    text = clip(render_object(body, "yaml"), rt.settings.output.max_chars)
    return ResourceDetail(
        cluster=conn.name,
        kind=info.kind,
        name=name,
        namespace=namespace if info.namespaced else None,
        text=text,
        events=events,
    )


async def _events_for(cluster: str, kind: str, name: str, namespace: str | None) -> list[EventLine]:
    rt = current()
    info = await rt.call(rt.connection(cluster).resolve, kind)
    return await object_events(cluster, namespace if info.namespaced else None, info.kind, name)


async def _fetch(
    kind: str, name: str, namespace: str | None, cluster: str | None
) -> tuple[ResourceInfo, dict[str, Any]]:
    rt = current()
    validate.object_name(name)
    validate.namespace(namespace)
    rt.check_namespace(namespace)
    conn = await rt.connect(cluster)
    info = await rt.call(conn.resolve, kind)
    if info.namespaced and not namespace:
        raise InvalidInput(f"{info.kind} is namespaced: pass `namespace`.")
    obj = await rt.call(conn.get, info.path(namespace, name))
    return info, redact(strip_managed(obj))
