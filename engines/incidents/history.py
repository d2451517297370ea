"""What changed before it broke. The watcher feeds every version of workloads, ConfigMaps, Secrets and Istio config
to a `History`, which keeps only fingerprints (keyed hashes, references, labels, hosts) of each object and a short,
bounded list of the edits it saw. When an incident opens on a root object, `preceding` ranks the recent edits by how
close they are in time and in the object graph (the root itself, what its pods use or what routes to it, its
namespace, the rest of the cluster). Pure and clock-free: time comes in as Unix seconds."""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from engines.incidents.roots import key

EditKind = Literal["rollout", "scale", "settings", "config", "secret", "istio"]

WORKLOADS = frozenset({"Deployment", "StatefulSet", "DaemonSet"})
ISTIO_GROUPS = frozenset({"networking.istio.io", "security.istio.io", "telemetry.istio.io", "extensions.istio.io"})
ROUTING_KINDS = frozenset({"VirtualService", "DestinationRule", "ServiceEntry"})
# Policies that select workloads by labels; with no selector they apply to the whole namespace (the mesh, in
# MESH_NAMESPACE).
POLICY_KINDS = frozenset(
    {
        "Sidecar",
        "EnvoyFilter",
        "PeerAuthentication",
        "AuthorizationPolicy",
        "RequestAuthentication",
        "Telemetry",
        "WasmPlugin",
    }
)
ISTIO_KINDS = ROUTING_KINDS | POLICY_KINDS | {"Gateway", "WorkloadEntry", "WorkloadGroup"}
MESH_NAMESPACE = "istio-system"
APP_LABELS = ("app", "app.kubernetes.io/name")

# Closeness in the object graph outranks closeness in time: within the half-hour window, the object's own rollout
# (or a ConfigMap it mounts) stays above an unrelated edit in its namespace made seconds before the first event.
WEIGHTS = (1.0, 0.6, 0.2, 0.05)  # by graph distance 0..3
CLOSENESS = 900.0  # an edit this many seconds before scores half of one just before
SKEW = 60.0  # an edit reported up to this long after the incident's start still counts
MAX_LIMIT = 20
MAX_SUMMARY = 300
MAX_OBJECTS = 100_000  # per History: past this, the least recently seen object is forgotten
MAX_KEYS = 256  # data keys, containers, pod spec fields... looked at per object
MAX_REFS = 64
MAX_LABELS = 32
MAX_HOSTS = 64

_NAME = re.compile(r"^[^\s/]{1,253}$")
_NAMESPACE = re.compile(r"^[^\s/]{1,63}$")
_KIND = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,62}$")
_EVENTS = frozenset({"ADDED", "MODIFIED", "DELETED"})
_CONTAINER_PARTS = {
    "env": ("env", "envFrom"),
    "resources": ("resources",),
    "command": ("command", "args", "workingDir"),
    "probes": ("livenessProbe", "readinessProbe", "startupProbe"),
    "ports": ("ports",),
    "mounts": ("volumeMounts", "volumeDevices"),
}
_POD_PARTS = {
    "serviceAccountName": "service account",
    "serviceAccount": "service account",
    "nodeSelector": "scheduling",
    "affinity": "scheduling",
    "tolerations": "scheduling",
    "topologySpreadConstraints": "scheduling",
}

Pairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Edit:
    """A change worth remembering.

    Attributes:
        object: The object's key ("Deployment shop/web", as `roots.key` makes it).
        kind: rollout (pod template), scale (replicas only), settings (other workload spec), config (ConfigMap),
            secret, istio.
        at: When it was seen (Unix seconds).
        summary: One line for people, at most MAX_SUMMARY characters; never a Secret's keys or values, never a
            ConfigMap's values.
        revision: The Deployment's deployment.kubernetes.io/revision annotation, when present.
    """

    cluster: str
    object: str
    kind: EditKind
    at: float
    summary: str
    revision: str = ""


@dataclass(frozen=True)
class Ranked:
    """An edit that preceded an incident: `distance` 0 the root itself, 1 linked to it, 2 its namespace, 3 elsewhere
    in the cluster; `seconds_before` is negative for an edit seen just after the incident began (clock skew)."""

    edit: Edit
    distance: int
    seconds_before: float
    score: float


