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
    authorization_deny_all,
    conflicting_gateways,
    deployment_protocols,
    gateway_service_ports,
    hosts_overlap,
    injection_labels,
    sidecars_without_selector,
    unreachable_routes,
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
