"""Signals into incidents, without a cluster: grouping by root object, repeats, windows, flapping, resolution,
the root of a pod, and Alertmanager's payload (good and hostile)."""

from __future__ import annotations

import pytest

from engines.incidents import Grouper, Signal, is_critical, root_of, signals_from_alertmanager
from engines.incidents.alertmanager import MAX_ALERTS, AlertmanagerError


def kube(pod: str, reason: str = "BackOff", at: float = 0.0, count: int = 1, uid: str = "", ns: str = "shop") -> Signal:
    return Signal(
        "kube",
        "c1",
        reason,
        f"Pod {ns}/{pod}",
        root_of("Pod", ns, pod),
        f"Back-off restarting {pod}",
        at,
        count,
        key=uid,
    )


def test_a_crash_loop_across_pods_and_repeats_is_one_incident():
    g = Grouper()
    pods = [f"web-7d9c4b8f6d-{s}" for s in ("x2xkz", "b7k9q", "mmn5t")]
    changes = [g.add(kube(p, at=i)) for i, p in enumerate(pods)]
    assert [c.kind for c in changes] == ["opened", "updated", "updated"]
    assert changes[0].incident is changes[2].incident and changes[0].incident.root == "Deployment shop/web"
    # the same Event object updated by the kubelet: its count grows; no news, but counted
    assert g.add(kube(pods[0], at=5, count=1, uid="ev-1")) is not None  # a new key: first sight of this Event
    assert g.add(kube(pods[0], at=20, count=7, uid="ev-1")) is None
    incident = changes[0].incident
    assert incident.events == 3 + 1 + 6 and len(g.open) == 1
    assert sorted(incident.objects) == sorted(f"Pod shop/{p}" for p in pods)


def test_different_roots_are_different_incidents():
    g = Grouper()
    g.add(kube("web-7d9c4b8f6d-x2xkz"))
    g.add(kube("db-0", reason="OOMKilling"))
    g.add(Signal("kube", "c1", "NodeNotReady", "Node n1", root_of("Node", None, "n1"), "", 0))
    g.add(kube("web-7d9c4b8f6d-x2xkz", ns="checkout"))
    assert sorted(root for _, root in g.open) == [
        "Deployment checkout/web",
        "Deployment shop/web",
        "Node n1",
        "StatefulSet shop/db",
    ]


def test_a_window_apart_is_a_new_incident_and_quiet_ones_resolve():
    g = Grouper(window=600, quiet=900)
    first = g.add(kube("web-7d9c4b8f6d-x2xkz", at=0)).incident
    assert g.expire(800) == []  # quiet for 800 s: still open
    [resolved] = g.expire(900)
    assert resolved.kind == "resolved" and resolved.incident is first and first.status == "resolved"
    assert g.seen == {} and g.open == {}  # forgotten: memory stays flat
    later = g.add(kube("web-7d9c4b8f6d-x2xkz", reason="Unhealthy", at=5000))
    assert later.kind == "opened" and later.incident.id != first.id  # past the flap window: new


def test_flapping_reopens_the_same_incident_and_says_so():
    g = Grouper(window=60, quiet=60, flap_limit=3, flap_window=3600)
    kinds, ids = [], set()
    for cycle in range(4):
        start = cycle * 200
        change = g.add(kube("web-7d9c4b8f6d-x2xkz", reason="Unhealthy", at=start))
        kinds.append(change.kind)
        ids.add(change.incident.id)
        g.expire(start + 100)
    assert kinds == ["opened", "reopened", "reopened", "reopened"] and len(ids) == 1
    assert change.incident.flapping and change.incident.reopened == 3


def test_alerts_open_then_resolve_their_incident():
    def payload(status: str, *alerts: tuple[str, str]) -> dict:
        return {
            "version": "4",
            "status": status,
            "alerts": [
                {
                    "status": s,
                    "labels": {"alertname": name, "namespace": "shop", "service": "checkout", "severity": "critical"},
                    "annotations": {"summary": f"{name} on checkout"},
                    "startsAt": "2026-12-03T10:00:00Z",
                    "endsAt": "2026-12-03T10:05:00Z" if s == "resolved" else "0001-01-01T00:00:00Z",
                    "fingerprint": name,
                }
                for name, s in alerts
            ],
        }

    g = Grouper()
    opened = [
        g.add(s)
        for s in signals_from_alertmanager(payload("firing", ("HighLatency", "firing"), ("Errors", "firing")), "c1")
    ]
    assert [c.kind for c in opened] == ["opened", "updated"] and opened[0].incident.root == "Service shop/checkout"
    assert opened[0].incident.severity == "critical"
    half = [g.add(s) for s in signals_from_alertmanager(payload("resolved", ("HighLatency", "resolved")), "c1")]
    assert half == [None] and len(g.open) == 1  # one alert still firing
    [done] = [g.add(s) for s in signals_from_alertmanager(payload("resolved", ("Errors", "resolved")), "c1")]
    assert done.kind == "resolved" and done.incident is opened[0].incident and not g.open


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ("not json at all", "body"),
        ({"alerts": "many"}, "alerts"),
        ({"alerts": [{"status": "burning", "labels": {}}]}, "alerts.0.status"),
        ({"alerts": [{"status": "firing", "labels": {"a": 1}}]}, "alerts.0.labels.a"),
        ({"alerts": [{"status": "firing"}] * (MAX_ALERTS + 1)}, "alerts"),
        ({"alerts": [{"status": "firing", "labels": {"alertname": "x" * 300}}]}, "longer than 256"),
    ],
)
def test_malformed_alertmanager_payloads_get_a_clear_error(payload, says):
    with pytest.raises(AlertmanagerError, match=r"Alertmanager|labels") as e:
        signals_from_alertmanager(payload, "c1")
    assert says in str(e.value)


def test_roots_of_pods_jobs_and_replicasets():
    assert root_of("Pod", "ns", "web-7d9c4b8f6d-x2xkz") == "Deployment ns/web"
    assert root_of("Pod", "ns", "api-gateway-5f6b7c8d9f-qz7lm") == "Deployment ns/api-gateway"
    assert root_of("Pod", "ns", "db-2") == "StatefulSet ns/db"
    assert root_of("Pod", "ns", "standalone") == "Pod ns/standalone"
    assert (
        root_of("Pod", "ns", "x", [{"kind": "DaemonSet", "name": "fluentd", "controller": True}])
        == "DaemonSet ns/fluentd"
    )
    assert (
        root_of("Pod", "ns", "x", [{"kind": "ReplicaSet", "name": "web-7d9c4b8f6d", "controller": True}])
        == "Deployment ns/web"
    )
    assert (
        root_of("Pod", "ns", "x", [{"kind": "Job", "name": "backup-29412345", "controller": True}])
        == "CronJob ns/backup"
    )
    assert root_of("Pod", "ns", "db-0", []) == "Pod ns/db-0"  # known to have no owner: the pod itself
    assert root_of("Node", None, "n1") == "Node n1"


def test_the_catalogue_filters_reasons():
    assert is_critical("BackOff") and is_critical("FailedScheduling") and is_critical("NodeNotReady")
    assert not is_critical("Scheduled") and not is_critical("Pulled")
    assert is_critical("MyOperatorFailed", extra={"MyOperatorFailed"})
    assert not is_critical("Unhealthy", ignored={"Unhealthy"})
