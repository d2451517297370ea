"""The event pipeline: Alertmanager and generic events over HTTP (good, bad and hostile), and a bad image rollout on
the real control plane watched into one incident, investigated by the team, fixed after approval, resolved."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from agents.api import Team
from guard.pipeline import Pipeline as GuardedPipeline
from runtime import LOCAL, Principal, Runtime
from settings import Settings, WatchSettings
from store.audit import AuditLog
from store.incidents import Incidents
from tests.agents.conftest import Recorder, team_settings
from tests.fix.scenarios import SCENARIOS, deployment, event, kubelet, newest_pods
from tools.catalogue import enabled_tools
from watch.pipeline import Pipeline
from watch.receivers import receivers
from watch.service import Service

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

TOKEN = "watch-token-DO-NOT-LEAK"
BAD_IMAGE = next(s for s in SCENARIOS if s.name == "bad-image-after-rollout")


def alerts(status: str, *names: str) -> dict[str, Any]:
    return {
        "version": "4",
        "status": status,
        "receiver": "cloudpilot",
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": n, "namespace": "shop", "service": "checkout", "severity": "critical"},
                "annotations": {"summary": f"{n} on checkout"},
                "startsAt": "2026-12-03T10:00:00Z",
                "endsAt": "2026-12-03T10:09:00Z",
                "fingerprint": n,
            }
            for n in names
        ],
    }


@pytest.fixture
def http_pipeline(tmp_path: Path):
    rt = Runtime(Settings(store={"path": tmp_path / "s.db"}))
    recorder = Recorder()
    pipeline = Pipeline(rt, sinks=[recorder])
    app = receivers(pipeline, "c1", TOKEN, max_body=100_000)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://watch")
    yield pipeline, client, recorder, Incidents(rt.store)
    rt.close()


async def test_alertmanager_firing_then_resolved_is_one_incident(http_pipeline):
    _pipeline, http, recorder, incidents = http_pipeline
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with http:
        first = await http.post("/alertmanager", json=alerts("firing", "HighLatency", "Errors"), headers=auth)
        again = await http.post("/alertmanager", json=alerts("firing", "HighLatency"), headers=auth)  # re-sent
        assert first.status_code == again.status_code == 200 and first.json()["incidents"] == [1]
        [open_] = incidents.list("open")
        assert open_.root == "Service shop/checkout" and open_.severity == "critical"
        await http.post("/alertmanager", json=alerts("resolved", "HighLatency"), headers=auth)
        assert incidents.get(1).status == "open"  # one alert still firing
        await http.post("/alertmanager", json=alerts("resolved", "Errors"), headers=auth)
    done = incidents.get(1)
    assert done.status == "resolved" and len(incidents.list()) == 1
    assert [n.title for n in recorder.sent] == [
        "Incident #1 opened: Service shop/checkout",
        "Incident #1 resolved: Service shop/checkout",
    ]
    kinds = [k for _, k, _ in incidents.timeline(1)]
    assert kinds[0] == "opened" and kinds[-2:] == ["resolved", "notified"]


async def test_bad_input_gets_clear_errors_and_never_stops_the_pipeline(http_pipeline, caplog):
    _pipeline, http, _recorder, incidents = http_pipeline
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with http:
        unsigned = await http.post("/alertmanager", json=alerts("firing", "A"))
        wrong = await http.post("/alertmanager", json=alerts("firing", "A"), headers={"Authorization": "Bearer nope"})
        assert (unsigned.status_code, wrong.status_code) == (401, 401)
        garbage = await http.post("/alertmanager", content=b"{not json", headers=auth)
        assert garbage.status_code == 400 and "not JSON" in garbage.json()["error"]
        shape = await http.post("/alertmanager", json={"alerts": [{"status": "burning"}]}, headers=auth)
        assert shape.status_code == 400 and "alerts.0.status" in shape.json()["error"]
        huge = await http.post("/alertmanager", content=b"[" + b"1," * 60_000 + b"1]", headers=auth)
        assert huge.status_code == 413
        unknown = await http.post(
            "/events", json={"reason": "X", "kind": "Deployment", "name": "a", "bogus": 1}, headers=auth
        )
        assert unknown.status_code == 400 and "bogus" in unknown.json()["error"] and "reason" in unknown.json()["hint"]
        good = await http.post(
            "/events",
            json={"reason": "HighErrorRate", "kind": "Deployment", "namespace": "shop", "name": "cart", "key": "e1"},
            headers=auth,
        )
        assert good.status_code == 200 and good.json()["incidents"] == [1]
    assert [i.root for i in incidents.list()] == ["Deployment shop/cart"]
    assert TOKEN not in caplog.text


@pytest.mark.stores  # incidents, outbox, plans and checkpoints: SQLite, then PostgreSQL
async def test_a_bad_image_rollout_becomes_one_incident_fixed_and_resolved(api, namespace, write_settings, tmp_path):
    settings = team_settings(write_settings, tmp_path, watch=WatchSettings(namespaces=[namespace]))
    rt = Runtime(settings)
    recorder = Recorder()
    try:
        async with Team.open(rt, model=None, sinks=[recorder]) as team:
            pipeline = Pipeline(rt, team=team, sinks=[recorder])
            service = Service(rt, pipeline)
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: service.run(http=False))
                await _until(lambda: service.listening, "every watch listing, then watching")
                await anyio.to_thread.run_sync(BAD_IMAGE.build, api, namespace)
                pod = newest_pods(api, namespace)[-1]["metadata"]["name"]
                for _ in range(3):  # the kubelet keeps trying: more events about the same pod
                    await anyio.to_thread.run_sync(
                        event, api, namespace, pod, "BackOff", 'Back-off pulling image "shop/web:2.0-typo"'
                    )
                incidents = Incidents(rt.store)
                await _until(lambda: pipeline.plans, "the team's plan for the incident")
                [incident] = incidents.list()
                assert incident.root == f"Deployment {namespace}/web" and incident.status == "open"
                assert incident.events >= 4 and pipeline.taken >= 4
                titles = [n.title for n in recorder.sent]
                assert titles[0] == f"Incident #{incident.id} opened: Deployment {namespace}/web"
                # the report names the rollout that preceded it, first
                report = next(n for n in recorder.sent if "investigated" in n.title)
                assert "Changed before it broke:\n1. rollout of Deployment" in report.text, report.text
                assert "shop/web:1.0 → shop/web:2.0-typo" in report.text.split("\n2.")[0]
                assert "waits for a person's approval" in report.text  # no policy file: a person decides
                proposal = next(n for n in recorder.sent if n.proposal is not None)  # the plan, for approval in chat
                assert "set_template" in json.dumps(team.approval(proposal.proposal.approval_id).summary)
                decider = Principal("oncall (test)", frozenset({"read", "write"}), transport="agent")
                with kubelet(api, namespace, "ready", only_new=True):
                    done = await team.decide(proposal.proposal.approval_id, approve=True, decider=decider)
                assert done.outcome["status"] == "verified", done.answer
                await pipeline.tick()
                assert incidents.get(incident.id).status == "resolved"
                assert BAD_IMAGE.fixed(deployment(api, namespace))
                tg.cancel_scope.cancel()
    finally:
        rt.close()
    titles = [n.title for n in recorder.sent]
    assert titles[-1] == f"Incident #{incident.id} resolved: Deployment {namespace}/web"
    assert len([t for t in titles if "opened" in t]) == 1  # one incident, not one per pod or event
    kinds = [k for _, k, _ in Incidents(Runtime(settings).store).timeline(incident.id)]
    assert {"opened", "change", "finding", "policy", "plan", "fixed", "resolved"} <= set(kinds)


POLICY = """
rules:
  - name: roll-back-bad-images
    findings: [POD_IMAGE_NOT_FOUND, POD_IMAGE_PULL]
    actions: [set_template]
    namespaces: ["{namespace}"]
    after_change: rollout
    within_minutes: 30
    max_risk: high
