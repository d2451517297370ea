"""The Istio toolset on the real control plane: listings with summaries, one object, the mesh overview,
Istio analysis, and a clear answer when Istio is not installed."""

from __future__ import annotations

import pytest

from errors import Unsupported
from tests.tools.conftest_istio import kube, mesh  # noqa: F401 - fixtures
from tests.tools.diagnosis_scenarios import MESH_NAMESPACE, Kube, _istio, _mesh_app, vs_subset
from tools import istio as istio_tools
from tools.diagnose import diagnose, istio_analyze
from tools.istio import istio_get, istio_list, mesh_overview

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


async def test_gateways_default_to_istio_system_with_servers_and_tls(mesh: Kube, call) -> None:  # noqa: F811
    result = await call(istio_list, kind="Gateway")
    assert result.namespace == MESH_NAMESPACE and result.api_version == "networking.istio.io/v1"
    gw = next(o for o in result.items if o.name == "shop-gw")
    assert gw.details["selector"] == {"istio": "ingressgateway"}
    assert gw.details["servers"] == [
        {"port": 443, "protocol": "HTTPS", "hosts": ["*.example.com"], "tls_mode": "SIMPLE", "credential": "shop-cert"}
    ]
    assert "443/HTTPS hosts=*.example.com tls=SIMPLE cred=shop-cert" in result.render()


async def test_list_and_get_virtualservices_and_destination_rules(kube: Kube, namespace: str, call) -> None:  # noqa: F811
    vs_subset(kube, namespace, False)
    listed = await call(istio_list, kind="VirtualService", namespace=namespace)
    assert [o.name for o in listed.items] == ["web"]
    assert listed.items[0].summary == "hosts web; gateways mesh; routes http:web/v1"
    dr = await call(istio_list, kind="DestinationRule", namespace=namespace)
    assert dr.items[0].details["subsets"] == {"v1": "version=v1"}
    got = await call(istio_get, kind="DestinationRule", name="web", namespace=namespace)
    assert got.spec["host"] == "web" and "subsets" in got.render()


async def test_listing_pages_with_a_continue_token(kube: Kube, namespace: str, call) -> None:  # noqa: F811
    for i in range(3):
        _istio(
            kube,
            namespace,
            "serviceentries",
            {
                "metadata": {"name": f"ext-{i}"},
                "spec": {
                    "hosts": [f"api{i}.example.org"],
                    "ports": [{"number": 443, "name": "https", "protocol": "TLS"}],
                    "resolution": "DNS",
                },
            },
        )
    first = await call(istio_list, kind="ServiceEntry", namespace=namespace, limit=2)
    assert len(first.items) == 2 and first.page.continue_token and first.page.total == 3
    rest = await call(
        istio_list, kind="ServiceEntry", namespace=namespace, limit=2, continue_token=first.page.continue_token
    )
    assert [o.name for o in rest.items] == ["ext-2"]
    assert "resolution DNS; ports 443/TLS" in rest.items[0].summary


async def test_gateway_api_objects(kube: Kube, namespace: str, call) -> None:  # noqa: F811
    _istio(
        kube,
        namespace,
        "gateways",
        {
            "metadata": {"name": "edge"},
            "spec": {"gatewayClassName": "istio", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]},
        },
        group="gateway.networking.k8s.io",
    )
    _istio(
        kube,
        namespace,
        "httproutes",
        {
            "metadata": {"name": "web"},
            "spec": {"parentRefs": [{"name": "edge"}], "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]},
        },
        group="gateway.networking.k8s.io",
    )
    gws = await call(istio_list, kind="KubernetesGateway", namespace=namespace)
    assert gws.items[0].summary == "class istio; listeners http:80/HTTP; programmed unknown"
    routes = await call(istio_list, kind="HTTPRoute", namespace=namespace)
    assert routes.items[0].details == {"parents": ["edge"], "backends": ["web:80"]}


async def test_mesh_overview(kube: Kube, namespace: str, call) -> None:  # noqa: F811
    _mesh_app(kube, namespace)
    result = await call(mesh_overview, limit=500)
    assert result.apis["networking.istio.io"] == "v1" and result.apis["gateway.networking.k8s.io"] == "v1"
    assert [(d.name, d.ready, d.version) for d in result.control_plane] == [("istiod", "1/1", "1.24.2")]
    assert any(g.name == "istio-ingressgateway" and g.ready == "1/1" for g in result.gateways)
    row = next(n for n in result.namespaces if n.name == namespace)
    assert (row.injection, row.pods, row.with_proxy, row.without_proxy) == ("enabled", 2, 2, 0)
    assert "istiod" in result.render()


async def test_istio_analyze_reports_only_istio_findings(kube: Kube, namespace: str, call) -> None:  # noqa: F811
    vs_subset(kube, namespace, True)
    kube.deploy(namespace, "api", ready=False)  # a non-Istio problem istio_analyze leaves to diagnose
    result = await call(istio_analyze, namespace=namespace, force_refresh=True)
    assert result.findings[0].code == "IST0101" and "web+v2" in result.findings[0].summary
    assert all(f.code.startswith("IST") for f in result.findings)  # api's pods lack a sidecar: IST0103
    full = await call(diagnose, namespace=namespace, force_refresh=True)
    assert {"IST0101", "DEPLOY_UNAVAILABLE"} <= {f.code for f in full.findings}


class _NoMesh:
    """A connection to a cluster that serves only the built-in APIs (as discovery reports them)."""

    name = "plain"

    def __init__(self, real) -> None:
        self._resources = [r for r in real.resources() if "istio" not in r.group and "gateway" not in r.group]

    def resources(self):
        return self._resources


async def test_no_istio_is_said_clearly(mesh: Kube, runtime) -> None:  # noqa: F811
    plain = _NoMesh(runtime.connection(None))
    with pytest.raises(Unsupported, match="Istio is not installed in cluster 'plain'"):
        istio_tools.resolve_kind(plain, "VirtualService")
    with pytest.raises(Unsupported, match="Gateway API is not installed"):
        istio_tools.resolve_kind(plain, "HTTPRoute")


async def test_diagnose_without_istio_notes_it(cluster, runtime, call, monkeypatch: pytest.MonkeyPatch) -> None:
    from tools import diagnose as diagnose_module

    monkeypatch.setattr(diagnose_module, "MESH_KINDS", ())
    result = await call(diagnose, namespace="default", force_refresh=True)
    assert "Istio is not installed: Istio checks skipped." in result.notes
    with pytest.raises(Unsupported, match="Istio is not installed"):
        await call(istio_analyze, namespace="default", force_refresh=True)
