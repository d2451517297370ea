"""cluster_overview, namespaces_detail and nodes_detail on the real API server."""

import pytest

from runtime import Runtime, use
from settings import Settings
from tests.cluster import states
from tests.cluster.controlplane import AUDITOR_TOKEN
from tools import overview


@pytest.fixture
def shop(cluster, namespace):
    """3 pods (Running, Pending, Failed) with requests/limits, 1 deployment, 2 services, 3 configmaps, 1 secret."""
    core = cluster.core
    res = {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}}
    for name in ("a", "b", "c"):
        states.make_pod(core, namespace, name, containers=[{"name": "main", "image": "x", "resources": res}])
    states.set_pod_status(core, namespace, "a", containers=[states.running()])
    states.set_pod_status(core, namespace, "b", phase="Pending", containers=[states.waiting("ImagePullBackOff")])
    states.set_pod_status(core, namespace, "c", phase="Failed", containers=[states.terminated("Error", 1)])
    cluster.apps.create_namespaced_deployment(namespace, states.deployment("web", "x", replicas=0))
    for svc in ("web", "api"):
        core.create_namespaced_service(
            namespace, {"metadata": {"name": svc}, "spec": {"ports": [{"port": 80}], "selector": {"app": svc}}}
        )
    for cm in ("one", "two", "three"):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": cm}, "data": {"k": "v"}})
    core.create_namespaced_secret(namespace, {"metadata": {"name": "db"}, "stringData": {"password": "x"}})
    return namespace


def scoped(settings: Settings, namespace: str) -> Runtime:
    """A runtime that sees only `namespace`, so cluster-wide counts are exact."""
    return Runtime(
        settings.model_copy(update={"safety": settings.safety.model_copy(update={"namespace_allow": [namespace]})})
    )


async def test_overview_counts_every_field(settings, shop):
    with use(scoped(settings, shop)) as rt:
        ov = await overview.cluster_overview()
        rt.close()
    assert ov.pods.model_dump() == {
        "total": 3,
        "running": 1,
        "pending": 1,
        "failed": 1,
        "succeeded": 0,
        "unknown": 0,
        "unhealthy": 2,
    }
    assert (ov.deployments, ov.services, ov.secrets, ov.namespaces) == (1, 2, 1, 1)
    assert ov.configmaps == 4  # ours + kube-root-ca.crt, which every namespace gets
    assert ov.nodes.total >= 3 and ov.nodes.ready >= 3
    # the Failed pod no longer holds resources
    assert (ov.resources.cpu_requests, ov.resources.cpu_limits) == (0.5, 1.0)
    assert (ov.resources.memory_requests, ov.resources.memory_limits) == (0.5, 1.0)
    assert ov.resources.cpu_allocatable >= 12 and not ov.errors
    assert "pods: 3 total, 1 running, 1 pending, 1 failed" in ov.render()


async def test_overview_is_cached_until_forced(settings, cluster, shop):
    with use(scoped(settings, shop)) as rt:
        first = await overview.cluster_overview()
        states.make_pod(cluster.core, shop, "d")
        cached = await overview.cluster_overview()
        fresh = await overview.cluster_overview(force_refresh=True)
        rt.close()
    assert not first.from_cache and cached.from_cache and cached.pods.total == 3
    assert not fresh.from_cache and fresh.pods.total == 4


async def test_overview_is_partial_when_some_kinds_are_forbidden(settings, cluster, shop):
    cp = cluster.require_control_plane()
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    cp.api(
        "POST",
        rbac + "/clusterroles",
        {
            "metadata": {"name": f"auditor-{shop}"},
            "rules": [{"apiGroups": [""], "resources": ["pods", "nodes", "namespaces"], "verbs": ["list"]}],
        },
    )
    cp.api(
        "POST",
        rbac + "/clusterrolebindings",
        {
            "metadata": {"name": f"auditor-{shop}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"auditor-{shop}"},
            "subjects": [{"kind": "User", "name": "auditor", "apiGroup": "rbac.authorization.k8s.io"}],
        },
    )

    def authorized() -> bool:
        try:
            cp.api("GET", "/api/v1/nodes", token=AUDITOR_TOKEN)
            return True
        except RuntimeError:
            return False

    states.wait_for(authorized, what="the auditor binding")
    with use(scoped(settings, shop)) as rt:
        ov = await overview.cluster_overview(cluster="auditor")
        rt.close()
    assert ov.pods.total == 3 and ov.nodes.total >= 3 and ov.namespaces == 1
    assert set(ov.errors) == {"deployments", "services", "configmaps", "secrets"}
    assert "may not list secrets" in ov.errors["secrets"] and ov.secrets is None
    assert "PARTIAL" in ov.render()


async def test_namespaces_detail_counts_per_namespace(call, shop):
    result = await call(overview.namespaces_detail, limit=1000)
    row = next(n for n in result.namespaces if n.name == shop)
    assert (row.status, row.pods, row.unhealthy_pods, row.deployments, row.services) == ("Active", 3, 2, 1, 2)


async def test_nodes_detail_shows_capacity_conditions_and_placement(call, cluster, shop):
    cp = cluster.require_control_plane()
    cp.add_node(f"press-{shop}", cpu="2", memory="8Gi", ready=False)
    cp.set_node_status(f"press-{shop}", cpu="2", memory="8Gi", ready=False, conditions={"MemoryPressure": "True"})
    result = await call(overview.nodes_detail, limit=500)
    assert result.nodes[0].ready is False  # problem nodes first
    sick = next(n for n in result.nodes if n.name == f"press-{shop}")
    assert sick.conditions == ["MemoryPressure"] and sick.cpu_allocatable == 2.0 and sick.memory_allocatable_gib == 8.0
    cp0 = next(n for n in result.nodes if n.name == "node-0")
    assert cp0.roles == ["control-plane"] and cp0.taints == ["node-role.kubernetes.io/control-plane:NoSchedule"]
    assert cp0.kubelet == "v1.35.8" and cp0.os_image == "Debian 12" and cp0.runtime.startswith("containerd")
    one = await call(overview.nodes_detail, name="node-1")
    assert one.nodes[0].pods >= 2 and one.nodes[0].cpu_requested >= 0.5  # pods a and b sit on node-1
    cluster.core.delete_node(f"press-{shop}")
