"""Gateway API rules (engines/diagnosis/gateway_api.py) read as the spec defines them: parentRef and backendRef
defaults, listener selection by sectionName/port, allowedRoutes against the route NAMESPACE's labels, status
conditions only for the current generation, and nothing reported where a kind was not listed or the data is
malformed."""

from __future__ import annotations

from typing import Any

import pytest

from engines.diagnosis import Snapshot, gateway_api, run
from tests.diagnosis.world import NOW, Obj, cond, fresh, meta, namespace, only, service, ts
from tests.diagnosis.world import codes as world_codes

GROUP = "gateway.networking.k8s.io"


def gateway(
    name: str = "shop-gw",
    ns: str = "shop",
    cls: str = "istio",
    listeners: list[Obj] | None = None,
    conditions: list[Obj] | None = None,
    generation: int = 1,
) -> Obj:
    gw: Obj = {
        "kind": "Gateway",
        "metadata": meta(name, ns, generation=generation),
        "spec": {"gatewayClassName": cls, "listeners": listeners or [{"name": "http", "port": 80, "protocol": "HTTP"}]},
    }
    if conditions is not None:
        gw["status"] = {"conditions": conditions}
    return gw


def route(
    parents: list[Obj] | None = None, backends: list[Obj] | None = None, labels: dict[str, str] | None = None
) -> Obj:
    return {
        "kind": "HTTPRoute",
        "metadata": meta("web", "shop", labels, generation=1),
        "spec": {
            "parentRefs": parents if parents is not None else [{"name": "shop-gw"}],
            "rules": [{"backendRefs": backends if backends is not None else [{"name": "web", "port": 80}]}],
        },
    }


def gateway_class(name: str = "istio", accepted: str = "True", reason: str = "Accepted") -> Obj:
    c = cond("Accepted", accepted, reason, "Handled by Istio controller")
    return {"kind": "GatewayClass", "metadata": meta(name, None, generation=1), "status": {"conditions": [c]}}


def gw_world(**route_args: Any) -> dict[str, list[Obj]]:
    """The healthy world plus Gateway API: class istio, Gateway shop/shop-gw (HTTP :80), HTTPRoute shop/web to
    Service web port 80."""
    w = fresh()
    w["gatewayclasses"] = [gateway_class()]
    w["k8s_gateways"] = [gateway()]
    w["httproutes"] = [route(**route_args)]
    return w


def codes(w: dict[str, list[Obj]], **kwargs: Any) -> list[str]:
    return world_codes(w, **kwargs)


def diagnose(w: dict[str, list[Obj]], **snap_args: Any) -> tuple[list[str], list[str]]:
    report = run(Snapshot(w, cluster="test", now=NOW, **snap_args))
    return [f.code for f in report.findings], report.notes


def test_a_healthy_gateway_and_route_have_no_findings() -> None:
    assert codes(gw_world()) == []
    assert codes(gw_world(), scope={"shop"}) == []


def test_without_the_gateway_api_nothing_is_checked() -> None:
    w = fresh()
    w["httproutes"] = [route(parents=[{"name": "nope"}])]  # routes listed, Gateways and classes not
    assert codes(w) == []


# -- parents -------------------------------------------------------------------------------------------------------
def test_a_parent_gateway_that_does_not_exist() -> None:
    f = only(gw_world(parents=[{"name": "shop-gateway"}]), "ROUTE_PARENT_MISSING")
    assert f.object.kind == "HTTPRoute" and f.severity == "critical"
    assert "shop/shop-gateway" in f.summary
    assert f.evidence["gateways_in_namespace"] == ["shop-gw"] and f.fix is None  # not a typo of shop-gw


def test_a_misspelled_parent_is_corrected_to_the_one_gateway_it_means() -> None:
    f = only(gw_world(parents=[{"name": "shop-gx"}]), "ROUTE_PARENT_MISSING")
    assert f.fix is not None and f.fix.params["fields"] == [[["spec", "parentRefs", 0, "name"], "shop-gw"]]


def test_a_parent_namespace_defaults_to_the_routes_and_can_be_named() -> None:
    w = gw_world(parents=[{"name": "shop-gw", "namespace": "infra"}])
    assert codes(w) == ["ROUTE_PARENT_MISSING"]
    w["k8s_gateways"].append(gateway(ns="infra", listeners=[_listener(from_="All")]))
    assert codes(w) == []


def test_a_parent_in_a_namespace_not_listed_is_not_called_missing() -> None:
    w = gw_world(parents=[{"name": "edge", "namespace": "infra"}])
    assert diagnose(w, covered={"k8s_gateways": {"shop"}})[0] == []
    assert diagnose(w, covered={"k8s_gateways": None})[0] == ["ROUTE_PARENT_MISSING"]


