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
from store.incidents import Incidents
from tests.agents.conftest import Recorder
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


async def test_a_bad_image_rollout_becomes_one_incident_fixed_and_resolved(api, namespace, write_settings, tmp_path):
    settings = write_settings.model_copy(
        update={
            "agents": write_settings.agents.model_copy(update={"checkpoint_path": tmp_path / "threads.db"}),
            "fix": write_settings.fix.model_copy(update={"verify_timeout_seconds": 40}),
            "notify": write_settings.notify.model_copy(update={"log": False}),
            "watch": WatchSettings(namespaces=[namespace]),
        }
    )
    rt = Runtime(settings)
    recorder = Recorder()
    try:
        async with Team.open(rt, model=None, sinks=[recorder]) as team:
            pipeline = Pipeline(rt, team=team, sinks=[recorder])
            service = Service(rt, pipeline)
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: service.run(http=False))
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
                proposal = next(n for n in recorder.sent if n.proposal is not None)  # the plan, for approval in chat
                assert "set_template" in json.dumps(team.approval(proposal.proposal.approval_id).summary)
                decider = Principal("oncall (test)", frozenset({"read", "write"}), transport="agent")
                with kubelet(api, namespace, "ready"):
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
    assert {"opened", "finding", "plan", "fixed", "resolved"} <= set(kinds)


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
