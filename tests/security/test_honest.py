"""Honest answers: a result built from nothing is an error (never cached), a namespace that does not exist is
said so, and every structured result is valid against the tool's own outputSchema."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kubernetes import client as kclient
from mcp.shared.memory import create_connected_server_and_client_session

from errors import InvalidInput, NotFound, Unreachable
from guard.pipeline import Pipeline
from runtime import LOCAL, Runtime, use
from server import build_server
from settings import Settings
from store import ClusterRecord
from tests.cluster import states
from tests.cluster.controlplane import AUDITOR_TOKEN
from tests.rca.conftest import Incident, incident  # noqa: F401 - fixture
from tests.serving import free_port
from tests.tools.conftest_istio import mesh  # noqa: F401 - fixture
from tools import diagnose, events, istio, overview, pods, rca, resources, workloads
from tools.catalogue import enabled_tools

CPU = 'sum by (pod) (rate(container_cpu_usage_seconds_total{namespace="shop"}[1m]))'


@contextmanager
def silent_server() -> Iterator[int]:
    """A port that accepts connections (the kernel completes them) and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def with_k8s(settings: Settings, **k8s: object) -> Settings:
    return settings.model_copy(update={"k8s": settings.k8s.model_copy(update=k8s)})


# -- 1. a result built from nothing is an error, and errors are never cached ---------------------------------
async def test_overview_of_a_closed_port_is_unreachable_and_not_cached(settings: Settings) -> None:
    with use(Runtime(with_k8s(settings, request_timeout_seconds=3))) as rt:
        rt.store.add_cluster(ClusterRecord(name="closed", server=f"http://127.0.0.1:{free_port()}", token="t"))
        for _ in range(2):  # the second call asks again: nothing was cached
            with pytest.raises(Unreachable, match="did not answer"):
                await overview.cluster_overview(cluster="closed")
        good = await overview.cluster_overview()
        rt.close()
    assert good.nodes.total >= 1 and not good.errors


async def test_overview_of_a_hung_server_is_an_error_not_zeros(settings: Settings) -> None:
    with silent_server() as port, use(Runtime(with_k8s(settings, request_timeout_seconds=1))) as rt:
        rt.store.add_cluster(ClusterRecord(name="hung", server=f"http://127.0.0.1:{port}", token="t"))
        started = time.monotonic()
        with pytest.raises(Unreachable):
            await overview.cluster_overview(cluster="hung")
        assert time.monotonic() - started < 30
        with pytest.raises(Unreachable):
            await workloads.workloads_list(cluster="hung")
        with pytest.raises(Unreachable):
            await diagnose.diagnose(cluster="hung")
        good = await overview.cluster_overview()
        rt.close()
    assert good.nodes.total >= 1 and not good.errors


async def test_a_partial_overview_is_answered_but_not_cached(settings: Settings, cluster, namespace: str) -> None:
    cp = cluster.require_control_plane()
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    name = f"honest-{namespace}"
    cp.api(
        "POST",
        rbac + "/clusterroles",
        {"metadata": {"name": name}, "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}]},
    )
    cp.api(
        "POST",
        rbac + "/clusterrolebindings",
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "User", "name": "auditor", "apiGroup": "rbac.authorization.k8s.io"}],
        },
    )
    try:

        def bound() -> bool:
            try:
                cp.api("GET", "/api/v1/nodes", token=AUDITOR_TOKEN)
                return True
            except RuntimeError:
                return False

        states.wait_for(bound, what="the auditor binding")
        with use(Runtime(settings)) as rt:
            first = await overview.cluster_overview(cluster="auditor")
            second = await overview.cluster_overview(cluster="auditor")
            rt.close()
    finally:
        cp.api("DELETE", f"{rbac}/clusterrolebindings/{name}")
        cp.api("DELETE", f"{rbac}/clusterroles/{name}")
    assert first.nodes.total >= 1 and "pods" in first.errors and "PARTIAL" in first.render()
    assert not second.from_cache and "pods" in second.errors


# -- 2. a namespace that does not exist is said so -------------------------------------------------------------
async def test_listings_of_a_missing_namespace_say_so_and_suggest(call, cluster, namespace: str) -> None:
    typo = namespace[:-1]  # t-1234567: one character short of the real one
    listings = [
        (pods.pods_list, {}),
        (events.events_list, {}),
        (workloads.workloads_list, {}),
        (resources.resources_list, {"kind": "configmaps"}),
        (resources.resources_list, {"kind": "secrets", "output": "json"}),
        (diagnose.diagnose, {}),
    ]
    for fn, args in listings:
        with pytest.raises(NotFound, match=f"Namespace '{typo}' does not exist") as raised:
            await call(fn, namespace=typo, **args)
        guess = (raised.value.hint or "").split("Namespaces:")[0]
        assert "Did you mean" in guess and f"'{namespace}'" in guess, fn.__name__
    empty = await call(pods.pods_list, namespace=namespace)  # an empty namespace that exists is just empty
    assert empty.pods == [] and empty.page.total == 0