limits:
  per_hour: 2
  failures_before_stop: 2
"""


async def test_a_written_policy_rolls_back_a_bad_image_by_itself(api, namespace, write_settings, tmp_path):
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.format(namespace=namespace))
    watch = WatchSettings(namespaces=[namespace], sources=["events", "pods", "workloads"], policy_file=policy)
    settings = team_settings(write_settings, tmp_path, watch=watch)
    rt = Runtime(settings)
    recorder = Recorder()
    try:
        async with Team.open(rt, model=None, sinks=[recorder]) as team:
            pipeline = Pipeline(rt, team=team, sinks=[recorder])
            service = Service(rt, pipeline)
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: service.run(http=False))
                await _until(lambda: service.listening, "every watch listing, then watching")
                await anyio.to_thread.run_sync(BAD_IMAGE.build, api, namespace)
                incidents = Incidents(rt.store)
                with kubelet(api, namespace, "ready", only_new=True):  # the rolled-back pods come up; no one clicks
                    await _until(lambda: any("applied automatically" in n.title for n in recorder.sent), "the fix")
                    await pipeline.tick()
                [incident] = incidents.list()
                assert incident.status == "resolved" and BAD_IMAGE.fixed(deployment(api, namespace))
                tg.cancel_scope.cancel()
        timeline = incidents.timeline(incident.id)
        policy_note = next(t for _, k, t in timeline if k == "policy")
        assert policy_note.startswith("auto: ") and "roll-back-bad-images" in policy_note
        [approved] = AuditLog(rt.store).entries(event="approved")
        assert approved.approver == "watch policy rule roll-back-bad-images via watch.policy_file"
        assert [e.plan_id for e in AuditLog(rt.store).entries(event="verified")] == [approved.plan_id]
        assert not team.pending()  # nothing left waiting for a person
        report = next(n for n in recorder.sent if "investigated" in n.title)
        assert "is applied now by the policy" in report.text and "rollout of Deployment" in report.text
        assert recorder.sent[-1].title == f"Incident #{incident.id} resolved: Deployment {namespace}/web"
    finally:
        rt.close()


async def _until(check, what: str, timeout: float = 90.0) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.1)


async def test_incidents_are_read_through_the_tools_and_the_bot_commands(http_pipeline):
    pipeline, http, _, _ = http_pipeline
    async with http:
        await http.post("/alertmanager", json=alerts("firing", "Errors"), headers={"Authorization": f"Bearer {TOKEN}"})
    guarded = GuardedPipeline(pipeline.runtime, enabled_tools(pipeline.runtime.settings))
    listed = await guarded.call("incidents_list", {"status": "open"}, principal=LOCAL, client="test")
    assert "#1 [open] critical Service shop/checkout: Errors" in listed.text
    shown = await guarded.call("incident_get", {"incident_id": 1}, principal=LOCAL, client="test")
    assert "opened: Errors on Service shop/checkout" in shown.text and "notified" in shown.text
    missing = await guarded.call("incident_get", {"incident_id": 99}, principal=LOCAL, client="test")
    assert missing.is_error and "incidents_list" in missing.text
    hostile = await guarded.call(
        "incident_get", {"incident_id": "1; DROP TABLE incidents"}, principal=LOCAL, client="test"
    )
    assert hostile.is_error and Incidents(pipeline.runtime.store).get(1) is not None


async def test_an_incident_is_acknowledged_once_by_an_authenticated_caller_and_stays_so(http_pipeline):
    pipeline, http, _, incidents = http_pipeline
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with http:
        await http.post("/alertmanager", json=alerts("firing", "Errors"), headers=auth)
        rt = pipeline.runtime
        writes = rt.settings.safety.model_copy(update={"allow_write": True})
        settings = rt.settings.model_copy(update={"safety": writes})
        guarded = GuardedPipeline(pipeline.runtime, enabled_tools(settings))
        viewer = Principal("viewer (token v1)", frozenset({"read"}), transport="http")
        refused = await guarded.call("incident_acknowledge", {"incident_id": 1}, principal=viewer, client="test")
        assert refused.is_error and "needs 'write' access" in refused.text
        oncall = Principal("oncall (token t1)", frozenset({"read", "write"}), transport="http")
        done = await guarded.call("incident_acknowledge", {"incident_id": 1}, principal=oncall, client="test")
        assert done.text == "incident #1 acknowledged by oncall (token t1)."
        again = await guarded.call("incident_acknowledge", {"incident_id": 1}, principal=LOCAL, client="test")
        assert again.is_error and "acknowledged by oncall (token t1)" in again.text
        await http.post("/alertmanager", json=alerts("firing", "Latency"), headers=auth)  # the incident goes on
        assert incidents.get(1).status == "acknowledged" and incidents.get(1).reasons == {"Errors": 1, "Latency": 1}
        await http.post("/alertmanager", json=alerts("resolved", "Errors", "Latency"), headers=auth)
    assert incidents.get(1).status == "resolved"
    kinds = [k for _, k, _ in incidents.timeline(1)]
    assert kinds.count("acknowledged") == 1 and kinds[-2:] == ["resolved", "notified"]
