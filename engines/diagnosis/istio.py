"""Istio rules: the classes `istioctl analyze` covers, implemented natively over the snapshot.

Codes are istioctl's (IST0101 ReferencedResourceNotFound, IST0102 NamespaceNotInjected, IST0103
PodMissingProxy, IST0106 SchemaValidationError, IST0109 ConflictingMeshGatewayVirtualServiceHosts, IST0113
MTLSPolicyConflict, IST0118 PortNameIsNotUnderNamingConvention, IST0127 NoMatchingWorkloadsFound, IST0128
NoServerCertificateVerificationDestinationLevel) where one exists; ISTIO_* codes otherwise. A reference into a
namespace the snapshot did not list, or to a Kubernetes Gateway API object, is never reported as missing.
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from engines.diagnosis.model import Finding, Fix, ObjectRef
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

ROOT_NAMESPACE = "istio-system"
SYSTEM_NAMESPACES = {"kube-system", "kube-public", "kube-node-lease", ROOT_NAMESPACE}
PROTOCOLS = ("http", "http2", "https", "grpc", "grpc-web", "mongo", "mysql", "redis", "tcp", "tls", "udp")
TLS_TERMINATING = {"SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL"}
SEVERITY = {"Error": "critical", "Warning": "warning", "Info": "info"}


# -- helpers --------------------------------------------------------------------------------------------
def injection(ns_obj: Obj | None) -> str:
    """'enabled', 'disabled', 'rev:<r>', 'ambient' or 'none' for a Namespace object."""
    labels = labels_of(ns_obj or {})
    if labels.get("istio-injection") == "enabled":
        return "enabled"
    if labels.get("istio-injection") == "disabled":
        return "disabled"
    if labels.get("istio.io/rev"):
        return f"rev:{labels['istio.io/rev']}"
    if labels.get("istio.io/dataplane-mode") == "ambient":
        return "ambient"
    return "none"


def has_proxy(pod: Obj) -> bool:
    if "sidecar.istio.io/status" in (meta(pod).get("annotations") or {}):
        return True
    spec = pod.get("spec") or {}
    return any(
        c.get("name") == "istio-proxy" for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])
    )


def opted_out(pod: Obj) -> bool:
    m = meta(pod)
    flag = (m.get("labels") or {}).get("sidecar.istio.io/inject") or (m.get("annotations") or {}).get(
        "sidecar.istio.io/inject"
    )
    return flag == "false" or bool((pod.get("spec") or {}).get("hostNetwork"))


def fqdn(host: str, namespace: str, known_namespaces: set[str]) -> str:
    """Istio's reading of a host: a short name is relative to the rule's namespace; `name.ns` and
    `name.ns.svc` are completed when `ns` is a namespace (kube-dns would resolve them the same way)."""
    parts = host.split(".")
    if len(parts) == 1 and host != "*":
        return f"{host}.{namespace}.svc.cluster.local"
    if len(parts) == 2 and parts[1] in known_namespaces:
        return f"{host}.svc.cluster.local"
    if len(parts) == 3 and parts[2] == "svc":
        return f"{host}.cluster.local"
    return host


def service_of(host_fqdn: str) -> tuple[str, str] | None:
    """(namespace, name) when the FQDN names a Kubernetes Service."""
    parts = host_fqdn.split(".")
    if len(parts) >= 4 and parts[2] == "svc" and "*" not in parts[0]:
        return parts[1], parts[0]
    return None


class Mesh:
    """Indexes over the Istio objects of a snapshot that several rules share."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.namespaces = {name_of(n) for n in snap.items("namespaces")} | {ns_of(s) for s in snap.items("services")}
        self.entry_hosts: list[str] = [
            h for se in snap.items("serviceentries") for h in (se.get("spec") or {}).get("hosts") or []
        ]
        self.dr_by_host: dict[str, list[Obj]] = defaultdict(list)
        for dr in snap.items("destinationrules"):
            host = (dr.get("spec") or {}).get("host")
            if host:
                self.dr_by_host[self.fqdn(host, ns_of(dr))].append(dr)

    def fqdn(self, host: str, namespace: str) -> str:
        return fqdn(host, namespace, self.namespaces)

    def host_status(self, host_fqdn: str) -> str:
        """'found', 'missing', or 'unknown' (not checkable: wildcard, or a namespace that was not listed)."""
        if "*" in host_fqdn:
            return "unknown"
        if any(fnmatch.fnmatchcase(host_fqdn, h) for h in self.entry_hosts):
            return "found"
        svc = service_of(host_fqdn)
        if svc:
            if not self.snap.covers("services", svc[0]):
                return "unknown"
            return "found" if self.snap.get("services", svc[0], svc[1]) else "missing"
        return "missing" if self.snap.covers("serviceentries", None) else "unknown"

    def service_pods(self, host_fqdn: str) -> list[Obj] | None:
        """The pods behind a Service host (None when not a Service or pods not listed)."""
        svc_ref = service_of(host_fqdn)
        if not svc_ref or not self.snap.covers("pods", svc_ref[0]):
            return None
        svc = self.snap.get("services", *svc_ref)
        selector = ((svc or {}).get("spec") or {}).get("selector")
        if not svc or not selector:
            return None
        return self.snap.pods_matching(svc_ref[0], selector)

    def in_mesh(self, namespace: str) -> bool:
        state = injection(self.snap.get("namespaces", "", namespace))
        return (
            state == "enabled"
            or state.startswith("rev:")
            or state == "ambient"
            or any(has_proxy(p) for p in self.snap.in_ns("pods", namespace))
        )


