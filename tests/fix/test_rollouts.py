"""Verification of StatefulSet and DaemonSet rollouts, with a stand-in kubelet that also finishes graceful
deletions (the StatefulSet controller replaces a pod only once the old one is gone)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.fix.scenarios import crashing, pods, set_status, wait_for
from tools.fix import fix_apply
from tools.mutations import rollout_restart, set_image

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


@contextmanager
def kubelet_for(api, ns: str, selector: str, crash_image: str | None = None) -> Iterator[None]:
    """Pods become Ready once scheduled; those running `crash_image` crash-loop instead."""
    stop = threading.Event()
    crashed: set[str] = set()

    def run() -> None:
        while not stop.is_set():
            for p in pods(api, ns, selector):
                name = p["metadata"]["name"]
                try:
                    if p["metadata"].get("deletionTimestamp"):
                        api("DELETE", f"/api/v1/namespaces/{ns}/pods/{name}", {"gracePeriodSeconds": 0})
                    elif not p["spec"].get("nodeName") or p["metadata"]["uid"] in crashed:
                        continue
                    elif p["spec"]["containers"][0]["image"] == crash_image:
                        set_status(api, ns, p, ready=False, **crashing(p))
                        crashed.add(p["metadata"]["uid"])
                    elif not any(
                        c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", [])
                    ):
                        set_status(api, ns, p, ready=True)
                except RuntimeError:  # gone between list and write
                    continue
            stop.wait(0.1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def _template(app: str) -> dict:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {
            "containers": [{"name": "app", "image": f"shop/{app}:1", "ports": [{"containerPort": 80}]}],
            "tolerations": [{"operator": "Exists"}],
        },
    }


async def test_statefulset_rollout_is_verified(api, namespace, call) -> None:
    api(
        "POST",
        f"/apis/apps/v1/namespaces/{namespace}/statefulsets",
        {
            "metadata": {"name": "db"},
            "spec": {
                "replicas": 2,
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": _template("db"),
            },
        },
    )
    with kubelet_for(api, namespace, "app=db"):
        plan = await call(set_image, kind="StatefulSet", name="db", namespace=namespace, image="shop/db:2")
        assert plan.changes[0].blast.max_unavailable == 1
        result = await call(fix_apply, plan_id=plan.plan_id, confirm=plan.plan_id, verify_timeout_seconds=40)
    assert result.status == "verified", result.render()
    assert {p["spec"]["containers"][0]["image"] for p in pods(api, namespace, "app=db")} == {"shop/db:2"}


async def test_daemonset_rollout_is_verified(api, namespace, call) -> None:
    api(
        "POST",
        f"/apis/apps/v1/namespaces/{namespace}/daemonsets",
        {
            "metadata": {"name": "agent"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": _template("agent")},
        },
    )
    with kubelet_for(api, namespace, "app=agent"):
        path = f"/apis/apps/v1/namespaces/{namespace}/daemonsets/agent"

        def everywhere() -> int:
            status = api("GET", path)["status"]
            wanted = status.get("desiredNumberScheduled", 0)
            return wanted if wanted and status.get("numberAvailable") == wanted else 0

        nodes = wait_for(everywhere, "agent available on every node")
        plan = await call(rollout_restart, kind="DaemonSet", name="agent", namespace=namespace)
        assert plan.changes[0].blast.pods_restarted == nodes >= 3
        result = await call(fix_apply, plan_id=plan.plan_id, confirm=plan.plan_id, verify_timeout_seconds=40)
    assert result.status == "verified", result.render()


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet"])
async def test_crashing_new_pods_fail_verification_early_and_roll_back(api, namespace, call, kind) -> None:
    plural, spec = (
        ("statefulsets", {"replicas": 2, "serviceName": "db"}) if kind == "StatefulSet" else ("daemonsets", {})
    )
    path = f"/apis/apps/v1/namespaces/{namespace}/{plural}/db"
    body = {
        "metadata": {"name": "db"},
        "spec": {**spec, "selector": {"matchLabels": {"app": "db"}}, "template": _template("db")},
    }
    api("POST", f"/apis/apps/v1/namespaces/{namespace}/{plural}", body)
    with kubelet_for(api, namespace, "app=db", crash_image="shop/db:broken"):
        wait_for(
            lambda: api("GET", path).get("status", {}).get("readyReplicas" if kind == "StatefulSet" else "numberReady"),
            "db ready",
        )
        plan = await call(set_image, kind=kind, name="db", namespace=namespace, image="shop/db:broken")
        result = await call(fix_apply, plan_id=plan.plan_id, confirm=plan.plan_id, verify_timeout_seconds=60)
    assert result.status == "rolled_back", result.render()
    assert (
        "new pods are failing" in result.changes[0].verification
        and "CrashLoopBackOff" in result.changes[0].verification
    )
    assert api("GET", path)["spec"]["template"]["spec"]["containers"][0]["image"] == "shop/db:1"
