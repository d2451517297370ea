"""The loop's safety properties on the real control plane: automatic rollback when verification fails,
conflicts, protected namespaces, RBAC refusals before anything is applied, plans that outlive a call."""

from __future__ import annotations

import anyio
import pytest

from errors import Conflict, Forbidden, InvalidInput, NotAllowed
from runtime import Runtime, use
from store import AuditLog
from tests.cluster import states
from tests.fix.scenarios import bad_probe_path, deploy, deployment, kubelet, set_status, wait_for
from tools.fix import audit_get, audit_list, fix_apply, fix_plan, fix_plan_show
from tools.fixloop import content
from tools.mutations import scale, set_image

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90), pytest.mark.stores]  # store-backed: SQLite, then PostgreSQL
MERGE = "application/merge-patch+json"


def _events(runtime, plan_id: str) -> list[str]:
    return [e.event for e in AuditLog(runtime.store).entries(plan_id=plan_id)][::-1]


async def test_failed_verification_rolls_back_to_the_saved_spec(api, namespace, call, runtime) -> None:
    bad_probe_path(api, namespace)
    before = deployment(api, namespace)
    plan = await call(fix_plan, namespace=namespace, name="web")
    with kubelet(api, namespace, "crash"):  # the new pods crash: the fix does not work
        result = await call(fix_apply, plan_id=plan.plan_id, confirm=plan.plan_id, verify_timeout_seconds=40)
    assert result.status == "rolled_back", result.render()
    assert "new pods are failing" in result.changes[0].verification
    assert result.changes[0].rollback == "rolled back to the saved previous spec"
    after = deployment(api, namespace)
    assert after["spec"]["template"] == before["spec"]["template"]
    assert _events(runtime, plan.plan_id) == ["planned", "approved", "applied", "failed", "rolled_back"]
    assert (await call(fix_plan_show, plan_id=plan.plan_id)).status == "rolled_back"


async def test_verification_timeout_rolls_back(api, namespace, call) -> None:
    deploy(api, namespace)
    plan = await call(set_image, kind="Deployment", name="web", namespace=namespace, image="shop/web:1.1")
    result = await call(fix_apply, plan_id=plan.plan_id, confirm=plan.plan_id, verify_timeout_seconds=1.5)
    assert result.status == "rolled_back"
    assert "not complete after 1.5s" in result.changes[0].verification
    assert deployment(api, namespace)["spec"]["template"]["spec"]["containers"][0]["image"] == "shop/web:1.0"


async def test_a_client_that_goes_away_during_verification_leaves_nothing_half_done(
    api, namespace, call, runtime
) -> None:
    deploy(api, namespace)
    plan = await call(set_image, kind="Deployment", name="web", namespace=namespace, image="shop/web:1.1")
    with anyio.move_on_after(4) as scope:  # the new pods never get ready: still verifying when cancelled
        await call(fix_apply, plan_id=plan.plan_id, confirm=plan.plan_id, verify_timeout_seconds=60)
    assert scope.cancelled_caught
    assert deployment(api, namespace)["spec"]["template"]["spec"]["containers"][0]["image"] == "shop/web:1.0"
    assert _events(runtime, plan.plan_id) == ["planned", "approved", "applied", "rolled_back"]
    entry = AuditLog(runtime.store).entries(plan_id=plan.plan_id)[0]
    assert entry.result.startswith("verification interrupted (CancelledError)"), entry.result
    assert (await call(fix_plan_show, plan_id=plan.plan_id)).status == "rolled_back"


async def test_rollback_keeps_an_autoscalers_replicas(api, namespace, call, runtime) -> None:
    deploy(api, namespace)
    plan = await call(set_image, kind="Deployment", name="web", namespace=namespace, image="shop/web:1.1")

    async def autoscaler() -> None:  # scales the Deployment while the new image is being verified
        while "applied" not in _events(runtime, plan.plan_id):
            await anyio.sleep(0.1)
        path = f"/apis/apps/v1/namespaces/{namespace}/deployments/web/scale"
        api("PATCH", path, {"spec": {"replicas": 3}}, content_type=MERGE)

    async with anyio.create_task_group() as tg:
        tg.start_soon(autoscaler)
        result = await call(fix_apply, plan_id=plan.plan_id, confirm=plan.plan_id, verify_timeout_seconds=4)
    assert result.status == "rolled_back"
    assert result.changes[0].rollback.startswith("rolled back to the saved previous spec (replicas left at 3")
    after = deployment(api, namespace)
    assert after["spec"]["template"]["spec"]["containers"][0]["image"] == "shop/web:1.0"
    assert after["spec"]["replicas"] == 3


