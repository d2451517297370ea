"""The one place that talks to the `kubernetes` client library.

A `Connection` is one cluster reached with one identity. It sends requests through the official client's
configuration, authentication and connection pool, but reads responses as raw JSON (decoded with orjson):
the client's model deserialisation costs ~12x the transfer on large lists, and tools need only a few fields.

`Clusters` turns a tool's `cluster` argument (a registry name, a kubeconfig context, or nothing) into a
`Connection`, reusing clients. API failures become the errors of `errors`, worded for a model.

Registered clusters are added by an operator (`cloudpilot clusters add`), never by a tool. A stored kubeconfig
not marked as operator-added passes `inline_only` before it is loaded; TLS material is held in memory
(`connections.kubeconfig`), never left in temporary files.
"""

from __future__ import annotations

import base64
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import urllib3
import yaml
from kubernetes import client as kclient
from kubernetes import config as kconfig
from kubernetes.config.config_exception import ConfigException
from kubernetes.config.incluster_config import InClusterConfigLoader

from connections.kubeconfig import inline_only, install, load_into, unreadable, yaml_reason
from errors import (
    QUOTE_CHARS,
    CloudPilotError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Unreachable,
)
from errors import quote as quote_input  # urllib's quote is the one named quote here
from settings import KubeSettings
from store import ClusterRecord, Store

logger = logging.getLogger(__name__)

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
METADATA_LIST = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"
AGGREGATED_DISCOVERY = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)
IN_CLUSTER = "in-cluster"
SERVER_QUOTE_CHARS = 300  # the most of an API server's message an error repeats
OPERATOR_ADD = "An operator registers clusters on the server's machine with `cloudpilot clusters add`."
_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
WRITE_VERBS = frozenset({"create", "update", "patch", "delete"})


@dataclass(frozen=True)
class ResourceInfo:
    """One API resource as discovery reports it."""

    group: str
    version: str
    resource: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()
    singular: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def full_name(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource

    def path(self, namespace: str | None = None, name: str | None = None, sub: str | None = None) -> str:
        if name and self.namespaced:
            require_namespace(self.kind, namespace)
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.resource}"
        if name:
            base += f"/{quote(name, safe='')}"
        if sub:
            base += f"/{sub}"
        return base


def require_namespace(kind: str, namespace: str | None) -> str:
    """`namespace`, or InvalidInput when a call about one object of a namespaced kind has none."""
    if not namespace:
        raise InvalidInput(
            f"namespace is required for {kind or 'this kind'}: it is namespaced, so one object is named by "
            "namespace and name."
        )
    return namespace


