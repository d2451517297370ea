"""Istio rules on plain dicts: each istioctl-style check, its healthy twin, and the references that must not
raise false alarms (other namespaces, Gateway API objects, namespaces that were not listed)."""

from __future__ import annotations

from typing import Any

from tests.diagnosis.world import codes, findings, fresh, meta, namespace, only, pod, service

PROXY = {"sidecar.istio.io/status": '{"containers":["istio-proxy"]}'}


def mesh_world() -> dict[str, list[dict[str, Any]]]:
    """Healthy: namespace shop injected, web pods with sidecars and version=v1, an ingress gateway in
    istio-system serving shop.example.com over TLS, a VirtualService routing to subset v1."""
    w = fresh()
    w["namespaces"] = [namespace("shop", {"istio-injection": "enabled"}), namespace("istio-system")]
    for p in w["pods"]:
        p["metadata"]["labels"]["version"] = "v1"
        p["metadata"]["annotations"] = dict(PROXY)
    gw_pod = pod("istio-ingressgateway-1", rs=None, ns="istio-system", labels={"istio": "ingressgateway"})
    gw_pod["metadata"]["annotations"] = dict(PROXY)
    w["pods"].append(gw_pod)
    w["secrets"].append({"metadata": meta("shop-cert", "istio-system")})
    w["istio_gateways"] = [
        {
            "kind": "Gateway",
            "metadata": meta("shop-gw", "istio-system"),
            "spec": {
                "selector": {"istio": "ingressgateway"},
                "servers": [
                    {
                        "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                        "hosts": ["shop.example.com"],
                        "tls": {"mode": "SIMPLE", "credentialName": "shop-cert"},
                    }
                ],
            },
        }
    ]
    w["virtualservices"] = [
        {
            "kind": "VirtualService",
            "metadata": meta("web"),
            "spec": {
                "hosts": ["shop.example.com"],
                "gateways": ["istio-system/shop-gw"],
                "http": [{"route": [{"destination": {"host": "web", "subset": "v1", "port": {"number": 80}}}]}],
            },
        }
    ]
    w["destinationrules"] = [
        {
            "kind": "DestinationRule",
            "metadata": meta("web"),
            "spec": {"host": "web.shop.svc.cluster.local", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]},
        }
    ]
    for key in (
        "serviceentries",
        "sidecars",
        "peerauthentications",
        "authorizationpolicies",
        "k8s_gateways",
        "httproutes",
    ):
        w[key] = []
    return w


def test_healthy_mesh_has_no_findings() -> None:
    assert codes(mesh_world()) == []
    assert codes(mesh_world(), scope={"shop"}) == []


def test_virtualservice_gateway_not_found() -> None:
    w = mesh_world()
    w["virtualservices"][0]["spec"]["gateways"] = ["shop-gw"]  # a bare name means namespace shop
    f = only(w, "IST0101")
    assert f.summary == "Referenced gateway not found: shop/shop-gw" and f.severity == "critical"


def test_gateway_api_gateway_reference_is_not_a_false_alarm() -> None:
    w = mesh_world()
    w["virtualservices"][0]["spec"]["gateways"] = ["shop-gw"]
    w["k8s_gateways"] = [{"kind": "Gateway", "metadata": meta("shop-gw"), "spec": {"gatewayClassName": "istio"}}]
    assert codes(w) == []


def test_destination_host_not_found() -> None:
    w = mesh_world()
    w["virtualservices"][0]["spec"]["http"][0]["route"][0]["destination"] = {"host": "webb"}
    f = only(w, "IST0101")
    assert f.summary == "Referenced host not found: webb"
    assert f.evidence["resolved"] == "webb.shop.svc.cluster.local"


def test_cross_namespace_and_external_hosts_resolve() -> None:
    w = mesh_world()
    w["services"].append(service("ratings", ns="reviews", selector={}))
    w["namespaces"].append(namespace("reviews"))
    w["serviceentries"] = [{"kind": "ServiceEntry", "metadata": meta("ext"), "spec": {"hosts": ["*.stripe.com"]}}]
    w["virtualservices"][0]["spec"]["http"][:0] = [  # before the catch-all route
        {
            "match": [{"uri": {"prefix": "/a"}}],
            "route": [{"destination": {"host": "ratings.reviews.svc.cluster.local"}}],
        },
        {"match": [{"uri": {"prefix": "/b"}}], "route": [{"destination": {"host": "ratings.reviews"}}]},
        {"match": [{"uri": {"prefix": "/c"}}], "route": [{"destination": {"host": "api.stripe.com"}}]},
    ]
    assert codes(w) == []
    assert codes(w, scope={"shop"}) == []


def test_reference_into_an_unlisted_namespace_is_not_reported() -> None:
    w = mesh_world()
    w["virtualservices"][0]["spec"]["http"][0]["route"][0]["destination"] = {"host": "ratings.hidden.svc.cluster.local"}
    from engines.diagnosis import Snapshot, run

    snap = Snapshot(w, scope={"shop"}, covered={"services": {"shop"}})
    assert [f.code for f in run(snap).findings] == []


def test_subset_not_defined() -> None:
    w = mesh_world()
    w["virtualservices"][0]["spec"]["http"][0]["route"][0]["destination"]["subset"] = "v2"
    f = only(w, "IST0101")
    assert f.summary == "Referenced host+subset in destinationrule not found: web+v2"
    assert f.evidence["defined_subsets"] == ["v1"]


