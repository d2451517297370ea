"""Every change tool on the real control plane: it plans (dry run, diff) without changing anything, and the
approved plan changes the object as the diff said."""

from __future__ import annotations

import pytest

from errors import InvalidInput, NotAllowed
from tests.fix.scenarios import deploy, deployment, kubelet, newest_pods, wait_for
from tools.fix import fix_apply
from tools.fixloop import content
from tools.mutations import (
    node_cordon,
    node_uncordon,
    pod_delete,
    resource_apply,
    resource_delete,
    resource_patch,
    rollout_restart,
    rollout_undo,
    scale,
    set_image,
    set_probe,
    set_resources,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]
MERGE = "application/merge-patch+json"


async def _apply(call, api, namespace, plan, ready: bool = True):
    """Apply with confirmation; the object must not change before that."""
    with kubelet(api, namespace) if ready else _nothing():
        result = await call(fix_apply, plan_id=plan.plan_id, confirm=plan.plan_id, verify_timeout_seconds=30)
    assert result.status == "verified", result.render()
    return result


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _app(api, namespace):
    return deployment(api, namespace)["spec"]["template"]["spec"]["containers"][0]


async def test_template_changes(api, namespace, call) -> None:
    deploy(api, namespace)
    before = deployment(api, namespace)
    plans = [
        await call(set_image, kind="Deployment", name="web", namespace=namespace, image="shop/web:1.1"),
        await call(
            set_resources,
            kind="Deployment",
            name="web",
            namespace=namespace,
            requests={"cpu": "100m"},
            limits={"memory": "256Mi"},
        ),
        await call(
            set_probe,
            kind="Deployment",
            name="web",
            namespace=namespace,
            probe="readiness",
            handler={"tcpSocket": {"port": 8080}},
            timing={"periodSeconds": 10},
        ),
    ]
    assert "-      - image: shop/web:1.0\n+      - image: shop/web:1.1" in plans[0].changes[0].diff
    assert content(deployment(api, namespace)) == content(before)  # planning changes nothing
    await _apply(call, api, namespace, plans[0])
    assert _app(api, namespace)["image"] == "shop/web:1.1"
    with pytest.raises(Exception, match="changed by someone else"):  # planned on the version before
        await call(fix_apply, plan_id=plans[1].plan_id, confirm=plans[1].plan_id)
    plan = await call(
        set_resources,
        kind="Deployment",
        name="web",
        namespace=namespace,
        requests={"cpu": "100m"},
        limits={"memory": "256Mi"},
    )
    await _apply(call, api, namespace, plan)
    assert _app(api, namespace)["resources"] == {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}}
    plan = await call(
        set_probe,
        kind="Deployment",
        name="web",
        namespace=namespace,
        probe="readiness",
        handler={"tcpSocket": {"port": 8080}},
        timing={"periodSeconds": 10},
    )
    await _apply(call, api, namespace, plan)
    assert _app(api, namespace)["readinessProbe"]["tcpSocket"] == {"port": 8080}

    plan = await call(rollout_restart, kind="Deployment", name="web", namespace=namespace)
    await _apply(call, api, namespace, plan)
    annotations = deployment(api, namespace)["spec"]["template"]["metadata"]["annotations"]
    assert "kubectl.kubernetes.io/restartedAt" in annotations

    plan = await call(rollout_undo, name="web", namespace=namespace, to_revision=1)
    assert plan.changes[0].actions == ["set_template"]
    await _apply(call, api, namespace, plan)
    assert _app(api, namespace)["image"] == "shop/web:1.0" and "readinessProbe" not in _app(api, namespace)
    with pytest.raises(InvalidInput, match="no revision 42"):
        await call(rollout_undo, name="web", namespace=namespace, to_revision=42)
    with pytest.raises(InvalidInput, match="no container 'sidecar'"):
        await call(set_image, kind="Deployment", name="web", namespace=namespace, image="x:1", container="sidecar")