async def test_rollback_never_overwrites_a_change_made_by_someone_else(api, namespace, call, runtime) -> None:
    deploy(api, namespace)
    plan = await call(set_image, kind="Deployment", name="web", namespace=namespace, image="shop/web:1.1")

    async def colleague() -> None:  # ships their own image while CloudPilot's is being verified
        while "applied" not in _events(runtime, plan.plan_id):
            await anyio.sleep(0.1)
        body = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "shop/web:2.0"}]}}}}
        api(
            "PATCH",
            f"/apis/apps/v1/namespaces/{namespace}/deployments/web",
            body,
            content_type="application/strategic-merge-patch+json",
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(colleague)
        result = await call(fix_apply, plan_id=plan.plan_id, confirm=plan.plan_id, verify_timeout_seconds=4)
    assert result.status == "failed", result.render()
    assert result.changes[0].rollback.startswith("not rolled back: someone else changed the object")
    assert deployment(api, namespace)["spec"]["template"]["spec"]["containers"][0]["image"] == "shop/web:2.0"


async def test_conflict_aborts_and_makes_a_fresh_plan(api, namespace, call, runtime) -> None:
    deploy(api, namespace)
    plan = await call(scale, kind="Deployment", name="web", namespace=namespace, replicas=3)
    api(
        "PATCH",
        f"/apis/apps/v1/namespaces/{namespace}/deployments/web",
        {"spec": {"template": {"metadata": {"labels": {"team": "other"}}}}},
        content_type=MERGE,
    )
    with pytest.raises(Conflict, match="changed by someone else") as caught:
        await call(fix_apply, plan_id=plan.plan_id, confirm=plan.plan_id)
    dep = deployment(api, namespace)
    assert dep["spec"]["replicas"] == 2 and dep["spec"]["template"]["metadata"]["labels"]["team"] == "other"
    assert _events(runtime, plan.plan_id)[-1] == "conflict"
    fresh_id = caught.value.message.split("fresh plan ")[1].split()[0]
    fresh = await call(fix_plan_show, plan_id=fresh_id)
    assert "-  replicas: 2\n+  replicas: 3" in fresh.changes[0].diff
    with pytest.raises(InvalidInput, match="is conflict"):
        await call(fix_apply, plan_id=plan.plan_id, confirm=plan.plan_id)


async def test_a_conflict_on_the_second_object_undoes_the_first(cluster, api, namespace, call, runtime) -> None:
    bad_probe_path(api, namespace)  # Deployment web: a liveness probe on a path the app does not serve
    states.make_pod(
        cluster.core,
        namespace,
        "api-0",
        labels={"app": "api"},
        containers=[{"name": "app", "image": "x", "ports": [{"containerPort": 8080}]}],
    )
    service = {
        "metadata": {"name": "api"},
        "spec": {"selector": {"app": "api"}, "ports": [{"port": 80, "targetPort": 9090}]},
    }
    api("POST", f"/api/v1/namespaces/{namespace}/services", service)
    plan = await call(fix_plan, namespace=namespace)  # both problems: one plan, two objects
    labels = [c.object for c in plan.changes]
    assert len(labels) == 2 and any("Service" in x for x in labels) and any("Deployment" in x for x in labels)
    paths = {
        "Service": f"/api/v1/namespaces/{namespace}/services/api",
        "Deployment": f"/apis/apps/v1/namespaces/{namespace}/deployments/web",
    }
    first, second = ("Service", "Deployment") if "Service" in labels[0] else ("Deployment", "Service")
    before = content(api("GET", paths[first]))
    api("PATCH", paths[second], {"metadata": {"labels": {"owner": "someone-else"}}}, content_type=MERGE)
    with pytest.raises(Conflict, match="nothing was overwritten; undone: "):
        await call(fix_apply, plan_id=plan.plan_id, confirm=plan.plan_id)
    after = content(api("GET", paths[first]))
    assert {k: v for k, v in after.items() if k != "metadata"} == {k: v for k, v in before.items() if k != "metadata"}
    assert _events(runtime, plan.plan_id)[-3:] == ["applied", "rolled_back", "conflict"]


async def test_status_updates_alone_are_not_a_conflict(api, namespace, call) -> None:
    pods = deploy(api, namespace)
    plan = await call(scale, kind="Deployment", name="web", namespace=namespace, replicas=3)
    set_status(api, namespace, pods[0], ready=False)  # the controller rewrites the Deployment's status
    wait_for(lambda: deployment(api, namespace)["status"].get("availableReplicas") == 1, "status update")
    with kubelet(api, namespace, "ready"):
        set_status(api, namespace, pods[0], ready=True)
        result = await call(fix_apply, plan_id=plan.plan_id, confirm=plan.plan_id, verify_timeout_seconds=30)
    assert result.status == "verified", result.render()
    assert deployment(api, namespace)["spec"]["replicas"] == 3


async def test_protected_namespace_is_refused_unless_overridden(api, namespace, runtime, call) -> None:
    deploy(api, namespace, ready=False)
    safety = runtime.settings.safety.model_copy(update={"protected_namespaces": [namespace]})
    runtime.settings = runtime.settings.model_copy(update={"safety": safety})
    with pytest.raises(NotAllowed, match="is protected"):
        await call(scale, kind="Deployment", name="web", namespace=namespace, replicas=3)
    refused = AuditLog(runtime.store).entries(event="refused")[0]
    assert refused.object == f"Deployment {namespace}/web" and "is protected" in refused.result
    with pytest.raises(NotAllowed, match="does not allow overriding"):
        await call(scale, kind="Deployment", name="web", namespace=namespace, replicas=3, override_protected=namespace)
    fix = runtime.settings.fix.model_copy(update={"allow_protected_override": True})
    runtime.settings = runtime.settings.model_copy(update={"fix": fix})
    plan = await call(
        scale, kind="Deployment", name="web", namespace=namespace, replicas=3, override_protected=namespace
    )
    assert plan.changes[0].actions == ["scale"]
    assert AuditLog(runtime.store).entries(plan_id=plan.plan_id)[0].event == "planned"


async def test_restricted_identity_gets_a_clear_403_before_anything_is_applied(api, namespace, call, runtime):
    deploy(api, namespace, ready=False)
    rules = [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "update", "patch"]},
        {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get", "list"]},
    ]
    api(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles",
        {"metadata": {"name": "fixer"}, "rules": rules},
    )
    api(
        "POST",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings",
        {
            "metadata": {"name": "fixer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "fixer"},
            "subjects": [{"kind": "User", "name": "auditor", "apiGroup": "rbac.authorization.k8s.io"}],
        },
    )
    with pytest.raises(Forbidden, match="viewer"):  # no rights at all: refused while planning
        await call(scale, kind="Deployment", name="web", namespace=namespace, replicas=3, cluster="viewer")
    plan = await call(scale, kind="Deployment", name="web", namespace=namespace, replicas=3, cluster="auditor")
    rules[0]["verbs"] = ["get", "list"]  # the right to update is taken away before the plan is applied
    api(
        "PUT",
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles/fixer",
        {"metadata": {"name": "fixer"}, "rules": rules},
    )
    before = deployment(api, namespace)
    with pytest.raises(Forbidden) as caught:
        await call(fix_apply, plan_id=plan.plan_id, confirm=plan.plan_id)
    message = caught.value.message
    assert "auditor" in message and "may not update deployments 'web'" in message and "Nothing was applied" in message
    assert content(deployment(api, namespace)) == content(before)
    assert _events(runtime, plan.plan_id) == ["planned", "refused"]


async def test_plan_outlives_the_runtime_and_expired_plans_are_refused(api, namespace, settings, call, runtime) -> None:
    deploy(api, namespace, ready=False)
    plan = await call(scale, kind="Deployment", name="web", namespace=namespace, replicas=0)
    other = Runtime(settings)  # another server process would open the same SQLite file
    try:
        with use(other):
            result = await fix_apply(plan_id=plan.plan_id, confirm=plan.plan_id, verify_timeout_seconds=30)
            assert result.status == "verified", result.render()
            assert deployment(api, namespace)["spec"]["replicas"] == 0
            entries = await audit_list(plan_id=plan.plan_id)
            applied = next(e for e in entries.entries if e.event == "applied")
            record = await audit_get(entry_id=applied.id)
            assert "-  replicas: 2\n+  replicas: 0" in record.diff
            assert record.entry.client == "direct call" and "admin" in record.entry.identity
    finally:
        other.close()
    expired = await call(scale, kind="Deployment", name="web", namespace=namespace, replicas=1)
    log = AuditLog(runtime.store)
    status, body = log.plan(expired.plan_id)
    body["expires_at"] = "2000-01-01T00:00:00+00:00"  # as if the plan had been left for too long
    log.save_plan(expired.plan_id, body["cluster"], body["expires_at"], body, status)
    with pytest.raises(InvalidInput, match="expired"):
        await call(fix_apply, plan_id=expired.plan_id, confirm=expired.plan_id)


async def test_an_apply_whose_process_died_is_reported_interrupted(api, namespace, call, runtime) -> None:
    deploy(api, namespace, ready=False)
    plan = await call(scale, kind="Deployment", name="web", namespace=namespace, replicas=3)
    log = AuditLog(runtime.store)
    # what a process killed during verification leaves behind: the plan 'applying', its writes audited
    assert log.set_plan_status(plan.plan_id, "applying", expect="planned")
    log.record("approved", plan_id=plan.plan_id, object=plan.changes[0].object)
    log.record("applied", plan_id=plan.plan_id, object=plan.changes[0].object)
    live = await call(fix_plan_show, plan_id=plan.plan_id)
    assert live.status == "applying"  # recent activity: another process may still be verifying it
    runtime.store.execute("UPDATE audit SET at = '2000-01-01T00:00:00+00:00' WHERE plan_id = ?", (plan.plan_id,))
    shown = await call(fix_plan_show, plan_id=plan.plan_id)
    assert shown.status == "interrupted"
    listed = await call(audit_list, plan_id=plan.plan_id)
    assert listed.entries[0].event == "interrupted"
    assert f"written and not verified: {plan.changes[0].object}" in listed.entries[0].result
    with pytest.raises(InvalidInput, match="is interrupted"):
        await call(fix_apply, plan_id=plan.plan_id, confirm=plan.plan_id)
    await call(audit_list, plan_id=plan.plan_id)
    assert [e.event for e in log.entries(plan_id=plan.plan_id)].count("interrupted") == 1  # recorded once


async def test_policy_pre_approves_named_low_risk_actions_only(api, namespace, runtime, call) -> None:
    deploy(api, namespace, ready=False)
    fix = runtime.settings.fix.model_copy(update={"auto_approve": ["scale"]})
    runtime.settings = runtime.settings.model_copy(update={"fix": fix})
    plan = await call(scale, kind="Deployment", name="web", namespace=namespace, replicas=0)
    assert "Pre-approved by policy" in plan.next_step
    result = await call(fix_apply, plan_id=plan.plan_id, verify_timeout_seconds=30)
    assert result.approved_by == "policy fix.auto_approve" and result.status == "verified"
    plan = await call(set_image, kind="Deployment", name="web", namespace=namespace, image="shop/web:1.1")
    with pytest.raises(NotAllowed, match="no confirmation"):
        await call(fix_apply, plan_id=plan.plan_id)


async def test_a_change_without_rollout_is_verified_by_the_finding_going_away(cluster, namespace, call) -> None:
    core = cluster.core
    states.make_pod(
        core,
        namespace,
        "api-0",
        labels={"app": "api"},
        containers=[{"name": "app", "image": "x", "ports": [{"containerPort": 8080}]}],
    )
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "api"},
            "spec": {"selector": {"app": "api"}, "ports": [{"port": 80, "targetPort": 9090}]},
        },
    )
    plan = await call(fix_plan, namespace=namespace, name="api", kind="Service")
    assert [c.actions for c in plan.changes] == [["set_target_port"]], plan.render()
    result = await call(fix_apply, plan_id=plan.plan_id, confirm=plan.plan_id, verify_timeout_seconds=20)
    assert result.status == "verified", result.render()
    assert "no longer reports SVC_TARGET_PORT_MISMATCH" in result.changes[0].verification
    assert core.read_namespaced_service("api", namespace).spec.ports[0].target_port == 8080
