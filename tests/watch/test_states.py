"""Broken states of watched objects as signals: signalled when they appear, resolved when they clear or the object
goes, silent while they stay; and the incident they open stays open exactly that long."""

from __future__ import annotations

from engines.incidents import Grouper
from settings import WatchSettings
from watch.signals import States


def pod(uid: str, waiting: str | None = None, oom_restarts: int = 0, name: str = "web-7d9c4b8f6d-x2xkz") -> dict:
    cs: dict = {"name": "app", "restartCount": oom_restarts, "state": {"running": {}}}
    if waiting:
        cs["state"] = {"waiting": {"reason": waiting, "message": f"{waiting} for app"}}
    if oom_restarts:
        cs["lastState"] = {"terminated": {"reason": "OOMKilled"}}
    owner = {"kind": "ReplicaSet", "name": "web-7d9c4b8f6d", "controller": True}
    meta = {"uid": uid, "name": name, "namespace": "shop", "ownerReferences": [owner]}
    return {"metadata": meta, "status": {"containerStatuses": [cs]}}


def node(ready: str) -> dict:
    return {"metadata": {"uid": "n1", "name": "node-1"}, "status": {"conditions": [{"type": "Ready", "status": ready}]}}


def test_a_waiting_pod_is_signalled_once_and_resolved_when_it_runs():
    states = States(WatchSettings())
    [first] = states.take("c1", "Pod", "MODIFIED", pod("p1", "ImagePullBackOff"), 10)
    assert (first.reason, first.root, first.resolved) == ("ImagePullBackOff", "Deployment shop/web", False)
    assert states.take("c1", "Pod", "MODIFIED", pod("p1", "ImagePullBackOff"), 20) == []  # the same state again
    [cleared] = states.take("c1", "Pod", "MODIFIED", pod("p1"), 30)
    assert cleared.resolved and cleared.fingerprint == first.fingerprint and cleared.at == 30
    assert states.live == {}


def test_a_deleted_pod_clears_its_states_even_from_a_relist_that_knows_only_its_uid():
    states = States(WatchSettings())
    states.take("c1", "Pod", "ADDED", pod("p1", "CrashLoopBackOff", oom_restarts=3), 10)
    cleared = states.take("c1", "Pod", "DELETED", {"metadata": {"uid": "p1"}}, 20)
    assert sorted(s.reason for s in cleared) == ["CrashLoopBackOff", "OOMKilled"] and all(s.resolved for s in cleared)


def test_harmless_states_and_ignored_reasons_say_nothing():
    states = States(WatchSettings(reasons_ignored=["ErrImagePull"]))
    assert states.take("c1", "Pod", "ADDED", pod("p1", "ContainerCreating"), 1) == []
    assert states.take("c1", "Pod", "ADDED", pod("p2", "ErrImagePull"), 1) == []
    assert states.take("c1", "Pod", "ADDED", {"metadata": {}, "status": None}, 1) == []  # no uid: nothing
    assert states.take("c1", "Pod", "ADDED", {"metadata": {"uid": "x"}, "status": {"containerStatuses": [1]}}, 1) == []


def test_a_node_not_ready_opens_an_incident_that_resolves_when_it_is_ready_again():
    states, grouper = States(WatchSettings()), Grouper(quiet=60)
    [down] = states.take("c1", "Node", "MODIFIED", node("False"), 100)
    opened = grouper.add(down)
    assert opened.kind == "opened" and opened.incident.root == "Node node-1" and opened.incident.severity == "critical"
    assert grouper.expire(1000) == []  # still not ready: it does not go quiet
    [up] = states.take("c1", "Node", "MODIFIED", node("True"), 1100)
    assert grouper.add(up).kind == "resolved"


def test_a_rollout_past_its_deadline_is_a_signal_about_the_deployment():
    deploy = {
        "metadata": {"uid": "d1", "name": "web", "namespace": "shop"},
        "status": {"conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]},
    }
    [stuck] = States(WatchSettings()).take("c1", "Deployment", "MODIFIED", deploy, 5)
    assert stuck.reason == "ProgressDeadlineExceeded" and stuck.root == "Deployment shop/web"