def _finding(
    snap: Snapshot,
    obj: Obj,
    kind: str,
    code: str,
    level: str,
    summary: str,
    evidence: dict[str, Any],
    remediation: str,
    **extra: Any,
) -> Finding:
    return Finding(
        code=code,
        severity=SEVERITY[level],
        object=snap.ref(obj, kind),
        summary=summary,
        evidence=evidence,
        remediation=remediation,
        **extra,
    )


def _destinations(vs: Obj) -> Iterator[tuple[str, Obj]]:
    spec = vs.get("spec") or {}
    for proto in ("http", "tcp", "tls"):
        for i, route in enumerate(spec.get(proto) or []):
            for dest in route.get("route") or []:
                if dest.get("destination"):
                    yield f"{proto}[{i}]", dest["destination"]
            for key in ("mirror",):
                if route.get(key):
                    yield f"{proto}[{i}].{key}", route[key]


def _vs_gateways(vs: Obj) -> list[str]:
    spec = vs.get("spec") or {}
    names = list(spec.get("gateways") or [])
    for route in spec.get("http") or []:
        for match in route.get("match") or []:
            names += match.get("gateways") or []
    return list(dict.fromkeys(names)) or ["mesh"]


# -- VirtualService references -------------------------------------------------------------------------
def virtual_services(snap: Snapshot) -> Iterator[Finding]:
    mesh = Mesh(snap)
    for vs in snap.items("virtualservices"):
        ns = ns_of(vs)
        if not snap.in_scope(ns):
            continue
        for gw in _vs_gateways(vs):
            if gw == "mesh":
                continue
            gw_ns, _, gw_name = gw.rpartition("/")
            gw_ns = gw_ns or ns
            if (
                not snap.covers("istio_gateways", gw_ns)
                or snap.get("istio_gateways", gw_ns, gw_name)
                or snap.get("k8s_gateways", gw_ns, gw_name)
            ):
                continue
            yield _finding(
                snap,
                vs,
                "VirtualService",
                "IST0101",
                "Error",
                f"Referenced gateway not found: {gw_ns}/{gw_name}",
                {
                    "gateway": gw,
                    "gateways_in_namespace": sorted(name_of(g) for g in snap.in_ns("istio_gateways", gw_ns))[:10],
                },
                f"Create Gateway {gw_ns}/{gw_name} or reference an existing one as <namespace>/<name> "
                "(a bare name means the VirtualService's own namespace).",
            )
        seen: set[tuple[str, str | None]] = set()
        for where, dest in _destinations(vs):
            host = dest.get("host", "")
            full = mesh.fqdn(host, ns)
            subset = dest.get("subset")
            if (full, subset) in seen:
                continue
            seen.add((full, subset))
            status = mesh.host_status(full)
            if status == "missing":
                yield _finding(
                    snap,
                    vs,
                    "VirtualService",
                    "IST0101",
                    "Error",
                    f"Referenced host not found: {host}",
                    {"route": where, "host": host, "resolved": full},
                    "Route to an existing Service (<name>, <name>.<namespace>.svc.cluster.local) or "
                    "declare the external host in a ServiceEntry.",
                )
            elif subset and status == "found":
                yield from _subset_check(snap, mesh, vs, where, host, full, subset)


