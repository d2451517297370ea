"""Each seed scenario end to end on the real control plane: diagnosis finding → plan → dry-run diff →
refused without approval → applied with approval → verified, and the object changed exactly as planned."""

from __future__ import annotations

import pytest

from errors import InvalidInput, NotAllowed
from store import AuditLog
from tests.fix.scenarios import SCENARIOS, Scenario, deploy, deployment, kubelet, set_status
from tools.fix import fix_apply, fix_plan
from tools.fixloop import content, diff, load

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_scenario_is_fixed_as_planned(scenario: Scenario, api, namespace, call, runtime) -> None:
    scenario.build(api, namespace)
    before = deployment(api, namespace)

    plan = await call(fix_plan, namespace=namespace, name="web", event_text=scenario.event_text)
    text = plan.render()
    assert len(plan.changes) == 1, text
    change = plan.changes[0]
    assert change.object == f"Deployment {namespace}/web", text
    assert change.actions == scenario.actions, text
    assert scenario.codes <= {w.split(":")[0] for w in change.why}, text
    assert change.diff.startswith("--- live\n+++ after"), text
    assert change.blast.pods_restarted == before["spec"]["replicas"], text

    with pytest.raises(NotAllowed, match="confirm"):
        await call(fix_apply, plan_id=plan.plan_id)
    assert content(deployment(api, namespace)) == content(before)  # refused: nothing changed

    with kubelet(api, namespace, "ready"):
        result = await call(fix_apply, plan_id=plan.plan_id, confirm=plan.plan_id, verify_timeout_seconds=40)
    assert result.status == "verified", result.render()

    after = deployment(api, namespace)
    assert scenario.fixed(after), after["spec"]["template"]
    assert diff(before, after) == change.diff  # exactly the planned dry-run result: nothing else changed
    _, saved = load(runtime, plan.plan_id)
    assert saved.items[0].live is None and saved.items[0].desired is None  # objects are not kept at rest
    events = [e.event for e in AuditLog(runtime.store).entries(plan_id=plan.plan_id)]
    assert events == ["verified", "applied", "approved", "refused", "planned"]


async def test_missing_configmap_is_reported_and_nothing_is_invented(api, namespace, call) -> None:
    env = [{"name": "LOG_LEVEL", "valueFrom": {"configMapKeyRef": {"name": "app-config", "key": "LOG_LEVEL"}}}]
    for p in deploy(api, namespace, {"env": env}):
        set_status(
            api,
            namespace,
            p,
            ready=False,
            phase="Pending",
            state={"waiting": {"reason": "CreateContainerConfigError", "message": 'configmap "app-config" not found'}},
        )
    plan = await call(fix_plan, namespace=namespace, name="web")
    assert plan.changes == [] and plan.status == "empty"
    assert any("ConfigMap app-config is missing" in r.reason and "does not invent" in r.reason for r in plan.refused), (
        plan.render()
    )
    with pytest.raises(InvalidInput, match="is empty"):
        await call(fix_apply, plan_id=plan.plan_id, confirm=plan.plan_id)
