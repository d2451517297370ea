"""The one place that talks to the `kubernetes` client library.

A `Connection` is one cluster reached with one identity. It sends requests through the official client's
configuration, authentication and connection pool, but reads responses as raw JSON (decoded with orjson):
the client's model deserialisation costs ~12x the transfer on large lists, and tools need only a few fields.

`Clusters` turns a tool's `cluster` argument (a registry name, a kubeconfig context, or nothing) into a
`Connection`, reusing clients. API failures become the errors of `errors`, worded for a model.
"""

from __future__ import annotations

import base64
import logging
import os
import tempfile
import threading
import time
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

from errors import (
    CloudPilotError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Unreachable,
)
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
_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


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
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.resource}"
        if name:
            base += f"/{quote(name, safe='')}"
        if sub:
            base += f"/{sub}"
        return base


@dataclass
class Connection:
    """One cluster, one identity. Thread-safe: tools call it from worker threads concurrently."""

    name: str
    api: kclient.ApiClient
    identity: str
    timeout: float = 20.0
    discovery_ttl: float = 300.0
    _discovery: tuple[float, list[ResourceInfo]] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def server(self) -> str:
        return str(self.api.configuration.host)

    # -- raw HTTP -------------------------------------------------------------------------------------
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
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        params = [(k, _query_value(v)) for k, v in (query or {}).items() if v is not None]
        m, url, hdrs, data, post = self.api.param_serialize(
            method, path, query_params=params, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        try:
            resp = self.api.call_api(
                m,
                url,
                header_params=hdrs,
                body=data,
                post_params=post,
                _request_timeout=(min(5.0, timeout or self.timeout), timeout or self.timeout),
            )
            payload = resp.read()
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise Unreachable(
                f"Cluster {self.name!r} at {self.server} did not answer: {_root_cause(e)}.",
                hint="Check that the API server is running and reachable from CloudPilot, and the "
                "cluster's URL and certificates (clusters_list shows them).",
                delay=5.0,
            ) from e
        if not 200 <= resp.status < 300:
            raise self._error(resp.status, payload, method, path)
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
        resources = self.resources()
        found = _match(resources, wanted)
        if not found:
            found = _match(self.resources(refresh=True), wanted)
        if not found:
            raise NotFound(
                f"Kind {wanted!r} is not served by cluster {self.name!r}.",
                hint="Use api_resources to see served kinds; a CRD may not be installed.",
            )
        if len(found) > 1:  # e.g. core "events" and events.k8s.io: the core group wins, then other built-ins
            for preferred in ([r for r in found if r.group == ""], [r for r in found if r.group in _BUILTIN_GROUPS]):
                if len(preferred) == 1:
                    return preferred[0]
            names = ", ".join(sorted(r.full_name for r in found))
            raise InvalidInput(
                f"Kind {wanted!r} is ambiguous in cluster {self.name!r}: {names}.",
                hint="Pass one of these full names as the kind.",
            )
        return found[0]

    # -- errors ---------------------------------------------------------------------------------------
    def _error(self, status: int, payload: bytes, method: str, path: str) -> CloudPilotError:
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
                hint=f"Grant the identity RBAC permission to {verb} this resource, or use a cluster/context "
                "with more rights.",
            )
        if status == 401:
            return Forbidden(
                f"Cluster {self.name!r} rejected the credentials of {self.identity!r}: {message}.",
                hint="The token or certificate is invalid or expired; update the cluster entry.",
            )
        if status == 409:
            return Conflict(
                f"Conflict on {what} {where}: {message}.",
                hint="The object changed since it was read; read it again and re-plan.",
                delay=1.0,
            )
        if status in (400, 405, 406, 415, 422):
            return InvalidInput(f"The API server refused to {verb} {what} {where}: {message}.")
        return Unreachable(
            f"Cluster {self.name!r} failed to {verb} {what} (HTTP {status}): {message}.",
            hint="This is usually temporary; try again shortly.",
            delay=2.0,
        )


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
        text += f" {parts[1]!r}".replace("'", '"')
    if len(parts) >= 3:
        text += f" ({'/'.join(parts[2:])})"
    if ns:
        text += f' in namespace "{ns}"'
    return text


