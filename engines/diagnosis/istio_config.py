"""More `istioctl analyze` checks, natively over the snapshot, and one mesh security check.

IST0145 ConflictingGateways, IST0162 GatewayPortNotDefinedOnService, IST0123 NamespaceMultipleInjectionLabels,
IST0132 VirtualServiceHostNotFoundInGateway, IST0116 DeploymentAssociatedToMultipleServices, IST0111
MultipleSidecarsWithoutWorkloadSelectors, IST0130 VirtualServiceUnreachableRule, and AUTHZ_DENIES_SERVICE
(AuthorizationPolicies that deny every request to a Service's meshed pods).

The conditions follow istio/istio's analyzers as read (behaviour only) from
pkg/config/analysis/analyzers/{gateway/conflictinggateway.go, virtualservice/gateways.go,
sidecar/defaultselector.go} at 0a617ca985f9d14a1471a674cad42175c37959be, injection/injection.go at
018148e15764281b84085189a1fef81155c4f93e, deployment/services.go at 03404d0fbc82b9f3d5a19e516ab4c1a9ed87909d,
the gateway/gateway.go version that reports GatewayPortNotDefinedOnService (it compares targetPorts), and
analyzeUnreachableHTTPRules in pkg/config/validation. Where a rule departs from istioctl to avoid a false alarm,
its docstring says so.
"""

from __future__ import annotations

import ipaddress
import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from engines.diagnosis.istio import (
    ROOT_NAMESPACE,
    SYSTEM_NAMESPACES,
    Mesh,
    _finding,
    _gateway_pods,
    has_proxy,
    injection,
    service_of,
)
from engines.diagnosis.model import Finding
from engines.diagnosis.snapshot import (
    Obj,
    Snapshot,
    labels_of,
    meta,
    name_of,
    ns_of,
    pod_is_terminal,
    selector_matches,
)

WAYPOINT = ("gateway.istio.io/managed", "istio.io-mesh-controller")
# Istio protocol families of a Service port (name prefix or appProtocol): ports of one family are handled alike.
FAMILIES = {
    "http": "HTTP",
    "http2": "HTTP",
    "grpc": "HTTP",
    "grpc-web": "HTTP",
    "h2c": "HTTP",
    "kubernetes.io/h2c": "HTTP",
    "kubernetes.io/ws": "HTTP",
    "https": "TLS",
    "tls": "TLS",
    "kubernetes.io/wss": "TLS",
    "tcp": "TCP",
    "mongo": "TCP",
    "mysql": "TCP",
    "redis": "TCP",
    "udp": "UDP",
}


# -- defensive readers (custom resources may hold any shape) -----------------------------------------------
def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _strings(value: Any) -> list[str]:
    return [v for v in _list(value) if isinstance(v, str) and v]


def _label_map(value: Any) -> dict[str, str]:
    """A map selector with string keys and values; anything else is dropped."""
    return {k: v for k, v in _dict(value).items() if isinstance(k, str) and isinstance(v, str)}


def _port_number(server: Any) -> int | None:
    number = _dict(_dict(server).get("port")).get("number")
    return number if isinstance(number, int) and not isinstance(number, bool) else None


def _age_key(obj: Obj) -> tuple[str, str, str]:
    return (str(meta(obj).get("creationTimestamp") or ""), ns_of(obj), name_of(obj))


def _qualified(obj: Obj) -> str:
    return f"{ns_of(obj)}/{name_of(obj)}"


def _selector_text(selector: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items()))


def hosts_overlap(a: str, b: str) -> bool:
    """Istio's host matching: exact names match exactly; a wildcard (`*.example.com`, `*`) covers the names
    (and narrower wildcards) under it."""
    a, b = a.lower(), b.lower()
    if a.startswith("*") and b.startswith("*"):
        return a[1:].endswith(b[1:]) or b[1:].endswith(a[1:])
    if a.startswith("*"):
        return b.endswith(a[1:])
    if b.startswith("*"):
        return a.endswith(b[1:])
    return a == b


def _bare_host(host: str) -> str:
    """A Gateway server host without its `namespace/` part."""
    return host.rpartition("/")[2].lower()


# -- IST0145 -------------------------------------------------------------------------------------------------
def conflicting_gateways(snap: Snapshot) -> Iterator[Finding]:
    """Two Gateways that select the same gateway workload and declare a server on the same port for the same
    host. istioctl also reports a wildcard host overlapping a narrower one (`*.example.com` and
    `shop.example.com`); that is the usual layout of a platform-wide gateway next to per-team ones, and Envoy
    picks the most specific name, so only identical hosts are reported here."""
    claims: dict[tuple[str, int], dict[str, dict[tuple[str, str], Obj]]] = defaultdict(lambda: defaultdict(dict))
    protocols: dict[tuple[str, str, int], str] = {}
    selectors: dict[str, dict[str, str]] = {}
    for gw in snap.items("istio_gateways"):
        spec = _dict(gw.get("spec"))
        selector = _label_map(spec.get("selector"))
        if not selector:
            continue
        sel = _selector_text(selector)
        selectors[sel] = selector
        for server in _list(spec.get("servers")):
            number = _port_number(server)
            if number is None:
                continue
            protocol = str(_dict(_dict(server).get("port")).get("protocol") or "?")
            tls_mode = _dict(_dict(server).get("tls")).get("mode")
            protocols[(ns_of(gw), name_of(gw), number)] = f"{protocol} {tls_mode}" if tls_mode else protocol
            for host in _strings(_dict(server).get("hosts")):
                claims[(sel, number)][_bare_host(host)][(ns_of(gw), name_of(gw))] = gw
    for (sel, number), by_host in claims.items():
        shared: dict[tuple[tuple[str, str], ...], list[str]] = defaultdict(list)
        for host, owners in by_host.items():
            if len(owners) > 1:
                shared[tuple(sorted(owners))].append(host)
        for keys, hosts in shared.items():
            members = sorted((by_host[hosts[0]][k] for k in keys), key=_age_key)
            in_scope = [g for g in members if snap.in_scope(ns_of(g))]
            if not in_scope:
                continue
            subject = in_scope[-1]
            names = [_qualified(g) for g in members]
            yield _finding(
                snap,
                subject,
                "Gateway",
                "IST0145",
                "Error",
                f"Conflict with gateways {', '.join(n for n in names if n != _qualified(subject))} "
                f"(workload selector {sel}, port {number}, hosts {', '.join(sorted(hosts))})",
                {
                    "selector": selectors[sel],
                    "port": number,
                    "hosts": sorted(hosts),
                    "gateways": names,
                    "protocols": {_qualified(g): protocols.get((ns_of(g), name_of(g), number)) for g in members},
                },
                "One gateway workload serves one configuration per port and host: move one of the servers to "
                "another host or port, or merge them into one Gateway; until then one of them is ignored or "
                "their TLS settings and routes mix unpredictably.",
                involves=[snap.ref(g, "Gateway") for g in members if g is not subject],
            )


