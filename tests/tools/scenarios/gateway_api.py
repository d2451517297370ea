"""Gateway API scenarios (engines/diagnosis/gateway_api.py), each with a healthy twin, in the mesh fixture (it
serves the Gateway API CRDs). Everything a scenario makes lives in its namespace, except its own GatewayClass
`<namespace>-istio`, labelled scenario=<namespace> for cleanup. No gateway controller runs: a builder writes
the status it would write (Accepted / Programmed for the current generation) through the status subresource.
"""

from __future__ import annotations

from typing import Any

from tests.tools.diagnosis_scenarios import Kube, Scenario, _web, now

API = "/apis/gateway.networking.k8s.io/v1"
CONTROLLER = "istio.io/gateway-controller"
HTTP = {"name": "http", "port": 80, "protocol": "HTTP"}


def _condition(kind: str, status: str, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": now(),
    }


def _gateway_class(kube: Kube, ns: str) -> str:
    """GatewayClass <ns>-istio, accepted by its controller."""
    name = f"{ns}-istio"
    made = kube.create(
        f"{API}/gatewayclasses",
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": name, "labels": {"scenario": ns}},
            "spec": {"controllerName": CONTROLLER},
        },
    )
    accepted = _condition("Accepted", "True", "Accepted", "Handled by Istio controller", made["metadata"]["generation"])
    kube.patch(f"{API}/gatewayclasses/{name}/status", {"status": {"conditions": [accepted]}})
    return name


def _gateway(
    kube: Kube,
    ns: str,
    cls: str,
    listeners: list[dict[str, Any]] | None = None,
    programmed: tuple[str, str, str] | None = ("True", "Programmed", "Resource programmed"),
) -> None:
    """Gateway shop-gw; with `programmed` (status, reason, message), the status its controller writes: Accepted
    and that Programmed condition for the current generation. None: no controller has written anything."""
    listeners = listeners or [HTTP]
    made = kube.create(
        f"{API}/namespaces/{ns}/gateways",
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "shop-gw"},
            "spec": {"gatewayClassName": cls, "listeners": listeners},
        },
    )
    if programmed is None:
        return
    gen = made["metadata"]["generation"]
    status, reason, message = programmed
    conditions = [
        _condition("Accepted", "True", "Accepted", "Resource accepted", gen),
        _condition("Programmed", status, reason, message, gen),
    ]
    listener_status = [
        {
            "name": li["name"],
            "attachedRoutes": 1,
            "supportedKinds": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}],
            "conditions": [_condition("Accepted", "True", "Accepted", "No errors found", gen)],
        }
        for li in listeners
    ]
    kube.patch(
        f"{API}/namespaces/{ns}/gateways/shop-gw/status",
        {"status": {"conditions": conditions, "listeners": listener_status}},
    )


def _route(
    kube: Kube,
    ns: str,
    parent: str = "shop-gw",
    backend: str = "web",
    port: int = 80,
    labels: dict[str, str] | None = None,
) -> None:
    """HTTPRoute web: host <ns>.example.com on Gateway `parent`, to Service `backend` port `port`."""
    kube.create(
        f"{API}/namespaces/{ns}/httproutes",
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "web", "labels": labels or {"app": "web"}},
            "spec": {
                "parentRefs": [{"name": parent}],
                "hostnames": [f"{ns}.example.com"],
                "rules": [
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                        "backendRefs": [{"name": backend, "port": port}],
                    }
                ],
            },
        },
    )


def _shop(kube: Kube, ns: str) -> str:
    """The app behind every scenario (Deployment and Service web, port 80 → 8080) and the namespace's class."""
    _web(kube, ns, replicas=1)
    return _gateway_class(kube, ns)


def route_parent_missing(kube: Kube, ns: str, broken: bool) -> None:
    """The route names Gateway shop-gateway; the namespace's Gateway is shop-gw (twin: names shop-gw)."""
    _gateway(kube, ns, _shop(kube, ns))
    _route(kube, ns, parent="shop-gateway" if broken else "shop-gw")


def route_not_allowed(kube: Kube, ns: str, broken: bool) -> None:
    """The listener takes routes only from namespaces labelled gateway-access=shop; the namespace lacks the
    label (twin: has it). The route itself carries the label, which the spec does not read."""
    access = {"gateway-access": "shop"}
    selector = {"namespaces": {"from": "Selector", "selector": {"matchLabels": access}}}
    _gateway(kube, ns, _shop(kube, ns), listeners=[{**HTTP, "allowedRoutes": selector}])
    if not broken:
        kube.patch(f"/api/v1/namespaces/{ns}", {"metadata": {"labels": access}})
    _route(kube, ns, labels={"app": "web", **access})


def route_backend_missing(kube: Kube, ns: str, broken: bool) -> None:
    """The route sends to Service web-v2, which was never created (twin: to web)."""
    _gateway(kube, ns, _shop(kube, ns))
    _route(kube, ns, backend="web-v2" if broken else "web")


def route_backend_port(kube: Kube, ns: str, broken: bool) -> None:
    """The route names port 8080 (the container's port, Service web's targetPort); the Service port is 80."""
    _gateway(kube, ns, _shop(kube, ns))
    _route(kube, ns, port=8080 if broken else 80)


def gateway_class_missing(kube: Kube, ns: str, broken: bool) -> None:
    """The Gateway names class istio-internal, which no controller installed; the cluster has <ns>-istio (twin:
    names it, and its controller accepted and programmed the Gateway)."""
    cls = _shop(kube, ns)
    if broken:
        _gateway(kube, ns, "istio-internal", programmed=None)
    else:
        _gateway(kube, ns, cls)
    _route(kube, ns)


def gateway_not_accepted(kube: Kube, ns: str, broken: bool) -> None:
    """The controller accepted the Gateway but could not program it: the load balancer gave its Service no
    address (twin: Programmed)."""
    host = f"shop-gw-istio.{ns}.svc.cluster.local"
    programmed = (
        (
            "False",
            "AddressNotAssigned",
            f"Assigned to service(s) {host}:80, but failed to assign to all requested addresses: "
            f'address pending for hostname "{host}"',
        )
        if broken
        else ("True", "Programmed", f"Resource programmed, assigned to service(s) {host}:80")
    )
    _gateway(kube, ns, _shop(kube, ns), programmed=programmed)
    _route(kube, ns)


SCENARIOS: list[Scenario] = [
    Scenario(
        "route-parent-missing", "ROUTE_PARENT_MISSING", route_parent_missing, summary_has="shop-gateway", mesh=True
    ),
    Scenario(
        "route-not-allowed",
        "ROUTE_NOT_ALLOWED",
        route_not_allowed,
        {"reason": "NotAllowedByListeners"},
        summary_has="gateway-access=shop",
        mesh=True,
    ),
    Scenario("route-backend-missing", "ROUTE_BACKEND_MISSING", route_backend_missing, {"service": "web-v2"}, mesh=True),
    Scenario(
        "route-backend-port",
        "ROUTE_BACKEND_PORT_MISMATCH",
        route_backend_port,
        {"port": 8080, "service_ports": [80]},
        summary_has="targetPort",
        mesh=True,
    ),
    Scenario(
        "gateway-class-missing",
        "GATEWAY_CLASS_MISSING",
        gateway_class_missing,
        {"gatewayClassName": "istio-internal"},
        mesh=True,
    ),
    Scenario(
        "gateway-not-accepted",
        "GATEWAY_NOT_ACCEPTED",
        gateway_not_accepted,
        {"condition": "Programmed", "reason": "AddressNotAssigned"},
        mesh=True,
    ),
]
