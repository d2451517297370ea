"""What the pipeline reads from a plan for the policy, and what it tells people: only structured finding codes
count (never a code quoted in cluster text); a maintenance window records incidents without announcing them; the
report names the change before it."""

from __future__ import annotations

import pytest

from engines.incidents import Grouper, Signal
from engines.incidents.history import History
from engines.incidents.policy import load_policy
from runtime import Runtime
from settings import Settings
from store.incidents import Incidents
from tests.agents.conftest import Recorder
from watch.pipeline import Pipeline, notification, plan_findings

pytestmark = pytest.mark.anyio


def test_only_structured_codes_are_findings():
    changes = [
        {
            "why": ["POD_IMAGE_NOT_FOUND: image shop/web:2.0 not found", "a note: POD_OOMKILLED said the log"],
            "diff": "+ annotation: POD_CRASHLOOP",  # cluster text: never a finding
        }
    ]
    root = {"code": "POD_IMAGE_NOT_FOUND", "summary": "IST0101 mentioned in a message"}
    assert plan_findings(root, changes) == {"POD_IMAGE_NOT_FOUND"}
    assert plan_findings({"code": "DROP TABLE"}, [{"why": ["x" * 10_000]}]) == set()


def _signal(at: float) -> Signal:
    return Signal("kube", "c1", "BackOff", "Pod shop/web-7d9c4b8f6d-x2xkz", "Deployment shop/web", "Back-off", at)


def test_the_opened_message_names_the_rollout_before_it():
    history = History()
    template = {"spec": {"containers": [{"name": "app", "image": "shop/web:1.0"}]}}
    web = {"metadata": {"name": "web", "namespace": "shop", "uid": "d1"}, "spec": {"replicas": 2, "template": template}}
    history.observe("c1", "Deployment", web, 100.0, "ADDED")
    template2 = {"spec": {"containers": [{"name": "app", "image": "shop/web:2.0"}]}}
    history.observe("c1", "Deployment", {**web, "spec": {"replicas": 2, "template": template2}}, 160.0)
    change = Grouper().add(_signal(220.0))
    text = notification(change.incident, change, history.preceding("c1", "Deployment shop/web", 220.0)).text
    assert "Changed before: rollout of Deployment shop/web" in text and "shop/web:1.0 → shop/web:2.0" in text
    assert "(60 s before; the same object)" in text


async def test_a_maintenance_window_records_without_telling(tmp_path):
    rt = Runtime(Settings(store={"path": tmp_path / "s.db"}))
    recorder = Recorder()
    policy = load_policy("maintenance:\n  - {name: all-day, start: '00:00', end: '00:00'}\n")
    pipeline = Pipeline(rt, sinks=[recorder], policy=policy)
    try:
        await pipeline.take(_signal(0.0))
        [incident] = Incidents(rt.store).list()
        kinds = [k for _, k, _ in Incidents(rt.store).timeline(incident.id)]
        assert kinds == ["opened", "muted"] and recorder.sent == []
    finally:
        rt.close()