# -- IST0162 -------------------------------------------------------------------------------------------------
def gateway_service_ports(snap: Snapshot) -> Iterator[Finding]:
    """A Gateway server port that no Service of the gateway's pods exposes (TCP port or numeric targetPort).

    istioctl compares only targetPorts, which flags the classic `port: 80, targetPort: 8080` gateway Service
    with a server on port 80 (istio/istio#51257); both numbers are accepted here. A gateway whose pods no
    Service selects at all (reached through hostNetwork or not exposed yet) is not checked: there is no
    Service to compare with."""
    for gw in snap.items("istio_gateways"):
        if not snap.in_scope(ns_of(gw)):
            continue
        spec = _dict(gw.get("spec"))
        selector = _label_map(spec.get("selector"))
        pods = _gateway_pods(snap, selector) if selector else None
        if not pods:
            continue
        spaces = {ns_of(p) for p in pods}
        if not all(snap.covers("services", s) for s in spaces):
            continue
        services: dict[str, Obj] = {}
        exposed: set[int] = set()
        for pod in pods:
            for svc in snap.in_ns("services", ns_of(pod)):
                svc_selector = _label_map(_dict(svc.get("spec")).get("selector"))
                if not svc_selector or not selector_matches(labels_of(pod), svc_selector):
                    continue
                services[_qualified(svc)] = svc
                for port in _list(_dict(svc.get("spec")).get("ports")):
                    port = _dict(port)
                    if (port.get("protocol") or "TCP") != "TCP":
                        continue
                    for value in (port.get("port"), port.get("targetPort")):
                        if isinstance(value, int) and not isinstance(value, bool):
                            exposed.add(value)
        if not services:
            continue
        missing = sorted(
            {n for s in _list(spec.get("servers")) if (n := _port_number(s)) is not None and n not in exposed}
        )
        if not missing:
            continue
        names = sorted(services)
        ports_text = ", ".join(str(p) for p in missing)
        yield _finding(
            snap,
            gw,
            "Gateway",
            "IST0162",
            "Warning",
            f"The gateway listens on port {ports_text}, which Service {', '.join(names)} of its workload "
            f"(selector {_selector_text(selector)}) does not expose",
            {"ports": missing, "services": names, "service_ports": sorted(exposed), "selector": selector},
            f"Add port {ports_text} to Service {names[0]} (port and targetPort), or move the Gateway server to a "
            "port the Service exposes; clients that reach the gateway through its Service cannot use this server.",
            involves=[snap.ref(s, "Service") for s in services.values()],
        )


# -- IST0123 -------------------------------------------------------------------------------------------------
def injection_labels(snap: Snapshot) -> Iterator[Finding]:
    """A namespace labelled both `istio-injection` and `istio.io/rev`: the first one wins, so the revision the
    second names is silently not used."""
    for ns_obj in snap.items("namespaces"):
        ns, labels = name_of(ns_obj), _label_map(meta(ns_obj).get("labels"))
        if not snap.in_scope(ns) or ns in SYSTEM_NAMESPACES or "istio.io/rev" not in labels:
            continue
        legacy, rev = labels.get("istio-injection"), labels["istio.io/rev"]
        if not legacy:
            continue
        effect = "pods get the default revision's proxy" if legacy == "enabled" else f"no proxy is injected ({legacy})"
        yield _finding(
            snap,
            ns_obj,
            "Namespace",
            "IST0123",
            "Warning",
            f"namespace has both istio-injection={legacy} and istio.io/rev={rev}: istio-injection takes "
            f"precedence, {effect} and revision {rev} is ignored",
            {"istio-injection": legacy, "istio.io/rev": rev},
            f"Remove one label: istio-injection to use revision {rev} (kubectl label namespace {ns} "
            "istio-injection-), or istio.io/rev to keep the default revision; then restart the namespace's "
            "workloads so their pods get the intended proxy.",
        )


# -- IST0132 -------------------------------------------------------------------------------------------------
def _served_hosts(gw: Obj, vs_namespace: str) -> list[str]:
    """The hosts a Gateway lets a VirtualService of `vs_namespace` bind: `ns/host` only for that namespace,
    `./host` only for the Gateway's own, `*/host` and bare hosts for every namespace."""
    out = []
    for server in _list(_dict(gw.get("spec")).get("servers")):
        for host in _strings(_dict(server).get("hosts")):
            space, slash, name = host.partition("/")
            if not slash:
                out.append(host)
            elif space == "*" or space == vs_namespace or (space == "." and ns_of(gw) == vs_namespace):
                out.append(name)
    return out


def vs_hosts_in_gateway(snap: Snapshot) -> Iterator[Finding]:
    """A VirtualService bound to a Gateway (spec.gateways) none of whose hosts that Gateway serves: the
    gateway never routes by it. A Gateway that does not exist is IST0101's, one not listed is skipped."""
    for vs in snap.items("virtualservices"):
        ns, spec = ns_of(vs), _dict(vs.get("spec"))
        hosts = _strings(spec.get("hosts"))
        if not snap.in_scope(ns) or not hosts:
            continue
        for ref in _strings(spec.get("gateways")):
            if ref == "mesh":
                continue
            gw_ns, _, gw_name = ref.rpartition("/")
            gw = snap.get("istio_gateways", gw_ns or ns, gw_name)
            if gw is None:
                continue
            served = _served_hosts(gw, ns)
            if any(hosts_overlap(g, h) for g in served for h in hosts):
                continue
            yield _finding(
                snap,
                vs,
                "VirtualService",
                "IST0132",
                "Warning",
                f"host {', '.join(hosts)} of this VirtualService is not served by Gateway {_qualified(gw)} "
                f"(it serves {', '.join(sorted(set(served))[:5]) or 'no host for this namespace'})",
                {"gateway": _qualified(gw), "hosts": hosts, "gateway_hosts": sorted(set(served))[:10]},
                f"Add the host to a server of Gateway {_qualified(gw)} (or bind the VirtualService to a Gateway that "
                "serves it), or correct spec.hosts; until then the gateway ignores these routes.",
                involves=[snap.ref(gw, "Gateway")],
            )


# -- IST0116 -------------------------------------------------------------------------------------------------
def _port_protocol(port: dict[str, Any]) -> str:
    """The protocol Istio reads for a Service port: L4 protocol, then appProtocol or the name's prefix."""
    l4 = str(port.get("protocol") or "TCP")
    app, name = port.get("appProtocol"), port.get("name")
    raw = app if isinstance(app, str) and app else (name.split("-", 1)[0] if isinstance(name, str) else "")
    family = FAMILIES.get(raw.lower())
    if l4 != "TCP":
        return l4
    return family or "auto"


def _cached(cache: dict[str, bool], key: str, compute: Callable[[str], bool]) -> bool:
    if key not in cache:
        cache[key] = compute(key)
    return cache[key]


def _meshed_deployments(snap: Snapshot) -> Iterator[tuple[Obj, dict[str, str]]]:
    """In-scope Deployments whose pods get a sidecar (not waypoints, not opted out), with their pod labels."""
    mesh = Mesh(snap)
    meshed: dict[str, bool] = {}
    for dep in snap.items("deployments"):
        ns = ns_of(dep)
        template_meta = _dict(_dict(_dict(dep.get("spec")).get("template")).get("metadata"))
        labels = _label_map(template_meta.get("labels"))
        opt = labels.get("sidecar.istio.io/inject") or _dict(template_meta.get("annotations")).get(
            "sidecar.istio.io/inject"
        )
        if (
            not snap.in_scope(ns)
            or not labels
            or labels_of(dep).get(WAYPOINT[0]) == WAYPOINT[1]
            or opt == "false"
            or not (opt == "true" or _cached(meshed, ns, mesh.in_mesh))
        ):
            continue
        yield dep, labels


