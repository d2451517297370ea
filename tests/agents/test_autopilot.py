"""The autopilot — no model at all — on the fix scenarios and the seeds' auto-fix example, on the real control
plane: diagnosed, planned, paused for approval with nothing changed, approved, applied, verified, notified."""

from __future__ import annotations

import pytest

from store import AuditLog
from tests.agents.conftest import ALICE, BOB, READER
from tests.fix.scenarios import SCENARIOS, Scenario, deploy, deployment, event, kubelet, pods, set_status, wait_for
from tools.fixloop import content

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120), pytest.mark.stores]  # store-backed: SQLite, then PostgreSQL


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_autofix_plans_waits_applies_and_verifies(scenario: Scenario, api, namespace, team, recorder, runtime):
    scenario.build(api, namespace)
    before = deployment(api, namespace)
    async with team() as t:
        reply = await t.autofix(namespace, deployment="web", event=scenario.event_text, user=ALICE)
        assert reply.status == "awaiting_approval", reply.answer
        assert reply.root_cause and reply.root_cause["code"] in scenario.codes, reply.answer
        assert reply.approval is not None and reply.approval.plan_id == reply.plan["plan_id"]
        assert reply.plan["actions"] == sorted(set(scenario.actions)), reply.plan
        assert "--- live" in reply.plan["changes"][0]["diff"]
        assert content(deployment(api, namespace)) == content(before)  # waiting: nothing changed
        assert [a.id for a in t.pending()] == [reply.approval.id]
        [asked] = recorder.sent  # people are asked to decide, with the diff and the approval's buttons
        assert asked.proposal is not None and asked.proposal.approval_id == reply.approval.id
        assert asked.proposal.diff and asked.namespace == namespace

        with kubelet(api, namespace, "ready"):
            done = await t.decide(reply.approval.id, approve=True, decider=BOB, reason="looks right")
    assert done.status == "answered" and done.outcome["status"] == "verified", done.answer
    assert scenario.fixed(deployment(api, namespace))
    events = [(e.event, e.approver) for e in AuditLog(runtime.store).entries(plan_id=reply.plan["plan_id"])]
    assert ("approved", "bob (test) via elicitation") in events and ("verified", "") in events, events
    assert [n.title for n in recorder.sent] == [f"Plan {reply.plan['plan_id']} needs approval", "Fix verified"]
    assert recorder.sent[1].fields["root cause"].startswith(reply.root_cause["code"])


def seed_example(api, ns: str) -> None:
    """The seeds' /autofix example: a readinessProbe on a path that does not exist, probed far too often, and
    requests too high (raised by the latest rollout, whose new pod no node can hold) — one Deployment, three
    causes."""
    probe = {
        "httpGet": {"path": "/health", "port": 8080},
        "periodSeconds": 1,
        "timeoutSeconds": 1,
        "failureThreshold": 1,
    }
    for p in deploy(api, ns, {"readinessProbe": probe}):
        set_status(api, ns, p, ready=False)
        event(
            api,
            ns,
            p["metadata"]["name"],
            "Unhealthy",
            "Readiness probe failed: HTTP probe failed with statuscode: 404",
            count=30,
        )
    patch = {
        "spec": {"template": {"spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": "64"}}}]}}}
    }
    api("PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/web", patch, content_type=STRATEGIC)
    wait_for(
        lambda: any(
            c.get("reason") == "Unschedulable" for p in pods(api, ns) for c in p["status"].get("conditions", [])
        ),
        "the scheduler to give up on the new pod",
    )


STRATEGIC = "application/strategic-merge-patch+json"
SEED_EVENT = "Pod启动失败，原因是readinessProbe探针路径(/health)不存在，探针频率过高，且资源请求过高"


async def test_seed_autofix_example_is_one_combined_plan(api, namespace, team, recorder):
    seed_example(api, namespace)
    async with team() as t:
        reply = await t.autofix(namespace, deployment="web", event=SEED_EVENT, user=ALICE)
        assert reply.status == "awaiting_approval", reply.answer
        assert len(reply.plan["changes"]) == 1, reply.plan["text"]  # one object, one combined change
        with kubelet(api, namespace, "ready"):
            done = await t.decide(reply.approval.id, approve=True, decider=BOB)
    assert done.outcome["status"] == "verified", done.answer
    app = deployment(api, namespace)["spec"]["template"]["spec"]["containers"][0]
    assert app["resources"]["requests"]["cpu"] not in ("64", 64), app["resources"]
    assert "httpGet" not in app["readinessProbe"] or app["readinessProbe"]["httpGet"]["path"] != "/health"
    assert app["readinessProbe"]["periodSeconds"] >= 5, app["readinessProbe"]


async def test_reject_applies_nothing_and_the_audit_says_rejected(api, namespace, team, recorder, runtime):
    SCENARIOS[0].build(api, namespace)
    before = deployment(api, namespace)
    async with team() as t:
        reply = await t.autofix(namespace, deployment="web", event=SCENARIOS[0].event_text, user=ALICE)
        done = await t.decide(reply.approval.id, approve=False, decider=BOB, reason="not during the sale")
    assert done.outcome["status"] == "rejected" and "nothing was applied" in done.answer
    assert content(deployment(api, namespace)) == content(before)
    entries = AuditLog(runtime.store).entries(plan_id=reply.plan["plan_id"])
    assert entries[0].event == "rejected"
    assert entries[0].approver == "bob (test)" and "not during the sale" in entries[0].result
    assert "applied" not in {e.event for e in entries}
    assert [n.title for n in recorder.sent][1:] == ["Fix rejected"]


async def test_unknown_expired_and_decided_approvals_are_refused(api, namespace, team, runtime):
    from errors import Conflict, InvalidInput, NotAllowed, NotFound

    SCENARIOS[0].build(api, namespace)
    before = deployment(api, namespace)
    async with team() as t:
        with pytest.raises(NotFound, match="no approval 'ap-nope'"):
            await t.decide("ap-nope", approve=True, decider=BOB)
        reply = await t.autofix(namespace, deployment="web", user=ALICE)
        with pytest.raises(NotAllowed, match="write scope"):
            await t.decide(reply.approval.id, approve=True, decider=READER)
        runtime.store.execute(
            "UPDATE approvals SET expires_at = '2000-01-01T00:00:00+00:00' WHERE id = ?", (reply.approval.id,)
        )
        with pytest.raises(InvalidInput, match="expired"):
            await t.decide(reply.approval.id, approve=True, decider=BOB)
        assert t.pending() == []
        again = await t.autofix(namespace, deployment="web", user=ALICE, thread_id=reply.thread_id)
        await t.decide(again.approval.id, approve=False, decider=BOB)
        with pytest.raises(Conflict, match="already rejected by bob"):
            await t.decide(again.approval.id, approve=True, decider=BOB)
    assert content(deployment(api, namespace)) == content(before)
    assert "applied" not in {e.event for e in AuditLog(runtime.store).entries()}