def _is_collection(path: str) -> bool:
    parts = [p for p in path.split("/") if p]
    parts = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if len(parts) >= 2 and parts[0] == "namespaces" and len(parts) != 2:
        parts = parts[2:]
    return len(parts) == 1


def _status_message(payload: bytes) -> str:
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload[:300].decode("utf-8", "replace").strip()
    return str(doc.get("message") or doc.get("reason") or "") if isinstance(doc, dict) else ""


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
def in_pod() -> bool:
    return (
        bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        and Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists()
    )


def _jwt_subject(token: str) -> str | None:
    try:
        payload = token.split(".")[1]
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims.get("sub")) if claims.get("sub") else None
    except Exception:  # not a JWT: a static token
        return None


class Clusters:
    """Resolves a tool's `cluster` argument to a `Connection` and keeps one client per cluster."""

    def __init__(self, settings: KubeSettings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._cache: dict[str, Connection] = {}
        self._default: str | None = None
        self._lock = threading.Lock()

    def kubeconfig_path(self) -> str | None:
        if self.settings.kubeconfig:
            return str(self.settings.kubeconfig)
        return None  # the client reads $KUBECONFIG, then ~/.kube/config

    def contexts(self) -> tuple[list[dict[str, Any]], str | None]:
        """kubeconfig contexts and the current one ([] when there is no kubeconfig)."""
        try:
            contexts, active = kconfig.list_kube_config_contexts(self.kubeconfig_path())
        except (ConfigException, OSError, TypeError):
            return [], None
        return contexts or [], (active or {}).get("name")

    def default_name(self) -> str:
        if self._default is None:
            self._default = self._find_default()
        return self._default

    def cached(self, name: str | None) -> Connection | None:
        """The connection for `name` if it is already open (no I/O)."""
        key = name or self._default
        return self._cache.get(key) if key else None

    def _find_default(self) -> str:
        if self.settings.default_cluster:
            return self.settings.default_cluster
        if self.settings.in_cluster == "always" or (self.settings.in_cluster == "auto" and in_pod()):
            return IN_CLUSTER
        if self.settings.context:
            return self.settings.context
        _, active = self.contexts()
        if active:
            return active
        raise NotFound(
            "No cluster is configured: no kubeconfig current context and not running in a pod.",
            hint="Set KUBECONFIG, pass --context, or add a cluster with clusters_add.",
        )

    def get(self, name: str | None = None) -> Connection:
        key = name or self.default_name()
        with self._lock:
            conn = self._cache.get(key)
        if conn is None:
            conn = self._connect(key)
            with self._lock:
                conn = self._cache.setdefault(key, conn)
        return conn

    def forget(self, name: str) -> None:
        with self._lock:
            self._default = None
            conn = self._cache.pop(name, None)
        if conn is not None:
            conn.api.close()

    def close(self) -> None:
        with self._lock:
            conns, self._cache = list(self._cache.values()), {}
        for c in conns:
            c.api.close()

    def kubeconfig_servers(self) -> dict[str, str]:
        """kubeconfig cluster name → server URL (no credentials)."""
        path = (
            self.kubeconfig_path()
            or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
            or str(Path.home() / ".kube" / "config")
        )
        try:
            doc = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError):
            return {}
        return {str(c.get("name")): str((c.get("cluster") or {}).get("server")) for c in doc.get("clusters") or []}

    def connect_record(self, record: ClusterRecord) -> Connection:
        """A connection for a cluster record that is not (yet) registered; the caller closes it."""
        cfg, identity = _config_from_record(record)
        return self._connection(record.name, cfg, identity)

    def _connection(self, name: str, cfg: kclient.Configuration, identity: str) -> Connection:
        _cap_retries(cfg)
        return Connection(
            name=name,
            api=kclient.ApiClient(cfg),
            identity=identity,
            timeout=self.settings.request_timeout_seconds,
            discovery_ttl=self.settings.discovery_ttl_seconds,
        )

    def _connect(self, name: str) -> Connection:
        record = self.store.get_cluster(name)
        if record is not None:
            cfg, identity = _config_from_record(record)
        elif name == IN_CLUSTER:
            cfg = kclient.Configuration()
            try:
                kconfig.load_incluster_config(client_configuration=cfg)
            except ConfigException as e:
                raise NotFound(
                    f"Not running in a pod, so cluster {IN_CLUSTER!r} is unavailable: {e}.",
                    hint="Use a kubeconfig context or a registered cluster instead.",
                ) from e
            token = str(cfg.api_key.get("authorization", "")).removeprefix("Bearer ").strip()
            identity = _jwt_subject(token) or "the pod's service account"
        else:
            cfg, identity = self._config_from_context(name)
        return self._connection(name, cfg, identity)

    def _config_from_context(self, context: str) -> tuple[kclient.Configuration, str]:
        contexts, _ = self.contexts()
        match = next((c for c in contexts if c.get("name") == context), None)
        if match is None:
            known = sorted([c["name"] for c in contexts] + [r.name for r in self.store.list_clusters()])
            raise NotFound(
                f"Unknown cluster {context!r}: neither a registered cluster nor a kubeconfig context.",
                hint=f"Known clusters: {', '.join(known) or 'none'}. Add one with clusters_add.",
            )
        cfg = kclient.Configuration()
        try:
            kconfig.load_kube_config(
                config_file=self.kubeconfig_path(), context=context, client_configuration=cfg, persist_config=False
            )
        except (ConfigException, OSError) as e:
            raise InvalidInput(f"kubeconfig context {context!r} cannot be used: {e}.") from e
        user = (match.get("context") or {}).get("user") or "unknown user"
        return cfg, f"kubeconfig user {user}"


