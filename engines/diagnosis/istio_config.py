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
)
from engines.diagnosis.model import Finding
from engines.diagnosis.snapshot import Obj, Snapshot, labels_of, meta, name_of, ns_of, selector_matches

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


def deployment_protocols(snap: Snapshot) -> Iterator[Finding]:
    """A meshed Deployment whose pods several Services select with one port number but different protocols.
    istioctl compares the Kubernetes L4 protocol only; Istio's own protocol (appProtocol or the port name's
    prefix: http-web against tcp-web) is compared too, by family (http, http2 and grpc alike; ports with no
    declared protocol are left to detection and not compared), as istio.io's IST0116 page describes."""
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


RULES: list[Callable[[Snapshot], Iterator[Finding]]] = [
    conflicting_gateways,
    gateway_service_ports,
    injection_labels,
    vs_hosts_in_gateway,
    deployment_protocols,
    sidecars_without_selector,
    unreachable_routes,
    authorization_deny_all,
]