class _State(NamedTuple):
    """What is kept of one object: fingerprints only, never the object."""

    content: str  # hash of what counts: the pod template, the data, the Istio spec
    parts: Pairs = ()  # (part, hash): template parts; ConfigMap keys; Secret (key hash, value hash)
    images: Pairs = ()  # (container, image)
    replicas: int | None = None
    settings: Pairs = ()  # (spec field, hash) of a workload's spec besides template and replicas
    refs: frozenset[str] = frozenset()  # ConfigMaps, Secrets and the ServiceAccount the pod template uses
    labels: Pairs = ()  # the pod template's labels
    hosts: frozenset[str] = frozenset()  # Services an Istio object routes to or configures
    selector: Pairs | None = None  # an Istio policy's workload selector; () = the whole namespace
    anywhere: bool = False  # the selector matches workloads in any namespace (a Gateway's)
    generation: int | None = None
    revision: str = ""


class _Entry(NamedTuple):
    edit: Edit
    hosts: frozenset[str]
    selector: Pairs | None
    anywhere: bool


class _Root(NamedTuple):
    """The root object as seen at query time, with what it links to."""

    key: str
    kind: str
    namespace: str | None
    name: str
    refs: frozenset[str]
    services: frozenset[str]
    labels: tuple[dict[str, str], ...]
    linkable: bool