def _subset_check(
    snap: Snapshot, mesh: Mesh, vs: Obj, where: str, host: str, full: str, subset: str
) -> Iterator[Finding]:
    rules = mesh.dr_by_host.get(full, [])
    defined = {s.get("name") for dr in rules for s in (dr.get("spec") or {}).get("subsets") or []}
    if subset in defined or not snap.covers("destinationrules", None):
        return
    yield _finding(
        snap,
        vs,
        "VirtualService",
        "IST0101",
        "Error",
        f"Referenced host+subset in destinationrule not found: {host}+{subset}",
        {
            "route": where,
            "host": full,
            "subset": subset,
            "destination_rules": [f"{ns_of(d)}/{name_of(d)}" for d in rules],
            "defined_subsets": sorted(s for s in defined if s),
        },
        f"Define subset {subset} in a DestinationRule for {full}, or route to a subset that exists.",
    )


def vs_conflicts(snap: Snapshot) -> Iterator[Finding]:
    mesh = Mesh(snap)
    groups: dict[tuple[str, str], list[Obj]] = defaultdict(list)
    for vs in snap.items("virtualservices"):
        ns = ns_of(vs)
        for gw in _vs_gateways(vs):
            gw_key = gw if gw == "mesh" else (gw if "/" in gw else f"{ns}/{gw}")
            for host in (vs.get("spec") or {}).get("hosts") or []:
                key_host = mesh.fqdn(host, ns) if gw == "mesh" else host
                groups[(gw_key, key_host)].append(vs)
    for (gw, host), members in groups.items():
        unique = {(ns_of(v), name_of(v)): v for v in members}
        if len(unique) < 2:
            continue
        ordered = sorted(unique.values(), key=lambda v: (meta(v).get("creationTimestamp") or "", ns_of(v), name_of(v)))
        first = next((v for v in ordered if snap.in_scope(ns_of(v))), None)
        if first is None:
            continue
        names = [f"{ns_of(v)}/{name_of(v)}" for v in ordered]
        yield _finding(
            snap,
            first,
            "VirtualService",
            "IST0109",
            "Error" if gw == "mesh" else "Warning",
            f"VirtualServices {', '.join(names)} all define host {host} on gateway {gw}",
            {"gateway": gw, "host": host, "virtual_services": names},
            "Merge the routes into one VirtualService per host and gateway: with several, which routes apply "
            "is undefined.",
            involves=[snap.ref(v, "VirtualService") for v in ordered if v is not first],
        )


