"""workloads_list, rollout_status, rollout_history and resource_usage."""

import pytest

from errors import Unsupported
from tests.cluster import states
from tools import workloads


async def test_a_stuck_rollout_is_reported_failed_with_the_reason(call, cluster, namespace):
    cluster.apps.create_namespaced_deployment(namespace, states.deployment("stuck", progressDeadlineSeconds=1))
    cluster.apps.create_namespaced_deployment(namespace, states.deployment("idle", replicas=0))

    def deadline_exceeded():
        d = cluster.apps.read_namespaced_deployment("stuck", namespace)
        return any(c.reason == "ProgressDeadlineExceeded" for c in d.status.conditions or [])

    states.wait_for(deadline_exceeded, timeout=30, what="the deployment controller to give up")
    listed = await call(workloads.workloads_list, namespace=namespace, kinds=["Deployment"])
    assert [(w.name, w.status) for w in listed.workloads] == [("stuck", "Failed"), ("idle", "Healthy")]
    assert "ProgressDeadlineExceeded" in listed.workloads[0].detail and listed.workloads[0].ready == "0/1"
    status = await call(workloads.rollout_status, kind="Deployment", name="stuck", namespace=namespace)
    assert not status.done and status.status == "Failed" and "Progressing" in status.conditions


async def test_rollout_history_lists_revisions_with_images_and_cause(call, cluster, namespace):
    cluster.apps.create_namespaced_deployment(namespace, states.deployment("web", "web:1", replicas=0))
    states.wait_for(lambda: cluster.apps.list_namespaced_replica_set(namespace).items, what="first ReplicaSet")
    cluster.apps.patch_namespaced_deployment(
        "web",
        namespace,
        {
            "metadata": {"annotations": {"kubernetes.io/change-cause": "deploy web:2"}},
            "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "web:2"}]}}},
        },
    )
    states.wait_for(lambda: len(cluster.apps.list_namespaced_replica_set(namespace).items) == 2, what="second RS")

    async def history():
        return await call(workloads.rollout_history, kind="Deployment", name="web", namespace=namespace)

    result = await history()
    assert [(r.revision, r.images) for r in result.revisions] == [(1, ["web:1"]), (2, ["web:2"])]
    assert result.revisions[1].change_cause == "deploy web:2"
    assert [r.current for r in result.revisions] in ([False, True], [False, False])  # annotation may lag a moment


async def test_statefulsets_cronjobs_and_jobs_are_judged(call, cluster, namespace):
    cp = cluster.require_control_plane()
    cp.api(
        "POST",
        f"/apis/apps/v1/namespaces/{namespace}/statefulsets",
        {
            "metadata": {"name": "db"},
            "spec": {
                "replicas": 1,
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": {
                    "metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": [{"name": "db", "image": "pg:16"}]},
                },
            },
        },
    )
    cp.api(
        "POST",
        f"/apis/batch/v1/namespaces/{namespace}/cronjobs",
        {
            "metadata": {"name": "backup"},
            "spec": {
                "schedule": "0 3 * * *",
                "suspend": True,
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {"restartPolicy": "Never", "containers": [{"name": "b", "image": "backup:1"}]}
                        }
                    }
                },
            },
        },
    )
    states.wait_for(
        lambda: (cluster.apps.read_namespaced_stateful_set("db", namespace).status.observed_generation or 0) >= 1,
        what="the statefulset controller",
    )
    listed = await call(workloads.workloads_list, namespace=namespace, kinds=["StatefulSet", "CronJob"])
    by_name = {w.name: w for w in listed.workloads}
    assert by_name["db"].status == "Degraded" and by_name["db"].ready == "0/1" and by_name["db"].images == ["pg:16"]
    assert by_name["backup"].status == "Suspended" and "0 3 * * *" in by_name["backup"].detail
    problems = await call(workloads.workloads_list, namespace=namespace, problems_only=True)
    assert [w.name for w in problems.workloads] == ["db"]


async def test_usage_without_metrics_api_says_so(call, runtime):
    with pytest.raises(Unsupported, match=r"does not serve metrics\.k8s\.io.*metrics-server"):
        await call(workloads.resource_usage)


async def test_usage_from_a_served_metrics_api(call, cluster, namespace):
    """metrics.k8s.io served by CRDs (metrics-server's API shape), so the real read path runs end to end."""
    cp = cluster.require_control_plane()
    for plural, kind, scope in (("pods", "PodMetrics", "Namespaced"), ("nodes", "NodeMetrics", "Cluster")):
        try:
            cp.api(
                "POST",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                {
                    "metadata": {
                        "name": f"{plural}.metrics.k8s.io",
                        "annotations": {"api-approved.kubernetes.io": "unapproved, test double of metrics-server"},
                    },
                    "spec": {
                        "group": "metrics.k8s.io",
                        "scope": scope,
                        "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
                        "versions": [
                            {
                                "name": "v1beta1",
                                "served": True,
                                "storage": True,
                                "schema": {
                                    "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                                },
                            }
                        ],
                    },
                },
            )
        except RuntimeError as e:
            if "AlreadyExists" not in str(e):
                raise

    def served() -> bool:
        try:
            cp.api("GET", f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods")
            cp.api("GET", "/apis/metrics.k8s.io/v1beta1/nodes")
            return True
        except RuntimeError:
            return False

    states.wait_for(served, what="the metrics API")
    base = f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods"
    for name, cpu, mem in (("light", "15m", "64Mi"), ("heavy", "1500m", "2Gi")):
        cp.api(
            "POST",
            base,
            {
                "apiVersion": "metrics.k8s.io/v1beta1",
                "kind": "PodMetrics",
                "metadata": {"name": name},
                "containers": [
                    {"name": "app", "usage": {"cpu": cpu, "memory": mem}},
                    {"name": "proxy", "usage": {"cpu": "5m", "memory": "32Mi"}},
                ],
            },
        )
    cp.api(
        "POST",
        "/apis/metrics.k8s.io/v1beta1/nodes",
        {
            "apiVersion": "metrics.k8s.io/v1beta1",
            "kind": "NodeMetrics",
            "metadata": {"name": "node-1"},
            "usage": {"cpu": "2", "memory": "4Gi"},
        },
    )
    pods = await call(workloads.resource_usage, namespace=namespace)
    assert [(r.name, r.cpu_cores, r.memory_gib) for r in pods.rows] == [
        ("heavy", 1.505, 2.0312),
        ("light", 0.02, 0.0938),
    ]
    nodes = await call(workloads.resource_usage, kind="nodes")
    node1 = next(r for r in nodes.rows if r.name == "node-1")
    assert (node1.cpu_percent, node1.memory_percent) == (50.0, 25.0)
    for plural in ("pods", "nodes"):
        cluster.control_plane.api(
            "DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.metrics.k8s.io"
        )
