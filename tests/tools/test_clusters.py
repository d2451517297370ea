"""Cluster registry and access: kubeconfig contexts, registered clusters (URL+token, kubeconfig text), errors."""

import pytest

from errors import Forbidden, InvalidInput, NotFound, Unreachable
from tests.cluster import states
from tests.cluster.controlplane import ADMIN_TOKEN, VIEWER_TOKEN
from tools import clusters, overview, pods


async def test_kubeconfig_contexts_are_listed_with_the_current_default(call):
    listed = await call(clusters.clusters_list)
    by_name = {c.name: c for c in listed.clusters}
    assert by_name["admin"].default and by_name["admin"].source == "kubeconfig"
    assert by_name["viewer"].auth == "user viewer"


async def test_cluster_info_reports_version_nodes_and_identity(call, cluster):
    info = await call(clusters.cluster_info)
    assert info.version and info.version.startswith("v1.")
    assert info.nodes_total >= 3 and info.nodes_ready >= 3
    assert info.identity == "kubeconfig user admin"
    assert "nodes" in info.render()


async def test_register_by_url_and_token_then_use_and_remove(call, cluster, runtime):
    cp = cluster.require_control_plane()
    ca = (cp.dir / "pki" / "ca.crt").read_text()
    added = await call(
        clusters.clusters_add, name="prod-eu", server=cp.url, token=ADMIN_TOKEN, ca_cert=ca, description="test cluster"
    )
    assert added.nodes_total >= 3
    listed = await call(clusters.clusters_list)
    entry = next(c for c in listed.clusters if c.name == "prod-eu")
    assert entry.source == "registry" and entry.auth == "token"
    assert ADMIN_TOKEN not in listed.model_dump_json() and ADMIN_TOKEN not in listed.render()
    via_registry = await call(pods.pods_list, namespace="kube-system", cluster="prod-eu")
    assert via_registry.cluster == "prod-eu"
    with pytest.raises(InvalidInput, match="already exists"):
        await call(clusters.clusters_add, name="prod-eu", server=cp.url, token=ADMIN_TOKEN, ca_cert=ca)
    await call(clusters.clusters_remove, name="prod-eu")
    with pytest.raises(NotFound, match="Unknown cluster 'prod-eu'"):
        await call(pods.pods_list, namespace="default", cluster="prod-eu")


async def test_register_by_kubeconfig_text(call, cluster):
    text = cluster.kubeconfig.read_text()
    added = await call(clusters.clusters_add, name="from-kubeconfig", kubeconfig=text, context="admin")
    assert added.server.startswith("https://127.0.0.1")
    info = await call(clusters.cluster_info, cluster="from-kubeconfig")
    assert info.nodes_total == added.nodes_total


async def test_an_unusable_cluster_is_not_saved(call, runtime):
    with pytest.raises(InvalidInput, match=r"was not saved: .*did not answer"):
        await call(clusters.clusters_add, name="nowhere", server="https://127.0.0.1:1", token="x")
    assert runtime.store.get_cluster("nowhere") is None
    with pytest.raises(InvalidInput, match="either `server`"):
        await call(clusters.clusters_add, name="both", server="https://x", kubeconfig="apiVersion: v1")


async def test_wrong_token_is_reported_as_rejected_credentials(call, cluster):
    cp = cluster.require_control_plane()
    ca = (cp.dir / "pki" / "ca.crt").read_text()
    await call(clusters.clusters_add, name="badtoken", server=cp.url, token="wrong", ca_cert=ca, verify=False)
    with pytest.raises(Forbidden, match="rejected the credentials"):
        await call(clusters.cluster_info, cluster="badtoken")


async def test_unreachable_cluster_names_the_endpoint(call):
    await call(clusters.clusters_add, name="down", server="https://127.0.0.1:1", token="x", verify=False)
    with pytest.raises(Unreachable, match=r"'down' at https://127.0.0.1:1 did not answer"):
        await call(overview.nodes_detail, cluster="down")


async def test_forbidden_names_verb_resource_and_identity(call, cluster, namespace):
    cp = cluster.require_control_plane()
    rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces/" + namespace
    cp.api(
        "POST",
        rbac + "/roles",
        {
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        },
    )
    cp.api(
        "POST",
        rbac + "/rolebindings",
        {
            "metadata": {"name": "viewer-pods"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "User", "name": "viewer", "apiGroup": "rbac.authorization.k8s.io"}],
        },
    )

    def authorized() -> bool:  # RBAC reaches the authorizer's cache shortly after the binding is created
        try:
            cp.api("GET", f"/api/v1/namespaces/{namespace}/pods", token=VIEWER_TOKEN)
            return True
        except RuntimeError:
            return False

    states.wait_for(authorized, what="the viewer's RoleBinding to take effect")
    allowed = await call(pods.pods_list, namespace=namespace, cluster="viewer")
    assert allowed.page.total == 0
    with pytest.raises(Forbidden) as err:
        await call(pods.pods_list, namespace="kube-system", cluster="viewer")
    message = str(err.value)
    assert "identity 'kubeconfig user viewer' may not list pods in namespace \"kube-system\"" in message
    assert 'User "viewer" cannot list resource "pods"' in message and "RBAC" in message
    assert VIEWER_TOKEN not in message