class History:
    """Recent edits per cluster, and just enough of each object's last version to tell the next one is an edit.

    Args:
        keep_seconds: `forget(now)` drops edits older than this.
        max_edits: Edits kept per cluster (the oldest go first).
    """

    def __init__(self, *, keep_seconds: float = 3600.0, max_edits: int = 5000) -> None:
        self.keep_seconds = keep_seconds
        self.max_edits = max(1, int(max_edits))
        self.edits: dict[str, deque[_Entry]] = {}
        self.objects: dict[tuple[str, str], _State] = {}  # (cluster, key) → last state
        # Hashes are keyed per History, so a short digest of a weak secret cannot be looked up offline.
        self._salt = secrets.token_bytes(16)

    def observe(self, cluster: str, kind: str, obj: dict[str, Any], at: float, event: str = "MODIFIED") -> Edit | None:
        """Record an object version (kind = the object's Kind; event = ADDED, MODIFIED or DELETED).

        Returns the Edit when this version is a change worth remembering, else None: the first sight of an object
        only records it, and so does a version that differs in status or metadata only.
        """
        when = _finite(at)
        if not isinstance(cluster, str) or not isinstance(kind, str) or not isinstance(obj, dict) or when is None:
            return None
        family = _family(kind, obj)
        meta = _dict(obj.get("metadata"))
        name, namespace = meta.get("name"), meta.get("namespace")
        if family is None or not isinstance(event, str) or event not in _EVENTS:
            return None
        if not isinstance(name, str) or not _NAME.match(name):
            return None
        ns = namespace if isinstance(namespace, str) and _NAMESPACE.match(namespace) else None
        where = (cluster, key(kind, ns, name))
        old = self.objects.pop(where, None)
        if event == "DELETED":
            return None if family == "workload" else self._deleted(where, kind, family, obj, old, when)
        new = self._state(family, kind, ns, obj)
        self._remember(where, new)
        edit = None if old is None else self._compare(where, family, old, new, when)
        if old is not None and edit is not None:
            self._record(edit, old.hosts | new.hosts, new.selector, new.anywhere)
        return edit

    def preceding(self, cluster: str, root: str, at: float, *, window: float = 1800.0, limit: int = 5) -> list[Ranked]:
        """The edits in `cluster` from `window` seconds before `at` to SKEW seconds after, best first: the score
        is time closeness (1 / (1 + seconds_before / CLOSENESS)) times the weight of the graph distance."""
        when, span, count = _finite(at), _finite(window), _count(limit)
        if not isinstance(cluster, str) or not isinstance(root, str) or when is None or span is None:
            return []
        entries = self.edits.get(cluster)
        if not entries or count == 0:
            return []
        view = self._root(cluster, root)
        ranked = []
        for entry in reversed(entries):  # newest first; edits arrive in time order (the watcher's clock)
            edit = entry.edit
            if edit.at < when - span:
                break
            if edit.at > when + SKEW:
                continue
            distance = _distance(view, entry)
            before = when - edit.at
            score = WEIGHTS[distance] / (1.0 + max(before, 0.0) / CLOSENESS)
            ranked.append(Ranked(edit, distance, before, round(score, 6)))
        ranked.sort(key=lambda r: (-r.score, r.distance, -r.edit.at))
        return ranked[:count]

    def forget(self, now: float) -> None:
        """Drop edits older than keep_seconds (objects' states stay until they are deleted)."""
        when = _finite(now)
        if when is None:
            return
        cutoff = when - self.keep_seconds
        for cluster, entries in list(self.edits.items()):
            while entries and entries[0].edit.at < cutoff:  # oldest first: edits arrive in time order
                entries.popleft()
            if not entries:
                del self.edits[cluster]

    # Object states

    def _state(self, family: str, kind: str, ns: str | None, obj: dict[str, Any]) -> _State:
        if family == "workload":
            return self._workload(ns, obj)
        if family == "istio":
            return self._istio(kind, ns, obj)
        return self._data(family == "secret", obj)

    def _workload(self, ns: str | None, obj: dict[str, Any]) -> _State:
        spec = _dict(obj.get("spec"))
        template = _dict(spec.get("template"))
        meta, pod = _dict(template.get("metadata")), _dict(template.get("spec"))
        annotations = _dict(_dict(obj.get("metadata")).get("annotations"))
        revision = annotations.get("deployment.kubernetes.io/revision")
        return _State(
            content=self._digest(template),
            parts=self._template_parts(meta, pod),
            images=_images(pod),
            replicas=_int(spec.get("replicas")),
            settings=self._fields(spec, skip=("template", "replicas")),
            refs=_refs(ns, pod),
            labels=_labels(meta.get("labels")),
            revision=_clip(revision, 32) if isinstance(revision, str) else "",
        )

    def _template_parts(self, meta: dict[Any, Any], pod: dict[Any, Any]) -> Pairs:
        parts: dict[str, str] = {}
        for field, label in (("labels", "template labels"), ("annotations", "template annotations")):
            if meta.get(field):
                parts[label] = self._digest(meta.get(field))
        by_label: dict[str, list[Any]] = {}
        for field in _keys(pod):
            if field not in ("containers", "initContainers"):
                by_label.setdefault(_POD_PARTS.get(field, _clip(field, 40)), []).append(pod[field])
        parts.update((label, self._digest(values)) for label, values in by_label.items())
        for name, container in _containers(pod):
            for part, fields in _CONTAINER_PARTS.items():
                values = [container.get(f) for f in fields]
                if any(v is not None for v in values):
                    parts[f"{part} of {name}"] = self._digest(values)
            known = {"name", "image", *(f for fields in _CONTAINER_PARTS.values() for f in fields)}
            rest = {k: v for k, v in container.items() if k not in known}
            if rest:
                parts[f"settings of {name}"] = self._digest(sorted(rest.items(), key=lambda kv: str(kv[0])))
        return tuple(sorted(parts.items()))

    def _data(self, secret: bool, obj: dict[str, Any]) -> _State:
        fields = ("data", "binaryData", "stringData") if secret else ("data", "binaryData")
        content = {f: obj.get(f) for f in fields if obj.get(f) is not None}
        merged: dict[str, Any] = {}
        for f in fields:
            merged.update(_str_items(obj.get(f)))
        names = sorted(merged)[:MAX_KEYS]
        if secret:  # neither names nor values: a hash of each, enough to count what changed
            parts = tuple(sorted((self._digest(n), self._digest(merged[n])) for n in names))
        else:
            parts = tuple((_clip(n, 100), self._digest(merged[n])) for n in names)
        return _State(content=self._digest(content), parts=parts)

    def _istio(self, kind: str, ns: str | None, obj: dict[str, Any]) -> _State:
        spec = _dict(obj.get("spec"))
        selector: Pairs | None = None
        if kind in ("Sidecar", "EnvoyFilter"):
            selector = _labels(_dict(spec.get("workloadSelector")).get("labels"))
        elif kind in POLICY_KINDS:
            selector = _labels(_dict(spec.get("selector")).get("matchLabels"))
        elif kind == "Gateway":
            selector = _labels(spec.get("selector")) or None  # a Gateway with no selector configures no pods
        return _State(
            content=self._digest(obj.get("spec")),
            hosts=_services(kind, ns, spec),
            selector=selector,
            anywhere=kind == "Gateway",
            generation=_int(_dict(obj.get("metadata")).get("generation")),
        )

    def _fields(self, spec: dict[Any, Any], skip: tuple[str, ...]) -> Pairs:
        return tuple((_clip(f, 40), self._digest(spec[f])) for f in _keys(spec) if f not in skip)

    def _digest(self, value: object) -> str:
        try:
            text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
        except (TypeError, ValueError, RecursionError):  # mixed key types, cycles, absurd nesting
            text = "\x00unreadable"
        return hashlib.blake2b(text.encode(), digest_size=6, key=self._salt).hexdigest()

    def _remember(self, where: tuple[str, str], state: _State) -> None:
        if len(self.objects) >= MAX_OBJECTS:
            del self.objects[next(iter(self.objects))]  # the least recently seen (observe re-inserts)
        self.objects[where] = state

    # Edits

    def _compare(self, where: tuple[str, str], family: str, old: _State, new: _State, at: float) -> Edit | None:
        cluster, obj = where
        if family == "workload":
            return _workload_edit(cluster, obj, old, new, at)
        if old.content == new.content:  # status, labels, annotations
            return None
        if family == "istio":
            known = old.generation is not None and new.generation is not None and old.generation != new.generation
            bump = f" (generation {old.generation} → {new.generation})" if known else ""
            return Edit(cluster, obj, "istio", at, _clip(f"{obj} edited{bump}", MAX_SUMMARY))
        changed = _changed(old.parts, new.parts)
        content = f"content {old.content} → {new.content}"
        if family == "secret":
            count = f"{len(changed)} key{'s' if len(changed) != 1 else ''}; " if changed else ""
            return Edit(cluster, obj, "secret", at, _clip(f"{obj} changed ({count}{content})", MAX_SUMMARY))
        names = f"keys {_listing(changed, 5)}; " if changed else ""
        return Edit(cluster, obj, "config", at, _clip(f"{obj} changed ({names}{content})", MAX_SUMMARY))

    def _deleted(
        self, where: tuple[str, str], kind: str, family: str, obj: dict[str, Any], old: _State | None, at: float
    ) -> Edit:
        """A ConfigMap, Secret or Istio object gone: an edit, linked by what it last said (or what was known)."""
        cluster, name = where
        state = self._istio(kind, _parse(name)[1], obj) if family == "istio" else _State("")
        sort: EditKind = "istio" if family == "istio" else "secret" if family == "secret" else "config"
        edit = Edit(cluster, name, sort, at, _clip(f"{name} deleted", MAX_SUMMARY))
        hosts = state.hosts | (old.hosts if old else frozenset())
        selector = state.selector if state.selector is not None else old.selector if old else None
        self._record(edit, hosts, selector, state.anywhere)
        return edit

    def _record(self, edit: Edit, hosts: frozenset[str], selector: Pairs | None, anywhere: bool) -> None:
        entries = self.edits.setdefault(edit.cluster, deque(maxlen=self.max_edits))
        entries.append(_Entry(edit, hosts, selector, anywhere))

    # The graph

    def _root(self, cluster: str, root: str) -> _Root:
        kind, ns, name = _parse(root)
        if kind in WORKLOADS:
            keys = [root]
        elif kind == "Service":
            keys = [key(k, ns, name) for k in sorted(WORKLOADS)]
        else:
            keys = []
        states = [s for k in keys if (s := self.objects.get((cluster, k))) is not None]
        names = {name} | {v for s in states for k, v in s.labels if k in APP_LABELS}
        return _Root(
            key=root,
            kind=kind,
            namespace=ns,
            name=name,
            refs=frozenset(r for s in states for r in s.refs),
            services=frozenset(key("Service", ns, n) for n in names) if ns else frozenset(),
            labels=tuple(dict(s.labels) for s in states),
            linkable=bool(ns) and bool(name) and (kind in WORKLOADS or kind == "Service"),
        )