async def test_scale_and_patches(api, namespace, call) -> None:
    deploy(api, namespace, ready=False)
    plan = await call(scale, kind="Deployment", name="web", namespace=namespace, replicas=0)
    assert plan.changes[0].blast.notes == ["scale down: 2 pod(s) stopped"] and plan.risk == "high"
    await _apply(call, api, namespace, plan, ready=False)
    assert deployment(api, namespace)["spec"]["replicas"] == 0
    with pytest.raises(InvalidInput, match="already in the requested state"):
        await call(scale, kind="Deployment", name="web", namespace=namespace, replicas=0)

    api("POST", f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    for patch_type, patch in (
        ("strategic", {"data": {"b": "2"}}),
        ("merge", {"data": {"a": None}}),
        ("json", [{"op": "add", "path": "/data/c", "value": "3"}]),
    ):
        plan = await call(
            resource_patch, kind="configmaps", name="cfg", namespace=namespace, patch=patch, patch_type=patch_type
        )
        assert plan.changes[0].actions == [f"patch_{patch_type}"]
        await _apply(call, api, namespace, plan, ready=False)
    assert api("GET", f"/api/v1/namespaces/{namespace}/configmaps/cfg")["data"] == {"b": "2", "c": "3"}
    with pytest.raises(InvalidInput, match="list of operations"):
        await call(
            resource_patch, kind="configmaps", name="cfg", namespace=namespace, patch={"x": 1}, patch_type="json"
        )

    manifest = f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: {namespace}\ndata:\n  k: v\n"
    plan = await call(resource_apply, manifest=manifest)
    assert "+data:\n+  k: v" in plan.changes[0].diff
    await _apply(call, api, namespace, plan, ready=False)
    plan = await call(resource_apply, manifest=manifest.replace("k: v", "k: w"))
    await _apply(call, api, namespace, plan, ready=False)
    assert api("GET", f"/api/v1/namespaces/{namespace}/configmaps/applied")["data"] == {"k": "w"}


async def test_deletions_and_nodes(api, namespace, call, runtime) -> None:
    pods = deploy(api, namespace)
    victim = pods[0]["metadata"]["name"]
    plan = await call(pod_delete, name=victim, namespace=namespace)
    assert plan.changes[0].blast.notes == ["the pod stops; its controller creates a replacement"]
    assert "-  name: " + victim in plan.changes[0].diff
    live = api("GET", f"/api/v1/namespaces/{namespace}/pods/{victim}")
    assert "deletionTimestamp" not in live["metadata"]  # the plan's dry run deleted nothing
    await _apply(call, api, namespace, plan, ready=False)
    wait_for(lambda: victim not in {p["metadata"]["name"] for p in newest_pods(api, namespace)}, "pod gone")

    api("POST", f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": "old"}, "data": {}})
    plan = await call(resource_delete, kind="ConfigMap", name="old", namespace=namespace)
    assert api("GET", f"/api/v1/namespaces/{namespace}/configmaps/old")["metadata"]["name"] == "old"
    await _apply(call, api, namespace, plan, ready=False)
    with pytest.raises(RuntimeError, match="404"):
        api("GET", f"/api/v1/namespaces/{namespace}/configmaps/old")

    safety = runtime.settings.safety.model_copy(update={"allow_destructive": False})
    runtime.settings = runtime.settings.model_copy(update={"safety": safety})
    with pytest.raises(NotAllowed, match="allow-destructive"):
        await call(resource_delete, kind="Deployment", name="web", namespace=namespace)

    plan = await call(node_cordon, name="node-2")
    try:
        await _apply(call, api, namespace, plan, ready=False)
        assert api("GET", "/api/v1/nodes/node-2")["spec"]["unschedulable"] is True
    finally:
        plan = await call(node_uncordon, name="node-2")
        await _apply(call, api, namespace, plan, ready=False)
    assert "unschedulable" not in api("GET", "/api/v1/nodes/node-2")["spec"]
