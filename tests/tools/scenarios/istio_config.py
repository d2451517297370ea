"""Istio configuration scenarios (engines/diagnosis/istio_config.py), each with a healthy twin, all in the mesh
fixture. A gateway workload a scenario needs is its own: Deployment and Service `edge` in the scenario
namespace, selected by the label edge=<namespace>, so parallel scenarios never share one."""

from __future__ import annotations

from typing import Any

from tests.tools.diagnosis_scenarios import MESH_NAMESPACE, Kube, Scenario, _istio, _mesh_app, _vs

SECURITY = "security.istio.io"
SIMPLE = {"mode": "SIMPLE", "credentialName": "edge-cert"}


def _edge(kube: Kube, ns: str) -> dict[str, str]:
    """A gateway workload of the namespace: Deployment edge (an istio-proxy container), Service edge exposing
    80 and 443, and its TLS Secret edge-cert. Returns the selector a Gateway uses for it."""
    selector = {"edge": ns}
    ports = [{"containerPort": 80, "name": "http2"}, {"containerPort": 443, "name": "https"}]
    kube.deploy(
        ns,
        "edge",
        image="docker.io/istio/proxyv2:1.24.2",
        labels={"app": "edge", **selector},
        container={"name": "istio-proxy", "ports": ports},
    )
    kube.create(
        f"/api/v1/namespaces/{ns}/services",
        {
            "metadata": {"name": "edge"},
            "spec": {
                "selector": selector,
                "ports": [
                    {"name": "http2", "port": 80, "targetPort": 80},
                    {"name": "https", "port": 443, "targetPort": 443},
                ],
            },
        },
    )
    kube.create(
        f"/api/v1/namespaces/{ns}/secrets",
        {"metadata": {"name": "edge-cert"}, "type": "Opaque", "data": {"tls.crt": "", "tls.key": ""}},
    )
    return selector


def _gateway(
    name: str, selector: dict[str, str], port: int, hosts: list[str], protocol: str = "HTTPS", tls: Any = None
) -> dict[str, Any]:
    server: dict[str, Any] = {
        "port": {"number": port, "name": f"{protocol.lower()}-{port}", "protocol": protocol},
        "hosts": hosts,
    }
    if tls:
        server["tls"] = tls
    return {"metadata": {"name": name}, "spec": {"selector": selector, "servers": [server]}}


def conflicting_gateways(kube: Kube, ns: str, broken: bool) -> None:
    """Two Gateways on one workload and port 443 for shop.example.com: one terminates TLS, the other passes it
    through. Twin: the second serves admin.example.com."""
    _mesh_app(kube, ns)
    selector = _edge(kube, ns)
    _istio(kube, ns, "gateways", _gateway("shop", selector, 443, ["shop.example.com"], tls=SIMPLE))
    other = "shop.example.com" if broken else "admin.example.com"
    passthrough = _gateway("shop-passthrough", selector, 443, [other], protocol="TLS", tls={"mode": "PASSTHROUGH"})
    _istio(kube, ns, "gateways", passthrough)


def gateway_port_not_on_service(kube: Kube, ns: str, broken: bool) -> None:
    """A Gateway server on port 8443 while the gateway's Service exposes 80 and 443. Twin: port 443."""
    _mesh_app(kube, ns)
    selector = _edge(kube, ns)
    _istio(kube, ns, "gateways", _gateway("edge", selector, 8443 if broken else 443, [f"{ns}.example.com"], tls=SIMPLE))


def multiple_injection_labels(kube: Kube, ns: str, broken: bool) -> None:
    """The namespace labelled istio-injection=enabled and istio.io/rev=canary. Twin: only istio-injection."""
    _mesh_app(kube, ns)
    if broken:
        kube.patch(f"/api/v1/namespaces/{ns}", {"metadata": {"labels": {"istio.io/rev": "canary"}}})


def vs_host_not_in_gateway(kube: Kube, ns: str, broken: bool) -> None:
    """A VirtualService for <ns>.other.com bound to the mesh's gateway serving *.example.com. Twin: a host
    under example.com."""
    _mesh_app(kube, ns)
    host = f"{ns}.other.com" if broken else f"{ns}.example.com"
    _istio(kube, ns, "virtualservices", _vs("web", {"host": "web"}, [f"{MESH_NAMESPACE}/shop-gw"], hosts=[host]))