async def test_istio_listings_of_a_missing_namespace_say_so(mesh, call, namespace: str) -> None:  # noqa: F811
    for fn, args in ((istio.istio_list, {"kind": "VirtualService"}), (diagnose.istio_analyze, {})):
        with pytest.raises(NotFound, match=f"Namespace '{namespace}x' does not exist"):
            await call(fn, namespace=f"{namespace}x", **args)


async def test_rca_of_a_missing_namespace_says_so(incident: Incident, settings: Settings, namespace: str) -> None:  # noqa: F811
    with_prometheus = settings.model_copy(
        update={"prometheus": settings.prometheus.model_copy(update={"url": incident.url})}
    )
    with use(Runtime(with_prometheus)) as rt:
        with pytest.raises(NotFound, match=f"Namespace '{namespace}x' does not exist"):
            await rca.rca_namespace(f"{namespace}x", minutes=55, end=str(incident.end))
        with pytest.raises(InvalidInput, match="no series for namespace"):  # it exists; Prometheus knows nothing
            await rca.rca_namespace(namespace, minutes=55, end=str(incident.end))
        rt.close()


async def test_hidden_namespaces_are_never_suggested(settings: Settings, cluster, namespace: str) -> None:
    hidden = f"{namespace}-xyz"
    cluster.core.create_namespace(kclient.V1Namespace(metadata=kclient.V1ObjectMeta(name=hidden)))
    try:
        denied = settings.model_copy(update={"safety": settings.safety.model_copy(update={"namespace_deny": [hidden]})})
        with use(Runtime(denied)) as rt:
            with pytest.raises(NotFound) as raised:
                await pods.pods_list(namespace=f"{namespace}-xy")
            rt.close()
    finally:
        cluster.core.delete_namespace(hidden)
    assert hidden not in str(raised.value) and f"'{namespace}'" in str(raised.value)


# -- 4. every structured result validates against the tool's outputSchema -------------------------------------
async def test_pod_logs_structured_content_matches_its_schema(settings: Settings, cluster, namespace: str) -> None:
    cp = cluster.require_control_plane()
    states.make_pod(cluster.core, namespace, "web", containers=[{"name": "app", "image": "x"}])
    cp.kubelet.set_log(namespace, "web", "app", "".join(f"line {i}\n" for i in range(40)))
    async with create_connected_server_and_client_session(build_server(settings)) as client:
        # the MCP client itself refuses structured content that does not match the outputSchema
        for cap in (None, 100):
            args = {"name": "web", "namespace": namespace} | ({"max_bytes": cap} if cap else {})
            result = await client.call_tool("pod_logs", args)
            assert not result.isError and result.structuredContent is not None
            assert result.structuredContent["cut"] is (cap is not None)


async def test_rca_from_csv_with_extreme_values_matches_its_schema(settings: Settings) -> None:
    lines = ["time,web_latency,db_cpu"]
    for t in range(60):
        lines.append(f"{t},{1 + (t >= 40) * 1e308 + 0.01 * (t % 3)},{1 + 3 * (t >= 40) + 0.01 * (t % 5)}")
    async with create_connected_server_and_client_session(build_server(settings)) as client:
        result = await client.call_tool("rca_from_csv", {"csv_text": "\n".join(lines), "anomaly_time": 40})
    assert not result.isError and result.structuredContent is not None, result.content
    assert result.structuredContent["candidates"][0]["service"] == "db"


async def test_correlation_with_an_infinite_series_matches_its_schema(incident: Incident, tmp_path: Path) -> None:  # noqa: F811
    infinite = f"1 / (clamp_max(sum({CPU}), 0.9) - 0.9)"  # finite before the fault, +Inf after it
    settings = Settings(prometheus={"url": incident.url}, store={"path": tmp_path / "db"})
    async with create_connected_server_and_client_session(build_server(settings)) as client:
        args = {"queries": [f"sum({CPU})", infinite], "minutes": 55, "end": str(incident.end)}
        result = await client.call_tool("correlate_series", args)
    assert not result.isError and result.structuredContent is not None, result.content
    pair = result.structuredContent["pairs"][0]
    assert pair["correlation"] is None or -1 <= pair["correlation"] <= 1


async def test_correlation_of_a_constant_series_is_no_value(incident: Incident, tmp_path: Path) -> None:  # noqa: F811
    settings = Settings(prometheus={"url": incident.url}, store={"path": tmp_path / "db"})
    with use(Runtime(settings)) as rt:
        result = await Pipeline(rt, enabled_tools(settings)).call(
            "correlate_series",
            {"queries": [f"sum({CPU})", "vector(5)"], "minutes": 55, "end": str(incident.end)},
            principal=LOCAL,
            client="test",
        )
        rt.close()
    assert not result.is_error, result.text
    assert result.structured is not None and result.structured["pairs"][0]["correlation"] is None
    assert "[1] is constant" in result.text and "no correlation exists" in result.text