def _distance(root: _Root, entry: _Entry) -> int:
    """0: the root itself, or the workload behind a Service root. 1: a ConfigMap/Secret its pod template uses, an
    Istio object routing to or configuring its Service (by name or app label), an Istio object of the same name in
    its namespace, a policy selecting its pods (or all pods of its namespace). 2: its namespace, or a mesh-wide
    policy. 3: anywhere else in the cluster. Pods and other roots: the same object, else namespace only."""
    obj = entry.edit.object
    if obj == root.key:
        return 0
    kind, ns, name = _parse(obj)
    if root.linkable:
        same_place = ns == root.namespace
        if root.kind == "Service" and kind in WORKLOADS and same_place and name == root.name:
            return 0
        if obj in root.refs or entry.hosts & root.services:
            return 1
        if kind in ISTIO_KINDS and same_place and name == root.name:
            return 1
        if entry.selector is not None and (same_place or entry.anywhere) and _selects(entry.selector, root.labels):
            return 1
    if root.namespace and ns == root.namespace:
        return 2
    if root.namespace and kind in POLICY_KINDS and ns == MESH_NAMESPACE and entry.selector == ():
        return 2
    return 3


def _selects(selector: Pairs, labels: tuple[dict[str, str], ...]) -> bool:
    if not selector:
        return True  # the whole namespace
    return any(all(have.get(k) == v for k, v in selector) for have in labels)