def deployment_multiple_services(kube: Kube, ns: str, broken: bool) -> None:
    """A second Service for the web pods with port 80 named tcp-web, where Service web calls port 80 http.
    Twin: the second one names it http-web."""
    _mesh_app(kube, ns)
    kube.service(ns, "web-internal", selector={"app": "web"}, port_name="tcp-web" if broken else "http-web")


def multiple_sidecars(kube: Kube, ns: str, broken: bool) -> None:
    """Two Sidecars without workloadSelector in the namespace. Twin: one."""
    _mesh_app(kube, ns)
    egress = {"metadata": {"name": "default"}, "spec": {"egress": [{"hosts": ["./*", f"{MESH_NAMESPACE}/*"]}]}}
    _istio(kube, ns, "sidecars", egress)
    if broken:
        lockdown = {"metadata": {"name": "egress-lockdown"}, "spec": {"egress": [{"hosts": ["./*"]}]}}
        _istio(kube, ns, "sidecars", lockdown)


def vs_unreachable_rule(kube: Kube, ns: str, broken: bool) -> None:
    """A route without match conditions before the /api route, which then never applies. Twin: the catch-all
    last."""
    _mesh_app(kube, ns)
    catch_all = {"route": [{"destination": {"host": "web"}}]}
    api = {"name": "api", "match": [{"uri": {"prefix": "/api"}}], "route": [{"destination": {"host": "web"}}]}
    http = [catch_all, api] if broken else [api, catch_all]
    _istio(kube, ns, "virtualservices", {"metadata": {"name": "web"}, "spec": {"hosts": ["web"], "http": http}})


def authz_deny_all(kube: Kube, ns: str, broken: bool) -> None:
    """An ALLOW AuthorizationPolicy for the web pods without rules (it allows nothing). Twin: one rule
    admitting the namespace's own workloads."""
    _mesh_app(kube, ns)
    spec: dict[str, Any] = {"selector": {"matchLabels": {"app": "web"}}}
    if not broken:
        spec["rules"] = [{"from": [{"source": {"namespaces": [ns]}}]}]
    _istio(kube, ns, "authorizationpolicies", {"metadata": {"name": "web-access"}, "spec": spec}, group=SECURITY)


SCENARIOS: list[Scenario] = [
    Scenario(
        "conflicting-gateways",
        "IST0145",
        conflicting_gateways,
        {"port": 443, "hosts": ["shop.example.com"]},
        mesh=True,
    ),
    Scenario(
        "gateway-port-not-on-service",
        "IST0162",
        gateway_port_not_on_service,
        {"ports": [8443], "service_ports": [80, 443]},
        mesh=True,
    ),
    Scenario("multiple-injection-labels", "IST0123", multiple_injection_labels, {"istio.io/rev": "canary"}, mesh=True),
    Scenario(
        "vs-host-not-in-gateway",
        "IST0132",
        vs_host_not_in_gateway,
        {"gateway": f"{MESH_NAMESPACE}/shop-gw", "gateway_hosts": ["*.example.com"]},
        mesh=True,
    ),
    Scenario(
        "deployment-multiple-services",
        "IST0116",
        deployment_multiple_services,
        {"port": 80, "protocols": {"web": "HTTP", "web-internal": "TCP"}},
        mesh=True,
    ),
    Scenario(
        "multiple-sidecars-no-selector",
        "IST0111",
        multiple_sidecars,
        {"sidecars": ["default", "egress-lockdown"]},
        mesh=True,
    ),
    Scenario(
        "vs-unreachable-rule",
        "IST0130",
        vs_unreachable_rule,
        {"unreachable": {"http[1] api": "route without matches defined before"}},
        mesh=True,
    ),
    Scenario(
        "authz-deny-all",
        "AUTHZ_DENIES_SERVICE",
        authz_deny_all,
        {"action": "ALLOW", "rules": 0, "services": ["web"]},
        mesh=True,
        subject="AuthorizationPolicy",
    ),
]
