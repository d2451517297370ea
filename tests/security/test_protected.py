"""A protected namespace protects its own Namespace object; deleting a namespace shows what goes with it; changes
of cluster-wide privileges are critical, need --allow-destructive and are never pre-approved."""

from __future__ import annotations

import uuid

import pytest

from errors import NotAllowed
from settings import Settings
from store import AuditLog
from tests.fix.scenarios import deploy, pods, wait_for
from tools.mutations import resource_apply, resource_delete, resource_patch

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]
PRIVILEGED = {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}}


@pytest.fixture
def settings(write_settings: Settings) -> Settings:  # writes switched on
    return write_settings


def _update(runtime, group: str, **values) -> None:
    part = getattr(runtime.settings, group).model_copy(update=values)
    runtime.settings = runtime.settings.model_copy(update={group: part})


async def test_the_namespace_object_of_a_protected_namespace_is_protected(api, namespace, call, runtime) -> None:
    for kind in ("Namespace", "namespaces", "ns"):
        with pytest.raises(NotAllowed, match="'istio-system' is protected"):  # a default protected namespace
            await call(resource_delete, kind=kind, name="istio-system")
    _update(runtime, "safety", protected_namespaces=[namespace])
    with pytest.raises(NotAllowed, match="is protected"):
        await call(resource_delete, kind="Namespace", name=namespace)
    with pytest.raises(NotAllowed, match="is protected"):
        await call(resource_patch, kind="Namespace", name=namespace, patch=PRIVILEGED, patch_type="merge")
    labels = api("GET", f"/api/v1/namespaces/{namespace}")["metadata"].get("labels") or {}
    assert "pod-security.kubernetes.io/enforce" not in labels
    refused = AuditLog(runtime.store).entries(event="refused")
    assert len(refused) == 5 and refused[0].object == f"Namespace {namespace}"
    _update(runtime, "fix", allow_protected_override=True)  # the same override as for objects inside it
    plan = await call(
        resource_patch,
        kind="Namespace",
        name=namespace,
        patch=PRIVILEGED,
        patch_type="merge",
        override_protected=namespace,
    )
    assert "+    pod-security.kubernetes.io/enforce: privileged" in plan.changes[0].diff


async def test_deleting_a_namespace_counts_what_is_inside(api, namespace, call) -> None:
    deploy(api, namespace, ready=False)
    wait_for(lambda: len(pods(api, namespace)) == 2, "web's pods")
    plan = await call(resource_delete, kind="Namespace", name=namespace)
    change = plan.changes[0]
    assert change.risk == "critical" and change.blast.max_unavailable == 2, plan.render()
    assert "2 Pod(s), 1 Deployment(s)" in change.blast.notes[0], change.blast.notes
    assert api("GET", f"/api/v1/namespaces/{namespace}")["status"]["phase"] == "Active"  # only planned


def _manifests(suffix: str) -> dict[str, str]:
    rbac = "apiVersion: rbac.authorization.k8s.io/v1"
    return {
        "binding to cluster-admin": f"{rbac}\nkind: ClusterRoleBinding\nmetadata: {{name: admins-{suffix}}}\n"
        f"roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}}\n"
        f"subjects: [{{kind: User, name: mallory, apiGroup: rbac.authorization.k8s.io}}]\n",
        "every verb": f"{rbac}\nkind: ClusterRole\nmetadata: {{name: all-{suffix}}}\n"
        "rules: [{apiGroups: [''], resources: [pods], verbs: ['*']}]\n",
        "escalate": f"{rbac}\nkind: ClusterRole\nmetadata: {{name: esc-{suffix}}}\n"
        "rules: [{apiGroups: [rbac.authorization.k8s.io], resources: [clusterroles], verbs: [escalate]}]\n",
        "webhook": "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\n"
        f"metadata: {{name: hook-{suffix}}}\nwebhooks: []\n",
    }


async def test_cluster_wide_privilege_changes_are_critical(api, call, runtime) -> None:
    suffix = uuid.uuid4().hex[:6]
    _update(runtime, "safety", allow_destructive=False)
    for what, manifest in _manifests(suffix).items():
        with pytest.raises(NotAllowed, match="cluster-wide privilege change") as caught:
            await call(resource_apply, manifest=manifest)
        assert "--allow-destructive" in caught.value.message, what
    with pytest.raises(NotAllowed, match="cluster-wide privilege change"):  # an existing binding, relabelled
        await call(resource_patch, kind="ClusterRoleBinding", name="cluster-admin", patch={"metadata": {"labels": {}}})
    _update(runtime, "safety", allow_destructive=True)
    _update(runtime, "fix", auto_approve=["patch_apply", "patch_strategic", "delete"])
    for manifest in _manifests(suffix).values():
        plan = await call(resource_apply, manifest=manifest)
        assert plan.risk == "critical" and "Pre-approved" not in plan.next_step, plan.render()
        assert any("cluster-wide privilege change" in n for n in plan.changes[0].blast.notes)
    ordinary = f"apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: view-{suffix}}}\n"
    ordinary += "rules: [{apiGroups: [''], resources: [pods], verbs: [get, list]}]\n"
    assert (await call(resource_apply, manifest=ordinary)).risk != "critical"


async def test_deleting_a_crd_is_critical(api, call, runtime) -> None:
    name = f"widgets{uuid.uuid4().hex[:6]}.example.com"
    plural = name.split(".")[0]
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": plural[:-1], "kind": plural.capitalize()},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object"}},
                }
            ],
        },
    }
    api("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    try:
        plan = await call(resource_delete, kind="CustomResourceDefinition", name=name)
        assert plan.risk == "critical" and "deletes all its objects" in plan.render()
        _update(runtime, "safety", allow_destructive=False)
        with pytest.raises(NotAllowed, match="allow-destructive"):
            await call(resource_delete, kind="CustomResourceDefinition", name=name)
    finally:
        api("DELETE", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