def deployment_protocols(snap: Snapshot) -> Iterator[Finding]:
    """A meshed Deployment whose pods several Services select with one port number but different protocols.
    istioctl compares the Kubernetes L4 protocol only; Istio's own protocol (appProtocol or the port name's
    prefix: http-web against tcp-web) is compared too, by family (http, http2 and grpc alike; ports with no
    declared protocol are left to detection and not compared), as istio.io's IST0116 page describes."""
    for dep, labels in _meshed_deployments(snap):
        ns = ns_of(dep)
        by_port: dict[int, dict[str, str]] = defaultdict(dict)
        selecting: dict[str, Obj] = {}
        for svc in snap.in_ns("services", ns):
            svc_selector = _label_map(_dict(svc.get("spec")).get("selector"))
            if not svc_selector or not selector_matches(labels, svc_selector):
                continue
            for port in _list(_dict(svc.get("spec")).get("ports")):
                port = _dict(port)
                number = port.get("port")
                if isinstance(number, int) and not isinstance(number, bool):
                    by_port[number].setdefault(name_of(svc), _port_protocol(port))
                    selecting[name_of(svc)] = svc
        for number, per_service in sorted(by_port.items()):
            if len({p for p in per_service.values() if p != "auto"}) < 2:
                continue
            shown = {s: p for s, p in sorted(per_service.items()) if p != "auto"}
            yield _finding(
                snap,
                dep,
                "Deployment",
                "IST0116",
                "Warning",
                f"Services {', '.join(shown)} select this deployment's pods with port {number} but different "
                f"protocols ({', '.join(f'{s}: {p}' for s, p in shown.items())})",
                {"port": number, "protocols": shown},
                f"Give port {number} one protocol in every Service that selects these pods (same port name "
                "prefix or appProtocol, same L4 protocol), or use different port numbers; Istio configures one "
                "protocol per port of a workload, so one Service's traffic is handled with the wrong one.",
                involves=[snap.ref(selecting[s], "Service") for s in shown],
            )


# -- IST0111 -------------------------------------------------------------------------------------------------
def sidecars_without_selector(snap: Snapshot) -> Iterator[Finding]:
    """More than one Sidecar without workloadSelector in a namespace: only one of them applies to its
    workloads, and which one is not defined by the API."""
    groups: dict[str, list[Obj]] = defaultdict(list)
    for sc in snap.items("sidecars"):
        if _dict(sc.get("spec")).get("workloadSelector") is None:
            groups[ns_of(sc)].append(sc)
    for ns, same in groups.items():
        if len(same) < 2 or not snap.in_scope(ns):
            continue
        ordered = sorted(same, key=_age_key)
        names = [name_of(s) for s in ordered]
        yield _finding(
            snap,
            ordered[-1],
            "Sidecar",
            "IST0111",
            "Error",
            f"{len(ordered)} Sidecars without workloadSelector in namespace {ns}: {', '.join(names)}; only one "
            "applies to the namespace's workloads",
            {"sidecars": names},
            "Merge them into one namespace-wide Sidecar, or give all but one a workloadSelector; the proxies' "
            "egress and ingress settings are otherwise not the ones you expect.",
            involves=[snap.ref(s, "Sidecar") for s in ordered[:-1]],
        )


# -- IST0130 -------------------------------------------------------------------------------------------------
def _trimmed(value: Any) -> Any:
    """A match without empty or default fields (proto JSON omits them), for comparing two matches."""
    if isinstance(value, dict):
        out = {k: _trimmed(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, False, "", 0, [], {})}
    if isinstance(value, list):
        return [_trimmed(v) for v in value]
    return value


def _match_key(match: Any, proto: str) -> str:
    if proto == "http" and isinstance(match, dict):
        match = {k: v for k, v in match.items() if k != "name"}
    return json.dumps(_trimmed(match), sort_keys=True, default=str)


def _dead_routes(proto: str, routes: list[Any]) -> dict[str, str]:
    """Routes of one list (http, tcp or tls) that can never be chosen → why."""
    dead: dict[str, str] = {}
    seen: set[str] = set()
    catch_all = False
    for i, route in enumerate(routes):
        if not isinstance(route, dict):
            continue
        name = route.get("name") if proto == "http" and isinstance(route.get("name"), str) else ""
        label = f"{proto}[{i}]" + (f" {name}" if name else "")
        matches = _list(route.get("match"))
        if not matches:
            if catch_all:
                dead[label] = "only the last rule can have no matches"
            catch_all = True
            continue
        if catch_all:
            dead[label] = "route without matches defined before"
            continue
        keys = [_match_key(m, proto) for m in matches]
        if all(k in seen for k in keys):
            dead[label] = "all matches used by prior rules"
        seen.update(keys)
    return dead


def unreachable_routes(snap: Snapshot) -> Iterator[Finding]:
    """Routes of a VirtualService that no request reaches: Istio takes the first route that matches, so a
    route after one without match conditions, or whose matches all repeat earlier ones, is dead."""
    for vs in snap.items("virtualservices"):
        if not snap.in_scope(ns_of(vs)):
            continue
        spec = _dict(vs.get("spec"))
        dead: dict[str, str] = {}
        for proto in ("http", "tcp", "tls"):
            dead.update(_dead_routes(proto, _list(spec.get(proto))))
        if not dead:
            continue
        first = next(iter(dead.items()))
        rules = ", ".join(dead)
        yield _finding(
            snap,
            vs,
            "VirtualService",
            "IST0130",
            "Warning",
            f"VirtualService rule{'s' if len(dead) > 1 else ''} {rules} not used ({first[1]})",
            {"unreachable": dead},
            "Order the routes from most to least specific with the one without match conditions last, and "
            "remove or change routes whose matches repeat an earlier route's.",
        )


# -- AUTHZ_DENIES_SERVICE ----------------------------------------------------------------------------------
def _enforced(policy: Obj) -> bool:
    spec = _dict(policy.get("spec"))
    dry_run = _dict(meta(policy).get("annotations")).get("istio.io/dry-run")
    return (
        str(dry_run).lower() != "true"
        and not spec.get("targetRef")
        and not spec.get("targetRefs")
        and str(spec.get("action") or "ALLOW") in ("ALLOW", "DENY")
    )


def _applies(policy: Obj, pod: Obj) -> bool:
    """A policy in the pod's namespace, or in the root namespace (mesh-wide), whose selector matches it."""
    if ns_of(policy) not in (ns_of(pod), ROOT_NAMESPACE):
        return False
    selector = _dict(_dict(policy.get("spec")).get("selector")).get("matchLabels")
    return selector_matches(labels_of(pod), _label_map(selector))


def _matches_everything(rule: Any) -> bool:
    return isinstance(rule, dict) and not any(rule.get(k) for k in ("from", "to", "when"))


def _blockers(policies: list[Obj], pod: Obj) -> list[Obj]:
    """The policies that deny every request to the pod: a DENY with a rule without conditions, or else the
    ALLOW policies when there are some and none has a rule (ALLOW without rules allows nothing)."""
    applying = [p for p in policies if _applies(p, pod)]
    actions = {id(p): str(_dict(p.get("spec")).get("action") or "ALLOW") for p in applying}
    deny = [
        p
        for p in applying
        if actions[id(p)] == "DENY" and any(_matches_everything(r) for r in _list(_dict(p.get("spec")).get("rules")))
    ]
    if deny:
        return deny
    allow = [p for p in applying if actions[id(p)] == "ALLOW"]
    if allow and not any(_dict(p.get("spec")).get("rules") for p in allow):
        return allow
    return []


def _meshed(snap: Snapshot, pod: Obj) -> bool:
    if has_proxy(pod):
        return True
    ambient = injection(snap.get("namespaces", "", ns_of(pod))) == "ambient"
    return ambient and labels_of(pod).get("istio.io/dataplane-mode") != "none"


