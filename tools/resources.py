"""Any kind, CRDs included, found through discovery: list, get, describe, and events."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, Field

from connections import namespaces
from connections.kube import TABLE, ResourceInfo
from errors import InvalidInput
from guard import validate
from guard.mask import redact
from runtime import current, validate_limit
from tools.catalogue import tool
from tools.clusters import ClusterArg
from tools.events import EventLine, events_table, object_events
from tools.results import Page, Result, render_object, select_fields, strip_managed, table

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
    size_limited: bool = Field(
        False, description="True when the page stopped early to stay within the output size limit."
    )

    def render(self) -> str:
        if self.output in ("yaml", "json"):
            body = render_object(self.objects, self.output)
        else:
            body = table(self.columns, self.rows)
        head = f"{self.kind} in {self.namespace or 'all namespaces'}:"
        note = self.page.footer()
        if self.size_limited and self.page.continue_token:
            note = (
                f"(showing {self.page.returned}: the page stopped at the output size limit; pass "
                f"continue_token={self.page.continue_token!r} for the rest)"
            )
        # the paging note comes before the body: a long body may be cut, the way on must not be
        return "\n".join(filter(None, [head, note, body]))


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
    the names; yaml/json the (redacted) objects, optionally cut to `fields`. Paged with limit/continue_token.

    A page also stops early when more would not fit the output size limit; its continue_token resumes there."""
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
    skip, api_token = _resume_at(continue_token)
    query: dict[str, Any] = {
        "labelSelector": label_selector,
        "fieldSelector": field_selector,
        "limit": limit + skip,
        "continue": api_token,
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
    raw = (doc.get("rows") if tabular else doc.get("items")) or []
    shaped: list[Any]
    if tabular:
        shaped = _table_rows(result, doc, info, namespace, names_only=output == "names")
    else:
        shaped = [_object(i, info, fields) for i in raw]
    budget = rt.settings.output.max_structured_bytes * 9 // 10 - ENVELOPE_BYTES
    stop = _fill(result, raw, shaped, skip, budget)
    if stop is not None:  # resume inside this API page: same API token, skipping what was shown
        result.size_limited = True
        result.page.continue_token = f"{SKIP}{stop}:{api_token or ''}"
    returned = len(result.rows) + len(result.objects)
    rest = int(meta.get("remainingItemCount") or 0) + (len(raw) - stop if stop is not None else 0)
    result.page.returned = returned
    result.page.total = returned + rest
    if not raw and namespace and info.namespaced and not continue_token:
        await namespaces.require(rt, conn, namespace)
    return result


SKIP = "skip:"  # continue tokens of pages cut by size: skip:<items already shown>:<the API's token>
ENVELOPE_BYTES = 4_000  # room for everything of a ResourceList but its rows or objects
MAX_SKIP = 10_000


def _resume_at(token: str | None) -> tuple[int, str | None]:
    """(items of the API page already shown, the API server's continue token) of a continue_token."""
    if not token or not token.startswith(SKIP):
        return 0, token or None
    count, _, api_token = token.removeprefix(SKIP).partition(":")
    if not count.isdigit() or int(count) > MAX_SKIP:
        raise InvalidInput(
            f"continue_token {token[:60]!r} was not issued by this tool; omit it to start from the first page."
        )
    return int(count), api_token or None


def _object(item: dict[str, Any], info: ResourceInfo, fields: list[str] | None) -> dict[str, Any] | None:
    """The redacted object (cut to `fields`), or None when its namespace is hidden."""
    if not current().namespace_visible((item.get("metadata") or {}).get("namespace", "")):
        return None
    obj = redact(strip_managed({"kind": info.kind, **item} if info.kind == "Secret" else item))
    return select_fields(obj, fields) if fields else obj


def _fill(result: ResourceList, raw: list[Any], shaped: list[Any], skip: int, budget: int) -> int | None:
    """Add the shaped rows or objects after the first `skip`, while they fit in `budget` bytes of JSON.

    Returns the index in the API page to resume from when they did not all fit, else None. An object larger
    than the whole budget is replaced by a note saying so (a later page would never get past it).
    """
    target = result.objects if result.output in ("yaml", "json") else result.rows
    used = 0
    for index in range(skip, len(raw)):
        item = shaped[index]
        if item is None:
            continue
        size = len(orjson.dumps(item, default=str)) + 1
        if size > budget and isinstance(item, dict):
            item = _too_big(item, size)
            size = len(orjson.dumps(item)) + 1
        if target and used + size > budget:
            return index
        target.append(item)
        used += size
    return None


def _too_big(obj: dict[str, Any], size: int) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return {
        "kind": obj.get("kind"),
        "metadata": {k: meta[k] for k in ("name", "namespace") if k in meta},
        "omitted": f"this object is {size} bytes as JSON, more than fits in one answer; read it with resource_get "
        "and `fields`",
    }


def _table_rows(
    result: ResourceList, doc: dict[str, Any], info: ResourceInfo, namespace: str | None, names_only: bool
) -> list[list[Any] | None]:
    """Set the columns; return each row's cells (None for rows of hidden namespaces)."""
    rt = current()
    cols = [(i, c["name"]) for i, c in enumerate(doc.get("columnDefinitions") or []) if c.get("priority", 0) == 0]
    show_ns = info.namespaced and not namespace
    result.columns = (["NAMESPACE"] if show_ns else []) + (["NAME"] if names_only else [c.upper() for _, c in cols])
    out: list[list[Any] | None] = []
    for row in doc.get("rows") or []:
        ns = ((row.get("object") or {}).get("metadata") or {}).get("namespace", "")
        if not rt.namespace_visible(ns):
            out.append(None)
            continue
        cells = row.get("cells") or []
        values = [cells[0]] if names_only else [cells[i] if i < len(cells) else None for i, _ in cols]
        out.append(([ns] if show_ns else []) + values)
    return out


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
    """One object of any kind as YAML or JSON (redacted; managedFields dropped), optionally cut to `fields`.

    An object too large for one answer is cut, saying so: then ask for `fields`."""
    rt = current()
    info, obj = await _fetch(kind, name, namespace, cluster)
    if fields:
        obj = select_fields(obj, fields)
    text = fit_text(render_object(obj, output), _text_room())
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
    text = fit_text(render_object(body, "yaml"), _text_room() - len(orjson.dumps([e.model_dump() for e in events])))
    return ResourceDetail(
        cluster=conn.name,
        kind=info.kind,
        name=name,
        namespace=namespace if info.namespaced else None,
        text=text,
        events=events,
    )


def _text_room() -> int:
    """Bytes (as JSON) an object's text may take: within both output limits, leaving room for the rest."""
    out = current().settings.output
    return min(out.max_chars, out.max_structured_bytes * 9 // 10 - ENVELOPE_BYTES)


def fit_text(text: str, room: int) -> str:
    """`text` cut so that it takes at most `room` bytes as a JSON string (and `room` characters), saying so."""
    room = max(1_000, room)
    if len(text) <= room and len(orjson.dumps(text)) <= room:
        return text
    note = "\n… [cut at the output size limit: pass `fields` to read the rest]"
    keep = min(len(text), room)
    while keep > 0 and len(orjson.dumps(text[:keep])) + len(note) > room:
        keep = keep * 9 // 10
    cut = text.rfind("\n", 0, keep)
    return text[: cut if cut > keep // 2 else keep] + note


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
