"""Kubernetes Gateway API rules (gateway.networking.k8s.io/v1): HTTPRoutes that attach to no Gateway listener
or send traffic to no Service port, and Gateways whose class is missing or whose controller refuses them.

Read from the spec as the Gateway API defines it, so the rules work when no controller has written any
status: a parentRef defaults to group gateway.networking.k8s.io, kind Gateway and the route's namespace, and its
sectionName / port pick the listeners; a listener's `allowedRoutes.namespaces` (`from` Same by default, All, or
Selector, matched against the labels of the ROUTE'S NAMESPACE) and `allowedRoutes.kinds` (by default the kinds
of its protocol) decide whether a route may attach; a backendRef defaults to a core Service in the route's
namespace and needs a port. A backendRef into another namespace needs a ReferenceGrant, which the snapshot
does not hold: such references are not checked. A missing object is reported only where its kind was listed.
A controller's verdict is used as it writes it: a condition counts only for the object's current generation,
and a route the controller reports Accepted on a parent is not called unattachable there.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from engines.diagnosis.model import Finding, Fix, ObjectRef
from engines.diagnosis.snapshot import Obj, Snapshot, label_selector_matches, labels_of, meta, name_of, ns_of
from engines.diagnosis.traffic import edit_distance
from kube.times import parse_time

GROUP = "gateway.networking.k8s.io"
ROUTE_KINDS = {"HTTP": "HTTPRoute", "HTTPS": "HTTPRoute", "TLS": "TLSRoute", "TCP": "TCPRoute", "UDP": "UDPRoute"}
SETTLING = timedelta(minutes=10)  # a Pending condition younger than this is a controller still at work
QUIET_REASONS = {"AddressNotAssigned", "Pending"}  # Programmed=False that still serves inside the cluster


# -- shared reading --------------------------------------------------------------------------------------------
def _dicts(value: Any) -> list[Obj]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _spec(obj: Obj) -> Obj:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _port(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def current(obj: Obj, cond: Obj) -> bool:
    """Whether a status condition is about the object's current spec (not an older generation)."""
    generation, observed = meta(obj).get("generation"), cond.get("observedGeneration")
    return not (isinstance(generation, int) and isinstance(observed, int) and observed < generation)


def _status(obj: Obj) -> Obj:
    status = obj.get("status")
    return status if isinstance(status, dict) else {}


def _condition(obj: Obj, kind: str) -> Obj | None:
    return next((c for c in _dicts(_status(obj).get("conditions")) if c.get("type") == kind), None)


def _false(obj: Obj, kind: str) -> Obj | None:
    """The condition `kind` when it is False for the object's current generation."""
    cond = _condition(obj, kind)
    return cond if cond and cond.get("status") == "False" and current(obj, cond) else None


