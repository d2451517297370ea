"""Fleet tools over real control planes: every cluster answers; one is stopped (partial result, its error
named); one never answers (the call ends at the deadline, and its read is not started again by later calls);
and the arguments that choose clusters are checked before anything is read."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from kubernetes import client as kclient
from kubernetes import config as kconfig
from mcp.shared.memory import create_connected_server_and_client_session

from errors import InvalidInput
from runtime import Runtime, use
from server import build_server
from store import ClusterRecord
from tests.cluster import states
from tests.cluster.controlplane import ControlPlane
from tests.conftest import ClusterEnv
from tests.fleet.conftest import Silent, fleet_settings, register
from tests.serving import free_port
from tools.fleet import fleet_diagnose, fleet_overview, fleet_problem_pods

HANG_GUARD = 120  # seconds: a hang guard for the test, not a measurement (benchmarks/fleet_fanout.py measures)


@pytest.fixture
def rt(cluster: ClusterEnv, tmp_path: Path, namespace: str) -> Iterator[Runtime]:
    """A runtime seeing only the test's namespaces (the allow list is applied to every cluster)."""
    runtime = Runtime(fleet_settings(cluster, tmp_path, allow=[namespace, "fleet-*"]))
    yield runtime
    runtime.close()


def broken_pods(cluster: ClusterEnv, namespace: str, second: ControlPlane) -> None:
    """A crash-looping pod in the session's cluster; an image that cannot be pulled in the second, plus a
    crash loop in a namespace the allow list hides."""
    states.make_pod(cluster.core, namespace, "crash")
    states.set_pod_status(cluster.core, namespace, "crash", containers=[states.crashloop()])
    core = kclient.CoreV1Api(kconfig.new_client_from_config(str(second.kubeconfig)))
    for ns in ("fleet-apps", "hidden"):
        core.create_namespace(kclient.V1Namespace(metadata=kclient.V1ObjectMeta(name=ns)))
    states.make_pod(core, "fleet-apps", "pull", image="registry.invalid/app:nope", node="node-0")
    pulling = states.waiting("ImagePullBackOff", 'Back-off pulling image "registry.invalid/app:nope"')
    states.set_pod_status(core, "fleet-apps", "pull", phase="Pending", containers=[pulling])
    states.make_pod(core, "hidden", "crash", node="node-0")
    states.set_pod_status(core, "hidden", "crash", containers=[states.crashloop()])


async def test_two_control_planes_answer_then_one_is_stopped(rt, cluster, namespace, second):
    register(rt, "second", second)
    broken_pods(cluster, namespace, second)
    with use(rt):
        first = rt.clusters.default_name()
        overview = await fleet_overview()
        pods = await fleet_problem_pods()
        diagnosis = await fleet_diagnose(limit_per_cluster=50)

    for result in (overview, pods, diagnosis):
        assert [c.cluster for c in result.clusters] == [first, "second"] and not result.unreachable, result.render()
    if cluster.control_plane is not None:  # its kubeconfig has three contexts for one API server: read once
        assert any("viewer (as admin)" in n and "auditor (as admin)" in n for n in overview.notes), overview.notes
    health = {c.cluster: c for c in overview.clusters}
    assert health["second"].nodes.total == health["second"].nodes.ready == 1
    assert health["second"].pods.total == 1 and health["second"].health == "degraded"  # `hidden` is not counted
    assert health[first].pods.total == 1 and health[first].pods.unhealthy == 1

    listed = {c.cluster: [(p.namespace, p.name, p.status) for p in c.pods] for c in pods.clusters}
    assert listed == {
        first: [(namespace, "crash", "CrashLoopBackOff")],
        "second": [("fleet-apps", "pull", "ImagePullBackOff")],
    }

    found = {c.cluster: {(f.code, f.object) for f in c.findings} for c in diagnosis.clusters}
    assert ("POD_CRASHLOOP", f"Pod {namespace}/crash") in found[first], found[first]
    assert any(code.startswith("POD_IMAGE") and obj == "Pod fleet-apps/pull" for code, obj in found["second"])
    assert "hidden" not in diagnosis.render() + pods.render()

    second.stop()
    with use(rt), anyio.fail_after(HANG_GUARD):
        after = [await fleet_overview(), await fleet_problem_pods(), await fleet_diagnose(limit_per_cluster=50)]

    for result in after:
        assert [c.cluster for c in result.clusters] == [first], result.render()
        [missing] = result.unreachable
        assert missing.cluster == "second" and second.url in missing.error and "refused" in missing.error.lower()
        assert "\n" not in missing.error and len(missing.error) <= 400
        assert "1 of 2 clusters answered" in result.render() and f"- second: {missing.error}" in result.render()
    assert [(p.name, p.status) for p in after[1].clusters[0].pods] == [("crash", "CrashLoopBackOff")]