def test_parents_that_are_not_gateways_are_not_checked_here() -> None:
    mesh_parent = {"group": "", "kind": "Service", "name": "web"}  # GAMMA: a route attached to a Service
    other = {"group": "example.com", "kind": "Gateway", "name": "x"}
    assert codes(gw_world(parents=[mesh_parent, other, {"name": "shop-gw"}])) == []


def test_a_section_name_or_port_that_selects_no_listener() -> None:
    f = only(gw_world(parents=[{"name": "shop-gw", "sectionName": "htpp"}]), "ROUTE_PARENT_MISSING")
    assert "no listener named htpp" in f.summary and f.evidence["listeners"] == ["http:80/HTTP"]
    assert f.fix is not None and f.fix.params["fields"] == [[["spec", "parentRefs", 0, "sectionName"], "http"]]
    g = only(gw_world(parents=[{"name": "shop-gw", "port": 443}]), "ROUTE_PARENT_MISSING")
    assert "on port 443" in g.summary and g.fix is None
    assert codes(gw_world(parents=[{"name": "shop-gw", "sectionName": "http", "port": 80}])) == []


# -- allowedRoutes ---------------------------------------------------------------------------------------------------
def _listener(
    name: str = "http",
    protocol: str = "HTTP",
    from_: str | None = None,
    selector: Obj | None = None,
    kinds: list[Obj] | None = None,
) -> Obj:
    li: Obj = {"name": name, "port": 80, "protocol": protocol}
    allowed: Obj = {}
    if from_:
        allowed["namespaces"] = {"from": from_, **({"selector": selector} if selector is not None else {})}
    if kinds is not None:
        allowed["kinds"] = kinds
    if allowed:
        li["allowedRoutes"] = allowed
    return li


def infra_world(
    *listeners: Obj, ns_labels: dict[str, str] | None = None, route_labels: dict[str, str] | None = None
) -> dict[str, list[Obj]]:
    """Gateway infra/edge with these listeners; the route in shop attaches to it."""
    w = gw_world(parents=[{"name": "edge", "namespace": "infra"}])
    w["httproutes"] = [route(parents=[{"name": "edge", "namespace": "infra"}], labels=route_labels)]
    w["k8s_gateways"].append(gateway("edge", "infra", listeners=list(listeners)))
    w["namespaces"] = [namespace("shop", ns_labels), namespace("infra")]
    return w


def test_a_listener_allows_only_its_own_namespace_by_default() -> None:
    f = only(infra_world(_listener()), "ROUTE_NOT_ALLOWED")
    assert f.evidence["reason"] == "NotAllowedByListeners" and f.evidence["gateway"] == "infra/edge"
    assert "from: Same" in f.summary and "from to Selector" in f.remediation
    assert f.involves[0].short() == "Gateway infra/edge"
    assert codes(infra_world(_listener(from_="All"))) == []


def test_a_selector_is_matched_against_the_route_namespace_labels_not_the_routes() -> None:
    sel = {"matchLabels": {"gateway-access": "yes"}}
    f = only(
        infra_world(_listener(from_="Selector", selector=sel), route_labels={"gateway-access": "yes"}),
        "ROUTE_NOT_ALLOWED",
    )
    assert "gateway-access=yes" in f.summary and "kubernetes.io/metadata.name" in f.evidence["namespace_labels"]
    assert "Label Namespace shop" in f.remediation
    assert codes(infra_world(_listener(from_="Selector", selector=sel), ns_labels={"gateway-access": "yes"})) == []


def test_the_namespace_name_label_and_expressions_select() -> None:
    by_name = {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}
    assert codes(infra_world(_listener(from_="Selector", selector=by_name))) == []
    expr = {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "b"]}]}
    assert codes(infra_world(_listener(from_="Selector", selector=expr), ns_labels={"team": "b"})) == []
    f = only(infra_world(_listener(from_="Selector", selector=expr), ns_labels={"team": "c"}), "ROUTE_NOT_ALLOWED")
    assert "team In (a,b)" in f.summary


def test_one_allowing_listener_is_enough_and_section_name_narrows_the_choice() -> None:
    same, everyone = _listener("internal"), _listener("public", from_="All")
    assert codes(infra_world(same, everyone)) == []
    w = infra_world(same, everyone)
    w["httproutes"][0]["spec"]["parentRefs"][0]["sectionName"] = "internal"
    assert codes(w) == ["ROUTE_NOT_ALLOWED"]