# -- DestinationRules ----------------------------------------------------------------------------------
def destination_rules(snap: Snapshot) -> Iterator[Finding]:
    mesh = Mesh(snap)
    for dr in snap.items("destinationrules"):
        ns, spec = ns_of(dr), dr.get("spec") or {}
        if not snap.in_scope(ns):
            continue
        host = spec.get("host")
        if not host:
            yield _finding(
                snap,
                dr,
                "DestinationRule",
                "IST0106",
                "Error",
                "Schema validation error: host is required",
                {"spec.host": None},
                "Set spec.host to the Service this rule applies to.",
            )
            continue
        full = mesh.fqdn(host, ns)
        status = mesh.host_status(full)
        if status == "missing":
            yield _finding(
                snap,
                dr,
                "DestinationRule",
                "IST0101",
                "Error",
                f"Referenced host not found: {host}",
                {"host": host, "resolved": full},
                "Correct spec.host to an existing Service or ServiceEntry host, or delete the rule.",
            )
            continue
        pods = mesh.service_pods(full) if status == "found" else None
        if pods:
            subsets = spec.get("subsets") or []
            for index, subset in enumerate(subsets):
                labels = subset.get("labels") or {}
                if labels and not any(selector_matches(labels_of(p), labels) for p in pods):
                    yield _finding(
                        snap,
                        dr,
                        "DestinationRule",
                        "ISTIO_SUBSET_NO_PODS",
                        "Warning",
                        f"subset {subset.get('name')} selects none of the {len(pods)} pod(s) of {host}",
                        {
                            "subset": subset.get("name"),
                            "labels": labels,
                            "pod_labels": sorted(
                                {f"{k}={v}" for p in pods for k, v in labels_of(p).items() if k in labels}
                            )[:10],
                        },
                        "Correct the subset's labels to the pods' labels (often the `version` label); traffic "
                        "routed to this subset fails with 503 (no healthy upstream).",
                        fix=_subset_fix(snap, dr, subsets, index, pods),
                    )
        tls = (spec.get("trafficPolicy") or {}).get("tls") or {}
        if tls.get("mode") in ("SIMPLE", "MUTUAL") and not (
            tls.get("caCertificates") or tls.get("credentialName") or tls.get("insecureSkipVerify")
        ):
            yield _finding(
                snap,
                dr,
                "DestinationRule",
                "IST0128",
                "Warning",
                f"TLS mode {tls['mode']} without caCertificates: the server certificate of {host} is not verified",
                {"tls": tls},
                "Set caCertificates (or credentialName) so the upstream certificate is verified.",
            )


def dr_conflicts(snap: Snapshot) -> Iterator[Finding]:
    mesh = Mesh(snap)
    for host, rules in mesh.dr_by_host.items():
        groups: dict[str, list[Obj]] = defaultdict(list)
        for dr in rules:
            if not (dr.get("spec") or {}).get("workloadSelector"):
                groups[ns_of(dr)].append(dr)
        for ns, same in groups.items():
            if len(same) < 2 or not snap.in_scope(ns):
                continue
            ordered = sorted(same, key=lambda d: (meta(d).get("creationTimestamp") or "", name_of(d)))
            names = [name_of(d) for d in ordered]
            yield _finding(
                snap,
                ordered[-1],
                "DestinationRule",
                "ISTIO_DR_CONFLICT",
                "Warning",
                f"{len(ordered)} DestinationRules in {ns} for host {host}: {', '.join(names)}",
                {"host": host, "destination_rules": names, "effective_traffic_policy_from": names[0]},
                "Istio merges them: only the oldest one's traffic policy applies, and subsets with the same name "
                "are dropped. Keep one DestinationRule per host.",
                involves=[snap.ref(d, "DestinationRule") for d in ordered[:-1]],
            )


def _pa_mode(snap: Snapshot, pods: list[Obj], namespace: str) -> tuple[str, Obj | None]:
    """The effective PeerAuthentication mode for a set of pods: workload, then namespace, then mesh-wide."""
    sample = labels_of(pods[0]) if pods else {}
    ordered = []
    for pa in snap.in_ns("peerauthentications", namespace):
        match = ((pa.get("spec") or {}).get("selector") or {}).get("matchLabels")
        if match and selector_matches(sample, match):
            ordered.append(pa)
    ordered += [
        pa
        for pa in snap.in_ns("peerauthentications", namespace)
        if not ((pa.get("spec") or {}).get("selector") or {}).get("matchLabels")
    ]
    ordered += [
        pa
        for pa in snap.in_ns("peerauthentications", ROOT_NAMESPACE)
        if not ((pa.get("spec") or {}).get("selector") or {}).get("matchLabels")
    ]
    for pa in ordered:
        mode = ((pa.get("spec") or {}).get("mtls") or {}).get("mode")
        if mode and mode != "UNSET":
            return mode, pa
    return "PERMISSIVE", None


