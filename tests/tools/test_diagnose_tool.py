"""The diagnose tool's own behaviour on the real control plane: all namespaces, focus on one object,
bounds, severity filter, the snapshot cache, and the namespace allow/deny settings."""

from __future__ import annotations

import pytest

from errors import InvalidInput, NotAllowed, NotFound
from runtime import Runtime, use
from tests.tools.conftest_istio import kube, mesh  # noqa: F401 - fixtures
from tests.tools.diagnosis_scenarios import Kube, crashloop, selector_typo
from tools.diagnose import diagnose

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


async def test_all_namespaces_finds_the_namespace_problem(kube: Kube, namespace: str, call) -> None:  # noqa: F811
    crashloop(kube, namespace, True)
    result = await call(diagnose, force_refresh=True, limit=500)
    mine = [f for f in result.findings if f.object.namespace == namespace]
    assert mine[0].code == "POD_CRASHLOOP" and mine[0].object.kind == "Deployment"
    assert result.scope == "all namespaces"


async def test_focus_on_one_deployment(kube: Kube, namespace: str, call) -> None:  # noqa: F811
    crashloop(kube, namespace, True)
    kube.deploy(namespace, "api", ready=False)
    kube.service(namespace, "lost", selector={"app": "nothing"})
    result = await call(diagnose, namespace=namespace, kind="deploy", name="web", force_refresh=True)
    assert [f.code for f in result.findings] == ["POD_CRASHLOOP", "DEPLOY_UNAVAILABLE", "SVC_NO_READY_PODS"]
    assert "focus Deployment" in result.scope
    with pytest.raises(NotFound, match="Deployment 'nope' not found"):
        await call(diagnose, namespace=namespace, kind="Deployment", name="nope")
    with pytest.raises(InvalidInput, match="namespace"):
        await call(diagnose, kind="Deployment", name="web")


async def test_limit_and_min_severity(kube: Kube, namespace: str, call) -> None:  # noqa: F811
    crashloop(kube, namespace, True)
    result = await call(diagnose, namespace=namespace, limit=1, force_refresh=True)
    assert len(result.findings) == 1 and result.limited and result.total == 3
    assert result.counts == {"critical": 3, "warning": 0, "info": 0}
    kube.create(
        f"/apis/batch/v1/namespaces/{namespace}/cronjobs",
        {
            "metadata": {"name": "off"},
            "spec": {
                "schedule": "@daily",
                "suspend": True,
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}
                        }
                    }
                },
            },
        },
    )
    critical = await call(diagnose, namespace=namespace, min_severity="critical", force_refresh=True)
    assert {f.severity for f in critical.findings} == {"critical"} and critical.counts["info"] == 1


async def test_snapshot_is_reused_until_force_refresh(kube: Kube, namespace: str, call) -> None:  # noqa: F811
    selector_typo(kube, namespace, False)
    assert (await call(diagnose, namespace=namespace)).findings == []
    kube.patch(f"/api/v1/namespaces/{namespace}/services/web", {"spec": {"selector": {"app": "wbe"}}})
    cached = await call(diagnose, namespace=namespace)
    assert cached.findings == [] and cached.snapshot_age_seconds >= 0
    fresh = await call(diagnose, namespace=namespace, force_refresh=True)
    assert fresh.findings[0].code == "SVC_SELECTOR_NO_PODS"


async def test_denied_namespaces_stay_hidden(kube: Kube, namespace: str, settings) -> None:  # noqa: F811
    crashloop(kube, namespace, True)
    hidden = settings.model_copy(update={"safety": settings.safety.model_copy(update={"namespace_deny": [namespace]})})
    rt = Runtime(hidden)
    try:
        with use(rt):
            result = await diagnose(force_refresh=True, limit=500)
            assert all(f.object.namespace != namespace for f in result.findings)
            with pytest.raises(NotAllowed):
                await diagnose(namespace=namespace)
    finally:
        rt.close()


async def test_secrets_in_evidence_are_masked(kube: Kube, namespace: str, call) -> None:  # noqa: F811
    pods = kube.deploy(namespace, "web", replicas=1)
    pod = pods[0]
    from tests.tools.diagnosis_scenarios import waiting_status

    last = {"reason": "Error", "exitCode": 1, "message": "connect failed: password=hunter2 rejected"}
    kube.set_pod_status(
        namespace, pod["metadata"]["name"], waiting_status(pod, "CrashLoopBackOff", restarts=2, last=last)
    )
    result = await call(diagnose, namespace=namespace, force_refresh=True)
    assert "hunter2" not in result.render() and "password=***" in result.findings[0].evidence["termination_message"]


def test_collector_pause_nests_and_restores() -> None:
    import gc

    from tools.diagnose import _collector_paused

    assert gc.isenabled()
    with _collector_paused():
        with _collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with _collector_paused():
            pass
        assert not gc.isenabled()  # switched off by someone else: left off
    finally:
        gc.enable()


@pytest.mark.parametrize("request_cpu, exhausted", [("950m", True), ("200m", False)])
async def test_node_whose_allocatable_is_used_up_by_requests(
    kube: Kube,  # noqa: F811
    namespace: str,
    call,
    request_cpu: str,
    exhausted: bool,
) -> None:
    # judged only with every namespace's pods in view: a node focus diagnoses the whole cluster's pods
    node = f"n-{namespace}"
    kube.control_plane.add_node(node, cpu="1", taints=[{"key": "scenario", "value": namespace, "effect": "NoSchedule"}])
    container = {"name": "app", "image": "busybox", "resources": {"requests": {"cpu": request_cpu}}}
    kube.create(
        f"/api/v1/namespaces/{namespace}/pods",
        {"metadata": {"name": "big"}, "spec": {"nodeName": node, "containers": [container]}},
    )
    result = await call(diagnose, kind="Node", name=node, force_refresh=True)
    mine = [f for f in result.findings if f.object.kind == "Node" and f.object.name == node]
    if exhausted:
        assert [f.code for f in mine] == ["NODE_REQUESTS_EXHAUSTED"], result.render()
        assert mine[0].evidence["requested"] == {"cpu": "950m of 1 (95%)"}
    else:
        assert mine == [], result.render()