def test_kinds_a_listener_takes() -> None:
    tcp_only = _listener(from_="All", kinds=[{"kind": "TCPRoute"}])
    assert "allows only kinds TCPRoute" in only(infra_world(tcp_only), "ROUTE_NOT_ALLOWED").summary
    assert codes(infra_world(_listener(from_="All", kinds=[{"kind": "HTTPRoute"}]))) == []  # group defaults
    other_group = _listener(from_="All", kinds=[{"group": "example.com", "kind": "HTTPRoute"}])
    assert codes(infra_world(other_group)) == ["ROUTE_NOT_ALLOWED"]
    tcp = _listener(protocol="TCP", from_="All")
    f = only(infra_world(tcp), "ROUTE_NOT_ALLOWED")
    assert "TCPRoutes, not HTTPRoutes" in f.summary and "allowedRoutes.kinds" in f.remediation
    assert codes(infra_world(_listener(protocol="HTTPS", from_="All"))) == []
    assert codes(infra_world(_listener(protocol="example.com/custom", from_="All"))) == []  # cannot tell


def test_a_selector_that_cannot_be_evaluated_is_not_reported() -> None:
    sel = {"matchLabels": {"gateway-access": "yes"}}
    w = infra_world(_listener(from_="Selector", selector=sel))
    del w["namespaces"]  # namespaces not listed
    assert codes(w) == []
    for bad in (None, "x", {"matchLabels": ["a"]}, {"matchExpressions": "x"}, {"matchExpressions": [1]}):
        li = _listener(from_="Selector")
        li["allowedRoutes"]["namespaces"]["selector"] = bad
        assert diagnose(infra_world(li)) == ([], []), bad
    assert codes(infra_world(_listener(from_="Nearby"))) == []  # a `from` value this version does not know


def test_the_controllers_verdict_on_the_route_wins_for_its_current_generation() -> None:
    w = infra_world(_listener())
    parent = {"name": "edge", "namespace": "infra"}
    accepted = {**cond("Accepted", "True", "Accepted"), "observedGeneration": 1}
    w["httproutes"][0]["status"] = {"parents": [{"parentRef": parent, "conditions": [accepted]}]}
    assert codes(w) == []  # the controller attached it: our reading is not repeated against it
    w["httproutes"][0]["metadata"]["generation"] = 2  # ...but that verdict was about an older spec
    assert codes(w) == ["ROUTE_NOT_ALLOWED"]
    refused = {**cond("Accepted", "False", "NotAllowedByListeners", "not allowed"), "observedGeneration": 2}
    w["httproutes"][0]["status"]["parents"][0]["conditions"] = [refused]
    f = only(w, "ROUTE_NOT_ALLOWED")
    assert f.evidence["route_status"] == "Accepted=False (NotAllowedByListeners): not allowed"


# -- backends --------------------------------------------------------------------------------------------------------
def test_a_backend_service_that_does_not_exist() -> None:
    f = only(gw_world(backends=[{"name": "web-v2", "port": 80}]), "ROUTE_BACKEND_MISSING")
    assert f.evidence == {"rule": 0, "service": "web-v2", "port": 80} and f.fix is None
    g = only(gw_world(backends=[{"name": "wbe", "port": 80}]), "ROUTE_BACKEND_MISSING")
    assert g.fix is not None and g.fix.params["fields"] == [[["spec", "rules", 0, "backendRefs", 0, "name"], "web"]]


def test_backends_that_cannot_be_checked_or_carry_no_traffic() -> None:
    for ref in (
        {"name": "api", "namespace": "other", "port": 80},  # needs a ReferenceGrant: out of scope
        {"name": "canary", "port": 80, "weight": 0},  # receives no requests
        {"group": "example.com", "kind": "Bucket", "name": "static"},
        {"name": ""},
        {"port": 80},
    ):
        assert codes(gw_world(backends=[ref])) == [], ref
    w = gw_world(backends=[{"name": "web-v2", "port": 80}])
    assert diagnose(w, scope={"shop"}, covered={"services": {"other"}})[0] == []


def test_the_controllers_unresolved_refs_are_quoted() -> None:
    w = gw_world(backends=[{"name": "web-v2", "port": 80}])
    unresolved = cond("ResolvedRefs", "False", "BackendNotFound", 'service "web-v2" not found')
    w["httproutes"][0]["status"] = {"parents": [{"parentRef": {"name": "shop-gw"}, "conditions": [unresolved]}]}
    f = only(w, "ROUTE_BACKEND_MISSING")
    assert f.evidence["route_status"] == 'ResolvedRefs=False (BackendNotFound): service "web-v2" not found'