def _subset_fix(snap: Snapshot, dr: Obj, subsets: list[Obj], index: int, pods: list[Obj]) -> Fix | None:
    """When the host's pods carry exactly one combination of the subset's label keys, and no other subset
    already selects it, the subset can only have meant that one (e.g. version=v2 while only v1 runs)."""
    labels = subsets[index].get("labels") or {}
    combos = {tuple(labels_of(p).get(k) for k in labels) for p in pods if all(k in labels_of(p) for k in labels)}
    if len(combos) != 1:
        return None
    (values,) = combos
    found = dict(zip(labels, values, strict=True))
    if any((s.get("labels") or {}) == found for i, s in enumerate(subsets) if i != index):
        return None  # another subset already routes there: which one was meant is the owner's call
    return Fix(
        action="set_fields",
        target=snap.ref(dr, "DestinationRule"),
        params={
            "fields": [[["spec", "subsets", index, "labels", k], v] for k, v in found.items() if labels[k] != v],
            "expected": f"subset {subsets[index].get('name')} selects the pods labelled "
            + ",".join(f"{k}={v}" for k, v in found.items()),
        },
    )


def mtls_conflicts(snap: Snapshot) -> Iterator[Finding]:
    if not snap.has("peerauthentications"):
        return
    mesh = Mesh(snap)
    for dr in snap.items("destinationrules"):
        spec = dr.get("spec") or {}
        mode = ((spec.get("trafficPolicy") or {}).get("tls") or {}).get("mode")
        if mode not in ("DISABLE", "ISTIO_MUTUAL") or not snap.in_scope(ns_of(dr)) or not spec.get("host"):
            continue
        full = mesh.fqdn(spec["host"], ns_of(dr))
        svc = service_of(full)
        pods = mesh.service_pods(full)
        if not svc or pods is None:
            continue
        pa_mode, pa = _pa_mode(snap, pods, svc[0])
        if (mode, pa_mode) not in (("DISABLE", "STRICT"), ("ISTIO_MUTUAL", "DISABLE")) or pa is None:
            continue
        what = (
            "clients send plain text but the server accepts only mTLS"
            if mode == "DISABLE"
            else "clients send mTLS but the server has mTLS disabled"
        )
        yield _finding(
            snap,
            dr,
            "DestinationRule",
            "IST0113",
            "Error",
            f"mTLS conflict for {spec['host']}: DestinationRule tls.mode {mode} vs PeerAuthentication "
            f"{ns_of(pa)}/{name_of(pa)} mode {pa_mode}: {what}",
            {
                "destination_rule_tls": mode,
                "peer_authentication": f"{ns_of(pa)}/{name_of(pa)}",
                "mtls_mode": pa_mode,
                "host": full,
            },
            "Make them agree: with STRICT use tls.mode ISTIO_MUTUAL (or drop the tls setting); with DISABLE drop "
            "ISTIO_MUTUAL. Requests fail with connection resets until then.",
            involves=[snap.ref(pa, "PeerAuthentication")],
            fix=Fix(  # the client side follows the server's policy, which the namespace's owner set on purpose
                action="set_fields",
                target=snap.ref(dr, "DestinationRule"),
                params={
                    "fields": [
                        [["spec", "trafficPolicy", "tls", "mode"], "ISTIO_MUTUAL" if mode == "DISABLE" else "DISABLE"]
                    ],
                    "expected": f"clients of {spec['host']} use the TLS mode the PeerAuthentication ({pa_mode}) "
                    "accepts",
                },
            ),
        )