def _workload_edit(cluster: str, obj: str, old: _State, new: _State, at: float) -> Edit | None:
    phrases = []
    if old.content != new.content:
        phrases.extend(_template_changes(old, new))
    if old.replicas != new.replicas:
        phrases.append(f"scaled {old.replicas} → {new.replicas}")
    settings = _changed(old.settings, new.settings)
    if settings:
        phrases.append(f"{_listing(settings, 4)} changed")
    if not phrases:
        return None
    kind: EditKind = (
        "rollout" if old.content != new.content else "scale" if old.replicas != new.replicas else "settings"
    )
    head = f"rollout of {obj}: " if kind == "rollout" else f"{obj} "
    return Edit(cluster, obj, kind, at, _clip(head + "; ".join(phrases), MAX_SUMMARY), new.revision)


def _template_changes(old: _State, new: _State) -> list[str]:
    before, after = dict(old.images), dict(new.images)
    phrases = [
        f"container {c} image {_clip(before[c], 90)} → {_clip(after[c], 90)}"
        for c in after
        if c in before and before[c] != after[c]
    ]
    added = [c for c in after if c not in before]
    removed = [c for c in before if c not in after]
    phrases += [f"container {c} added" for c in added[:3]] + [f"container {c} removed" for c in removed[:3]]
    gone = set(added) | set(removed)
    parts = [p for p in _changed(old.parts, new.parts) if _container_of(p) not in gone]
    if parts:
        phrases.append(f"changed {_listing(parts, 6)}")
    return phrases or ["pod template changed"]


def _container_of(part: str) -> str:
    _, of, name = part.rpartition(" of ")
    return name if of else ""


# Reading objects: every reader takes anything and never raises.


def _family(kind: str, obj: dict[str, Any]) -> str | None:
    if not _KIND.match(kind):
        return None
    if kind in WORKLOADS:
        return "workload"
    if kind in ("ConfigMap", "Secret"):
        return "config" if kind == "ConfigMap" else "secret"
    api = obj.get("apiVersion")
    group = api.partition("/")[0] if isinstance(api, str) and "/" in api else ""
    if kind in ISTIO_KINDS and (group in ISTIO_GROUPS or not isinstance(api, str)):
        return "istio"
    return None


def _containers(pod: dict[Any, Any]) -> list[tuple[str, dict[Any, Any]]]:
    found: list[tuple[str, dict[Any, Any]]] = []
    for field in ("initContainers", "containers"):
        for i, c in enumerate(_list(pod.get(field))[:MAX_KEYS]):
            if isinstance(c, dict):
                name = c.get("name")
                found.append((_clip(name, 63) if isinstance(name, str) and name else f"#{i}", c))
    return found


def _images(pod: dict[Any, Any]) -> Pairs:
    images = ((name, c.get("image")) for name, c in _containers(pod))
    return tuple((name, _clip(image, 200) if isinstance(image, str) else "?") for name, image in images)