def misspelling(name: str, names: list[str]) -> str | None:
    """The one name `name` is a typo of (a few edits away, strictly closer than any other), else None."""
    ranked = sorted((edit_distance(name[:63], n[:63]), n) for n in names if n != name)
    ranked = [(d, n) for d, n in ranked if d <= max(1, len(name) // 4)]
    if not ranked or (len(ranked) > 1 and ranked[1][0] == ranked[0][0]):
        return None
    return ranked[0][1]


def parent_refs(route: Obj) -> Iterator[tuple[int, Obj, str, str]]:
    """(index, parentRef, namespace, name) of the parentRefs that name a Gateway."""
    refs = _spec(route).get("parentRefs")
    for i, ref in enumerate(refs if isinstance(refs, list) else []):
        if not isinstance(ref, dict) or not isinstance(ref.get("name"), str) or not ref["name"]:
            continue
        group, kind = ref.get("group"), ref.get("kind")
        if (GROUP if group is None else group) != GROUP or (kind or "Gateway") != "Gateway":
            continue
        ns = ref.get("namespace") or ns_of(route)
        if isinstance(ns, str):
            yield i, ref, ns, ref["name"]


def routes_of(snap: Snapshot, gw: Obj) -> list[Obj]:
    """The HTTPRoutes in the snapshot whose parentRefs name this Gateway."""
    key = (ns_of(gw), name_of(gw))
    return [r for r in snap.items("httproutes") if any((ns, n) == key for _, _, ns, n in parent_refs(r))]


def _same_parent(entry: Obj, route: Obj, ref: Obj) -> bool:
    theirs = entry.get("parentRef")
    if not isinstance(theirs, dict):
        return False
    keys = ("name", "sectionName", "port")
    mine_ns, their_ns = ref.get("namespace") or ns_of(route), theirs.get("namespace") or ns_of(route)
    return mine_ns == their_ns and all(theirs.get(k) == ref.get(k) for k in keys)


def route_status(route: Obj, ref: Obj) -> tuple[bool, str | None]:
    """What the gateway controller wrote about this parentRef for the route's current generation:
    (accepted, the first condition that is not True as 'Type=Status (Reason): message')."""
    accepted, problem = False, None
    for entry in _dicts(_status(route).get("parents")):
        if not _same_parent(entry, route, ref):
            continue
        for c in _dicts(entry.get("conditions")):
            if not current(route, c):
                continue
            if c.get("type") == "Accepted" and c.get("status") == "True":
                accepted = True
            elif c.get("status") != "True" and problem is None:
                problem = f"{c.get('type')}={c.get('status')} ({c.get('reason')}): {str(c.get('message') or '')[:200]}"
    return accepted, problem


def _unresolved(route: Obj) -> dict[str, Any]:
    """The controller's ResolvedRefs=False on any parent of the route, as evidence for a backend finding."""
    for entry in _dicts(_status(route).get("parents")):
        for c in _dicts(entry.get("conditions")):
            if c.get("type") == "ResolvedRefs" and c.get("status") == "False" and current(route, c):
                return {"route_status": f"ResolvedRefs=False ({c.get('reason')}): {str(c.get('message') or '')[:200]}"}
    return {}


def _refs_evidence(route: Obj, ref: Obj) -> dict[str, Any]:
    _, problem = route_status(route, ref)
    return {"route_status": problem} if problem else {}


# -- HTTPRoute parents ------------------------------------------------------------------------------------------
def route_parents(snap: Snapshot) -> Iterator[Finding]:
    """Each Gateway parentRef of an HTTPRoute: the Gateway exists, has the listener the ref selects, and one of
    those listeners accepts routes of this kind from the route's namespace."""
    for route in snap.items("httproutes"):
        if not snap.in_scope(ns_of(route)):
            continue
        for index, ref, gw_ns, gw_name in parent_refs(route):
            gw = snap.get("k8s_gateways", gw_ns, gw_name)
            if gw is None:
                if snap.covers("k8s_gateways", gw_ns):
                    yield _parent_missing(snap, route, index, ref, gw_ns, gw_name)
                continue
            accepted, _ = route_status(route, ref)
            if not accepted:
                yield from _listener_check(snap, route, index, ref, gw)


def _parent_missing(snap: Snapshot, route: Obj, index: int, ref: Obj, gw_ns: str, gw_name: str) -> Finding:
    names = sorted(name_of(g) for g in snap.in_ns("k8s_gateways", gw_ns))
    near = misspelling(gw_name, names)
    evidence: dict[str, Any] = {"parentRef": f"{gw_ns}/{gw_name}", "gateways_in_namespace": names[:10]}
    return Finding(
        code="ROUTE_PARENT_MISSING",
        severity="critical",
        object=snap.ref(route, "HTTPRoute"),
        summary=f"parentRef names Gateway {gw_ns}/{gw_name}, which does not exist: the route is not served",
        evidence=evidence | _refs_evidence(route, ref) | ({"closest": near} if near else {}),
        remediation=f"Set spec.parentRefs[{index}].name (and namespace) to an existing Gateway"
        + (f" ({', '.join(names[:5])} in {gw_ns})" if names else f"; namespace {gw_ns} has none")
        + f", or create Gateway {gw_ns}/{gw_name}.",
        fix=_route_fix(snap, route, ["spec", "parentRefs", index, "name"], near, f"the route attaches to {near}"),
    )


def _route_fix(snap: Snapshot, route: Obj, path: list[Any], value: Any, expected: str) -> Fix | None:
    """Set one field of the route to the one value it can have meant (None when there is none)."""
    if value is None:
        return None
    return Fix(
        action="set_fields",
        target=snap.ref(route, "HTTPRoute"),
        params={"fields": [[path, value]], "expected": expected},
    )


def _listener_check(snap: Snapshot, route: Obj, index: int, ref: Obj, gw: Obj) -> Iterator[Finding]:
    listeners = _spec(gw).get("listeners")
    if not isinstance(listeners, list):
        return
    section, port = ref.get("sectionName"), ref.get("port")
    chosen = [
        li
        for li in _dicts(listeners)
        if (section is None or li.get("name") == section) and (port is None or li.get("port") == port)
    ]
    where = f"{ns_of(gw)}/{name_of(gw)}"
    if not chosen:
        if section is None and port is None:
            return  # a Gateway without listeners is the Gateway's problem, reported through its status
        yield _no_listener(snap, route, index, ref, gw, section, port)
        return
    verdicts = [_admits(snap, li, route, ns_of(gw)) for li in chosen]
    if any(ok is not False for ok, _ in verdicts):
        return
    route_ns = ns_of(route)
    why = {str(li.get("name")): reason for li, (_, reason) in zip(chosen, verdicts, strict=True)}
    labels = _namespace_labels(snap, route_ns) if any(_from(li) == "Selector" for li in chosen) else None
    yield Finding(
        code="ROUTE_NOT_ALLOWED",
        severity="critical",
        object=snap.ref(route, "HTTPRoute"),
        summary=f"no listener of Gateway {where} it attaches to accepts it: "
        + "; ".join(f"{n} {r}" for n, r in list(why.items())[:3]),
        evidence={
            "reason": "NotAllowedByListeners",
            "gateway": where,
            "listeners": dict(list(why.items())[:5]),
        }
        | ({"namespace_labels": dict(list(labels.items())[:10])} if labels is not None else {})
        | _refs_evidence(route, ref),
        remediation=_not_allowed_remedy(route_ns, ns_of(gw), where, chosen),
        involves=[snap.ref(gw, "Gateway")],
    )


def _no_listener(snap: Snapshot, route: Obj, index: int, ref: Obj, gw: Obj, section: Any, port: Any) -> Finding:
    where = f"{ns_of(gw)}/{name_of(gw)}"
    listeners = _dicts(_spec(gw).get("listeners"))
    shown = [f"{li.get('name')}:{li.get('port')}/{li.get('protocol')}" for li in listeners][:10]
    wanted = " ".join(x for x in (f"named {section}" if section else "", f"on port {port}" if port else "") if x)
    names = [str(li.get("name")) for li in listeners if isinstance(li.get("name"), str)]
    near = misspelling(section, names) if isinstance(section, str) and port is None else None
    return Finding(
        code="ROUTE_PARENT_MISSING",
        severity="critical",
        object=snap.ref(route, "HTTPRoute"),
        summary=f"Gateway {where} has no listener {wanted}: the route attaches nowhere",
        evidence={"parentRef": where, "sectionName": section, "port": port, "listeners": shown}
        | _refs_evidence(route, ref),
        remediation=f"Set spec.parentRefs[{index}].sectionName/port to a listener of Gateway {where} "
        f"({', '.join(shown) or 'it has none'}), or add that listener to the Gateway.",
        involves=[snap.ref(gw, "Gateway")],
        fix=_route_fix(
            snap, route, ["spec", "parentRefs", index, "sectionName"], near, f"the route attaches to {near}"
        ),
    )


def _allowed(listener: Obj) -> Obj:
    allowed = listener.get("allowedRoutes")
    return allowed if isinstance(allowed, dict) else {}


def _from(listener: Obj) -> Any:
    """The listener's allowedRoutes.namespaces.from (Same when unset)."""
    namespaces = _allowed(listener).get("namespaces")
    return (namespaces.get("from") if isinstance(namespaces, dict) else None) or "Same"


def _admits(snap: Snapshot, listener: Obj, route: Obj, gw_ns: str) -> tuple[bool | None, str]:
    """Whether a listener accepts an HTTPRoute from the route's namespace: True, False, or None (cannot tell),
    with the listener's rule when it refuses."""
    kinds = _allowed(listener).get("kinds")
    if isinstance(kinds, list) and kinds:
        named = [k for k in _dicts(kinds) if isinstance(k.get("kind"), str)]
        if not named:
            return None, ""
        if not any(k["kind"] == "HTTPRoute" and (k.get("group") or GROUP) == GROUP for k in named):
            return False, "allows only kinds " + ", ".join(sorted({k["kind"] for k in named})[:5])
    elif not kinds:
        default = ROUTE_KINDS.get(str(listener.get("protocol")))
        if default not in (None, "HTTPRoute"):
            return False, f"is {listener.get('protocol')}: it takes {default}s, not HTTPRoutes"
    source, route_ns = _from(listener), ns_of(route)
    if source == "All":
        return True, ""
    if source == "Same":
        return (True, "") if route_ns == gw_ns else (False, f"allows only routes from namespace {gw_ns} (from: Same)")
    if source != "Selector":
        return None, ""
    selector = (_allowed(listener).get("namespaces") or {}).get("selector")
    labels = _namespace_labels(snap, route_ns)
    if not isinstance(selector, dict) or not _valid_selector(selector) or labels is None:
        return None, ""
    if label_selector_matches(labels, selector):
        return True, ""
    return False, f"allows only namespaces matching {_show_selector(selector)} (from: Selector)"


def _namespace_labels(snap: Snapshot, namespace: str) -> dict[str, str] | None:
    """A namespace's labels, with the name label the API server sets on every namespace; None if not listed."""
    ns_obj = snap.get("namespaces", "", namespace)
    labels = labels_of(ns_obj) if ns_obj is not None else None
    if not isinstance(labels, dict):
        return None
    return {"kubernetes.io/metadata.name": namespace, **labels}


def _valid_selector(selector: Obj) -> bool:
    labels, exprs = selector.get("matchLabels") or {}, selector.get("matchExpressions") or []
    return (
        isinstance(labels, dict)
        and isinstance(exprs, list)
        and all(isinstance(e, dict) and isinstance(e.get("values") or [], list) for e in exprs)
    )


def _show_selector(selector: Obj) -> str:
    parts = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    for e in selector.get("matchExpressions") or []:
        values = ",".join(str(v) for v in e.get("values") or [])
        parts.append(f"{e.get('key')} {e.get('operator')}" + (f" ({values})" if values else ""))
    return ", ".join(parts) or "{}"


def _not_allowed_remedy(route_ns: str, gw_ns: str, where: str, listeners: list[Obj]) -> str:
    sources = {_from(li) for li in listeners}
    if "Selector" in sources:
        return (
            f"Label Namespace {route_ns} so the listener's allowedRoutes.namespaces.selector on Gateway {where} "
            "matches it (the selector reads the namespace's labels, not the route's), or have the Gateway's "
            "owner widen the selector."
        )
    if "Same" in sources and route_ns != gw_ns:
        return (
            f"Have the owner of Gateway {where} set the listener's allowedRoutes.namespaces.from to Selector "
            f"(matching namespace {route_ns}) or All, or move the route into namespace {gw_ns}."
        )
    return (
        f"Attach the route to an HTTP or HTTPS listener of Gateway {where} (spec.parentRefs[].sectionName), or "
        "add kind HTTPRoute to that listener's allowedRoutes.kinds."
    )


# -- HTTPRoute backends -----------------------------------------------------------------------------------------
def route_backends(snap: Snapshot) -> Iterator[Finding]:
    """Each Service backendRef of an HTTPRoute in its own namespace: the Service exists and has the port."""
    for route in snap.items("httproutes"):
        ns = ns_of(route)
        if not snap.in_scope(ns) or not snap.covers("services", ns):
            continue
        seen: set[tuple[str, Any]] = set()
        rules = _spec(route).get("rules")
        for i, rule in enumerate(rules if isinstance(rules, list) else []):
            backends = rule.get("backendRefs") if isinstance(rule, dict) else None
            for j, ref in enumerate(backends if isinstance(backends, list) else []):
                if not isinstance(ref, dict) or not isinstance(ref.get("name"), str) or not ref["name"]:
                    continue
                if (ref.get("group") or "") != "" or (ref.get("kind") or "Service") != "Service":
                    continue
                if (ref.get("namespace") or ns) != ns or ref.get("weight") == 0:
                    continue  # cross-namespace needs a ReferenceGrant; weight 0 receives no traffic
                key = (ref["name"], ref.get("port"))
                if key in seen:
                    continue
                seen.add(key)
                svc = snap.get("services", ns, ref["name"])
                if svc is None:
                    yield _backend_missing(snap, route, i, j, ref)
                else:
                    yield from _backend_port(snap, route, i, j, ref, svc)


def _backend_missing(snap: Snapshot, route: Obj, i: int, j: int, ref: Obj) -> Finding:
    ns, name = ns_of(route), ref["name"]
    near = misspelling(name, [name_of(s) for s in snap.in_ns("services", ns)])
    return Finding(
        code="ROUTE_BACKEND_MISSING",
        severity="critical",
        object=snap.ref(route, "HTTPRoute"),
        summary=f"backendRef Service {name} (rule {i}) does not exist: requests routed to it get HTTP 500",
        evidence={"rule": i, "service": name, "port": ref.get("port")}
        | ({"closest": near} if near else {})
        | _unresolved(route),
        remediation=f"Create Service {name} in {ns}, or set spec.rules[{i}].backendRefs[{j}].name to an existing "
        "Service" + (f" (closest: {near})" if near else "") + ".",
        fix=_route_fix(snap, route, ["spec", "rules", i, "backendRefs", j, "name"], near, f"the route sends to {near}"),
    )


def _backend_port(snap: Snapshot, route: Obj, i: int, j: int, ref: Obj, svc: Obj) -> Iterator[Finding]:
    spec = _spec(svc)
    ports = [p for p in _dicts(spec.get("ports")) if _port(p.get("port")) is not None]
    port = ref.get("port")
    if spec.get("type") == "ExternalName" or not ports or (port is not None and _port(port) is None):
        return
    numbers = sorted({p["port"] for p in ports})
    if port in numbers:
        return
    name = ref["name"]
    targets = [p["port"] for p in ports if p.get("targetPort") == port]
    summary = (
        f"backendRef to Service {name} (rule {i}) has no port, which a Service backend requires"
        if port is None
        else f"backendRef port {port} (rule {i}) is not a port of Service {name} ({', '.join(map(str, numbers))})"
    )
    if targets:
        summary += f"; {port} is its targetPort, the route must name the Service port {targets[0]}"
    evidence = {"rule": i, "service": name, "port": port, "service_ports": numbers} | _unresolved(route)
    only = numbers[0] if len(numbers) == 1 else None
    fix = _route_fix(
        snap, route, ["spec", "rules", i, "backendRefs", j, "port"], only, f"it sends to port {only} of Service {name}"
    )
    yield Finding(
        code="ROUTE_BACKEND_PORT_MISMATCH",
        severity="critical",
        object=snap.ref(route, "HTTPRoute"),
        summary=summary,
        evidence=evidence,
        remediation=f"Set spec.rules[{i}].backendRefs[{j}].port to a port of Service {name} "
        f"({', '.join(map(str, numbers))}): the Service port, not the container's targetPort.",
        fix=fix,
        involves=[snap.ref(svc, "Service")],
    )


# -- Gateways ---------------------------------------------------------------------------------------------------
def gateways(snap: Snapshot) -> Iterator[Finding]:
    """A Gateway's GatewayClass exists, and its controller has accepted and programmed it (or its class)."""
    for gw in snap.items("k8s_gateways"):
        if not snap.in_scope(ns_of(gw)):
            continue
        cls_name = _spec(gw).get("gatewayClassName")
        if not isinstance(cls_name, str) or not cls_name:
            continue
        routes = [snap.ref(r, "HTTPRoute") for r in routes_of(snap, gw)][:10]
        cls = snap.get("gatewayclasses", "", cls_name)
        if cls is None:
            if snap.covers("gatewayclasses"):
                yield _class_missing(snap, gw, cls_name, routes)
            continue
        refused = _refusal(snap, gw)
        if refused is not None:
            yield _not_accepted(snap, gw, refused, routes)
            continue
        accepted = _condition(gw, "Accepted") or {}
        cls_refused = _false(cls, "Accepted")
        if cls_refused is not None and not (accepted.get("status") == "True" and current(gw, accepted)):
            yield _not_accepted(snap, gw, cls_refused, routes, cls)


def _refusal(snap: Snapshot, gw: Obj) -> Obj | None:
    """The Gateway's Accepted or Programmed condition when False for its current spec and not just settling."""
    for kind in ("Accepted", "Programmed"):
        cond = _false(gw, kind)
        if cond is None:
            continue
        stamp = cond.get("lastTransitionTime")
        since = parse_time(stamp) if isinstance(stamp, str) else None
        if cond.get("reason") == "Pending" and since is not None and snap.now - since < SETTLING:
            continue
        return cond
    return None


def _class_missing(snap: Snapshot, gw: Obj, cls_name: str, routes: list[ObjectRef]) -> Finding:
    classes = sorted(name_of(c) for c in snap.items("gatewayclasses"))
    return Finding(
        code="GATEWAY_CLASS_MISSING",
        severity="critical",
        object=snap.ref(gw, "Gateway"),
        summary=f"GatewayClass {cls_name} does not exist: no controller serves this Gateway"
        + (f" or its {len(routes)} route(s)" if routes else ""),
        evidence={"gatewayClassName": cls_name, "available_classes": classes[:10]},
        remediation="Set spec.gatewayClassName to an installed GatewayClass"
        + (f" ({', '.join(classes[:5])})" if classes else " (none is installed: install a Gateway API controller)")
        + f", or create GatewayClass {cls_name} for the controller meant to serve it.",
        involves=routes,
    )


def _not_accepted(snap: Snapshot, gw: Obj, cond: Obj, routes: list[ObjectRef], cls: Obj | None = None) -> Finding:
    kind, reason = str(cond.get("type")), cond.get("reason")
    message = str(cond.get("message") or "")[:300]
    quiet = cls is None and kind == "Programmed" and reason in QUIET_REASONS
    what = "not accepted by its controller" if kind == "Accepted" else "not programmed by its controller"
    evidence: dict[str, Any] = {"condition": kind, "reason": reason, "message": message}
    listeners = _listener_problems(gw)
    if listeners:
        evidence["listeners"] = listeners
    if cls is not None:
        evidence["gatewayClass"] = name_of(cls)
        remedy = (
            f"GatewayClass {name_of(cls)} is refused by its controller ({reason}): correct the class's "
            "parametersRef or controllerName as its message says; every Gateway of the class waits on it."
        )
    elif kind == "Accepted":
        remedy = (
            "Correct the Gateway spec the message names (listeners, addresses, infrastructure or parametersRef); "
            "the controller ignores it until then."
        )
    else:
        remedy = (
            "Read the message: AddressNotAssigned means the load balancer gave no address (check the Gateway's "
            "Service and the cloud load balancer); Invalid or NoResources mean the data plane was not configured."
        )
    subject = f"its GatewayClass {name_of(cls)} is " if cls is not None else ""
    return Finding(
        code="GATEWAY_NOT_ACCEPTED",
        severity="warning" if quiet else "critical",
        object=snap.ref(gw, "Gateway"),
        summary=f"{subject}{what}: {kind}=False ({reason})",
        evidence=evidence,
        remediation=remedy,
        involves=routes,
        cause=snap.ref(cls, "GatewayClass") if cls is not None else None,
    )


def _listener_problems(gw: Obj) -> dict[str, str]:
    out: dict[str, str] = {}
    for li in _dicts(_status(gw).get("listeners"))[:10]:
        bad = [
            c
            for c in _dicts(li.get("conditions"))
            if current(gw, c) and c.get("status") == ("True" if c.get("type") == "Conflicted" else "False")
        ]
        if bad:
            out[str(li.get("name"))] = ", ".join(f"{c.get('type')}={c.get('status')} ({c.get('reason')})" for c in bad)
    return out


RULES = [route_parents, route_backends, gateways]