def _config_from_record(record: ClusterRecord) -> tuple[kclient.Configuration, str]:
    cfg = kclient.Configuration()
    if record.kubeconfig:
        try:
            doc = yaml.safe_load(record.kubeconfig)
            kconfig.load_kube_config_from_dict(
                doc,
                context=record.context,
                client_configuration=cfg,
                persist_config=False,
                temp_file_path=_private_tmpdir(),
            )
        except (ConfigException, yaml.YAMLError, TypeError, ValueError) as e:
            raise InvalidInput(
                f"The kubeconfig stored for cluster {record.name!r} cannot be used: {e}.",
                hint="Remove the cluster and add it again with a valid kubeconfig.",
            ) from e
        return cfg, f"kubeconfig of registered cluster {record.name}"
    cfg.host = record.server
    if record.token:
        cfg.api_key = {"authorization": record.token}
        cfg.api_key_prefix = {"authorization": "Bearer"}
    if record.ca_cert:
        cfg.ssl_ca_cert = _write_private(record.ca_cert, suffix=".crt")
    cfg.verify_ssl = not record.insecure_skip_tls_verify
    subject = _jwt_subject(record.token or "")
    return cfg, subject or f"token of registered cluster {record.name}"


def _cap_retries(cfg: kclient.Configuration) -> None:
    # urllib3's default of 3 silent retries turns an unreachable cluster into a long wait.
    cfg.retries = urllib3.Retry(total=1, connect=1, read=0, redirect=2, status=0, backoff_factor=0.2)


def _private_tmpdir() -> str:
    path = Path(tempfile.gettempdir()) / f"cloudpilot-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return str(path)


def _write_private(content: str, suffix: str) -> str:
    fd, path = tempfile.mkstemp(suffix=suffix, dir=_private_tmpdir())
    with os.fdopen(fd, "w") as f:
        f.write(content)
    return path
