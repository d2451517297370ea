"""Workload rules on plain dicts, each with its healthy twin."""

from __future__ import annotations

import pytest

from engines.diagnosis.cron import schedule_problem
from tests.diagnosis.world import codes, cond, fresh, meta, only, pod, replicaset, template, ts


def test_stuck_rollout_names_the_failing_revision() -> None:
    w = fresh()
    w["deployments"][0]["status"].update(
        availableReplicas=1,
        conditions=[
            cond("Progressing", "False", "ProgressDeadlineExceeded", 'ReplicaSet "web-new" has timed out progressing.')
        ],
    )
    w["replicasets"] = [
        replicaset("web-abc", revision=1, replicas=1),
        replicaset("web-new", revision=2, image="shop/web:2.0", replicas=1),
    ]
    f = only(w, "DEPLOY_ROLLOUT_STUCK")
    assert f.evidence["failing_revision"] == 2 and f.evidence["previous_revision"] == 1
    assert f.fix and f.fix.action == "rollout_undo" and f.fix.params == {"to_revision": 1}
    assert "DEPLOY_UNAVAILABLE" not in codes(w)


def test_unavailable_deployment_reports_pod_states() -> None:
    w = fresh()
    w["deployments"][0]["status"]["availableReplicas"] = 0
    w["pods"] = [pod("web-abc-1", ready=False, phase="Pending", statuses=[])]
    f = only(w, "DEPLOY_UNAVAILABLE")
    assert f.severity == "critical" and f.evidence["pod_states"] == {"Pending": 1}


def test_scaled_to_zero_deployment_is_fine() -> None:
    w = fresh()
    w["deployments"][0]["spec"]["replicas"] = 0
    w["deployments"][0]["status"]["availableReplicas"] = 0
    w["services"] = []
    w["pods"] = []
    assert codes(w) == []


def _sts(service_name="db"):
    return {
        "kind": "StatefulSet",
        "metadata": meta("db"),
        "spec": {"replicas": 1, "serviceName": service_name, "template": template(labels={"app": "db"})},
        "status": {"readyReplicas": 1},
    }


def test_statefulset_without_its_headless_service() -> None:
    w = fresh()
    w["statefulsets"] = [_sts()]
    f = only(w, "STS_SERVICE_MISSING")
    assert f.fix and f.fix.action == "create_missing" and f.fix.params["clusterIP"] == "None"
    assert f.fix.params["selector"] == {"app": "db"}


def test_statefulset_with_a_non_headless_service() -> None:
    w = fresh()
    w["statefulsets"] = [_sts()]
    w["services"].append({"metadata": meta("db"), "spec": {"clusterIP": "10.0.0.9", "ports": [{"port": 5432}]}})
    assert only(w, "STS_SERVICE_NOT_HEADLESS").evidence["clusterIP"] == "10.0.0.9"


def test_statefulset_with_headless_service_is_fine() -> None:
    w = fresh()
    w["statefulsets"] = [_sts()]
    w["services"].append({"metadata": meta("db"), "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}})
    assert codes(w) == []


def test_daemonset_misscheduled() -> None:
    w = fresh()
    status = {
        "desiredNumberScheduled": 2,
        "currentNumberScheduled": 3,
        "numberAvailable": 3,
        "numberMisscheduled": 1,
        "numberReady": 3,
    }
    w["daemonsets"] = [{"metadata": meta("agent"), "spec": {}, "status": status}]
    assert only(w, "DS_MISSCHEDULED").evidence["numberMisscheduled"] == 1
    status["numberMisscheduled"] = 0
    assert codes(w) == []


def _job(name="report", failed=0, conds=None, owner=None):
    m = meta(name, creationTimestamp=ts(10))
    if owner:
        m["ownerReferences"] = [{"kind": "CronJob", "name": owner, "controller": True}]
    return {
        "kind": "Job",
        "metadata": m,
        "spec": {"backoffLimit": 2},
        "status": {"failed": failed, "conditions": conds or []},
    }


def test_failed_job_with_the_last_pod_failure() -> None:
    w = fresh()
    w["jobs"] = [
        _job(
            failed=3,
            conds=[cond("Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit")],
        )
    ]
    job_pod = pod(
        "report-x",
        rs=None,
        labels={"job": "report"},
        ready=False,
        phase="Failed",
        statuses=[{"name": "web", "restartCount": 0, "state": {"terminated": {"reason": "Error", "exitCode": 3}}}],
    )
    job_pod["metadata"]["ownerReferences"] = [{"kind": "Job", "name": "report", "controller": True}]
    w["pods"].append(job_pod)
    f = only(w, "JOB_FAILED")
    assert f.evidence["reason"] == "BackoffLimitExceeded" and "exit 3" in f.evidence["last_failure"]


def test_job_backing_off_and_completed_twin() -> None:
    w = fresh()
    w["jobs"] = [_job(failed=1)]
    assert only(w, "JOB_BACKOFF").evidence["failed"] == 1
    w["jobs"] = [_job(failed=1, conds=[cond("Complete")])]
    assert codes(w) == []


def _cronjob(schedule="*/5 * * * *", suspend=False):
    return {"kind": "CronJob", "metadata": meta("nightly"), "spec": {"schedule": schedule, "suspend": suspend}}


def test_cronjob_schedule_that_never_fires() -> None:
    w = fresh()
    w["cronjobs"] = [_cronjob("0 0 30 2 *")]
    assert "never" in only(w, "CRONJOB_INVALID_SCHEDULE").summary
    w["cronjobs"] = [_cronjob("0 0 28 2 *")]
    assert codes(w) == []


def test_cronjob_suspended() -> None:
    w = fresh()
    w["cronjobs"] = [_cronjob(suspend=True)]
    assert only(w, "CRONJOB_SUSPENDED").severity == "info"


def test_cronjob_last_run_failed_and_recovered_twin() -> None:
    w = fresh()
    w["cronjobs"] = [_cronjob()]
    old = _job("nightly-1", conds=[cond("Complete")], owner="nightly")
    old["metadata"]["creationTimestamp"] = ts(60)
    new = _job("nightly-2", failed=3, conds=[cond("Failed", "True", "BackoffLimitExceeded")], owner="nightly")
    w["jobs"] = [old, new]
    f = only(w, "CRONJOB_LAST_FAILED")
    assert f.evidence["job"] == "nightly-2" and "JOB_FAILED" not in codes(w)
    new["metadata"]["creationTimestamp"] = ts(120)  # the failure is older than the success
    assert codes(w) == []


@pytest.mark.parametrize(
    "schedule",
    ["*/5 * * * *", "0 3 * * 1-5", "@daily", "0 0 31 1,3 *", "0 12 * JAN-MAR MON", "TZ=UTC 0 0 * * *", "0 0 30 2 1"],
)
def test_valid_schedules(schedule: str) -> None:
    assert schedule_problem(schedule) is None


@pytest.mark.parametrize("schedule", ["* * * *", "61 * * * *", "0 0 31 4,6 *", "*/0 * * * *", "0 0 * FOO *"])
def test_invalid_schedules(schedule: str) -> None:
    assert schedule_problem(schedule)
