"""Events: newest first, for a namespace, a cluster, or one object."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from connections import namespaces
from guard import validate
from guard.mask import mask_text
from runtime import current, validate_limit
from tools.catalogue import tool
from tools.clusters import ClusterArg
from tools.results import Page, Result, age, paginate, table

Namespace = Annotated[str | None, Field(description="Namespace; omit for all namespaces.")]


class EventLine(BaseModel):
    age: str
    type: str
    reason: str
    object: str
    count: int
    message: str


def events_table(events: list[EventLine]) -> str:
    if not events:
        return "events: none"
    return "events:\n" + table(
        ["AGE", "TYPE", "REASON", "OBJECT", "COUNT", "MESSAGE"],
        [[e.age, e.type, e.reason, e.object, e.count, e.message] for e in events],
    )


async def object_events(cluster: str, namespace: str | None, kind: str, name: str, limit: int = 20) -> list[EventLine]:
    """Events about one object, newest first."""
    rt = current()
    conn = rt.connection(cluster)
    selector = f"involvedObject.kind={kind},involvedObject.name={name}"
    path = f"/api/v1/namespaces/{namespace}/events" if namespace else "/api/v1/events"
    items, _ = await rt.call(conn.list_items, path, {"fieldSelector": selector})
    return event_lines(items, limit)


def event_lines(items: list[dict[str, Any]], limit: int) -> list[EventLine]:
    items.sort(key=event_time, reverse=True)
    return [
        EventLine(
            age=age(event_time(e)),
            type=e.get("type") or "",
            reason=e.get("reason") or "",
            object=f"{(e.get('involvedObject') or {}).get('kind')}/{(e.get('involvedObject') or {}).get('name')}",
            count=int(e.get("count") or (e.get("series") or {}).get("count") or 1),
            message=mask_text((e.get("message") or "").strip())[:300],
        )
        for e in items[:limit]
    ]


def event_time(e: dict[str, Any]) -> str:
    return (
        e.get("lastTimestamp")
        or (e.get("series") or {}).get("lastObservedTime")
        or e.get("eventTime")
        or e.get("firstTimestamp")
        or (e.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


class EventList(Result):
    cluster: str
    namespace: str | None
    events: list[EventLine]
    page: Page

    def render(self) -> str:
        return "\n".join(filter(None, [events_table(self.events), self.page.footer()]))


@tool("core", title="Events")
async def events_list(
    namespace: Namespace = None,
    kind: Annotated[str | None, Field(description="Only events about this kind...")] = None,
    name: Annotated[str | None, Field(description="...and this object name.")] = None,
    warnings_only: bool = False,
    limit: int | None = None,
    continue_token: Annotated[str | None, Field(description="From the previous page.")] = None,
    cluster: ClusterArg = None,
) -> EventList:
    """Events, newest first, for a namespace or all, optionally about one object and warnings only."""
    rt = current()
    validate.namespace(namespace)
    rt.check_namespace(namespace)
    limit = validate_limit(limit, rt.settings.output.default_limit, maximum=1000)
    conn = await rt.connect(cluster)
    selectors = []
    if kind:
        info = await rt.call(conn.resolve, kind)
        selectors.append(f"involvedObject.kind={info.kind}")
    if name:
        validate.object_name(name)
        selectors.append(f"involvedObject.name={name}")
    if warnings_only:
        selectors.append("type=Warning")
    path = f"/api/v1/namespaces/{namespace}/events" if namespace else "/api/v1/events"
    items, _ = await rt.call(conn.list_items, path, {"fieldSelector": ",".join(selectors) or None})
    items = [e for e in items if rt.namespace_visible((e.get("metadata") or {}).get("namespace", ""))]
    if namespace and not items:
        await namespaces.require(rt, conn, namespace)
    items.sort(key=event_time, reverse=True)
    shown, page = paginate(items, limit, continue_token)
    return EventList(cluster=conn.name, namespace=namespace, events=event_lines(shown, limit), page=page)
