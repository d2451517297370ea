"""Service, Ingress and NetworkPolicy rules on plain dicts, each with its healthy twin."""

from __future__ import annotations

from tests.diagnosis.world import codes, fresh, meta, only, service


def test_selector_matching_no_pod_points_at_the_similar_workload() -> None:
    w = fresh()
    w["services"] = [service(selector={"app": "web-v2"})]
    f = only(w, "SVC_SELECTOR_NO_PODS")
    assert f.evidence["similar_workloads"] == ["Deployment web has app=web"]


def test_named_target_port_not_exposed() -> None:
    w = fresh()
    w["services"] = [service(target="metrics")]
    f = only(w, "SVC_TARGET_PORT_MISMATCH")
    assert f.evidence["container_port_names"] == ["http"]
    assert f.fix and f.fix.params == {"port": 80, "target_port": 8080}


def test_numeric_target_port_not_exposed() -> None:
    w = fresh()
    w["services"] = [service(target=9000)]
    assert only(w, "SVC_TARGET_PORT_MISMATCH").evidence["container_ports"] == [8080]
    w["services"] = [service(target="http")]
    assert codes(w) == []


def test_no_ready_pods_behind_a_service() -> None:
    w = fresh()
    for p in w["pods"]:
        p["status"]["conditions"][1]["status"] = "False"
    assert only(w, "SVC_NO_READY_PODS").evidence["pods"] == 2


def _ingress(service_name="web", port=80, cls="nginx", tls_secret=None):
    spec = {
        "rules": [
            {
                "host": "shop.example.com",
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": service_name, "port": {"number": port}}},
                        }
                    ]
                },
            }
        ]
    }
    if cls:
        spec["ingressClassName"] = cls
    if tls_secret:
        spec["tls"] = [{"hosts": ["shop.example.com"], "secretName": tls_secret}]
    return {"kind": "Ingress", "metadata": meta("shop"), "spec": spec}


def test_ingress_backend_missing_and_twin() -> None:
    w = fresh()
    w["ingresses"] = [_ingress("api")]
    assert only(w, "INGRESS_BACKEND_MISSING").evidence["service"] == "api"
    w["ingresses"] = [_ingress()]
    assert codes(w) == []


def test_ingress_backend_port_missing() -> None:
    w = fresh()
    w["ingresses"] = [_ingress(port=8443)]
    assert only(w, "INGRESS_BACKEND_PORT_MISSING").evidence["service_ports"] == ["http"]


def test_ingress_class_missing() -> None:
    w = fresh()
    w["ingresses"] = [_ingress(cls="traefik")]
    assert only(w, "INGRESS_CLASS_MISSING").evidence["available_classes"] == ["nginx"]


def test_ingress_without_class_uses_the_default() -> None:
    w = fresh()
    w["ingresses"] = [_ingress(cls=None)]
    assert codes(w) == []
    w["ingressclasses"][0]["metadata"]["annotations"] = {}
    assert codes(w) == ["INGRESS_CLASS_MISSING"]


def test_ingress_tls_secret_missing() -> None:
    w = fresh()
    w["ingresses"] = [_ingress(tls_secret="shop-tls")]
    f = only(w, "INGRESS_TLS_SECRET_MISSING")
    assert f.fix and f.fix.params == {"type": "kubernetes.io/tls"}
    w["secrets"].append({"metadata": meta("shop-tls")})
    assert codes(w) == []


def _policy(name, selector, ingress=None, types=("Ingress",)):
    spec = {"podSelector": selector, "policyTypes": list(types)}
    if ingress is not None:
        spec["ingress"] = ingress
    return {"kind": "NetworkPolicy", "metadata": meta(name), "spec": spec}


def test_network_policy_selecting_no_pod() -> None:
    w = fresh()
    w["networkpolicies"] = [_policy("api-only", {"matchLabels": {"app": "api"}}, ingress=[{}])]
    assert only(w, "NETPOL_NO_PODS").evidence["podSelector"] == {"matchLabels": {"app": "api"}}


def test_deny_all_policy_in_front_of_a_service() -> None:
    w = fresh()
    w["networkpolicies"] = [_policy("deny-all", {})]
    f = only(w, "NETPOL_DENIES_SERVICE")
    assert f.object.kind == "Service" and f.evidence["policies"] == ["deny-all"]
    w["networkpolicies"].append(
        _policy("allow-web", {"matchLabels": {"app": "web"}}, ingress=[{"ports": [{"port": 8080}]}])
    )
    assert codes(w) == []  # an allowing rule exists: not a blanket deny
