"""Rolling updates in progress: the replicas a rollout takes down within its strategy's budget, for a short
time, are not a finding; more than the budget, too long, after the rollout, or with no rollout at all are."""

from __future__ import annotations

from typing import Any

import pytest

from tests.diagnosis.world import Obj, codes, cond, fresh, meta, pod, replicaset, ts


def _rolling_web(
    available: int = 3,
    replicas: int = 4,
    reason: str = "ReplicaSetUpdated",
    strategy: Any = None,
    new_pod_age: float = 1,
) -> dict[str, list[Obj]]:
    """Deployment web, revision 2 rolling out: old pods Ready, one new pod created `new_pod_age` minutes ago
    and not ready yet."""
    w = fresh()
    dep = w["deployments"][0]
    dep["spec"]["replicas"] = replicas
    if strategy is not None:
        dep["spec"]["strategy"] = strategy
    dep["status"].update(availableReplicas=available, readyReplicas=available, updatedReplicas=1)
    dep["status"]["conditions"] = [cond("Available"), cond("Progressing", "True", reason)]
    w["replicasets"] = [replicaset("web-abc", revision=1, replicas=replicas - 1), replicaset("web-new", revision=2)]
    w["pods"] = [pod(f"web-abc-{i}") for i in range(available)]
    new = pod("web-new-1", rs="web-new", ready=False, phase="Pending", statuses=[])
    new["metadata"]["creationTimestamp"] = ts(new_pod_age)
    w["pods"].append(new)
    return w


def test_a_rollout_within_max_unavailable_is_fine() -> None:
    one = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    assert codes(_rolling_web(strategy=one)) == []
    assert codes(_rolling_web()) == []  # the default 25% of 4


def test_a_rollout_past_its_budget_is_reported() -> None:
    assert codes(_rolling_web(available=2)) == ["DEPLOY_UNAVAILABLE"]
    quarter_of_three = _rolling_web(available=2, replicas=3)  # 25% of 3 rounds down to 0 (maxSurge 1)
    assert codes(quarter_of_three) == ["DEPLOY_UNAVAILABLE"]


def test_a_rollout_whose_new_pod_stays_unready_is_reported() -> None:
    assert codes(_rolling_web(new_pod_age=30)) == ["DEPLOY_UNAVAILABLE"]


def test_a_replica_lost_after_the_rollout_finished_is_reported() -> None:
    assert codes(_rolling_web(reason="NewReplicaSetAvailable")) == ["DEPLOY_UNAVAILABLE"]


def test_recreate_takes_every_replica_down_while_it_runs() -> None:
    # the Deployment is doing what it was told; its Service is down meanwhile, and says so
    assert codes(_rolling_web(available=0, strategy={"type": "Recreate"})) == ["SVC_NO_READY_PODS"]


@pytest.mark.parametrize(
    "strategy",
    ["junk", {"rollingUpdate": "junk"}, {"rollingUpdate": {"maxUnavailable": "lots"}}, {"rollingUpdate": None}],
)
def test_a_malformed_strategy_reports_as_before(strategy: Any) -> None:
    found = codes(_rolling_web(available=3, strategy=strategy))
    assert found in ([], ["DEPLOY_UNAVAILABLE"])
    assert codes(_rolling_web(available=1, strategy=strategy)) == ["DEPLOY_UNAVAILABLE"]


@pytest.mark.parametrize("created", [12345, "yesterday", None])
def test_a_malformed_pod_creation_time_does_not_hide_the_gap(created: Any) -> None:
    w = _rolling_web()
    w["pods"][-1]["metadata"]["creationTimestamp"] = created
    assert codes(w) == ["DEPLOY_UNAVAILABLE"]


def test_a_creation_time_without_zone_counts_as_utc() -> None:
    w = _rolling_web()
    w["pods"][-1]["metadata"]["creationTimestamp"] = ts(1).rstrip("Z")
    assert codes(w) == []


def _sts(revisions: tuple[str, str] = ("db-1", "db-2"), strategy: Any = None, age: float = 1) -> dict[str, list[Obj]]:
    """StatefulSet db (3 replicas, 2 ready) replacing db-2, created `age` minutes ago."""
    w = fresh()
    spec: Obj = {"replicas": 3, "serviceName": "db", "template": {"metadata": {"labels": {"app": "db"}}}}
    if strategy is not None:
        spec["updateStrategy"] = strategy
    status = {"replicas": 3, "readyReplicas": 2, "currentRevision": revisions[0], "updateRevision": revisions[1]}
    w["statefulsets"] = [{"kind": "StatefulSet", "metadata": meta("db"), "spec": spec, "status": status}]
    w["services"].append({"metadata": meta("db"), "spec": {"clusterIP": "None", "selector": {"app": "db"}}})
    for i in range(3):
        p = pod(f"db-{i}", rs=None, labels={"app": "db"}, ready=i < 2)
        p["metadata"]["ownerReferences"] = [{"kind": "StatefulSet", "name": "db", "controller": True}]
        w["pods"].append(p)
    w["pods"][-1]["metadata"]["creationTimestamp"] = ts(age)
    return w


def test_a_statefulset_replacing_one_pod_is_fine() -> None:
    assert codes(_sts()) == []


@pytest.mark.parametrize(
    "world",
    [
        _sts(revisions=("db-2", "db-2")),  # no update going on: a pod is just down
        _sts(strategy={"type": "OnDelete"}),
        _sts(age=30),
    ],
    ids=["same-revision", "on-delete", "stalled"],
)
def test_a_statefulset_pod_down_outside_a_rollout_is_reported(world: dict[str, list[Obj]]) -> None:
    assert codes(world) == ["STS_UNAVAILABLE"]


def _ds(unavailable: int, updated: int = 1, max_unavailable: Any = 1) -> dict[str, list[Obj]]:
    w = fresh()
    status = {
        "desiredNumberScheduled": 2,
        "currentNumberScheduled": 2,
        "numberAvailable": 2 - unavailable,
        "numberUnavailable": unavailable,
        "updatedNumberScheduled": updated,
    }
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": max_unavailable}}
    w["daemonsets"] = [{"metadata": meta("agent"), "spec": {"updateStrategy": strategy}, "status": status}]
    return w


def test_a_daemonset_updating_node_by_node_is_fine() -> None:
    assert codes(_ds(unavailable=1)) == []
    assert codes(_ds(unavailable=2, max_unavailable="100%")) == []


def test_a_daemonset_past_its_budget_or_done_updating_is_reported() -> None:
    assert codes(_ds(unavailable=2)) == ["DS_UNAVAILABLE"]
    assert codes(_ds(unavailable=1, updated=2)) == ["DS_UNAVAILABLE"]
    assert codes(_ds(unavailable=1, max_unavailable=True)) == ["DS_UNAVAILABLE"]