def authorization_deny_all(snap: Snapshot) -> Iterator[Finding]:
    """Services whose meshed pods the AuthorizationPolicies deny every request (403 `RBAC: access denied`).
    The finding is about the policy to change; CUSTOM and AUDIT policies, dry-run ones and those attached to
    a gateway or waypoint (targetRef) are not counted. Policies of the root namespace count where they were
    listed; when they were not, an ALLOW policy there could still admit traffic (evidence says so)."""
    policies = [p for p in snap.items("authorizationpolicies") if _enforced(p)]
    if not policies:
        return
    blocked: dict[tuple[tuple[str, str], ...], list[tuple[Obj, list[Obj]]]] = defaultdict(list)
    for svc in snap.items("services"):
        ns = ns_of(svc)
        selector = _label_map(_dict(svc.get("spec")).get("selector"))
        if not selector or not snap.in_scope(ns) or not snap.covers("pods", ns):
            continue
        pods = [p for p in snap.pods_matching(ns, selector) if _meshed(snap, p)]
        if not pods:
            continue
        per_pod = [_blockers(policies, p) for p in pods]
        if not all(per_pod):
            continue
        causes = sorted({(ns_of(p), name_of(p)): p for b in per_pod for p in b}.values(), key=_age_key)
        blocked[tuple((ns_of(p), name_of(p)) for p in causes)].append((svc, pods))
    for key, affected in blocked.items():
        causes = [p for k in key if (p := snap.get("authorizationpolicies", *k)) is not None]
        if not causes:
            continue
        policy = causes[0]
        spec = _dict(policy.get("spec"))
        action = str(spec.get("action") or "ALLOW")
        services = [name_of(s) if ns_of(s) == ns_of(policy) else _qualified(s) for s, _ in affected]
        workloads = sorted({o.short() for _, pods in affected for p in pods if (o := snap.owner(p)) is not None})
        evidence: dict[str, Any] = {"action": action, "rules": len(_list(spec.get("rules")))}
        match_labels = _label_map(_dict(spec.get("selector")).get("matchLabels"))
        if match_labels:
            evidence["selector"] = match_labels
        evidence.update(services=services, workloads=workloads[:10])
        if len(causes) > 1:
            evidence["policies"] = [_qualified(p) for p in causes]
        if action == "ALLOW" and not snap.covers("authorizationpolicies", ROOT_NAMESPACE):
            evidence["mesh_wide_policies"] = f"not listed ({ROOT_NAMESPACE})"
        how = (
            "denies every request (a DENY rule without conditions)"
            if action == "DENY"
            else "allows nothing (ALLOW without rules) and no other ALLOW policy admits any request"
        )
        for svc, _ in affected:  # one per Service; the engine's cause chain makes them one about the policy
            yield Finding(
                code="AUTHZ_DENIES_SERVICE",
                severity="warning",
                object=snap.ref(svc, "Service"),
                summary=f"AuthorizationPolicy {how}: every request to the pods of {len(affected)} Service(s) is "
                "refused (403 RBAC: access denied)",
                evidence=evidence,
                remediation=_authz_remedy(action, name_of(policy)),
                involves=[snap.ref(p, "AuthorizationPolicy") for p in causes[1:]],
                cause=snap.ref(policy, "AuthorizationPolicy"),
            )


def _authz_remedy(action: str, name: str) -> str:
    if action == "DENY":
        return (
            f"Narrow the DENY rule of {name} with from/to/when conditions that name only the traffic to block, or "
            "narrow its spec.selector; a DENY rule without conditions refuses every request."
        )
    return (
        f"Add to spec.rules of {name} (or another ALLOW policy) a rule admitting the Service's clients, e.g. "
        "from.source.namespaces or principals, and to.operation.ports; an ALLOW policy without rules is a "
        "deny-all that needs its allow rules next to it."
    )


# -- IST0110, IST0167 ----------------------------------------------------------------------------------------
AMBIENT_POD = ("ambient.istio.io/redirection", "enabled")


def _in_ambient(pod: Obj) -> bool:
    return _dict(meta(pod).get("annotations")).get(AMBIENT_POD[0]) == AMBIENT_POD[1]


def sidecar_selectors(snap: Snapshot) -> Iterator[Finding]:
    """Sidecars whose workloadSelectors select the same pod (IST0110: which one applies is undefined), and
    Sidecars that select only ambient pods or sit selector-less in an ambient namespace (IST0167: there is no
    sidecar for them to configure). istioctl reports IST0110 once per Sidecar and pod; here one finding covers
    each set of Sidecars that share pods."""
    selected: dict[tuple[str, str], list[Obj]] = defaultdict(list)
    pods: dict[tuple[str, str], Obj] = {}
    namespace_wide: dict[str, list[Obj]] = defaultdict(list)
    for sc in snap.items("sidecars"):
        ns = ns_of(sc)
        selector = _label_map(_dict(_dict(sc.get("spec")).get("workloadSelector")).get("labels"))
        if not selector:
            namespace_wide[ns].append(sc)
            continue
        if not snap.covers("pods", ns):
            continue
        for pod in snap.in_ns("pods", ns):
            if not pod_is_terminal(pod) and selector_matches(labels_of(pod), selector):
                selected[(ns, name_of(pod))].append(sc)
                pods[(ns, name_of(pod))] = pod
    ineffective: dict[tuple[str, str], tuple[Obj, str]] = {}
    groups: dict[tuple[tuple[str, str], ...], list[str]] = defaultdict(list)
    for key, sidecars in selected.items():
        if _in_ambient(pods[key]):
            for sc in sidecars:
                ineffective.setdefault((ns_of(sc), name_of(sc)), (sc, "the workload it selects is in ambient mode"))
        elif len(sidecars) > 1:
            groups[tuple(sorted({(ns_of(s), name_of(s)) for s in sidecars}))].append(key[1])
    for ns, sidecars in namespace_wide.items():
        if injection(snap.get("namespaces", "", ns)) == "ambient":
            for sc in sidecars:
                ineffective.setdefault((ns, name_of(sc)), (sc, f"namespace {ns} is in ambient mode"))
    for members, pod_names in groups.items():
        if len(members) < 2:
            continue
        ordered = sorted((s for k in members if (s := snap.get("sidecars", *k)) is not None), key=_age_key)
        if not ordered or not snap.in_scope(ns_of(ordered[-1])):
            continue
        names = [name_of(s) for s in ordered]
        yield _finding(
            snap,
            ordered[-1],
            "Sidecar",
            "IST0110",
            "Error",
            f"Sidecars {', '.join(names)} select the same {len(pod_names)} pod(s) "
            f"({', '.join(sorted(pod_names)[:3])}); only one of them applies and which one is undefined",
            {"sidecars": names, "pods": sorted(pod_names)[:5]},
            "Narrow the workloadSelector.labels of these Sidecars so each pod is selected by at most one, or merge "
            "them into one Sidecar; until then the proxies' egress/ingress settings are not predictable.",
            involves=[snap.ref(s, "Sidecar") for s in ordered[:-1]],
        )
    for sc, why in ineffective.values():
        if not snap.in_scope(ns_of(sc)):
            continue
        yield _finding(
            snap,
            sc,
            "Sidecar",
            "IST0167",
            "Warning",
            f"Ineffective policy: {why}, which has no sidecar proxy, so this Sidecar has no impact",
            {"reason": why},
            "Remove the Sidecar, or configure the ambient data plane instead (waypoint, ztunnel policy); a Sidecar "
            "resource only configures sidecar proxies.",
        )


