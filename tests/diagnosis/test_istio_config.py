"""The istioctl-style configuration checks of engines/diagnosis/istio_config.py and the AuthorizationPolicy
deny-all check, on plain dicts: each condition, its healthy twin, and malformed objects that must neither
crash a rule nor be reported."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from engines.diagnosis import Finding, Snapshot
from engines.diagnosis.engine import chain_causes
from engines.diagnosis.istio_config import (
    application_uid,
    authorization_deny_all,
    conflicting_gateways,
    deployment_protocols,
    deployment_target_ports,
    externalname_port_names,
    gateway_duplicate_certificates,
    gateway_service_ports,
    hosts_overlap,
    ineffective_selectors,
    ingress_bypasses_subsets,
    injection_labels,
    internal_gateway_refs,
    invalid_annotations,
    misplaced_annotations,
    negative_conditions,
    port_tls_verification,
    serviceentry_addresses,
    sidecar_selectors,
    sidecars_without_selector,
    unreachable_routes,
    vs_destination_ports,
    vs_hosts_in_gateway,
)
from tests.diagnosis.test_istio import PROXY, mesh_world
from tests.diagnosis.world import NOW, codes, findings, meta, namespace, pod, service

Obj = dict[str, Any]
Rule = Callable[[Snapshot], Iterator[Finding]]


def run_rule(rule: Rule, w: dict[str, list[Obj]], **kwargs: Any) -> list[Finding]:
    return chain_causes(list(rule(Snapshot(w, cluster="test", now=NOW, **kwargs))))  # as the engine does


def gateway(name: str, ns: str, port: int, hosts: list[Any], protocol: str = "TLS", **server: Any) -> Obj:
    return {
        "kind": "Gateway",
        "metadata": meta(name, ns),
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [{"port": {"number": port, "name": "p", "protocol": protocol}, "hosts": hosts, **server}],
        },
    }


def test_the_healthy_mesh_has_no_finding_from_these_rules() -> None:
    assert codes(mesh_world()) == []
    assert codes(mesh_world(), scope={"shop"}) == []


# -- IST0145 ---------------------------------------------------------------------------------------------------
def test_two_gateways_on_one_workload_port_and_host_conflict() -> None:
    w = mesh_world()
    w["istio_gateways"].append(gateway("shop-tls", "shop", 443, ["shop/shop.example.com"], tls={"mode": "PASSTHROUGH"}))
    (f,) = run_rule(conflicting_gateways, w)
    assert f.code == "IST0145" and f.severity == "critical"
    assert f.object.name == "shop-tls" and [o.name for o in f.involves] == ["shop-gw"]
    assert f.evidence["hosts"] == ["shop.example.com"] and f.evidence["port"] == 443
    assert f.evidence["gateways"] == ["istio-system/shop-gw", "shop/shop-tls"]
    assert f.evidence["protocols"]["shop/shop-tls"] == "TLS PASSTHROUGH"
    assert codes(w, scope={"shop"}) == ["IST0145"]
    (other,) = run_rule(conflicting_gateways, w, scope={"istio-system"})
    assert other.object.name == "shop-gw"


@pytest.mark.parametrize(
    "port, hosts, selector",
    [
        (443, ["*.example.com"], None),  # a wildcard next to a single host: the most specific name wins
        (8443, ["shop.example.com"], None),  # another port
        (443, ["shop.example.com"], {"istio": "internal-gateway"}),  # another workload
    ],
)
def test_gateways_that_do_not_share_workload_port_and_host_do_not_conflict(
    port: int, hosts: list[str], selector: dict[str, str] | None
) -> None:
    w = mesh_world()
    gw = gateway("shop-tls", "shop", port, hosts)
    if selector:
        gw["spec"]["selector"] = selector
    w["istio_gateways"].append(gw)
    assert run_rule(conflicting_gateways, w) == []


def test_malformed_gateways_do_not_crash_or_conflict() -> None:
    w = mesh_world()
    w["istio_gateways"] += [
        {"metadata": meta("a", "shop"), "spec": {"selector": {"istio": "ingressgateway"}, "servers": "x"}},
        {"metadata": meta("b", "shop"), "spec": {"selector": ["istio"], "servers": [{"port": 443}]}},
        gateway("c", "shop", 443, [None, 7]),
        {"metadata": meta("d", "shop"), "spec": "broken"},
        {"metadata": meta("e", "shop")},
    ]
    w["istio_gateways"][-3]["spec"]["servers"][0]["port"]["number"] = "443"
    for rule in (conflicting_gateways, gateway_service_ports):
        assert run_rule(rule, w) == []


# -- IST0162 ---------------------------------------------------------------------------------------------------
def gateway_service(*ports: Obj) -> Obj:
    svc = service("istio-ingressgateway", selector={"istio": "ingressgateway"}, ns="istio-system")
    svc["spec"]["ports"] = list(ports)
    return svc


def test_a_gateway_port_its_service_does_not_expose_is_reported() -> None:
    w = mesh_world()
    w["services"].append(
        gateway_service(
            {"name": "http2", "port": 80, "targetPort": 8080},
            {"name": "https", "port": 8443, "targetPort": "https"},
            {"name": "dns", "port": 9443, "protocol": "UDP"},
        )
    )
    w["istio_gateways"][0]["spec"]["servers"][0]["port"]["number"] = 9443
    (f,) = run_rule(gateway_service_ports, w)
    assert f.code == "IST0162" and f.object.name == "shop-gw"
    assert f.evidence["ports"] == [9443] and f.evidence["service_ports"] == [80, 8080, 8443]
    assert f.evidence["services"] == ["istio-system/istio-ingressgateway"]


@pytest.mark.parametrize("number", [80, 8080])
def test_a_gateway_port_matching_a_service_port_or_target_port_is_fine(number: int) -> None:
    w = mesh_world()
    w["services"].append(gateway_service({"name": "http2", "port": 80, "targetPort": 8080}))
    w["istio_gateways"][0]["spec"]["servers"][0]["port"]["number"] = number
    assert run_rule(gateway_service_ports, w) == []


def test_gateway_ports_are_not_checked_without_a_service_or_when_services_were_not_listed() -> None:
    w = mesh_world()
    w["istio_gateways"][0]["spec"]["servers"][0]["port"]["number"] = 9443
    assert run_rule(gateway_service_ports, w) == []  # no Service selects the gateway pods
    w["services"].append(gateway_service({"name": "http2", "port": 80}))
    assert run_rule(gateway_service_ports, w, covered={"services": {"shop"}}) == []


# -- IST0123 ---------------------------------------------------------------------------------------------------
def test_a_namespace_with_both_injection_labels_is_reported() -> None:
    w = mesh_world()
    w["namespaces"][0]["metadata"]["labels"]["istio.io/rev"] = "canary"
    f = next(f for f in findings(w) if f.code == "IST0123")
    assert f.object.kind == "Namespace" and f.object.name == "shop"
    assert f.evidence == {"istio-injection": "enabled", "istio.io/rev": "canary"}
    assert "revision canary is ignored" in f.summary


def test_one_injection_label_a_system_namespace_or_malformed_labels_are_not_reported() -> None:
    w = mesh_world()
    w["namespaces"][0]["metadata"]["labels"] = {"istio.io/rev": "canary"}
    w["namespaces"].append(namespace("kube-system", {"istio-injection": "enabled", "istio.io/rev": "canary"}))
    w["namespaces"].append({"metadata": {"name": "odd", "labels": ["istio-injection"]}})
    assert run_rule(injection_labels, w) == []


# -- IST0132 ---------------------------------------------------------------------------------------------------
def test_a_virtualservice_host_the_gateway_does_not_serve_is_reported() -> None:
    w = mesh_world()
    w["virtualservices"][0]["spec"]["hosts"] = ["api.other.com"]
    (f,) = run_rule(vs_hosts_in_gateway, w)
    assert f.code == "IST0132" and f.object.kind == "VirtualService"
    assert f.evidence == {
        "gateway": "istio-system/shop-gw",
        "hosts": ["api.other.com"],
        "gateway_hosts": ["shop.example.com"],
    }


@pytest.mark.parametrize(
    "gateway_host, served",
    [
        ("*.example.com", True),
        ("shop/shop.example.com", True),  # bindable from namespace shop
        ("*/shop.example.com", True),
        ("other/shop.example.com", False),  # only VirtualServices of namespace other
        ("./shop.example.com", False),  # only VirtualServices of the gateway's own namespace
        ("*", True),
    ],
)
def test_gateway_host_namespaces_decide_which_virtualservices_bind(gateway_host: str, served: bool) -> None:
    w = mesh_world()
    w["istio_gateways"][0]["spec"]["servers"][0]["hosts"] = [gateway_host]
    assert [f.code for f in run_rule(vs_hosts_in_gateway, w)] == ([] if served else ["IST0132"])


def test_a_missing_gateway_or_the_mesh_gateway_is_not_ist0132() -> None:
    w = mesh_world()
    w["virtualservices"][0]["spec"]["gateways"] = ["shop/nowhere", "mesh", 5]
    w["virtualservices"][0]["spec"]["hosts"] = ["api.other.com", None]
    assert run_rule(vs_hosts_in_gateway, w) == []


def test_host_overlap_follows_istio() -> None:
    assert hosts_overlap("*.example.com", "shop.example.com")
    assert hosts_overlap("shop.example.com", "*.example.com")
    assert hosts_overlap("*", "*.example.com") and hosts_overlap("*.com", "*.example.com")
    assert not hosts_overlap("*.example.com", "example.com")
    assert not hosts_overlap("shop.example.com", "api.example.com")
    assert hosts_overlap("Shop.Example.com", "shop.example.com")


# -- IST0116 ---------------------------------------------------------------------------------------------------
def test_two_services_with_one_port_and_different_protocols_are_reported() -> None:
    w = mesh_world()
    w["services"].append(service("web-tcp", port_name="tcp-web"))
    (f,) = run_rule(deployment_protocols, w)
    assert f.code == "IST0116" and f.object.kind == "Deployment" and f.object.name == "web"
    assert f.evidence == {"port": 80, "protocols": {"web": "HTTP", "web-tcp": "TCP"}}
    assert sorted(o.name for o in f.involves) == ["web", "web-tcp"]


def test_the_kubernetes_protocol_and_app_protocol_count() -> None:
    w = mesh_world()
    w["services"].append(service("web-udp"))
    w["services"][-1]["spec"]["ports"][0]["protocol"] = "UDP"
    (f,) = run_rule(deployment_protocols, w)
    assert f.evidence["protocols"] == {"web": "HTTP", "web-udp": "UDP"}
    w = mesh_world()
    w["services"].append(service("web-raw", port_name="http-raw"))
    w["services"][-1]["spec"]["ports"][0]["appProtocol"] = "tcp"  # appProtocol wins over the name
    assert [f.evidence["protocols"] for f in run_rule(deployment_protocols, w)] == [{"web": "HTTP", "web-raw": "TCP"}]


@pytest.mark.parametrize("port_name", ["http-web", "grpc", "web", "http2-alt"])
def test_one_protocol_family_or_an_undeclared_protocol_is_not_a_conflict(port_name: str) -> None:
    w = mesh_world()
    w["services"].append(service("web-alt", port_name=port_name))
    assert run_rule(deployment_protocols, w) == []


def test_deployments_outside_the_mesh_or_opted_out_are_not_checked() -> None:
    w = mesh_world()
    w["services"].append(service("web-tcp", port_name="tcp-web"))
    w["deployments"][0]["spec"]["template"]["metadata"]["annotations"] = {"sidecar.istio.io/inject": "false"}
    assert run_rule(deployment_protocols, w) == []
    w = mesh_world()
    w["services"].append(service("web-tcp", port_name="tcp-web"))
    w["namespaces"][0]["metadata"]["labels"] = {}
    for p in w["pods"]:
        p["metadata"].pop("annotations", None)
    assert run_rule(deployment_protocols, w) == []


def test_malformed_service_ports_do_not_crash() -> None:
    w = mesh_world()
    w["services"].append(service("web-odd"))
    w["services"][-1]["spec"]["ports"] = [None, {"port": "80", "name": 5}, {"port": True}]
    w["services"].append({"metadata": meta("web-none"), "spec": {"selector": "app=web"}})
    assert run_rule(deployment_protocols, w) == []


# -- IST0111 ---------------------------------------------------------------------------------------------------
def sidecar(name: str, **spec: Any) -> Obj:
    return {"kind": "Sidecar", "metadata": meta(name), "spec": {"egress": [{"hosts": ["./*"]}], **spec}}


def test_two_sidecars_without_workload_selector_are_reported() -> None:
    w = mesh_world()
    w["sidecars"] = [sidecar("default"), sidecar("lockdown")]
    (f,) = run_rule(sidecars_without_selector, w)
    assert f.code == "IST0111" and f.severity == "critical" and f.object.name == "lockdown"
    assert f.evidence == {"sidecars": ["default", "lockdown"]}


def test_one_selector_less_sidecar_is_fine() -> None:
    w = mesh_world()
    w["sidecars"] = [sidecar("default"), sidecar("web", workloadSelector={"labels": {"app": "web"}}), {"spec": None}]
    assert run_rule(sidecars_without_selector, w) == []
    assert codes(w) == []


# -- IST0130 ---------------------------------------------------------------------------------------------------
CATCH_ALL: Obj = {"route": [{"destination": {"host": "web"}}]}


def route(prefix: str, name: str | None = None, **match: Any) -> Obj:
    r: Obj = {"match": [{"uri": {"prefix": prefix}, **match}], "route": [{"destination": {"host": "web"}}]}
    if name:
        r["name"] = name
    return r


@pytest.mark.parametrize(
    "http, dead",
    [
        ([CATCH_ALL, route("/api", "api")], {"http[1] api": "route without matches defined before"}),
        ([CATCH_ALL, CATCH_ALL], {"http[1]": "only the last rule can have no matches"}),
        ([route("/a"), route("/a", ignoreUriCase=False)], {"http[1]": "all matches used by prior rules"}),
        ([route("/a", "x"), {**route("/a", "y"), "match": [{"uri": {"prefix": "/a"}, "name": "m"}]}], None),
    ],
)
def test_unreachable_routes(http: list[Obj], dead: dict[str, str] | None) -> None:
    w = mesh_world()
    w["virtualservices"][0]["spec"]["http"] = http
    found = run_rule(unreachable_routes, w)
    if dead is None:  # a match that differs only by its name is a duplicate too
        assert found[0].evidence["unreachable"] == {"http[1] y": "all matches used by prior rules"}
        return
    (f,) = found
    assert f.code == "IST0130" and f.evidence["unreachable"] == dead


@pytest.mark.parametrize(
    "http",
    [
        [route("/api"), CATCH_ALL],
        [route("/a"), {**route("/a"), "match": [{"uri": {"prefix": "/a"}}, {"uri": {"prefix": "/b"}}]}],
        "not a list",
        [None, 3, {"match": "x"}],
    ],
)
def test_reachable_or_malformed_routes_are_not_reported(http: Any) -> None:
    w = mesh_world()
    w["virtualservices"][0]["spec"]["http"] = http
    assert run_rule(unreachable_routes, w) == []


def test_tcp_routes_are_checked_too() -> None:
    w = mesh_world()
    w["virtualservices"][0]["spec"]["tcp"] = [{"route": []}, {"match": [{"port": 3306}], "route": []}]
    (f,) = run_rule(unreachable_routes, w)
    assert f.evidence["unreachable"] == {"tcp[1]": "route without matches defined before"}


# -- AUTHZ_DENIES_SERVICE --------------------------------------------------------------------------------------
def policy(name: str = "web-access", ns: str = "shop", **spec: Any) -> Obj:
    return {"kind": "AuthorizationPolicy", "metadata": meta(name, ns), "spec": spec}


ALLOW_SHOP = [{"from": [{"source": {"namespaces": ["shop"]}}]}]


def test_an_allow_policy_without_rules_denies_the_service() -> None:
    w = mesh_world()
    w["authorizationpolicies"] = [policy(selector={"matchLabels": {"app": "web"}})]
    (f,) = [f for f in findings(w, scope={"shop"}) if f.code == "AUTHZ_DENIES_SERVICE"]
    assert f.object.kind == "AuthorizationPolicy" and f.object.name == "web-access" and f.tier == 0
    assert f.evidence["services"] == ["web"] and f.evidence["action"] == "ALLOW" and f.evidence["rules"] == 0
    assert f.evidence["workloads"] == ["Deployment shop/web"]
    assert f.evidence["mesh_wide_policies"] == "not listed (istio-system)"
    assert [o.kind for o in f.chain] == ["AuthorizationPolicy", "Service"] and "affects Service shop/web" in f.summary
    assert codes(w, scope={"shop"}) == ["AUTHZ_DENIES_SERVICE"]


def test_a_deny_rule_without_conditions_denies_even_next_to_an_allow() -> None:
    w = mesh_world()
    w["authorizationpolicies"] = [
        policy("deny-all", action="DENY", rules=[{}]),
        policy("allow-shop", rules=ALLOW_SHOP),
    ]
    (f,) = run_rule(authorization_deny_all, w)
    assert f.object.name == "deny-all" and f.evidence["action"] == "DENY"
    assert "mesh_wide_policies" not in f.evidence


def test_a_root_namespace_policy_applies_mesh_wide() -> None:
    w = mesh_world()
    w["authorizationpolicies"] = [policy("allow-nothing", "istio-system")]
    (f,) = run_rule(authorization_deny_all, w)
    assert f.object.namespace == "istio-system" and f.evidence["services"] == ["shop/web"]
    w["authorizationpolicies"].append(policy("allow-shop", rules=ALLOW_SHOP))  # the usual deny-by-default layout
    assert run_rule(authorization_deny_all, w) == []


@pytest.mark.parametrize(
    "policies",
    [
        [policy(rules=ALLOW_SHOP)],
        [policy("a"), policy("b", rules=ALLOW_SHOP)],
        [policy(action="DENY", rules=[{"from": [{"source": {"namespaces": ["evil"]}}]}])],
        [policy(action="DENY")],  # a DENY without rules matches nothing
        [policy(action="CUSTOM", provider={"name": "ext-authz"})],
        [policy(action="AUDIT", rules=[{}])],
        [policy(selector={"matchLabels": {"app": "api"}})],  # selects other pods (IST0127's case)
        [policy("other-ns", "payments")],
        [{**policy(), "metadata": {**meta("dry"), "annotations": {"istio.io/dry-run": "true"}}}],
        [policy(targetRefs=[{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint"}])],
        [{"metadata": meta("odd"), "spec": ["x"]}, policy("odd2", rules="x", selector=[1])],
    ],
)
def test_policies_that_do_not_deny_everything_are_fine(policies: list[Obj]) -> None:
    w = mesh_world()
    w["authorizationpolicies"] = policies
    assert run_rule(authorization_deny_all, w) == []


def test_pods_without_a_proxy_are_not_subject_to_policies() -> None:
    w = mesh_world()
    w["authorizationpolicies"] = [policy()]
    for p in w["pods"]:
        p["metadata"].pop("annotations", None)
    assert run_rule(authorization_deny_all, w) == []
    w["namespaces"][0]["metadata"]["labels"] = {"istio.io/dataplane-mode": "ambient"}
    assert [f.code for f in run_rule(authorization_deny_all, w)] == ["AUTHZ_DENIES_SERVICE"]


def test_one_policy_blocking_several_services_is_one_finding() -> None:
    w = mesh_world()
    w["services"].append(service("web-admin", port_name="http-admin"))
    api = pod("api-1", rs=None, labels={"app": "api"})
    api["metadata"]["annotations"] = dict(PROXY)
    w["pods"].append(api)
    w["services"].append(service("api", selector={"app": "api"}))
    w["authorizationpolicies"] = [policy(selector={"matchLabels": {"app": "web"}})]
    (f,) = run_rule(authorization_deny_all, w)
    assert f.evidence["services"] == ["web", "web-admin"]


# -- the istioctl codes added later (IST0107 ... IST0171) ------------------------------------------------------------
def rules_of(w: dict[str, list[Obj]], rule: Rule, **kwargs: Any) -> list[tuple[str, str]]:
    return [(f.code, f.object.name) for f in run_rule(rule, w, **kwargs)]


def web_sidecar(name: str, **labels: str) -> Obj:
    return sidecar(name, workloadSelector={"labels": labels or {"app": "web"}})


def test_sidecars_selecting_the_same_pods_conflict() -> None:
    w = mesh_world()
    w["sidecars"] = [web_sidecar("web"), web_sidecar("web-v1", version="v1"), web_sidecar("other", app="other")]
    w["sidecars"][1]["metadata"]["creationTimestamp"] = "2026-11-22T09:00:00Z"
    (f,) = run_rule(sidecar_selectors, w)
    assert (f.code, f.severity, f.object.name) == ("IST0110", "critical", "web-v1")
    assert f.evidence == {"sidecars": ["web", "web-v1"], "pods": ["web-abc-1", "web-abc-2"]}
    assert [o.name for o in f.involves] == ["web"]


def test_one_sidecar_per_pod_or_malformed_sidecars_are_fine() -> None:
    w = mesh_world()
    w["sidecars"] = [
        web_sidecar("web"),
        sidecar("x", workloadSelector={"labels": "app=web"}),
        sidecar("y", workloadSelector=["app"]),
        {"metadata": meta("z"), "spec": None},
    ]
    assert run_rule(sidecar_selectors, w) == []


def test_sidecars_for_ambient_workloads_are_ineffective() -> None:
    w = mesh_world()
    for p in w["pods"]:
        p["metadata"]["annotations"] = {"ambient.istio.io/redirection": "enabled"}
    w["sidecars"] = [web_sidecar("web"), web_sidecar("web-v1", version="v1")]
    assert sorted(rules_of(w, sidecar_selectors)) == [("IST0167", "web"), ("IST0167", "web-v1")]
    w = mesh_world()
    w["namespaces"][0]["metadata"]["labels"] = {"istio.io/dataplane-mode": "ambient"}
    w["sidecars"] = [sidecar("default")]
    (f,) = run_rule(sidecar_selectors, w)
    assert f.code == "IST0167" and "ambient" in f.evidence["reason"]


def multi_port_web(w: dict[str, list[Obj]]) -> None:
    w["services"][0]["spec"]["ports"].append({"name": "grpc", "port": 9090, "targetPort": 9090})


def test_a_gateway_route_without_port_to_a_multi_port_service_is_reported() -> None:
    w = mesh_world()
    multi_port_web(w)
    w["virtualservices"][0]["spec"]["http"][0]["route"][0]["destination"].pop("port")
    (f,) = run_rule(vs_destination_ports, w)
    assert (f.code, f.severity) == ("IST0112", "critical")
    assert f.evidence == {"destinations": {"web": [80, 9090]}, "gateway_ports": [443]}


def test_destination_ports_that_are_set_single_or_resolvable_are_fine() -> None:
    w = mesh_world()
    multi_port_web(w)
    assert run_rule(vs_destination_ports, w) == []  # the port is set
    w["virtualservices"][0]["spec"]["http"][0]["route"][0]["destination"].pop("port")
    w["virtualservices"][0]["spec"]["gateways"] = ["mesh"]
    assert run_rule(vs_destination_ports, w) == []  # a sidecar uses the port the client dialled
    w = mesh_world()
    w["virtualservices"][0]["spec"]["http"][0]["route"][0]["destination"].pop("port")
    assert run_rule(vs_destination_ports, w) == []  # one port
    w["virtualservices"][0]["spec"]["http"] = [None, {"route": "x"}, {"route": [{"destination": {"host": 5}}]}]
    assert run_rule(vs_destination_ports, w) == []


def test_a_serviceentry_with_several_ports_needs_a_port_too() -> None:
    w = mesh_world()
    w["serviceentries"] = [
        {
            "metadata": meta("api"),
            "spec": {
                "hosts": ["api.example.com"],
                "ports": [{"number": 8443}, {"number": 9443}],
                "addresses": ["1.2.3.4"],
            },
        }
    ]
    w["virtualservices"][0]["spec"]["http"][0]["route"][0]["destination"] = {"host": "api.example.com"}
    (f,) = run_rule(vs_destination_ports, w)
    assert f.evidence["destinations"] == {"api.example.com": [8443, 9443]}
    w["serviceentries"][0]["spec"]["ports"][0]["number"] = 443
    assert run_rule(vs_destination_ports, w) == []  # the gateway's listener port 443 is one of them


def test_port_level_tls_without_ca_is_reported() -> None:
    w = mesh_world()
    settings = [
        {"port": {"number": 8443}, "tls": {"mode": "SIMPLE"}},
        {"port": {"number": 9443}, "tls": {"mode": "MUTUAL", "caCertificates": "/etc/ca.pem"}},
        {"port": {"number": 7443}, "tls": {"mode": "SIMPLE", "insecureSkipVerify": True}},
        {"port": {"number": 80}, "tls": {"mode": "ISTIO_MUTUAL"}},
        None,
        {"tls": "x"},
    ]
    w["destinationrules"][0]["spec"]["trafficPolicy"] = {"portLevelSettings": settings}
    (f,) = run_rule(port_tls_verification, w)
    assert (f.code, f.severity) == ("IST0129", "warning")
    assert f.evidence == {"host": "web.shop.svc.cluster.local", "ports": {"8443": "SIMPLE"}}
    w["destinationrules"][0]["spec"]["trafficPolicy"] = {"portLevelSettings": "broken"}
    assert run_rule(port_tls_verification, w) == []


def service_entry(name: str, ports: Any, **spec: Any) -> Obj:
    return {"metadata": meta(name), "spec": {"hosts": [f"{name}.example.com"], "ports": ports, **spec}}


def test_a_tcp_serviceentry_without_addresses_is_reported() -> None:
    w = mesh_world()
    w["serviceentries"] = [
        service_entry("db", [{"number": 5432, "name": "pg"}, {"number": 443, "protocol": "TLS"}]),
        service_entry("api", [{"number": 443, "protocol": "HTTPS"}]),
        service_entry("db2", [{"number": 5432, "protocol": "TCP"}], addresses=["10.1.2.3"]),
        {**service_entry("db3", [{"number": 5433}]), "status": {"addresses": [{"value": "240.240.0.1"}]}},
        service_entry("odd", "x"),
        {"metadata": meta("none"), "spec": None},
    ]
    (f,) = run_rule(serviceentry_addresses, w)
    assert (f.code, f.object.name) == ("IST0134", "db")
    assert f.evidence["tcp_ports"] == [5432]


def test_service_ports_sharing_a_target_port_conflict() -> None:
    w = mesh_world()
    w["services"].append(service("web-alt"))
    w["services"][-1]["spec"]["ports"][0]["port"] = 8080
    (f,) = run_rule(deployment_target_ports, w)
    assert (f.code, f.object.kind, f.object.name) == ("IST0137", "Deployment", "web")
    assert f.evidence == {"target_port": "8080", "ports": {"80": "web", "8080": "web-alt"}}
    w = mesh_world()
    w["services"].append(service("web-same"))  # the same port and targetPort: no conflict
    w["services"].append({"metadata": meta("odd"), "spec": {"selector": {"app": "web"}, "ports": [{"port": "1"}]}})
    assert run_rule(deployment_target_ports, w) == []


def test_gateways_of_one_workload_sharing_a_certificate_for_overlapping_hosts_are_reported() -> None:
    w = mesh_world()
    tls = {"mode": "SIMPLE", "credentialName": "shop-cert"}
    w["istio_gateways"].append(gateway("wild", "istio-system", 443, ["*.example.com"], tls=tls))
    w["istio_gateways"][-1]["metadata"]["creationTimestamp"] = "2026-11-22T09:00:00Z"
    (f,) = run_rule(gateway_duplicate_certificates, w)
    assert (f.code, f.object.name) == ("IST0138", "wild")
    assert f.evidence == {
        "gateways": ["istio-system/shop-gw", "istio-system/wild"],
        "credentialName": "shop-cert",
        "hosts": ["*.example.com", "shop.example.com"],
    }


def test_other_certificates_hosts_or_workloads_are_fine() -> None:
    w = mesh_world()
    other = gateway("admin", "istio-system", 443, ["admin.example.com"], tls={"mode": "SIMPLE", "credentialName": "x"})
    w["istio_gateways"].append(other)
    assert run_rule(gateway_duplicate_certificates, w) == []
    other["spec"]["servers"][0]["tls"]["credentialName"] = "shop-cert"
    assert run_rule(gateway_duplicate_certificates, w) == []  # a certificate for both names is not evident
    other["spec"]["servers"][0]["hosts"] = ["*.example.com"]
    other["spec"]["selector"] = {"istio": "internal"}
    assert run_rule(gateway_duplicate_certificates, w) == []
    other["spec"]["servers"][0]["tls"] = "broken"
    w["istio_gateways"].append({"metadata": meta("odd"), "spec": {"servers": [None, {"tls": {"credentialName": 5}}]}})
    assert run_rule(gateway_duplicate_certificates, w) == []


def mesh_split(host: str = "web") -> Obj:
    return {
        "metadata": meta("web-split"),
        "spec": {
            "hosts": [host],
            "http": [{"route": [{"destination": {"host": host, "subset": "v1"}, "weight": 100}]}],
        },
    }


def test_a_gateway_route_without_subset_bypasses_mesh_subset_routing() -> None:
    w = mesh_world()
    w["virtualservices"][0]["spec"]["http"][0]["route"][0]["destination"].pop("subset")
    w["virtualservices"].append(mesh_split("web.shop.svc.cluster.local"))
    (f,) = run_rule(ingress_bypasses_subsets, w)
    assert (f.code, f.object.name) == ("IST0140", "web")
    assert f.evidence == {"hosts": {"web": ["shop/web-split"]}}


def test_gateway_routes_with_subsets_or_without_mesh_splits_are_fine() -> None:
    w = mesh_world()
    w["virtualservices"].append(mesh_split())
    assert run_rule(ingress_bypasses_subsets, w) == []  # the gateway route names a subset
    w["virtualservices"][0]["spec"]["http"][0]["route"][0]["destination"].pop("subset")
    w["virtualservices"][1]["spec"]["gateways"] = ["istio-system/other"]
    assert run_rule(ingress_bypasses_subsets, w) == []  # the split is not a mesh rule
    w["virtualservices"].append({"metadata": meta("odd"), "spec": {"hosts": "web", "http": [{"route": [None]}]}})
    assert run_rule(ingress_bypasses_subsets, w) == []


def test_an_application_running_as_the_proxy_uid_is_reported() -> None:
    w = mesh_world()
    w["deployments"][0]["spec"]["template"]["spec"]["containers"][0]["securityContext"] = {"runAsUser": 1337}
    (f,) = run_rule(application_uid, w)
    assert (f.code, f.object.kind, f.object.name) == ("IST0144", "Deployment", "web")
    assert f.evidence == {"run_as_user": 1337, "set_on": ["web"]}
    w["pods"].append(pod("job-1", rs=None, securityContext={"runAsUser": 1337}))
    assert sorted(rules_of(w, application_uid)) == [("IST0144", "job-1"), ("IST0144", "web")]


def test_other_uids_unmeshed_or_gateway_workloads_are_fine() -> None:
    w = mesh_world()
    tpl = w["deployments"][0]["spec"]["template"]
    tpl["spec"]["containers"][0]["securityContext"] = {"runAsUser": 1000}
    tpl["spec"]["securityContext"] = "broken"
    assert run_rule(application_uid, w) == []
    tpl["spec"]["containers"] = [{"name": "istio-proxy", "securityContext": {"runAsUser": 1337}}]
    assert run_rule(application_uid, w) == []
    w = mesh_world()
    w["deployments"][0]["spec"]["template"]["spec"]["containers"][0]["securityContext"] = {"runAsUser": 1337}
    w["namespaces"][0]["metadata"]["labels"] = {}
    for p in w["pods"]:
        p["metadata"].pop("annotations", None)
    assert run_rule(application_uid, w) == []


@pytest.mark.parametrize(
    "name, value, valid",
    [
        ("traffic.sidecar.istio.io/excludeOutboundPorts", "5432, 6379", True),
        ("traffic.sidecar.istio.io/excludeOutboundPorts", "5432;6379", False),
        ("traffic.sidecar.istio.io/includeInboundPorts", "*", True),
        ("traffic.sidecar.istio.io/excludeInboundPorts", "*", False),
        ("traffic.sidecar.istio.io/excludeInboundPorts", "", True),
        ("traffic.sidecar.istio.io/includeOutboundIPRanges", "*", True),
        ("traffic.sidecar.istio.io/excludeOutboundIPRanges", "10.0.0.0/8,169.254.169.254/32", True),
        ("traffic.sidecar.istio.io/excludeOutboundIPRanges", "10.0.0.0", False),
        ("traffic.sidecar.istio.io/excludeOutboundIPRanges", "10.0.0.0/8, 172.16.0.0/12", False),
        ("sidecar.istio.io/interceptionMode", "TPROXY", True),
        ("sidecar.istio.io/interceptionMode", "tproxy", False),
        ("status.sidecar.istio.io/port", "15021", True),
        ("status.sidecar.istio.io/port", "70000", False),
        ("readiness.status.sidecar.istio.io/periodSeconds", "-1", False),
        ("prometheus.istio.io/merge-metrics", "True", True),
        ("prometheus.istio.io/merge-metrics", "yes", False),
        ("sidecar.istio.io/proxyCPU", "lots", True),  # not validated here
    ],
)
def test_sidecar_annotation_values_are_validated(name: str, value: str, valid: bool) -> None:
    w = mesh_world()
    w["deployments"][0]["spec"]["template"]["metadata"]["annotations"] = {name: value, "other": 5}
    found = rules_of(w, invalid_annotations)
    assert found == ([] if valid else [("IST0125", "web")])


def test_invalid_annotations_on_unowned_pods_and_malformed_values() -> None:
    w = mesh_world()
    w["pods"].append(pod("debug", rs=None))
    w["pods"][-1]["metadata"]["annotations"] = {"sidecar.istio.io/interceptionMode": 3}
    (f,) = run_rule(invalid_annotations, w)
    assert (f.code, f.object.kind) == ("IST0125", "Pod")
    assert "not a string" in f.evidence["annotations"]["sidecar.istio.io/interceptionMode"]


def test_pod_annotations_on_a_deployment_service_or_namespace_are_misplaced() -> None:
    w = mesh_world()
    w["deployments"][0]["metadata"]["annotations"] = {
        "sidecar.istio.io/inject": "false",
        "proxy.istio.io/config": "{}",
        "deployment.kubernetes.io/revision": "1",
    }
    w["namespaces"][0]["metadata"]["annotations"] = {"sidecar.istio.io/inject": "true"}
    w["services"][0]["metadata"]["annotations"] = {"networking.istio.io/exportTo": "."}
    found = {f.object.kind: f for f in run_rule(misplaced_annotations, w)}
    assert sorted(found) == ["Deployment", "Namespace"]
    assert found["Deployment"].evidence["annotations"] == ["proxy.istio.io/config", "sidecar.istio.io/inject"]
    assert "istio-injection" in found["Namespace"].remediation


def test_an_annotation_also_on_the_pod_template_is_not_misplaced() -> None:
    w = mesh_world()
    w["deployments"][0]["metadata"]["annotations"] = {"sidecar.istio.io/inject": "true", 5: "x"}
    w["deployments"][0]["spec"]["template"]["metadata"]["annotations"] = {"sidecar.istio.io/inject": "true"}
    w["services"][0]["metadata"]["annotations"] = "broken"
    assert run_rule(misplaced_annotations, w) == []


def external(name: str, *ports: Any) -> Obj:
    return {
        "metadata": meta(name),
        "spec": {"type": "ExternalName", "externalName": f"{name}.example.com", "ports": list(ports)},
    }


def test_externalname_ports_without_istio_protocol_are_reported() -> None:
    w = mesh_world()
    w["services"] += [
        external(
            "db",
            {"name": "postgres", "port": 5432},
            {"name": "tcp", "port": 5433},
            {"name": "dns", "port": 53, "protocol": "UDP"},
        ),
        external("api", {"name": "https", "port": 443}, {"name": "web", "port": 80, "appProtocol": "http"}),
        external("odd", None, "x"),
    ]
    (f,) = run_rule(externalname_port_names, w)
    assert (f.code, f.object.name) == ("IST0150", "db")
    assert f.evidence["ports"] == ["5432/postgres", "5433/tcp"]


def test_externalname_ports_are_not_checked_without_a_mesh() -> None:
    w = mesh_world()
    w["services"].append(external("db", {"name": "postgres", "port": 5432}))
    w["namespaces"][0]["metadata"]["labels"] = {}
    for p in w["pods"]:
        p["metadata"].pop("annotations", None)
    assert run_rule(externalname_port_names, w) == []


def test_a_virtualservice_naming_the_generated_gateway_is_reported() -> None:
    w = mesh_world()
    w["virtualservices"][0]["spec"]["gateways"] = ["shop/edge-istio-autogenerated-k8s-gateway-https", 5]
    (f,) = run_rule(internal_gateway_refs, w)
    assert (f.code, f.evidence) == ("IST0165", {"gateways": ["shop/edge-istio-autogenerated-k8s-gateway-https"]})
    w["virtualservices"][0]["spec"]["gateways"] = ["shop/edge", "mesh"]
    assert run_rule(internal_gateway_refs, w) == []


def test_a_selector_matching_gateway_api_gateway_pods_is_ineffective() -> None:
    w = mesh_world()
    w["pods"].append(pod("edge-1", rs=None, labels={"gateway.networking.k8s.io/gateway-name": "edge", "app": "edge"}))
    w["authorizationpolicies"] = [
        policy("edge-allow", selector={"matchLabels": {"app": "edge"}}),
        policy("edge-ref", selector={"matchLabels": {"app": "edge"}}, targetRefs=[{"kind": "Gateway", "name": "edge"}]),
        policy("web-allow", selector={"matchLabels": {"app": "web"}}, rules=[{}]),
        policy("odd", selector={"matchLabels": "app=edge"}),
    ]
    (f,) = run_rule(ineffective_selectors, w)
    assert (f.code, f.object.name, f.evidence["gateways"]) == ("IST0166", "edge-allow", ["edge"])


def test_false_status_conditions_are_reported() -> None:
    w = mesh_world()
    w["authorizationpolicies"] = [
        {
            **policy("waypoint-policy", rules=[{}]),
            "status": {
                "conditions": [
                    {"type": "WaypointAccepted", "status": "False", "reason": "Invalid", "message": "no waypoint"},
                    {"type": "Other", "status": "True"},
                ]
            },
        }
    ]
    w["services"][0]["status"] = {"conditions": [None, {"type": "Ready", "status": "Unknown"}]}
    w["serviceentries"] = [{"metadata": meta("se"), "status": {"conditions": "broken"}}]
    (f,) = run_rule(negative_conditions, w)
    assert (f.code, f.object.kind) == ("IST0171", "AuthorizationPolicy")
    assert f.evidence == {"conditions": {"WaypointAccepted": "Invalid: no waypoint"}}


def test_the_healthy_mesh_stays_silent_for_the_added_rules() -> None:
    for rule in (
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
    ):
        assert run_rule(rule, mesh_world()) == [], rule.__name__