def test_a_backend_port_that_is_not_a_service_port() -> None:
    f = only(gw_world(backends=[{"name": "web", "port": 8080}]), "ROUTE_BACKEND_PORT_MISMATCH")
    assert f.evidence == {"rule": 0, "service": "web", "port": 8080, "service_ports": [80]}
    assert "8080 is its targetPort" in f.summary
    assert f.fix is not None and f.fix.params["fields"] == [[["spec", "rules", 0, "backendRefs", 0, "port"], 80]]
    assert [o.short() for o in f.involves] == ["Service shop/web"]
    g = only(gw_world(backends=[{"name": "web"}]), "ROUTE_BACKEND_PORT_MISMATCH")
    assert "has no port" in g.summary


def test_a_port_choice_among_several_is_the_owners() -> None:
    w = gw_world(backends=[{"name": "web", "port": 8443}])
    w["services"][0]["spec"]["ports"].append({"name": "https", "port": 443, "targetPort": 8443})
    f = only(w, "ROUTE_BACKEND_PORT_MISMATCH")
    assert f.evidence["service_ports"] == [80, 443] and f.fix is None


@pytest.mark.parametrize("port", ["http", "80", True, 80.5, None])
def test_odd_ports_on_an_external_name_service_or_a_malformed_ref_are_not_reported(port: Any) -> None:
    w = gw_world(backends=[{"name": "ext", "port": 8080}])
    w["services"].append(service("ext", type="ExternalName", externalName="api.example.com"))
    assert codes(w) == []
    if port is not None:
        assert codes(gw_world(backends=[{"name": "web", "port": port}])) == []


# -- Gateways --------------------------------------------------------------------------------------------------------
def test_a_gateway_class_that_does_not_exist() -> None:
    w = gw_world()
    w["k8s_gateways"][0]["spec"]["gatewayClassName"] = "istio-internal"
    f = only(w, "GATEWAY_CLASS_MISSING")
    assert f.object.short() == "Gateway shop/shop-gw" and f.evidence["available_classes"] == ["istio"]
    assert [o.short() for o in f.involves] == ["HTTPRoute shop/web"]
    w["gatewayclasses"] = []
    assert "none is installed" in only(w, "GATEWAY_CLASS_MISSING").remediation


def test_no_class_is_missing_when_classes_were_not_listed() -> None:
    w = gw_world()
    w["k8s_gateways"][0]["spec"]["gatewayClassName"] = "istio-internal"
    del w["gatewayclasses"]  # the GatewayClass CRD is not served, or the list was forbidden
    assert codes(w) == []


def _status(w: dict[str, list[Obj]], *conditions: Obj, generation: int = 1) -> None:
    w["k8s_gateways"][0]["status"] = {"conditions": list(conditions)}
    w["k8s_gateways"][0]["metadata"]["generation"] = generation


def _at(c: Obj, generation: int = 1, minutes_ago: float = 60) -> Obj:
    return {**c, "observedGeneration": generation, "lastTransitionTime": ts(minutes_ago)}


def test_a_gateway_its_controller_did_not_accept() -> None:
    w = gw_world()
    bad = _at(cond("Accepted", "False", "InvalidParameters", 'ConfigMap "gw-options" not found'))
    _status(w, bad, _at(cond("Programmed", "False", "Invalid")))
    f = only(w, "GATEWAY_NOT_ACCEPTED")
    assert f.severity == "critical" and f.evidence["condition"] == "Accepted"
    assert f.evidence["reason"] == "InvalidParameters" and "gw-options" in f.evidence["message"]


def test_a_gateway_without_an_address_is_a_warning() -> None:
    w = gw_world()
    _status(w, _at(cond("Accepted")), _at(cond("Programmed", "False", "AddressNotAssigned", "address pending")))
    w["k8s_gateways"][0]["status"]["listeners"] = [
        {"name": "http", "conditions": [_at(cond("ResolvedRefs", "False", "InvalidCertificateRef"))]},
        {"name": "other", "conditions": [_at(cond("Conflicted", "True", "HostnameConflict"))]},
        {"name": "fine", "conditions": [_at(cond("Conflicted", "False", "NoConflicts"))]},
    ]
    f = only(w, "GATEWAY_NOT_ACCEPTED")
    assert f.severity == "warning" and f.evidence["condition"] == "Programmed"
    assert f.evidence["listeners"] == {
        "http": "ResolvedRefs=False (InvalidCertificateRef)",
        "other": "Conflicted=True (HostnameConflict)",
    }