@dataclass
class Connection:
    """One cluster, one identity. Thread-safe: tools call it from worker threads concurrently.

    `record` is the registry entry it was made from (None for kubeconfig contexts and in-cluster).
    """

    name: str
    api: kclient.ApiClient
    identity: str
    timeout: float = 20.0
    discovery_ttl: float = 300.0
    record: ClusterRecord | None = field(default=None, repr=False)
    _discovery: tuple[float, list[ResourceInfo]] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def server(self) -> str:
        return str(self.api.configuration.host)

    def close(self) -> None:
        self.api.close()

    # -- raw HTTP -------------------------------------------------------------------------------------
    def send(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str | None = None,
        accept: str = "application/json",
        timeout: float | None = None,
    ) -> tuple[int, bytes, Any]:
        """Send one request; return (status, body, headers) whatever the status. Raises Unreachable only."""
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        wait = timeout or self.timeout
        resp = self._open(method, path, query or {}, headers, body, (min(5.0, wait), wait))
        try:
            payload = resp.read()
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise self._unreachable(e) from e
        return resp.status, payload, resp.headers

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str | None = None,
        accept: str = "application/json",
        timeout: float | None = None,
        raw: bool = False,
    ) -> Any:
        """Send one request; return the decoded JSON body (or bytes when `raw`)."""
        status, payload, headers = self.send(
            method, path, query=query, body=body, content_type=content_type, accept=accept, timeout=timeout
        )
        if not 200 <= status < 300:
            raise self._error(status, payload, method, path, retry_after=_retry_after(headers))
        if raw:
            return payload
        return orjson.loads(payload) if payload else None

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, query=query)

    def list_items(
        self, path: str, query: dict[str, Any] | None = None, accept: str = "application/json"
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """All items of a list call, following `continue` pages. Returns (items, list metadata)."""
        query = dict(query or {})
        items: list[dict[str, Any]] = []
        while True:
            doc = self.request("GET", path, query=query, accept=accept)
            items.extend(doc.get("items") or [])
            meta = doc.get("metadata") or {}
            if not meta.get("continue"):
                return items, meta
            query["continue"] = meta["continue"]

    def watch(
        self, path: str, query: dict[str, Any], timeout: float, opened: Callable[[Any], None] | None = None
    ) -> Iterator[dict[str, Any]]:
        """The decoded events of one watch request (`?watch=1`), as the API server sends them, until it ends the
        request (its `timeoutSeconds`) or `timeout` seconds pass without a byte. Raises `Unreachable` when the
        connection fails (the API server restarting). A resourceVersion too old for the server comes back as the
        ERROR event with code 410 (as it does mid-stream); other HTTP errors raise as `request` does. `opened`
        receives the streaming response, whose `shutdown()` ends the watch from another thread."""
        resp = self._open("GET", path, {**query, "watch": True}, {"Accept": "application/json"}, None, (5.0, timeout))
        response = resp.response
        if opened is not None:
            opened(response)
        try:
            if response.status == 410:  # the resourceVersion is too old: said the way a running watch says it
                yield {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}
                return
            if not 200 <= response.status < 300:
                raise self._error(response.status, response.read(), "GET", path)
            pending = b""
            try:
                for chunk in response.stream(65_536, decode_content=True):
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        if line.strip():
                            yield orjson.loads(line)
            except (urllib3.exceptions.HTTPError, OSError) as e:
                raise self._unreachable(e) from e
        finally:
            response.release_conn()

    def _open(
        self,
        method: str,
        path: str,
        query: dict[str, Any],
        headers: dict[str, str],
        body: Any,
        timeout: tuple[float, float],
    ) -> Any:
        """Send one request and return the response unread (a watch streams it). Raises Unreachable only."""
        params = [(k, _query_value(v)) for k, v in query.items() if v is not None]
        m, url, hdrs, data, post = self.api.param_serialize(
            method, path, query_params=params, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        try:
            return self.api.call_api(m, url, header_params=hdrs, body=data, post_params=post, _request_timeout=timeout)
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise self._unreachable(e) from e

    def _unreachable(self, e: BaseException) -> Unreachable:
        return Unreachable(
            f"Cluster {self.name!r} at {self.server} did not answer: {_root_cause(e)}.",
            hint="Check that the API server is running and reachable from CloudPilot, and the "
            "cluster's URL and certificates (clusters_list shows them).",
            delay=5.0,
        )

    def count(self, path: str) -> int:
        """How many objects a list call would return, without transferring them."""
        doc = self.request("GET", path, query={"limit": 1}, accept=METADATA_LIST)
        meta = doc.get("metadata") or {}
        n = len(doc.get("items") or [])
        if "remainingItemCount" in meta:
            return n + int(meta["remainingItemCount"])
        if not meta.get("continue"):
            return n
        items, _ = self.list_items(path, {"limit": 5000}, accept=METADATA_LIST)
        return len(items)

    # -- discovery ------------------------------------------------------------------------------------
    def resources(self, refresh: bool = False) -> list[ResourceInfo]:
        """Every served resource at its preferred version (aggregated discovery, cached)."""
        with self._lock:
            cached = self._discovery
        if cached and not refresh and time.monotonic() - cached[0] < self.discovery_ttl:
            return cached[1]
        found: list[ResourceInfo] = []
        for root in ("/api", "/apis"):
            doc = self.request("GET", root, accept=AGGREGATED_DISCOVERY)
            if doc.get("kind") == "APIGroupDiscoveryList":
                found.extend(_from_aggregated(doc))
            else:
                found.extend(self._legacy_discovery(root, doc))
        with self._lock:
            self._discovery = (time.monotonic(), found)
        return found

    def _legacy_discovery(self, root: str, doc: dict[str, Any]) -> list[ResourceInfo]:
        if root == "/api":
            versions = [("", v) for v in doc.get("versions", [])[:1]]
        else:
            versions = [(g["name"], g["preferredVersion"]["version"]) for g in doc.get("groups", [])]
        out = []
        for group, version in versions:
            gv = f"/apis/{group}/{version}" if group else f"/api/{version}"
            for r in self.get(gv).get("resources", []):
                if "/" in r["name"]:
                    continue
                out.append(
                    ResourceInfo(
                        group,
                        version,
                        r["name"],
                        r["kind"],
                        r["namespaced"],
                        tuple(r.get("verbs", [])),
                        tuple(r.get("shortNames", [])),
                        r.get("singularName") or r["kind"].lower(),
                    )
                )
        return out

    def resolve(self, kind: str) -> ResourceInfo:
        """Find a resource by kind, plural, singular or short name, optionally suffixed `.group`."""
        wanted = kind.strip()
        if not wanted:
            raise InvalidInput(
                "A kind is required, e.g. 'Deployment', 'pods', 'svc' or 'gateways.networking.istio.io'."
            )
        if len(wanted) > 253:
            raise InvalidInput(f"Kind {quote_input(wanted)} is too long to be a kind (at most 253 characters).")
        resources = self.resources()
        found = _match(resources, wanted)
        if not found:
            found = _match(self.resources(refresh=True), wanted)
        if not found:
            raise NotFound(
                f"Kind {quote_input(wanted)} is not served by cluster {self.name!r}.",
                hint="Use api_resources to see served kinds; a CRD may not be installed.",
            )
        if len(found) > 1:  # e.g. core "events" and events.k8s.io: the core group wins, then other built-ins
            for preferred in ([r for r in found if r.group == ""], [r for r in found if r.group in _BUILTIN_GROUPS]):
                if len(preferred) == 1:
                    return preferred[0]
            names = ", ".join(sorted(r.full_name for r in found))
            raise InvalidInput(
                f"Kind {quote_input(wanted)} is ambiguous in cluster {self.name!r}: {names}.",
                hint="Pass one of these full names as the kind.",
            )
        return found[0]

    # -- errors ---------------------------------------------------------------------------------------
    def _error(
        self, status: int, payload: bytes, method: str, path: str, retry_after: float | None = None
    ) -> CloudPilotError:
        message = _status_message(payload) or f"HTTP {status}"
        what = describe_path(path)
        verb = _VERBS.get(method, method.lower())
        if method == "GET" and _is_collection(path):
            verb = "list"
        where = f"in cluster {self.name!r}"
        if status == 404:
            return NotFound(
                f"{what} not found {where}: {message}.",
                hint="Check the name and namespace; list the kind to see what exists.",
            )
        if status == 403:
            return Forbidden(
                f"Forbidden: identity {self.identity!r} may not {verb} {what} {where}. The API server said: {message}.",
                hint=self._grant_hint(verb, path),
            )
        if status == 401:
            return Forbidden(
                f"Cluster {self.name!r} rejected the credentials of {self.identity!r}: {message}.",
                hint="The token or certificate is invalid or expired: renew it in the kubeconfig, or have an "
                "operator register the cluster again (`cloudpilot clusters remove`, then `add`).",
            )
        if status == 409:
            return Conflict(
                f"Conflict on {what} {where}: {message}.",
                hint="The object changed since it was read; read it again and re-plan.",
                delay=1.0,
            )
        if status == 410:
            return InvalidInput(
                f"The API server can no longer continue listing {what} {where} (HTTP 410): {message}.",
                hint="A continue_token expires after a few minutes: list again without it.",
            )
        if status == 413:
            return InvalidInput(
                f"The request to {verb} {what} {where} was too large for the API server (HTTP 413): {message}.",
                hint="Send less: a smaller manifest or patch, or split the change (the API server accepts about "
                "3 MiB per request).",
            )
        if status == 429:
            return Unreachable(
                f"Cluster {self.name!r} is throttling requests and did not {verb} {what} (HTTP 429): {message}.",
                hint=f"Retry after {retry_after:g} seconds, as the API server asked (Retry-After)."
                if retry_after
                else "Wait a few seconds before retrying; the API server gave no Retry-After.",
                delay=retry_after or 5.0,
            )
        if status in (408, 504):
            return Unreachable(
                f"Cluster {self.name!r} timed out trying to {verb} {what} (HTTP {status}): {message}.",
                hint="This may be temporary; try again, with a smaller limit for a large list.",
                delay=2.0,
            )
        if status >= 500:
            return Unreachable(
                f"Cluster {self.name!r} failed to {verb} {what} (HTTP {status}): {message}.",
                hint="A server error is often temporary: try again shortly; if it persists, check the API "
                "server's health.",
                delay=2.0,
            )
        if 400 <= status < 500:
            return InvalidInput(f"The API server refused to {verb} {what} {where} (HTTP {status}): {message}.")
        return Unreachable(
            f"Cluster {self.name!r} answered HTTP {status} to {verb} {what}, which an API server does not send.",
            hint="Check the cluster's URL: it may point at a proxy or a web page rather than the API server.",
        )

    def _grant_hint(self, verb: str, path: str) -> str:
        """The missing permission as the RBAC rule that would grant it (verb, API group, resource, namespace)."""
        group, resource, namespace = rbac_target(path)
        if not resource:  # discovery or another non-resource URL
            where = _cut(path.split("?")[0], QUOTE_CHARS)
            return f"Grant the identity RBAC permission to {verb} {where}, or use a cluster/context with more rights."
        where = f'in namespace "{_cut(namespace, QUOTE_CHARS)}"' if namespace else "cluster-wide"
        rule = f'{{apiGroups: ["{group}"], resources: ["{resource}"], verbs: ["{verb}"]}}'
        text = (
            f'Missing RBAC permission: verb "{verb}" on resource "{resource}" of API group "{group or "core"}" '
            f"{where}. Grant it to the identity with a {'Role' if namespace else 'ClusterRole'} rule {rule} and a "
            "binding, or use a cluster/context with more rights."
        )
        if self.name == IN_CLUSTER and verb in WRITE_VERBS:
            text += (
                " Installed with CloudPilot's Helm chart: changes need rbac.write.enabled=true (deletions also "
                "rbac.destructive.enabled=true)."
            )
        return text


_BUILTIN_GROUPS = {
    "",
    "apps",
    "batch",
    "autoscaling",
    "policy",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "apiextensions.k8s.io",
    "events.k8s.io",
    "discovery.k8s.io",
}


def _match(resources: list[ResourceInfo], wanted: str) -> list[ResourceInfo]:
    low = wanted.lower()
    name, _, group = low.partition(".")
    out = []
    for r in resources:
        names = {r.kind.lower(), r.resource, r.singular, *r.short_names}
        if (low in names and not group) or (
            group and name in names and (r.group == group or r.group.startswith(group + "."))
        ):
            out.append(r)
    return out


def _from_aggregated(doc: dict[str, Any]) -> list[ResourceInfo]:
    out = []
    for group in doc.get("items", []):
        gname = (group.get("metadata") or {}).get("name", "")
        versions = group.get("versions") or []
        if not versions:
            continue
        pref = versions[0]  # listed in preference order
        for r in pref.get("resources") or []:
            rk = r.get("responseKind") or {}
            out.append(
                ResourceInfo(
                    gname,
                    pref["version"],
                    r["resource"],
                    rk.get("kind", ""),
                    r.get("scope") == "Namespaced",
                    tuple(r.get("verbs") or ()),
                    tuple(r.get("shortNames") or ()),
                    r.get("singularResource") or rk.get("kind", "").lower(),
                )
            )
    return out


def describe_path(path: str) -> str:
    """'/api/v1/namespaces/shop/pods/web-1/log' → 'pods "web-1" (log) in namespace "shop"'."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    parts = parts[2:] if parts[:1] == ["api"] else parts[3:]
    ns = None
    if len(parts) >= 2 and parts[0] == "namespaces" and len(parts) != 2:
        ns, parts = parts[1], parts[2:]
    if not parts:
        return "the API"
    text = parts[0]
    if len(parts) >= 2:
        text += f' "{_cut(parts[1], QUOTE_CHARS)}"'
    if len(parts) >= 3:
        text += f" ({'/'.join(parts[2:])})"
    if ns:
        text += f' in namespace "{_cut(ns, QUOTE_CHARS)}"'
    return text


def rbac_target(path: str) -> tuple[str, str, str | None]:
    """'/apis/apps/v1/namespaces/shop/deployments/web/scale' → ('apps', 'deployments/scale', 'shop'): what an RBAC
    rule names for a request path (API group, resource with its subresource, namespace)."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    group = parts[1] if parts[:1] == ["apis"] and len(parts) > 1 else ""
    parts = parts[2:] if parts[:1] == ["api"] else parts[3:]
    namespace = None
    if len(parts) >= 2 and parts[0] == "namespaces" and len(parts) != 2:
        namespace, parts = parts[1], parts[2:]
    if not parts:
        return group, "", namespace
    resource = _cut(parts[0], QUOTE_CHARS)
    if len(parts) >= 3:
        resource += "/" + _cut(parts[2], QUOTE_CHARS)
    return _cut(group, QUOTE_CHARS), resource, namespace


def _is_collection(path: str) -> bool:
    parts = [p for p in path.split("/") if p]
    parts = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if len(parts) >= 2 and parts[0] == "namespaces" and len(parts) != 2:
        parts = parts[2:]
    return len(parts) == 1


def _status_message(payload: bytes) -> str:
    """The API server's message, cut short; never a whole page from something that is not an API server."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        text = " ".join(payload[: SERVER_QUOTE_CHARS * 4].decode("utf-8", "replace").split())
        if text.startswith("<"):
            return "an HTML page, not a Kubernetes API Status"
        return _cut(text, SERVER_QUOTE_CHARS)
    text = str(doc.get("message") or doc.get("reason") or "") if isinstance(doc, dict) else ""
    return _cut(" ".join(text.split()), SERVER_QUOTE_CHARS)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + "… (cut)"


def _retry_after(headers: Any) -> float | None:
    """The Retry-After header in seconds (delay form only), capped at 10 minutes."""
    value = str((headers or {}).get("Retry-After") or "").strip()
    return min(float(value), 600.0) if value.isdigit() else None


def _root_cause(e: BaseException) -> str:
    while True:
        nxt = getattr(e, "reason", None) or e.__cause__ or e.__context__
        if not isinstance(nxt, BaseException) or nxt is e:
            break
        e = nxt
    return str(e) or type(e).__name__


def _query_value(v: Any) -> Any:
    if isinstance(v, bool):
        return "true" if v else "false"
    return v


# -- making connections --------------------------------------------------------------------------------
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def in_pod(service_account_dir: Path = SERVICE_ACCOUNT_DIR) -> bool:
    """Whether this process runs in a pod: the API server's address in the environment and a service account
    token in `service_account_dir` (k8s.service_account_dir)."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (service_account_dir / "token").exists()


def _jwt_subject(token: str) -> str | None:
    try:
        payload = token.split(".")[1]
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims.get("sub")) if claims.get("sub") else None
    except Exception:  # not a JWT: a static token
        return None


_KUBECONFIG_FIX = (
    "Fix that file, or point CLOUDPILOT_K8S__KUBECONFIG (or KUBECONFIG) at a valid one. Registered clusters still "
    "work: pass one as `cluster` (clusters_list shows them)."
)


@dataclass
class Access:
    """How to reach one cluster: the client configuration, who it acts as, and TLS held in memory."""

    cfg: kclient.Configuration
    identity: str
    tls: ssl.SSLContext | None = None


class Clusters:
    """Resolves a tool's `cluster` argument to a `Connection` and keeps one client per cluster."""

    def __init__(self, settings: KubeSettings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._cache: dict[str, Connection] = {}
        self._default: str | None = None
        self._lock = threading.Lock()

    # -- the kubeconfig ------------------------------------------------------------------------------
    def kubeconfig_files(self) -> list[str]:
        """The kubeconfig files in use: k8s.kubeconfig, else $KUBECONFIG's list, else ~/.kube/config."""
        if self.settings.kubeconfig:
            return [os.path.expanduser(str(self.settings.kubeconfig))]
        listed = [os.path.expanduser(p) for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
        return listed or [str(Path.home() / ".kube" / "config")]

    def kubeconfig_state(self) -> tuple[list[dict[str, Any]], str | None, str | None]:
        """(contexts, current context, why the kubeconfig cannot be read). No kubeconfig at all is no error."""
        files = [f for f in self.kubeconfig_files() if os.path.exists(f)]
        if not files:
            return [], None, None
        try:
            contexts, active = kconfig.list_kube_config_contexts(os.pathsep.join(files))
        except Exception as e:  # a broken file fails in many ways; each becomes one line
            return [], None, unreadable(files, e)
        return contexts or [], (active or {}).get("name"), None

    def contexts(self) -> tuple[list[dict[str, Any]], str | None]:
        """kubeconfig contexts and the current one ([] when there is no usable kubeconfig)."""
        contexts, active, _ = self.kubeconfig_state()
        return contexts, active

    def kubeconfig_error(self) -> str | None:
        """One line saying which kubeconfig file cannot be read and why (never its contents), or None."""
        return self.kubeconfig_state()[2]

    def kubeconfig_servers(self) -> dict[str, str]:
        """kubeconfig cluster name → server URL (no credentials)."""
        servers: dict[str, str] = {}
        for path in self.kubeconfig_files():
            try:
                doc = yaml.safe_load(Path(path).read_text()) or {}
                entries = [c for c in doc.get("clusters") or [] if isinstance(c, dict)]
            except (OSError, yaml.YAMLError, AttributeError):
                continue
            for c in entries:
                servers.setdefault(str(c.get("name")), str((c.get("cluster") or {}).get("server")))
        return servers

    # -- connections ---------------------------------------------------------------------------------
    def default_name(self) -> str:
        if self._default is None:
            self._default = self._find_default()
        return self._default

    def cached(self, name: str | None) -> Connection | None:
        """The connection for `name` if it is open and its registry entry unchanged (one local SQLite read)."""
        key = name or self._default
        if not key:
            return None
        with self._lock:
            conn = self._cache.get(key)
        if conn is not None and self.store.get_cluster(key) != conn.record:
            self.forget(key)  # removed or registered again by an operator since it was opened
            return None
        return conn

    def in_pod(self) -> bool:
        """Whether the pod's service account is there to use (k8s.service_account_dir)."""
        return in_pod(self.settings.service_account_dir)

    def _find_default(self) -> str:
        if self.settings.default_cluster:
            return self.settings.default_cluster
        if self.settings.in_cluster == "always" or (self.settings.in_cluster == "auto" and self.in_pod()):
            return IN_CLUSTER
        if self.settings.context:
            return self.settings.context
        _, active, trouble = self.kubeconfig_state()
        if active:
            return active
        if trouble:
            raise InvalidInput(f"No default cluster: {trouble}", hint=_KUBECONFIG_FIX)
        raise NotFound(
            "No cluster is configured: no kubeconfig current context and not running in a pod.",
            hint=f"Set KUBECONFIG or pass --context. {OPERATOR_ADD}",
        )

    def get(self, name: str | None = None) -> Connection:
        key = name or self.default_name()
        conn = self.cached(key)
        if conn is None:
            conn = self._connect(key)
            with self._lock:
                kept = self._cache.setdefault(key, conn)
            if kept is not conn:  # another thread connected first
                conn.close()
            conn = kept
        return conn

    def forget(self, name: str) -> None:
        with self._lock:
            self._default = None
            conn = self._cache.pop(name, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        with self._lock:
            conns, self._cache = list(self._cache.values()), {}
        for c in conns:
            c.close()

    def connect_record(self, record: ClusterRecord) -> Connection:
        """A connection for a cluster record that is not (yet) registered; the caller closes it."""
        return self._connection(record.name, _record_access(record), record)

    def _connection(self, name: str, access: Access, record: ClusterRecord | None = None) -> Connection:
        cfg = access.cfg
        _cap_retries(cfg)
        cfg.connection_pool_maxsize = self.settings.max_connections
        api = kclient.ApiClient(cfg)
        # At most max_connections requests at once per cluster; more wait for a free connection rather than
        # open one that is thrown away afterwards ("Connection pool is full, discarding connection").
        api.rest_client.pool_manager.connection_pool_kw["block"] = True
        install(api, access.tls)
        return Connection(
            name=name,
            api=api,
            identity=access.identity,
            timeout=self.settings.request_timeout_seconds,
            discovery_ttl=self.settings.discovery_ttl_seconds,
            record=record,
        )

    def _connect(self, name: str) -> Connection:
        record = self.store.get_cluster(name)
        if record is not None:
            return self._connection(name, _record_access(record), record)
        if name == IN_CLUSTER:
            return self._connection(name, self._in_cluster_access())
        return self._connection(name, self._context_access(name))

    def _in_cluster_access(self) -> Access:
        """The pod's service account: the token and CA in k8s.service_account_dir, the API server from
        KUBERNETES_SERVICE_HOST/PORT. The token file is read again every minute (projected tokens rotate)."""
        cfg = kclient.Configuration()
        folder = self.settings.service_account_dir
        try:
            InClusterConfigLoader(
                token_filename=str(folder / "token"), cert_filename=str(folder / "ca.crt")
            ).load_and_set(cfg)
        except (ConfigException, OSError) as e:
            raise NotFound(
                f"Not running in a pod, so cluster {IN_CLUSTER!r} is unavailable: {e}.",
                hint="Use a kubeconfig context or a registered cluster instead.",
            ) from e
        header = str(cfg.api_key.get("BearerToken") or cfg.api_key.get("authorization") or "")
        token = header.split(" ", 1)[-1].strip()  # "bearer <token>"
        return Access(cfg, _jwt_subject(token) or "the pod's service account")

    def _context_access(self, context: str) -> Access:
        contexts, _, trouble = self.kubeconfig_state()
        match = next((c for c in contexts if c.get("name") == context), None)
        if match is None:
            if trouble:
                raise InvalidInput(
                    f"Cluster {quote_input(context)} is not registered, and it cannot be looked up as a kubeconfig "
                    f"context: {trouble}",
                    hint=_KUBECONFIG_FIX,
                )
            known = sorted([c["name"] for c in contexts] + [r.name for r in self.store.list_clusters()])
            raise NotFound(
                f"Unknown cluster {quote_input(context)}: neither a registered cluster nor a kubeconfig context.",
                hint=f"Known clusters: {', '.join(known) or 'none'}. {OPERATOR_ADD}",
            )
        cfg = kclient.Configuration()
        files = os.pathsep.join(f for f in self.kubeconfig_files() if os.path.exists(f))
        try:  # the operator's own kubeconfig: exec plugins and file paths are theirs to use
            tls = load_into(cfg, files=files, context=context)
        except (ConfigException, OSError, ValueError, TypeError, ssl.SSLError) as e:
            raise InvalidInput(f"kubeconfig context {context!r} cannot be used: {_cut(str(e), 200)}.") from e
        user = (match.get("context") or {}).get("user") or "unknown user"
        return Access(cfg, f"kubeconfig user {user}", tls)


def verify_kubernetes(conn: Connection) -> dict[str, Any]:
    """The answer to GET /version when the server answers like a Kubernetes API server. Otherwise an error that
    says what was expected and the HTTP status only, never the body: the server may be anything."""
    status, payload, _ = conn.send("GET", "/version")
    expected = "a Kubernetes API server answers GET /version with HTTP 200 and JSON holding a gitVersion string"
    check_url = "Check the URL: it must be the API server itself (e.g. https://10.0.0.1:6443), not a proxy or web page."
    if status == 401:
        raise Forbidden(
            f"{conn.server} rejected the credentials (HTTP 401).",
            hint="Check the token or client certificate: it may be wrong, expired or for another cluster.",
        )
    if status != 200:
        raise InvalidInput(f"{conn.server} answered GET /version with HTTP {status}; {expected}.", hint=check_url)
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("gitVersion"), str):
        raise InvalidInput(
            f"{conn.server} answered GET /version with HTTP 200, but not like a Kubernetes API server; {expected}.",
            hint=check_url,
        )
    return doc


def _record_access(record: ClusterRecord) -> Access:
    cfg = kclient.Configuration()
    readd = (
        f"An operator removes and adds it again: cloudpilot clusters remove {record.name}; "
        f"cloudpilot clusters add {record.name} --kubeconfig PATH."
    )
    if record.kubeconfig:
        try:
            doc = yaml.safe_load(record.kubeconfig)
        except yaml.YAMLError as e:
            raise InvalidInput(
                f"The kubeconfig stored for cluster {record.name!r} is not valid YAML ({yaml_reason(e)}).", hint=readd
            ) from e
        if not record.trusted:  # checked before the client sees it: nothing runs, nothing is read
            inline_only(doc, record.context, cluster=record.name)
        try:
            tls = load_into(cfg, doc=doc, context=record.context)
        except (ConfigException, OSError, ValueError, TypeError, AttributeError, ssl.SSLError) as e:
            raise InvalidInput(
                f"The kubeconfig stored for cluster {record.name!r} cannot be used: {_cut(str(e), 200)}.", hint=readd
            ) from e
        return Access(cfg, f"kubeconfig of registered cluster {record.name}", tls)
    cfg.host = record.server
    if record.token:
        cfg.api_key = {"authorization": record.token}
        cfg.api_key_prefix = {"authorization": "Bearer"}
    if record.ca_cert:
        cfg.ca_cert_data = record.ca_cert  # in memory: no certificate file to leave behind
    cfg.verify_ssl = not record.insecure_skip_tls_verify
    subject = _jwt_subject(record.token or "")
    return Access(cfg, subject or f"token of registered cluster {record.name}")


def _cap_retries(cfg: kclient.Configuration) -> None:
    # urllib3's default of 3 silent retries turns an unreachable cluster into a long wait.
    cfg.retries = urllib3.Retry(total=1, connect=1, read=0, redirect=2, status=0, backoff_factor=0.2)