# -- IST0112 -------------------------------------------------------------------------------------------------
def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _host_ports(snap: Snapshot, full: str) -> list[int] | None:
    """The ports of the Service or ServiceEntry a host names (None when neither is known)."""
    svc = service_of(full)
    if svc:
        obj = snap.get("services", *svc)
        ports = _list(_dict((obj or {}).get("spec")).get("ports"))
        return [n for p in ports if (n := _int(_dict(p).get("port"))) is not None] if obj else None
    for se in snap.items("serviceentries"):
        spec = _dict(se.get("spec"))
        if full in [h.lower() for h in _strings(spec.get("hosts"))]:
            return [n for p in _list(spec.get("ports")) if (n := _int(_dict(p).get("number"))) is not None]
    return None


def _gateway_listen_ports(snap: Snapshot, vs: Obj, refs: list[str]) -> set[int] | None:
    ports: set[int] = set()
    for ref in refs:
        gw_ns, _, gw_name = ref.rpartition("/")
        gw = snap.get("istio_gateways", gw_ns or ns_of(vs), gw_name)
        if gw is None:
            return None
        ports.update(n for s in _list(_dict(gw.get("spec")).get("servers")) if (n := _port_number(s)) is not None)
    return ports


def vs_destination_ports(snap: Snapshot) -> Iterator[Finding]:
    """A gateway VirtualService whose destination has no port while its Service or ServiceEntry exposes
    several. istioctl reports it for every VirtualService; a sidecar routes a port-less destination to the
    port the client dialled, so only routes bound to a gateway are checked here, and not when every port the
    gateways listen on is a port of the destination (the gateway's listener port is then used)."""
    mesh = Mesh(snap)
    for vs in snap.items("virtualservices"):
        ns, spec = ns_of(vs), _dict(vs.get("spec"))
        refs = [g for g in _strings(spec.get("gateways")) if g != "mesh"]
        if not refs or not snap.in_scope(ns):
            continue
        listen = _gateway_listen_ports(snap, vs, refs)
        ambiguous: dict[str, list[int]] = {}
        for proto in ("http", "tcp", "tls"):
            for route in _list(spec.get(proto)):
                route = _dict(route)
                dests = [_dict(_dict(d).get("destination")) for d in _list(route.get("route"))]
                dests.append(_dict(route.get("mirror")))
                for dest in dests:
                    host = dest.get("host")
                    if not isinstance(host, str) or not host or dest.get("port") or host in ambiguous:
                        continue
                    ports = _host_ports(snap, mesh.fqdn(host, ns))
                    if ports and len(set(ports)) > 1 and not (listen and listen <= set(ports)):
                        ambiguous[host] = sorted(set(ports))
        if not ambiguous:
            continue
        text = "; ".join(f"{h} exposes {', '.join(str(p) for p in ps)}" for h, ps in ambiguous.items())
        yield _finding(
            snap,
            vs,
            "VirtualService",
            "IST0112",
            "Error",
            f"Destination without port to a multi-port service: {text}",
            {"destinations": ambiguous, "gateway_ports": sorted(listen) if listen else None},
            "Set destination.port.number on these routes to the service port the gateway should send to; without "
            "it the gateway uses its own listener port, which the service does not have (503 no cluster).",
        )


# -- IST0129 -------------------------------------------------------------------------------------------------
def _unverified(tls: Any) -> str | None:
    tls = _dict(tls)
    mode = tls.get("mode")
    if mode in ("SIMPLE", "MUTUAL") and not (
        tls.get("caCertificates") or tls.get("credentialName") or tls.get("insecureSkipVerify")
    ):
        return str(mode)
    return None


def port_tls_verification(snap: Snapshot) -> Iterator[Finding]:
    """Port-level TLS settings of a DestinationRule (SIMPLE or MUTUAL) without caCertificates: the upstream
    certificate on that port is not verified. As for IST0128, a credentialName (which can carry the CA) or an
    explicit insecureSkipVerify counts as a decision and is not reported."""
    for dr in snap.items("destinationrules"):
        spec = _dict(dr.get("spec"))
        if not snap.in_scope(ns_of(dr)):
            continue
        ports: dict[str, str] = {}
        for setting in _list(_dict(spec.get("trafficPolicy")).get("portLevelSettings")):
            mode = _unverified(_dict(setting).get("tls"))
            if mode:
                ports[str(_dict(_dict(setting).get("port")).get("number") or "?")] = mode
        if not ports:
            continue
        host = spec.get("host") if isinstance(spec.get("host"), str) else "?"
        yield _finding(
            snap,
            dr,
            "DestinationRule",
            "IST0129",
            "Warning",
            f"TLS without server certificate verification to {host} on port {', '.join(ports)} "
            "(portLevelSettings without caCertificates)",
            {"host": host, "ports": ports},
            "Set tls.caCertificates (or credentialName) in these portLevelSettings so the upstream certificate is "
            "verified, or insecureSkipVerify: true if skipping verification is intended.",
        )


# -- IST0134 -------------------------------------------------------------------------------------------------
def serviceentry_addresses(snap: Snapshot) -> Iterator[Finding]:
    """A ServiceEntry with a TCP port (or one without protocol) and no addresses: sidecars cannot tell its
    traffic apart from other TCP traffic on that port. istioctl skips this when the mesh config enables DNS
    auto-allocation, which CloudPilot does not read; addresses the allocation controller wrote to
    status.addresses are honoured, and the evidence notes the mesh setting was not checked."""
    for se in snap.items("serviceentries"):
        spec = _dict(se.get("spec"))
        if not snap.in_scope(ns_of(se)) or _list(spec.get("addresses")):
            continue
        if _list(_dict(se.get("status")).get("addresses")):
            continue
        tcp = [
            n
            for p in _list(spec.get("ports"))
            if str(_dict(p).get("protocol") or "TCP").upper() == "TCP" and (n := _int(_dict(p).get("number")))
        ]
        if not tcp:
            continue
        yield _finding(
            snap,
            se,
            "ServiceEntry",
            "IST0134",
            "Warning",
            f"ServiceEntry without addresses has TCP port {', '.join(str(n) for n in tcp)}: its traffic cannot "
            "be told apart from other TCP traffic on the port",
            {"hosts": _strings(spec.get("hosts"))[:5], "tcp_ports": tcp, "dns_auto_allocation": "not checked"},
            "Add spec.addresses (the IPs or CIDRs of the external service), give the ports an application "
            "protocol (HTTP, TLS) Istio can route by, or enable DNS proxying with auto-allocation.",
        )


# -- IST0137 -------------------------------------------------------------------------------------------------
def deployment_target_ports(snap: Snapshot) -> Iterator[Finding]:
    """A meshed Deployment whose Services send different service ports to one targetPort (istioctl's
    DeploymentConflictingPorts): Istio keys a workload's inbound configuration by that port, so it cannot
    serve both service ports as declared."""
    for dep, labels in _meshed_deployments(snap):
        by_target: dict[str, dict[int, str]] = defaultdict(dict)
        selecting: dict[str, Obj] = {}
        for svc in snap.in_ns("services", ns_of(dep)):
            svc_selector = _label_map(_dict(svc.get("spec")).get("selector"))
            if not svc_selector or not selector_matches(labels, svc_selector):
                continue
            for port in _list(_dict(svc.get("spec")).get("ports")):
                port = _dict(port)
                number = _int(port.get("port"))
                if number is None:
                    continue
                target = port.get("targetPort")
                key = str(target) if target not in (None, "", 0) else str(number)
                by_target[key].setdefault(number, name_of(svc))
                selecting[name_of(svc)] = svc
        for target, ports in sorted(by_target.items()):
            if len(ports) < 2:
                continue
            names = sorted(set(ports.values()))
            yield _finding(
                snap,
                dep,
                "Deployment",
                "IST0137",
                "Warning",
                f"Service ports {', '.join(str(p) for p in sorted(ports))} ({', '.join(names)}) all target port "
                f"{target} of this deployment's pods",
                {"target_port": target, "ports": {str(p): s for p, s in sorted(ports.items())}},
                f"Use one service port for targetPort {target} across the Services that select these pods (or give "
                "each service port its own container port); Istio builds one inbound listener per target port.",
                involves=[snap.ref(selecting[n], "Service") for n in names],
            )