# -- Gateways ------------------------------------------------------------------------------------------
def _gateway_pods(snap: Snapshot, selector: dict[str, str]) -> list[Obj] | None:
    if not (snap.has("gateway_pods") or snap.covers("pods", None)):
        return None
    pods = {
        (ns_of(p), name_of(p)): p
        for p in snap.items("gateway_pods") + snap.items("pods")
        if not pod_is_terminal(p) and selector_matches(labels_of(p), selector)
    }
    return list(pods.values())


def gateways(snap: Snapshot) -> Iterator[Finding]:
    for gw in snap.items("istio_gateways"):
        ns, spec = ns_of(gw), gw.get("spec") or {}
        if not snap.in_scope(ns):
            continue
        selector = spec.get("selector") or {}
        pods = _gateway_pods(snap, selector)
        if pods is not None and not pods:
            yield _finding(
                snap,
                gw,
                "Gateway",
                "IST0101",
                "Error",
                "Referenced selector not found: " + ",".join(f"{k}={v}" for k, v in selector.items()),
                {"selector": selector},
                "No gateway pod carries these labels: correct the selector (e.g. istio=ingressgateway) "
                "or deploy the gateway.",
            )
        for i, server in enumerate(spec.get("servers") or []):
            if not server.get("port") or not server.get("hosts"):
                yield _finding(
                    snap,
                    gw,
                    "Gateway",
                    "IST0106",
                    "Error",
                    f"Schema validation error: servers[{i}] needs a port and hosts",
                    {"server": server},
                    "Give every server a port and at least one host.",
                )
                continue
            tls = server.get("tls") or {}
            names = [tls["credentialName"]] if tls.get("credentialName") else list(tls.get("credentialNames") or [])
            if tls.get("mode") not in TLS_TERMINATING:
                continue
            secret_namespaces = sorted({ns_of(p) for p in pods or []}) or [ns]
            for cred in names:
                cred_ns, _, cred_name = cred.rpartition("/")
                spaces = [cred_ns] if cred_ns else secret_namespaces
                if not all(snap.covers("secrets", s) for s in spaces):
                    continue
                if any(snap.get("secrets", s, cred_name) for s in spaces):
                    continue
                port = server["port"]
                yield _finding(
                    snap,
                    gw,
                    "Gateway",
                    "IST0101",
                    "Error",
                    f"Referenced credentialName not found: {cred}",
                    {
                        "server": f"{port.get('number')}/{port.get('protocol')}",
                        "hosts": server.get("hosts"),
                        "tls_mode": tls.get("mode"),
                        "looked_in": spaces,
                    },
                    f"Create the TLS Secret {cred_name} (tls.crt/tls.key) in the namespace of the gateway pods "
                    f"({', '.join(spaces)}); until then the gateway cannot serve these hosts over TLS.",
                    fix=Fix(
                        action="create_missing",
                        target=ObjectRef(kind="Secret", name=cred_name, namespace=spaces[0], cluster=snap.cluster),
                        params={"type": "kubernetes.io/tls"},
                    ),
                )