def test_subset_selecting_no_pods() -> None:
    w = mesh_world()
    w["destinationrules"][0]["spec"]["subsets"].append({"name": "v2", "labels": {"version": "v2"}})
    f = only(w, "ISTIO_SUBSET_NO_PODS")
    assert f.evidence["pod_labels"] == ["version=v1"]


def test_gateway_selector_matching_no_pod() -> None:
    w = mesh_world()
    w["istio_gateways"][0]["spec"]["selector"] = {"istio": "ingress"}
    f = only(w, "IST0101")
    assert f.summary == "Referenced selector not found: istio=ingress"


def test_gateway_credential_missing() -> None:
    w = mesh_world()
    w["secrets"] = [s for s in w["secrets"] if s["metadata"]["name"] != "shop-cert"]
    f = only(w, "IST0101")
    assert f.summary == "Referenced credentialName not found: shop-cert"
    assert f.evidence["looked_in"] == ["istio-system"]
    assert f.fix and f.fix.target.namespace == "istio-system"


def test_conflicting_virtual_services_on_one_gateway() -> None:
    w = mesh_world()
    other = {
        "kind": "VirtualService",
        "metadata": meta("web-canary"),
        "spec": {
            "hosts": ["shop.example.com"],
            "gateways": ["istio-system/shop-gw"],
            "http": [{"route": [{"destination": {"host": "web"}}]}],
        },
    }
    w["virtualservices"].append(other)
    f = only(w, "IST0109")
    assert f.evidence["virtual_services"] == ["shop/web", "shop/web-canary"]


def test_conflicting_destination_rules() -> None:
    w = mesh_world()
    w["destinationrules"].append(
        {
            "kind": "DestinationRule",
            "metadata": meta("web-lb"),
            "spec": {"host": "web", "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}}},
        }
    )
    f = only(w, "ISTIO_DR_CONFLICT")
    assert f.evidence["destination_rules"] == ["web", "web-lb"]


def test_mtls_strict_with_tls_disabled() -> None:
    w = mesh_world()
    w["peerauthentications"] = [
        {
            "kind": "PeerAuthentication",
            "metadata": meta("default", "istio-system"),
            "spec": {"mtls": {"mode": "STRICT"}},
        }
    ]
    w["destinationrules"][0]["spec"]["trafficPolicy"] = {"tls": {"mode": "DISABLE"}}
    f = only(w, "IST0113")
    assert f.evidence["peer_authentication"] == "istio-system/default" and f.evidence["mtls_mode"] == "STRICT"
    w["peerauthentications"].append(
        {
            "kind": "PeerAuthentication",
            "metadata": meta("web"),
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "mtls": {"mode": "PERMISSIVE"}},
        }
    )
    assert codes(w) == []  # the workload's own policy wins


def test_port_name_without_protocol() -> None:
    w = mesh_world()
    w["services"] = [service(port_name="web")]
    assert only(w, "IST0118").severity == "info"
    w["services"][0]["spec"]["ports"][0]["appProtocol"] = "http"
    assert codes(w) == []


def test_port_names_outside_the_mesh_are_not_checked() -> None:
    w = fresh()
    w["services"] = [service(port_name="web")]
    for key in ("istio_gateways", "virtualservices", "destinationrules", "peerauthentications"):
        w[key] = []
    assert codes(w) == []


def test_namespace_not_injected_while_its_services_are_routed() -> None:
    w = mesh_world()
    w["namespaces"][0] = namespace("shop")
    for p in w["pods"][:2]:
        p["metadata"]["annotations"] = {}
    f = only(w, "IST0102")
    assert f.object.kind == "Namespace" and f.evidence["pods_without_sidecar"] == 2
    w["namespaces"][0] = namespace("shop", {"istio.io/dataplane-mode": "ambient"})
    assert codes(w) == []  # ambient: in the mesh without sidecars


def test_pod_missing_proxy_in_an_injected_namespace() -> None:
    w = mesh_world()
    w["pods"][0]["metadata"]["annotations"] = {}
    f = only(w, "IST0103")
    assert f.object.kind == "Deployment" and f.fix and f.fix.action == "rollout_restart"
    w["pods"][0]["metadata"]["labels"]["sidecar.istio.io/inject"] = "false"
    assert codes(w) == []


def test_policy_selecting_no_workload() -> None:
    w = mesh_world()
    w["authorizationpolicies"] = [
        {
            "kind": "AuthorizationPolicy",
            "metadata": meta("api"),
            "spec": {
                "selector": {"matchLabels": {"app": "api"}},
                "action": "ALLOW",
                "rules": [{"from": [{"source": {"namespaces": ["shop"]}}]}],
            },
        }
    ]
    assert only(w, "IST0127").evidence["selector"] == {"app": "api"}
    w["authorizationpolicies"][0]["spec"]["selector"]["matchLabels"] = {"app": "web"}
    assert codes(w) == []


def test_tls_origination_without_ca() -> None:
    w = mesh_world()
    w["destinationrules"][0]["spec"]["trafficPolicy"] = {"tls": {"mode": "SIMPLE"}}
    assert only(w, "IST0128").severity == "warning"


def test_istio_rules_skip_clusters_without_istio() -> None:
    w = fresh()
    w["services"] = [service(port_name="web")]
    assert [f for f in findings(w) if f.code.startswith("IST")] == []
