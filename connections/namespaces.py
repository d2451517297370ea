"""Does a namespace exist? If not, an error that names the close matches among the namespaces one may see.

A listing in a namespace that does not exist is empty, and an empty answer reads as "nothing wrong there".
Tools call `require` when a namespace-scoped answer would otherwise be empty (or before heavy work), so a
typo gets "namespace 'shpo' does not exist; did you mean 'shop'?" instead of "0 pods".
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from connections.kube import METADATA_LIST, Connection
from errors import CloudPilotError, Forbidden, NotFound

if TYPE_CHECKING:
    from runtime import Runtime

SHOWN = 8  # namespaces named in the hint


async def require(rt: Runtime, conn: Connection, namespace: str | None) -> None:
    """Raise NotFound (with close names) when `namespace` does not exist in the cluster.

    One GET of the namespace; a positive answer is reused for `k8s.cache_ttl_seconds` per cluster. An identity
    that may not read namespaces gets no check (the listing answers as it can).
    """
    if not namespace:
        return

    async def load() -> bool:
        return await rt.call(_exists, rt, conn, namespace)

    await rt.cache.get((conn.name, "namespace exists", namespace), rt.settings.k8s.cache_ttl_seconds, load)


def _exists(rt: Runtime, conn: Connection, namespace: str) -> bool:
    """True when the namespace exists or cannot be checked; NotFound with suggestions otherwise. Blocking."""
    try:
        conn.get(f"/api/v1/namespaces/{namespace}")
    except Forbidden:
        return True
    except NotFound:
        raise missing(rt, conn, namespace) from None
    return True


def missing(rt: Runtime, conn: Connection, namespace: str) -> NotFound:
    """The error for a namespace that does not exist, naming close matches and a few of the visible ones."""
    message = f"Namespace {namespace!r} does not exist in cluster {conn.name!r}."
    try:
        items, _ = conn.list_items("/api/v1/namespaces", None, METADATA_LIST)
    except CloudPilotError:
        return NotFound(message, hint="Check the name; namespaces_detail lists the namespaces.")
    names = sorted(
        name for i in items if (name := (i.get("metadata") or {}).get("name", "")) and rt.namespace_visible(name)
    )
    return NotFound(message, hint=suggestion(namespace, names))


def suggestion(namespace: str, names: list[str]) -> str:
    """'Did you mean 'shop'? Namespaces: a, b, c (3 in all).' from the names one may see."""
    close = difflib.get_close_matches(namespace, names, n=3, cutoff=0.6)
    parts = []
    if close:
        parts.append("Did you mean " + " or ".join(repr(c) for c in close) + "?")
    if names:
        shown = ", ".join(names[:SHOWN]) + (f", … ({len(names)} in all)" if len(names) > SHOWN else "")
        parts.append(f"Namespaces: {shown}.")
    else:
        parts.append("No namespace is visible to CloudPilot in this cluster.")
    return " ".join(parts)