# -- injection and ports ------------------------------------------------------------------------------------
def injection_rules(snap: Snapshot) -> Iterator[Finding]:
    mesh = Mesh(snap)
    targeted: set[str] = set()
    for kind in ("virtualservices", "destinationrules"):
        for obj in snap.items(kind):
            hosts = [d.get("host", "") for _, d in _destinations(obj)] + [(obj.get("spec") or {}).get("host") or ""]
            for host in hosts:
                svc = service_of(mesh.fqdn(host, ns_of(obj))) if host else None
                if svc:
                    targeted.add(svc[0])
    for ns_obj in snap.items("namespaces"):
        ns = name_of(ns_obj)
        if not snap.in_scope(ns) or ns in SYSTEM_NAMESPACES or not snap.covers("pods", ns):
            continue
        state = injection(ns_obj)
        pods = [p for p in snap.in_ns("pods", ns) if not pod_is_terminal(p)]
        without = [p for p in pods if not has_proxy(p) and not opted_out(p)]
        if state == "enabled" or state.startswith("rev:"):
            for pod in without:
                owner = snap.owner(pod)
                yield _finding(
                    snap,
                    pod,
                    "Pod",
                    "IST0103",
                    "Warning",
                    f"no sidecar although namespace {ns} has injection {state}",
                    {"namespace_injection": state},
                    "The pod was created before injection was enabled (or the webhook failed): restart "
                    "its workload so new pods get the proxy.",
                    fix=Fix(action="rollout_restart", target=owner) if owner else None,
                )
            continue
        if state in ("ambient", "disabled") or not without:
            continue
        meshed = [p for p in pods if has_proxy(p)]
        reasons = []
        if meshed:
            reasons.append(f"{len(meshed)} of its pods have sidecars")
        if ns in targeted:
            reasons.append("Istio routing rules target its services")
        if not reasons:
            continue
        yield _finding(
            snap,
            ns_obj,
            "Namespace",
            "IST0102",
            "Warning",
            f"namespace is not enabled for sidecar injection although {' and '.join(reasons)}",
            {
                "injection": state,
                "pods_without_sidecar": len(without),
                "pods_with_sidecar": len(meshed),
                "sample": [name_of(p) for p in without[:5]],
            },
            f"Label the namespace istio-injection=enabled (or istio.io/rev=<revision>) and restart its "
            f"workloads; until then {len(without)} pod(s) bypass the mesh's routing and mTLS.",
        )


def port_names(snap: Snapshot) -> Iterator[Finding]:
    mesh = Mesh(snap)
    for svc in snap.items("services"):
        ns = ns_of(svc)
        if not snap.in_scope(ns) or ns in SYSTEM_NAMESPACES or not mesh.in_mesh(ns):
            continue
        if any(k.startswith(("gateway.networking.k8s.io/", "gateway.istio.io/")) for k in labels_of(svc)):
            continue  # generated for a Gateway API gateway
        if (svc.get("spec") or {}).get("type") == "ExternalName":
            continue  # istioctl reports those ports as IST0150 (istio_config.py)
        for port in (svc.get("spec") or {}).get("ports") or []:
            name = port.get("name") or ""
            if port.get("appProtocol") or any(name == p or name.startswith(p + "-") for p in PROTOCOLS):
                continue
            yield _finding(
                snap,
                svc,
                "Service",
                "IST0118",
                "Info",
                f"Port name {name or '(none)'} (port {port.get('port')}) is not under the naming "
                "convention: protocol detection is used",
                {"port": port.get("port"), "name": name or None},
                "Name the port <protocol>[-<suffix>] (http, http2, https, grpc, tcp, tls, ...) or set "
                "appProtocol, so Istio applies the right protocol.",
            )


def no_matching_workloads(snap: Snapshot) -> Iterator[Finding]:
    for key, kind, path in (
        ("authorizationpolicies", "AuthorizationPolicy", ("selector", "matchLabels")),
        ("peerauthentications", "PeerAuthentication", ("selector", "matchLabels")),
        ("sidecars", "Sidecar", ("workloadSelector", "labels")),
    ):
        for obj in snap.items(key):
            ns = ns_of(obj)
            labels = ((obj.get("spec") or {}).get(path[0]) or {}).get(path[1])
            if not labels or ns == ROOT_NAMESPACE or not snap.in_scope(ns) or not snap.covers("pods", ns):
                continue
            if any(selector_matches(labels_of(p), labels) for p in snap.in_ns("pods", ns)):
                continue
            yield _finding(
                snap,
                obj,
                kind,
                "IST0127",
                "Warning",
                "No matching workloads for this resource with the following labels: "
                + ",".join(f"{k}={v}" for k, v in labels.items()),
                {"selector": labels},
                "Correct the selector to the labels of the workloads it should "
                "apply to; as written it applies to nothing.",
            )


RULES = [
    virtual_services,
    vs_conflicts,
    destination_rules,
    dr_conflicts,
    mtls_conflicts,
    gateways,
    injection_rules,
    port_names,
    no_matching_workloads,
]