def test_a_condition_about_an_older_generation_or_a_fresh_pending_one_is_not_reported() -> None:
    w = gw_world()
    _status(w, _at(cond("Accepted", "False", "Invalid")), generation=2)
    assert codes(w) == []  # the controller has not looked at the current spec yet
    _status(w, _at(cond("Accepted"), 2), _at(cond("Programmed", "False", "Pending"), 2, minutes_ago=2), generation=2)
    assert codes(w) == []
    _status(w, _at(cond("Accepted"), 2), _at(cond("Programmed", "False", "Pending"), 2, minutes_ago=30), generation=2)
    assert codes(w) == ["GATEWAY_NOT_ACCEPTED"]


def test_a_class_its_controller_refused_is_the_object_to_change() -> None:
    w = gw_world()
    w["gatewayclasses"] = [gateway_class(accepted="False", reason="InvalidParameters")]
    f = only(w, "GATEWAY_NOT_ACCEPTED")
    assert f.object.short() == "GatewayClass istio" and [o.short() for o in f.chain] == [
        "GatewayClass istio",
        "Gateway shop/shop-gw",
    ]
    assert f.evidence["gatewayClass"] == "istio" and "affects Gateway shop/shop-gw" in f.summary
    _status(w, _at(cond("Accepted")), _at(cond("Programmed")))
    assert codes(w) == []  # the Gateway itself was accepted since


def test_gateways_outside_the_diagnosed_namespaces_are_not_reported() -> None:
    w = gw_world()
    w["k8s_gateways"].append(gateway("edge", "infra", cls="missing"))
    assert codes(w, scope={"shop"}) == []
    assert codes(w) == ["GATEWAY_CLASS_MISSING"]


# -- malformed objects -----------------------------------------------------------------------------------------------
HOSTILE: list[tuple[str, Any]] = [
    ("spec", []),
    ("spec", "x"),
    ("spec.parentRefs", "shop-gw"),
    ("spec.parentRefs", 7),
    ("spec.parentRefs", {"name": "x"}),
    ("spec.parentRefs", [None, 3, {"name": 5}, {"name": "shop-gw", "namespace": 9}]),
    ("spec.rules", {"backendRefs": []}),
    ("spec.rules", [None, {"backendRefs": "web"}, {"backendRefs": [None, {"name": ["web"]}]}]),
    ("status", []),
    ("status.parents", {"x": 1}),
    ("status.parents", [None, {"parentRef": "x", "conditions": "y"}]),
]
GW_HOSTILE: list[tuple[str, Any]] = [
    ("spec", None),
    ("spec.listeners", "http"),
    ("spec.listeners", [None, {"name": "http", "allowedRoutes": []}]),
    ("spec.listeners", [{"name": "http", "allowedRoutes": {"namespaces": "All", "kinds": "HTTPRoute"}}]),
    ("spec.listeners", [{"name": "http", "allowedRoutes": {"kinds": [None, {"kind": 5}]}}]),
    ("spec.gatewayClassName", 5),
    ("status", "Accepted"),
    ("status.conditions", {"type": "Accepted"}),
    ("status.conditions", [None, {"type": "Accepted", "status": False}, {"type": ["Programmed"]}]),
    ("status.listeners", [None, {"conditions": 3}]),
]


def _put(obj: Obj, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for p in parents:
        if not isinstance(obj.get(p), dict):
            obj[p] = {}
        obj = obj[p]
    obj[last] = value


@pytest.mark.parametrize(("path", "value"), HOSTILE, ids=[f"route-{p}-{i}" for i, (p, _) in enumerate(HOSTILE)])
def test_a_malformed_route_neither_crashes_nor_is_misreported(path: str, value: Any) -> None:
    w = gw_world()
    _put(w["httproutes"][0], path, value)
    assert diagnose(w) == ([], [])


@pytest.mark.parametrize(("path", "value"), GW_HOSTILE, ids=[f"gw-{p}-{i}" for i, (p, _) in enumerate(GW_HOSTILE)])
def test_a_malformed_gateway_neither_crashes_nor_is_misreported(path: str, value: Any) -> None:
    w = gw_world()
    _put(w["k8s_gateways"][0], path, value)
    assert diagnose(w) == ([], [])


def test_a_malformed_gateway_class_or_service_is_not_misreported() -> None:
    w = gw_world()
    w["gatewayclasses"][0]["status"] = {"conditions": "Accepted"}
    w["services"][0]["spec"]["ports"] = [None, {"port": "eighty"}]
    snap = Snapshot(w, cluster="test", now=NOW)
    assert [f.code for rule in gateway_api.RULES for f in rule(snap)] == []
