"""Service and traffic rules: Services without endpoints (and why), load balancers the cloud controller fails
to provision, Ingress backends, classes and TLS secrets, NetworkPolicies that select nothing or shut out a
Service's pods."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from engines.diagnosis.common import containers, event_summary, pod_template_labels, present, seen_since
from engines.diagnosis.model import Finding, Fix
from engines.diagnosis.snapshot import (
    Obj,
    Snapshot,
    label_selector_matches,
    labels_of,
    meta,
    name_of,
    ns_of,
    pod_is_ready,
    selector_matches,
)
from kube.podstatus import pod_reason

WORKLOAD_KINDS = (("deployments", "Deployment"), ("statefulsets", "StatefulSet"), ("daemonsets", "DaemonSet"))


def _container_ports(pods: list[Obj]) -> tuple[set[int], set[str]]:
    numbers: set[int] = set()
    names: set[str] = set()
    for pod in pods:
        for c in containers(pod.get("spec") or {}, init=False):
            for p in c.get("ports") or []:
                if p.get("containerPort"):
                    numbers.add(int(p["containerPort"]))
                if p.get("name"):
                    names.add(p["name"])
    return numbers, names


def services(snap: Snapshot) -> Iterator[Finding]:
    for svc in snap.items("services"):
        ns, spec = ns_of(svc), svc.get("spec") or {}
        selector = spec.get("selector") or {}
        if not selector or spec.get("type") == "ExternalName" or not snap.in_scope(ns) or not snap.covers("pods", ns):
            continue
        pods = snap.pods_matching(ns, selector)
        if not pods:
            finding = _no_pods(snap, svc, selector)
            if finding:
                yield finding
            continue
        yield from _port_mismatch(snap, svc, pods)
        ready = [p for p in pods if pod_is_ready(p)]
        if not ready:
            states: dict[str, int] = {}
            for p in pods:
                states[pod_reason(p)] = states.get(pod_reason(p), 0) + 1
            yield Finding(
                code="SVC_NO_READY_PODS",
                severity="critical",
                tier=2,
                object=snap.ref(svc, "Service"),
                summary=f"no endpoints: none of its {len(pods)} pod(s) is ready",
                evidence={"selector": selector, "pods": len(pods), "ready": 0, "pod_states": states},
                remediation="Traffic fails until a pod is ready: see the findings on the selected pods.",
                involves=[snap.ref(p, "Pod") for p in pods[:5]],
            )


# Warning reasons of load balancer controllers: the cloud-provider service controller (Sync..., Update...,
# UnAvailable...), MetalLB (AllocationFailed), the AWS Load Balancer Controller (FailedBuildModel, ...).
LB_RETRY_WINDOW = timedelta(hours=1)
LB_FAILURES = {
    "SyncLoadBalancerFailed",
    "UpdateLoadBalancerFailed",
    "UnAvailableLoadBalancer",
    "DeleteLoadBalancerFailed",
    "AllocationFailed",
    "FailedBuildModel",
    "FailedDeployModel",
}


def lb_ingress(svc: Obj) -> list[str]:
    """The addresses a load balancer controller wrote to the Service's status."""
    ingress = (((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress")) or []
    if not isinstance(ingress, list):
        return []
    return [
        str(i.get("ip") or i.get("hostname"))
        for i in ingress
        if isinstance(i, dict) and (i.get("ip") or i.get("hostname"))
    ]


def lb_failures(snap: Snapshot, svc: Obj) -> list[Obj]:
    """Warning events of a load balancer controller about a LoadBalancer Service in the last hour, newest first.
    The controllers retry a failing Service every few minutes and record each failure, so an older event is
    history: the retry after it succeeded (or, with no address, the controller is gone)."""
    if (svc.get("spec") or {}).get("type") != "LoadBalancer":
        return []
    recent = snap.now - LB_RETRY_WINDOW
    return [
        e
        for e in snap.events_for("Service", ns_of(svc), name_of(svc))
        if e.get("reason") in LB_FAILURES and seen_since(e, recent)
    ]


def load_balancers(snap: Snapshot) -> Iterator[Finding]:
    """A LoadBalancer Service whose controller reports failures: with no address, nothing outside the cluster
    reaches it; with one, the load balancer was not updated (new nodes, ports) and may send traffic astray."""
    for svc in snap.items("services"):
        failures = lb_failures(snap, svc)
        if not failures or not snap.in_scope(ns_of(svc)):
            continue
        addresses = lb_ingress(svc)
        latest = str(failures[0].get("message") or "")
        evidence = {
            "type": "LoadBalancer",
            "reason": failures[0].get("reason"),
            "ingress": addresses,
            "loadBalancerClass": (svc.get("spec") or {}).get("loadBalancerClass"),
            "events": event_summary(failures),
        }
        yield Finding(
            code="SVC_LB_FAILED",
            severity="warning" if addresses else "critical",
            object=snap.ref(svc, "Service"),
            summary=(
                f"load balancer update failed (it has address {addresses[0]})"
                if addresses
                else "no load balancer address: provisioning fails"
            )
            + f": {latest[:200]}",
            evidence=present(evidence),
            remediation="Fix what the controller's message names (cloud quota, subnet or security group, IP pool, "
            "annotations on the Service, the controller's cloud credentials), then wait for its next retry; the "
            "Service's spec.loadBalancerClass or annotations choose which controller and options apply.",
        )


def _no_pods(snap: Snapshot, svc: Obj, selector: dict[str, str]) -> Finding | None:
    ns = ns_of(svc)
    candidates: list[tuple[tuple[int, int], str]] = []  # ((label distance, name distance), description)
    corrections: dict[str, dict[str, str]] = {}  # description → the selector values that would match it
    for key, kind in WORKLOAD_KINDS:
        for w in snap.in_ns(key, ns):
            labels = pod_template_labels(w)
            if selector_matches(labels, selector):
                if (w.get("spec") or {}).get("replicas", 1) == 0:
                    return None  # scaled to zero on purpose
                continue
            shared = set(labels) & set(selector)
            if shared:
                text = f"{kind} {name_of(w)} has " + ", ".join(f"{k}={labels[k]}" for k in sorted(shared))
                rank = (_label_distance(selector, labels), edit_distance(name_of(svc)[:63], name_of(w)[:63]))
                candidates.append((rank, text))
                if set(selector) <= set(labels):
                    corrections[text] = {k: labels[k] for k in selector if labels[k] != selector[k]}
    candidates.sort(key=lambda c: c[0])
    evidence: dict[str, Any] = {"selector": selector, "pods_in_namespace": len(snap.in_ns("pods", ns))}
    if candidates:
        evidence["similar_workloads"] = [text for _, text in candidates[:5]]
    closest = _clearly_closest(candidates, selector)
    wanted = corrections.get(closest or "")
    fix = None
    if wanted and closest:  # one workload is a typo away, with every selector key: correct the selector's values to it
        fix = Fix(
            action="set_fields",
            target=snap.ref(svc, "Service"),
            params={
                "fields": [[["spec", "selector", k], v] for k, v in sorted(wanted.items())],
                "expected": f"the selector matches the pods of {closest.split(' has ')[0]}; the Service gets endpoints",
            },
        )
    return Finding(
        code="SVC_SELECTOR_NO_PODS",
        severity="critical",
        object=snap.ref(svc, "Service"),
        summary="no endpoints: its selector " + ",".join(f"{k}={v}" for k, v in selector.items()) + " matches no pod",
        evidence=evidence,
        remediation="Correct the Service selector to the pods' labels (or the pods' labels to the selector)"
        + (f"; closest: {closest}" if closest else "")
        + ".",
        fix=fix,
    )


def _label_distance(selector: dict[str, str], labels: dict[str, str]) -> int:
    """Edits that turn the workload's pod labels into ones the selector matches (a missing key: its whole value)."""
    return sum(
        edit_distance(str(v)[:63], str(labels[k])[:63]) if k in labels else len(str(v)) + 1 for k, v in selector.items()
    )


def _clearly_closest(candidates: list[tuple[tuple[int, int], str]], selector: dict[str, str]) -> str | None:
    """The best candidate when it is a plausible typo away and strictly better than the next; else None."""
    if not candidates:
        return None
    (best, text) = candidates[0]
    if len(candidates) > 1 and candidates[1][0] == best:
        return None
    typo = max(1, sum(len(str(v)) for v in selector.values()) // 3)
    return text if best[0] <= typo else None


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and adjacent transpositions."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[len(b)]


def _port_mismatch(snap: Snapshot, svc: Obj, pods: list[Obj]) -> Iterator[Finding]:
    numbers, names = _container_ports(pods)
    for port in (svc.get("spec") or {}).get("ports") or []:
        target = port.get("targetPort", port.get("port"))
        if isinstance(target, str) and not target.isdigit():
            bad = target not in names
        else:
            bad = bool(numbers) and int(target) not in numbers
        if not bad:
            continue
        fix = None
        if len(numbers) == 1:
            fix = Fix(
                action="set_target_port",
                target=snap.ref(svc, "Service"),
                params={"port": port.get("port"), "target_port": next(iter(numbers))},
            )
        yield Finding(
            code="SVC_TARGET_PORT_MISMATCH",
            severity="critical",
            object=snap.ref(svc, "Service"),
            summary=f"port {port.get('port')} targets {target}, which no selected container exposes",
            evidence={
                "port": port.get("port"),
                "targetPort": target,
                "container_ports": sorted(numbers),
                "container_port_names": sorted(names),
            },
            remediation="Set targetPort to a port (number or name) the containers expose.",
            fix=fix,
        )


# -- Ingress -------------------------------------------------------------------------------------------------
def ingresses(snap: Snapshot) -> Iterator[Finding]:
    classes = {name_of(c): c for c in snap.items("ingressclasses")}
    has_default = any(
        (meta(c).get("annotations") or {}).get("ingressclass.kubernetes.io/is-default-class") == "true"
        for c in classes.values()
    )
    for ing in snap.items("ingresses"):
        ns, spec = ns_of(ing), ing.get("spec") or {}
        yield from _backends(snap, ing)
        cls = spec.get("ingressClassName")
        legacy = (meta(ing).get("annotations") or {}).get("kubernetes.io/ingress.class")
        if (
            snap.covers("ingressclasses")
            and not legacy
            and ((cls and cls not in classes) or (not cls and not has_default))
        ):
            yield Finding(
                code="INGRESS_CLASS_MISSING",
                severity="warning",
                object=snap.ref(ing, "Ingress"),
                summary=f"IngressClass {cls} does not exist" if cls else "no ingressClassName and no default class",
                evidence={"ingressClassName": cls, "available_classes": sorted(classes)},
                remediation="Set ingressClassName to an installed IngressClass"
                + (f" ({', '.join(sorted(classes))})" if classes else " (no ingress controller is installed)")
                + "; no controller serves it otherwise.",
            )
        for tls in spec.get("tls") or []:
            secret = tls.get("secretName")
            if secret and snap.covers("secrets", ns) and snap.get("secrets", ns, secret) is None:
                yield Finding(
                    code="INGRESS_TLS_SECRET_MISSING",
                    severity="warning",
                    object=snap.ref(ing, "Ingress"),
                    summary=f"TLS Secret {secret} does not exist",
                    evidence={"secretName": secret, "hosts": tls.get("hosts")},
                    remediation=f"Create the kubernetes.io/tls Secret {secret} in {ns} (e.g. with cert-manager); "
                    "the controller serves a default certificate meanwhile.",
                    fix=Fix(
                        action="create_missing",
                        target=snap.make_ref("Secret", secret, ns),
                        params={"type": "kubernetes.io/tls"},
                    ),
                )


def _backends(snap: Snapshot, ing: Obj) -> Iterator[Finding]:
    ns, spec = ns_of(ing), ing.get("spec") or {}
    backends = [("default", spec.get("defaultBackend"))] + [
        (f"{rule.get('host') or '*'}{path.get('path') or '/'}", path.get("backend"))
        for rule in spec.get("rules") or []
        for path in (rule.get("http") or {}).get("paths") or []
    ]
    seen: set[tuple[str, str]] = set()
    for where, backend in backends:
        service = (backend or {}).get("service")
        if not service or not snap.covers("services", ns):
            continue
        name, port = service.get("name", ""), service.get("port") or {}
        wanted = port.get("name") or port.get("number")
        if (name, str(wanted)) in seen:
            continue
        seen.add((name, str(wanted)))
        svc = snap.get("services", ns, name)
        if svc is None:
            yield Finding(
                code="INGRESS_BACKEND_MISSING",
                severity="critical",
                object=snap.ref(ing, "Ingress"),
                summary=f"backend Service {name} ({where}) does not exist",
                evidence={"path": where, "service": name, "port": wanted},
                remediation=f"Create Service {name} in {ns} or point the rule at an existing Service.",
            )
            continue
        ports = (svc.get("spec") or {}).get("ports") or []
        if not any(p.get("name") == wanted or p.get("port") == wanted for p in ports):
            yield Finding(
                code="INGRESS_BACKEND_PORT_MISSING",
                severity="critical",
                object=snap.ref(ing, "Ingress"),
                summary=f"backend port {wanted} is not a port of Service {name}",
                evidence={
                    "path": where,
                    "service": name,
                    "port": wanted,
                    "service_ports": [p.get("name") or p.get("port") for p in ports],
                },
                remediation="Use one of the Service's ports (by number or name) in the Ingress backend.",
            )


# -- NetworkPolicy ---------------------------------------------------------------------------------------
def network_policies(snap: Snapshot) -> Iterator[Finding]:
    for pol in snap.items("networkpolicies"):
        ns, selector = ns_of(pol), (pol.get("spec") or {}).get("podSelector") or {}
        if (
            selector
            and snap.covers("pods", ns)
            and not any(label_selector_matches(labels_of(p), selector) for p in snap.in_ns("pods", ns))
        ):
            yield Finding(
                code="NETPOL_NO_PODS",
                severity="info",
                object=snap.ref(pol, "NetworkPolicy"),
                summary="its podSelector matches no pod, so it has no effect",
                evidence={"podSelector": selector},
                remediation="Correct the podSelector to the labels of the pods it should protect.",
            )
    for svc in snap.items("services"):
        ns, svc_selector = ns_of(svc), (svc.get("spec") or {}).get("selector") or {}
        if not svc_selector or not snap.in_scope(ns):
            continue
        pods = [p for p in snap.pods_matching(ns, svc_selector) if pod_is_ready(p)]
        if not pods:
            continue
        applying = [
            pol
            for pol in snap.in_ns("networkpolicies", ns)
            if _restricts_ingress(pol)
            and label_selector_matches(labels_of(pods[0]), (pol.get("spec") or {}).get("podSelector") or {})
        ]
        if applying and all(not (pol.get("spec") or {}).get("ingress") for pol in applying):
            yield Finding(
                code="NETPOL_DENIES_SERVICE",
                severity="warning",
                object=snap.ref(svc, "Service"),
                summary="NetworkPolicy " + ", ".join(name_of(p) for p in applying) + " denies all ingress to its pods",
                evidence={"policies": [name_of(p) for p in applying], "pods": len(pods)},
                involves=[snap.ref(p, "NetworkPolicy") for p in applying],
                remediation="Add an ingress rule allowing the Service's clients (namespaceSelector/podSelector and "
                "port), or narrow the deny-all policy's podSelector.",
            )


def _restricts_ingress(pol: Obj) -> bool:
    spec = pol.get("spec") or {}
    types = spec.get("policyTypes")
    return "Ingress" in types if types else True


RULES = [services, load_balancers, ingresses, network_policies]