# -- IST0138 -------------------------------------------------------------------------------------------------
def _selector_within(a: dict[str, str], b: dict[str, str]) -> bool:
    """True when every label of `a` is in `b` (an empty `a` selects every gateway)."""
    return all(b.get(k) == v for k, v in a.items())


def _certificate_hosts(gw: Obj) -> dict[tuple[str, ...], set[str]]:
    """The certificate each TLS server of a Gateway serves (credentialName, or certificate and key files) →
    the hosts it serves them for."""
    out: dict[tuple[str, ...], set[str]] = defaultdict(set)
    for server in _list(_dict(gw.get("spec")).get("servers")):
        tls = _dict(_dict(server).get("tls"))
        cred = tls.get("credentialName")
        if isinstance(cred, str) and cred:
            key: tuple[str, ...] = ("credentialName", cred)
        elif tls.get("serverCertificate") and tls.get("privateKey"):
            key = ("files", str(tls["serverCertificate"]), str(tls["privateKey"]))
        else:
            continue
        out[key].update(_bare_host(h) for h in _strings(_dict(server).get("hosts")))
    return out


def _share_certificate(a: tuple[Obj, set[str]], b: tuple[Obj, set[str]]) -> bool:
    """Two Gateways (with the hosts they serve one certificate for) on one workload, with overlapping hosts."""
    sel_a, sel_b = (_label_map(_dict(g.get("spec")).get("selector")) for g in (a[0], b[0]))
    same_workload = _selector_within(sel_a, sel_b) or _selector_within(sel_b, sel_a)
    return same_workload and any(hosts_overlap(x, y) for x in a[1] for y in b[1])


def gateway_duplicate_certificates(snap: Snapshot) -> Iterator[Finding]:
    """Gateways on the same gateway workload (one selector within the other) that serve the same certificate
    for hosts one of them covers by a wildcard: a browser reusing its HTTP/2 connection for the second host
    lands on the first Gateway's routes (404). istioctl reports any shared certificate; connection reuse needs
    a certificate valid for both hosts, and CloudPilot never reads certificates, so only servers whose hosts
    overlap (`*.example.com` next to `shop.example.com`) show that the certificate covers both."""
    users: dict[tuple[str, ...], list[tuple[Obj, set[str]]]] = defaultdict(list)
    for gw in snap.items("istio_gateways"):
        for key, hosts in _certificate_hosts(gw).items():
            users[key].append((gw, hosts))
    for key, gws in users.items():
        if len(gws) < 2:
            continue
        involved = [g for g in gws if any(h[0] is not g[0] and _share_certificate(g, h) for h in gws)]
        ordered = sorted((g for g, _ in involved), key=_age_key)
        in_scope = [g for g in ordered if snap.in_scope(ns_of(g))]
        if len(ordered) < 2 or not in_scope:
            continue
        subject = in_scope[-1]
        names = [_qualified(g) for g in ordered]
        cert = key[1] if key[0] == "credentialName" else f"{key[1]} / {key[2]}"
        shared_hosts = sorted({h for _, hs in involved for h in hs})[:10]
        yield _finding(
            snap,
            subject,
            "Gateway",
            "IST0138",
            "Warning",
            f"Gateways {', '.join(names)} on the same gateway workload use the same certificate ({cert}) for "
            f"overlapping hosts {', '.join(shared_hosts)}",
            {"gateways": names, key[0]: cert, "hosts": shared_hosts},
            "Give each Gateway its own certificate, or merge their servers into one Gateway; with a shared "
            "certificate, browsers reuse one HTTP/2 connection for both hosts and get 404 from the wrong server.",
            involves=[snap.ref(g, "Gateway") for g in ordered if g is not subject],
        )


# -- IST0140 -------------------------------------------------------------------------------------------------
def _applies_to_mesh(spec: dict[str, Any]) -> bool:
    gateways = _strings(spec.get("gateways"))
    return not gateways or "mesh" in gateways


def ingress_bypasses_subsets(snap: Snapshot) -> Iterator[Finding]:
    """A gateway VirtualService that routes to a host without subset while a mesh VirtualService splits that
    host by subsets: traffic from the gateway goes straight to the host, so the mesh rule's routing does not
    apply to it. istioctl compares every VirtualService with subsets; only mesh ones (no gateways or `mesh`)
    and other VirtualServices than the reported one are counted here."""
    mesh = Mesh(snap)
    split: dict[str, set[str]] = defaultdict(set)
    for vs in snap.items("virtualservices"):
        spec = _dict(vs.get("spec"))
        if not _applies_to_mesh(spec):
            continue
        hosts = {mesh.fqdn(h, ns_of(vs)) for h in _strings(spec.get("hosts"))}
        for route in _list(spec.get("http")):
            for dest in _list(_dict(route).get("route")):
                d = _dict(_dict(dest).get("destination"))
                host = d.get("host")
                if isinstance(host, str) and host and d.get("subset") and mesh.fqdn(host, ns_of(vs)) in hosts:
                    split[mesh.fqdn(host, ns_of(vs))].add(_qualified(vs))
    if not split:
        return
    for vs in snap.items("virtualservices"):
        ns, spec = ns_of(vs), _dict(vs.get("spec"))
        if not snap.in_scope(ns) or not [g for g in _strings(spec.get("gateways")) if g != "mesh"]:
            continue
        bypassed: dict[str, list[str]] = {}
        for route in _list(spec.get("http")):
            for dest in _list(_dict(route).get("route")):
                d = _dict(_dict(dest).get("destination"))
                host = d.get("host")
                if not isinstance(host, str) or not host or d.get("subset"):
                    continue
                others = sorted(split.get(mesh.fqdn(host, ns), set()) - {_qualified(vs)})
                if others:
                    bypassed[host] = others
        if not bypassed:
            continue
        rules = sorted({r for rs in bypassed.values() for r in rs})
        yield _finding(
            snap,
            vs,
            "VirtualService",
            "IST0140",
            "Warning",
            f"Routes to {', '.join(bypassed)} without subset: the subset routing of {', '.join(rules)} does not "
            "apply to traffic from the gateway",
            {"hosts": bypassed},
            "Route by subset in this gateway VirtualService as well (destination.subset), or bind the mesh "
            "VirtualService to the gateway too; a gateway's routes go straight to the host.",
        )


# -- IST0144, IST0125 (workload pod templates and unowned pods) --------------------------------------------------
WORKLOAD_KINDS = (("deployments", "Deployment"), ("statefulsets", "StatefulSet"), ("daemonsets", "DaemonSet"))
PROXY_UID = 1337