def _refs(ns: str | None, pod: dict[Any, Any]) -> frozenset[str]:
    """The ConfigMaps, Secrets and ServiceAccount a pod template uses (all in its own namespace)."""
    found: list[tuple[str, Any]] = []
    for volume in _dicts(pod.get("volumes")):
        found += [("ConfigMap", _dict(volume.get("configMap")).get("name"))]
        found += [("Secret", _dict(volume.get("secret")).get("secretName"))]
        for source in _dicts(_dict(volume.get("projected")).get("sources")):
            found += [("ConfigMap", _dict(source.get("configMap")).get("name"))]
            found += [("Secret", _dict(source.get("secret")).get("name"))]
    for _, container in _containers(pod):
        for env in _dicts(container.get("env")):
            given = _dict(env.get("valueFrom"))
            found += [("ConfigMap", _dict(given.get("configMapKeyRef")).get("name"))]
            found += [("Secret", _dict(given.get("secretKeyRef")).get("name"))]
        for env in _dicts(container.get("envFrom")):
            found += [("ConfigMap", _dict(env.get("configMapRef")).get("name"))]
            found += [("Secret", _dict(env.get("secretRef")).get("name"))]
    found += [("Secret", s.get("name")) for s in _dicts(pod.get("imagePullSecrets"))]
    found += [("ServiceAccount", pod.get("serviceAccountName") or pod.get("serviceAccount"))]
    refs = {key(kind, ns, name) for kind, name in found if isinstance(name, str) and _NAME.match(name)}
    return frozenset(sorted(refs)[:MAX_REFS])


def _services(kind: str, ns: str | None, spec: dict[Any, Any]) -> frozenset[str]:
    """The Services an Istio routing object names: hosts, route destinations, mirrors."""
    hosts: list[Any] = []
    if kind in ("VirtualService", "ServiceEntry"):
        hosts += _list(spec.get("hosts"))
    if kind == "DestinationRule":
        hosts.append(spec.get("host"))
    if kind == "VirtualService":
        for protocol in ("http", "tcp", "tls"):
            for rule in _dicts(spec.get(protocol))[:MAX_KEYS]:
                hosts += [_dict(r.get("destination")).get("host") for r in _dicts(rule.get("route"))[:MAX_KEYS]]
                hosts.append(_dict(rule.get("mirror")).get("host"))
    services = {s for h in hosts[: MAX_HOSTS * 4] if (s := _service(h, ns)) is not None}
    return frozenset(sorted(services)[:MAX_HOSTS])


def _service(host: Any, ns: str | None) -> str | None:
    """ "reviews", "reviews.shop", "reviews.shop.svc.cluster.local" → "Service shop/reviews"; other hosts → None."""
    if not isinstance(host, str) or len(host) > 253 or "*" in host:
        return None
    parts = host.strip().lower().rstrip(".").split(".")
    if len(parts) == 1:
        name, space = parts[0], ns
    elif len(parts) == 2 or parts[2] == "svc":
        name, space = parts[0], parts[1]
    else:
        return None
    if not space or not _NAME.match(name) or not _NAMESPACE.match(space):
        return None
    return key("Service", space, name)


def _parse(obj: str) -> tuple[str, str | None, str]:
    kind, _, rest = obj.partition(" ")
    ns, _, name = rest.rpartition("/")
    return kind, ns or None, name


def _labels(value: Any) -> Pairs:
    pairs = [(k, v) for k, v in _str_items(value) if isinstance(v, str) and len(k) <= 317 and len(v) <= 63]
    return tuple(sorted(pairs)[:MAX_LABELS])


def _changed(old: Pairs, new: Pairs) -> list[str]:
    before, after = dict(old), dict(new)
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def _listing(names: list[str], most: int) -> str:
    shown = ", ".join(names[:most])
    return f"{shown} (+{len(names) - most} more)" if len(names) > most else shown


def _clip(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


def _dict(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dicts(value: Any) -> list[dict[Any, Any]]:
    return [v for v in _list(value) if isinstance(v, dict)]


def _keys(value: dict[Any, Any]) -> list[str]:
    return sorted(k for k in value if isinstance(k, str))[:MAX_KEYS]


def _str_items(value: Any) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in _dict(value).items() if isinstance(k, str)]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _count(limit: Any) -> int:
    """`limit` within 0..MAX_LIMIT; anything that is not a number means the default, 5."""
    number = _finite(limit)
    return 5 if number is None else max(0, min(int(number), MAX_LIMIT))