async def test_a_cluster_that_never_answers_is_reported_at_the_deadline_and_read_once(rt, silent: Silent):
    rt.store.add_cluster(
        ClusterRecord(
            name="silent", server=f"https://127.0.0.1:{silent.port}", token="t", insecure_skip_tls_verify=True
        )
    )
    with use(rt):
        first = rt.clusters.default_name()
        await fleet_overview(clusters=[first])  # warm: the live cluster's overview comes from the cache below
        with anyio.fail_after(HANG_GUARD):
            calls = [fleet_overview(clusters=[first, "silent"], timeout_seconds=3) for _ in range(3)]
            results = await asyncio.gather(*calls)

    for result in results:
        assert [c.cluster for c in result.clusters] == [first]
        [late] = result.unreachable
        assert late.error.startswith("Timed out after 3 s: cluster 'silent' at https://127.0.0.1:"), late.error
        assert "did not answer GET /version" in late.error
    states.wait_for(lambda: silent.accepted, what="the probe's connection")
    assert len(silent.accepted) == 1  # three calls, one probe: a hung cluster holds one thread, not one per call


async def test_by_default_every_cluster_is_read_up_to_the_cap(cluster, tmp_path):
    rt = Runtime(fleet_settings(cluster, tmp_path, fanout_max_clusters=2, fanout_timeout_seconds=30))
    for name in ("gone-a", "gone-b", "gone-c"):  # nothing listens there: connection refused
        rt.store.add_cluster(ClusterRecord(name=name, server=f"https://127.0.0.1:{free_port()}", token="t"))
    try:
        with use(rt), anyio.fail_after(HANG_GUARD):
            first = rt.clusters.default_name()
            result = await fleet_problem_pods()
    finally:
        rt.close()
    assert result.asked == 2 and [c.cluster for c in result.clusters] == [first]
    [gone] = result.unreachable
    assert gone.cluster == "gone-a" and "did not answer" in gone.error and "refused" in gone.error.lower()
    [cut] = [n for n in result.notes if n.startswith("Only the first 2 of")]
    assert "gone-b, gone-c" in cut and "Pass clusters to choose" in cut


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"clusters": ["nope"]}, "Unknown cluster 'nope'"),
        ({"clusters": []}, "clusters is empty"),
        ({"clusters": ["x" * 100_000]}, "is not a name: 1 to 253 characters"),
        ({"clusters": [f"c{i}" for i in range(10_000)]}, "names 10000 clusters; one call reads at most 50"),
        ({"timeout_seconds": 600}, "at most 10 (k8s.fanout_timeout_seconds)"),
        ({"timeout_seconds": -1}, "timeout_seconds must be more than 0"),
    ],
)
async def test_arguments_that_choose_clusters_are_checked_first(rt, arguments, expected):
    for tool in (fleet_overview, fleet_diagnose, fleet_problem_pods):
        with use(rt), pytest.raises(InvalidInput) as refused:
            await tool(**arguments)
        assert expected in str(refused.value) and len(str(refused.value)) < 1_000


async def test_the_unknown_cluster_error_names_the_known_ones(rt):
    with use(rt), pytest.raises(InvalidInput) as refused:
        await fleet_overview(clusters=[rt.clusters.default_name(), "nope"])
    assert "Known clusters: " in str(refused.value) and rt.clusters.default_name() in str(refused.value)


async def test_through_mcp_the_answer_is_bounded_and_hostile_arguments_are_refused(cluster, tmp_path, namespace):
    settings = fleet_settings(cluster, tmp_path, allow=[namespace])
    async with create_connected_server_and_client_session(build_server(settings)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        answer = await client.call_tool("fleet_problem_pods", {})
        huge = await client.call_tool("fleet_overview", {"clusters": ["y" * 500_000]})
        zero = await client.call_tool("fleet_diagnose", {"limit_per_cluster": 0})
    assert {"fleet_overview", "fleet_diagnose", "fleet_problem_pods"} <= set(tools)
    assert all(tools[n].annotations.readOnlyHint for n in ("fleet_overview", "fleet_diagnose", "fleet_problem_pods"))
    assert not answer.isError and answer.structuredContent["unreachable"] == []
    assert answer.structuredContent["clusters"][0]["total"] == 0
    assert huge.isError and "is not a name" in huge.content[0].text and len(huge.content[0].text) < 1_000
    assert zero.isError and "limit_per_cluster" in zero.content[0].text