def _pod_templates(snap: Snapshot) -> Iterator[tuple[Obj, str, dict[str, Any], dict[str, Any]]]:
    """(object, kind, pod metadata, pod spec) for in-scope workload templates, and for pods no listed
    Deployment, StatefulSet or DaemonSet manages (those are reported once, on the workload)."""
    for key, kind in WORKLOAD_KINDS:
        for obj in snap.items(key):
            if snap.in_scope(ns_of(obj)):
                template = _dict(_dict(obj.get("spec")).get("template"))
                yield obj, kind, _dict(template.get("metadata")), _dict(template.get("spec"))
    keys = {kind: key for key, kind in WORKLOAD_KINDS}
    for pod in snap.items("pods"):
        if not snap.in_scope(ns_of(pod)) or pod_is_terminal(pod):
            continue
        owner = snap.owner(pod)
        if owner and owner.kind in keys and snap.get(keys[owner.kind], ns_of(pod), owner.name) is not None:
            continue
        yield pod, "Pod", meta(pod), _dict(pod.get("spec"))


def _uid_1337(spec: dict[str, Any]) -> list[str]:
    """Where an application runs as the proxy's UID: `pod` or the container names (istio-proxy excluded)."""
    where = ["pod"] if _int(_dict(spec.get("securityContext")).get("runAsUser")) == PROXY_UID else []
    for c in _list(spec.get("containers")):
        c = _dict(c)
        if c.get("name") != "istio-proxy" and _int(_dict(c.get("securityContext")).get("runAsUser")) == PROXY_UID:
            where.append(str(c.get("name")))
    return where


def application_uid(snap: Snapshot) -> Iterator[Finding]:
    """An application that runs as UID 1337, the sidecar proxy's: its outbound traffic is taken for the
    proxy's own and bypasses the mesh (no mTLS, no routing). Only meshed workloads are checked (a proxy
    injected or expected), and gateway or waypoint pods (only istio-proxy containers) are not."""
    mesh = Mesh(snap)
    meshed: dict[str, bool] = {}
    for obj, kind, pod_meta, spec in _pod_templates(snap):
        ns = ns_of(obj)
        names = [_dict(c).get("name") for c in _list(spec.get("containers"))]
        if ns == ROOT_NAMESPACE or not names or all(n == "istio-proxy" for n in names):
            continue
        opt = _label_map(pod_meta.get("labels")).get("sidecar.istio.io/inject") or _dict(
            pod_meta.get("annotations")
        ).get("sidecar.istio.io/inject")
        proxied = has_proxy({"metadata": pod_meta, "spec": spec})
        if opt == "false" or not (proxied or opt == "true" or _cached(meshed, ns, mesh.in_mesh)):
            continue
        where = _uid_1337(spec)
        if not where:
            continue
        yield _finding(
            snap,
            obj,
            kind,
            "IST0144",
            "Warning",
            f"runAsUser 1337 (the Istio proxy's UID) set for {', '.join(where)}: this traffic bypasses the sidecar",
            {"run_as_user": PROXY_UID, "set_on": where},
            "Run the application under another UID (securityContext.runAsUser); the sidecar's traffic capture "
            "exempts UID 1337, so the application's requests skip mTLS, routing and policy.",
        )


def _port_list(value: str, star: bool) -> str | None:
    if star and value == "*":
        return None
    for part in value.strip().split(",") if value.strip() else []:
        text = part.strip()
        if not text.isdigit() or int(text) > 65535:
            return f"'{part}' is not a port number"
    return None


def _cidr_list(value: str, star: bool) -> str | None:
    if star and value == "*":
        return None
    for part in value.split(",") if value else []:
        try:
            if "/" not in part or part != part.strip():
                raise ValueError(part)
            ipaddress.ip_network(part, strict=False)
        except ValueError:
            return f"'{part}' is not a CIDR"
    return None


def _uint32(value: str) -> str | None:
    return None if value.isdigit() and int(value) < 2**32 else "not a non-negative integer"


def _go_bool(value: str) -> str | None:
    ok = ("1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False")
    return None if value in ok else "not a boolean"


TRAFFIC = "traffic.sidecar.istio.io/"
READINESS = "readiness.status.sidecar.istio.io/"
ANNOTATION_CHECKS: dict[str, Callable[[str], str | None]] = {
    "sidecar.istio.io/interceptionMode": lambda v: (
        None if v in ("REDIRECT", "TPROXY", "NONE") else "use REDIRECT, TPROXY or NONE"
    ),
    "status.sidecar.istio.io/port": lambda v: None if v.strip().isdigit() and int(v) <= 65535 else "not a port",
    READINESS + "initialDelaySeconds": _uint32,
    READINESS + "periodSeconds": _uint32,
    READINESS + "failureThreshold": _uint32,
    TRAFFIC + "includeOutboundIPRanges": lambda v: _cidr_list(v, True),
    TRAFFIC + "excludeOutboundIPRanges": lambda v: _cidr_list(v, False),
    TRAFFIC + "includeInboundPorts": lambda v: _port_list(v, True),
    TRAFFIC + "excludeInboundPorts": lambda v: _port_list(v, False),
    TRAFFIC + "excludeOutboundPorts": lambda v: _port_list(v, False),
    "prometheus.istio.io/merge-metrics": _go_bool,
}


def invalid_annotations(snap: Snapshot) -> Iterator[Finding]:
    """Pod annotations of the sidecar injector whose value it rejects (interceptionMode, status port,
    readiness timings, traffic capture ports and CIDRs, merge-metrics), as the injector's validation does.
    proxy.istio.io/config is not checked: validating it needs the full ProxyConfig schema."""
    for obj, kind, pod_meta, _spec in _pod_templates(snap):
        bad: dict[str, str] = {}
        for name, value in _dict(pod_meta.get("annotations")).items():
            check = ANNOTATION_CHECKS.get(name)
            if check is None:
                continue
            why = check(value) if isinstance(value, str) else "not a string"
            if why:
                bad[name] = f"{value!r}: {why}"
        if not bad:
            continue
        where = "pod template of this workload" if kind != "Pod" else "pod"
        yield _finding(
            snap,
            obj,
            kind,
            "IST0125",
            "Warning",
            f"Invalid Istio annotation value on the {where}: {'; '.join(f'{k} {v}' for k, v in bad.items())}",
            {"annotations": bad},
            "Correct these annotation values (comma-separated port numbers, CIDRs like 10.0.0.0/8, REDIRECT/"
            "TPROXY/NONE); the sidecar injector refuses invalid values, so pods fail to be created or get no proxy.",
        )


# -- IST0107 -------------------------------------------------------------------------------------------------
POD_ANNOTATION_PREFIXES = (
    "sidecar.istio.io/",
    TRAFFIC,
    "status.sidecar.istio.io/",
    READINESS,
    "proxy.istio.io/",
    "inject.istio.io/",
)
PLACED_KINDS = (*WORKLOAD_KINDS, ("services", "Service"), ("namespaces", "Namespace"))


def misplaced_annotations(snap: Snapshot) -> Iterator[Finding]:
    """Sidecar annotations (a well-known subset of Istio's catalogue: sidecar.istio.io/*, traffic.sidecar.
    istio.io/*, proxy.istio.io/*, ...) that only act on Pods, set on a workload's own metadata, a Service or a
    Namespace, where nothing reads them. A workload whose pod template carries the same annotation is fine.
    istioctl checks Deployments, Services and Namespaces with the full catalogue; StatefulSets and
    DaemonSets are checked here too, the catalogue's other annotations are not."""
    for key, kind in PLACED_KINDS:
        for obj in snap.items(key):
            ns = name_of(obj) if kind == "Namespace" else ns_of(obj)
            if not snap.in_scope(ns):
                continue
            template = _dict(_dict(_dict(_dict(obj.get("spec")).get("template")).get("metadata")).get("annotations"))
            misplaced = sorted(
                a
                for a in _dict(meta(obj).get("annotations"))
                if isinstance(a, str) and a.startswith(POD_ANNOTATION_PREFIXES) and a not in template
            )
            if not misplaced:
                continue
            where = "the pod template (spec.template.metadata.annotations)" if key != "services" else "the pods"
            if kind == "Namespace":
                where = "the pods (for injection: the namespace label istio-injection or istio.io/rev)"
            yield _finding(
                snap,
                obj,
                kind,
                "IST0107",
                "Warning",
                f"Misplaced annotation {', '.join(misplaced)}: it applies to Pods and has no effect on a {kind}",
                {"annotations": misplaced, "applies_to": "Pod"},
                f"Move {', '.join(misplaced)} to {where}; on the {kind} itself nothing reads it.",
            )


# -- IST0150 -------------------------------------------------------------------------------------------------
def _mesh_present(snap: Snapshot) -> bool:
    states = {injection(n) for n in snap.items("namespaces")}
    return bool(states - {"none", "disabled"}) or any(has_proxy(p) for p in snap.items("pods"))


def externalname_port_names(snap: Snapshot) -> Iterator[Finding]:
    """An ExternalName Service of a meshed cluster with a port whose protocol Istio cannot tell (no protocol
    prefix, no appProtocol) or that is named plain `tcp`: Istio turns the Service into a DNS entry and treats
    such a port as opaque TCP, matching all traffic on the port number."""
    if not any(_dict(s.get("spec")).get("type") == "ExternalName" for s in snap.items("services")):
        return
    if not _mesh_present(snap):
        return
    for svc in snap.items("services"):
        ns, spec = ns_of(svc), _dict(svc.get("spec"))
        if spec.get("type") != "ExternalName" or not snap.in_scope(ns) or ns in SYSTEM_NAMESPACES:
            continue
        bad = []
        for port in _list(spec.get("ports")):
            port = _dict(port)
            name = port.get("name") if isinstance(port.get("name"), str) else ""
            if str(port.get("protocol") or "TCP") != "TCP" or _int(port.get("port")) is None:
                continue
            if name == "tcp" or _port_protocol(port) == "auto":
                bad.append(f"{port.get('port')}/{name or '(unnamed)'}")
        if not bad:
            continue
        yield _finding(
            snap,
            svc,
            "Service",
            "IST0150",
            "Warning",
            f"ExternalName Service port {', '.join(bad)} has no Istio protocol: its traffic is handled as plain "
            "TCP on that port number",
            {"ports": bad, "external_name": spec.get("externalName")},
            "Name the ports with their protocol (http-, https-, tls-, grpc-, ...) or set appProtocol; for raw TCP "
            "prefer a ServiceEntry with addresses.",
        )


# -- IST0165 -------------------------------------------------------------------------------------------------
INTERNAL_GATEWAY_MARKS = ("-istio-autogenerated-k8s-gateway-", "~istio-autogenerated-k8s-gateway~")


def internal_gateway_refs(snap: Snapshot) -> Iterator[Finding]:
    """A VirtualService bound to the Istio Gateway that istiod generates internally for a Kubernetes Gateway
    API Gateway (`<name>-istio-autogenerated-k8s-gateway-<listener>`): that name is an implementation detail
    and changes between versions."""
    for vs in snap.items("virtualservices"):
        if not snap.in_scope(ns_of(vs)):
            continue
        refs = [
            g
            for g in _strings(_dict(vs.get("spec")).get("gateways"))
            if any(m in g.rpartition("/")[2] for m in INTERNAL_GATEWAY_MARKS)
        ]
        if not refs:
            continue
        yield _finding(
            snap,
            vs,
            "VirtualService",
            "IST0165",
            "Warning",
            f"VirtualService references the internal generated gateway {', '.join(refs)}",
            {"gateways": refs},
            "Attach routes to a Kubernetes Gateway with an HTTPRoute (parentRefs), or reference it in "
            "spec.gateways as <namespace>/<gateway name>; the generated name is not stable.",
        )


# -- IST0166 -------------------------------------------------------------------------------------------------
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"


def ineffective_selectors(snap: Snapshot) -> Iterator[Finding]:
    """An AuthorizationPolicy whose spec.selector matches the pods of a Kubernetes Gateway API gateway:
    policies attach to those gateways through targetRef, the selector is not applied there."""
    gateway_pods: dict[str, list[Obj]] = defaultdict(list)
    for pod in {(ns_of(p), name_of(p)): p for p in snap.items("gateway_pods") + snap.items("pods")}.values():
        if GATEWAY_NAME_LABEL in labels_of(pod):
            gateway_pods[ns_of(pod)].append(pod)
    if not gateway_pods:
        return
    for policy in snap.items("authorizationpolicies"):
        spec = _dict(policy.get("spec"))
        ns = ns_of(policy)
        selector = _label_map(_dict(spec.get("selector")).get("matchLabels"))
        if not snap.in_scope(ns) or not selector or spec.get("targetRef") or spec.get("targetRefs"):
            continue
        names = sorted(
            {
                labels_of(p)[GATEWAY_NAME_LABEL]
                for p in gateway_pods.get(ns, [])
                if selector_matches(labels_of(p), selector)
            }
        )
        if not names:
            continue
        yield _finding(
            snap,
            policy,
            "AuthorizationPolicy",
            "IST0166",
            "Warning",
            f"Ineffective selector: it matches the pods of Kubernetes gateway {', '.join(names)}, where a "
            "workload selector does not apply",
            {"selector": selector, "gateways": names},
            f"Replace spec.selector with spec.targetRefs (kind: Gateway, group: gateway.networking.k8s.io, name: "
            f"{names[0]}) so the policy applies to the gateway.",
        )


# -- IST0171 -------------------------------------------------------------------------------------------------
def negative_conditions(snap: Snapshot) -> Iterator[Finding]:
    """Services, ServiceEntries and AuthorizationPolicies with a status condition that is False (Istio writes
    these, e.g. a waypoint that did not bind or accept the object)."""
    for key, kind in (
        ("services", "Service"),
        ("serviceentries", "ServiceEntry"),
        ("authorizationpolicies", "AuthorizationPolicy"),
    ):
        for obj in snap.items(key):
            if not snap.in_scope(ns_of(obj)):
                continue
            negative = [
                _dict(c) for c in _list(_dict(obj.get("status")).get("conditions")) if _dict(c).get("status") == "False"
            ]
            if not negative:
                continue
            shown = {
                str(c.get("type")): ": ".join(str(c[k])[:160] for k in ("reason", "message") if c.get(k))
                for c in negative
            }
            yield _finding(
                snap,
                obj,
                kind,
                "IST0171",
                "Warning",
                "Negative status condition "
                + "; ".join(f"{t}=False" + (f" ({why})" if why else "") for t, why in shown.items()),
                {"conditions": shown},
                "Read the condition's reason and message and correct what it names (often a waypoint reference "
                "or an object the waypoint does not support); the object is not fully in effect until then.",
            )


RULES: list[Callable[[Snapshot], Iterator[Finding]]] = [
    conflicting_gateways,
    gateway_service_ports,
    injection_labels,
    vs_hosts_in_gateway,
    deployment_protocols,
    sidecars_without_selector,
    unreachable_routes,
    authorization_deny_all,
    sidecar_selectors,
    vs_destination_ports,
    port_tls_verification,
    serviceentry_addresses,
    deployment_target_ports,
    gateway_duplicate_certificates,
    ingress_bypasses_subsets,
    application_uid,
    invalid_annotations,
    misplaced_annotations,
    externalname_port_names,
    internal_gateway_refs,
    ineffective_selectors,
    negative_conditions,
]
