"""Workload rules: Deployments (unavailable, stuck rollouts), StatefulSet governing Services, DaemonSet
misscheduling, Jobs and CronJobs. Pod creation failures are in admission.py."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from engines.diagnosis.common import (
    event_summary,
    pod_template_labels,
    pod_template_spec,
    present,
    rollback_fix,
    seen_since,
)
from engines.diagnosis.cron import schedule_problem
from engines.diagnosis.model import Finding, Fix
from engines.diagnosis.snapshot import (
    Obj,
    Snapshot,
    condition,
    meta,
    name_of,
    ns_of,
    pod_is_ready,
    pod_is_terminal,
)
from kube.podstatus import pod_reason
from kube.times import parse_time

# How long a pod replaced by a rolling update may stay not ready before the missing replica counts (the
# Deployment controller's default progressDeadlineSeconds).
ROLLOUT_GRACE = timedelta(minutes=10)
# How long a CronJob's missed-schedule events count: older ones are history.
MISSED_RECENT = timedelta(hours=1)
# Progressing reasons of a Deployment whose rollout (or scale-up) is still going on.
_ROLLING = {"NewReplicaSetCreated", "FoundNewReplicaSet", "ReplicaSetUpdated"}


def _pods_of(snap: Snapshot, workload: Obj, kind: str) -> list[Obj]:
    ns, name = ns_of(workload), name_of(workload)
    if kind == "Deployment":
        sets = {name_of(rs) for rs in snap.replicasets_of(workload)}
        return [
            p
            for p in snap.in_ns("pods", ns)
            if (snap.controller_of(p) or ("", ""))[1] in sets and (snap.controller_of(p) or ("", ""))[0] == "ReplicaSet"
        ]
    return [p for p in snap.in_ns("pods", ns) if snap.controller_of(p) == (kind, name)]


def _pod_states(pods: list[Obj]) -> dict[str, int]:
    return dict(Counter(pod_reason(p) for p in pods).most_common(5))


def _dict(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _scaled(value: Any, total: int, round_up: bool) -> int | None:
    """A strategy's intOrString field (2, or '25%' of `total`) as a count; None when unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
        share = total * int(value[:-1])
        return -(-share // 100) if round_up else share // 100
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _rollout_budget(obj: Obj, kind: str, wanted: int) -> int | None:
    """How many replicas a rolling update going on now may take down by the workload's own strategy (resolved
    as its controller does); None when no rollout is going on or the strategy is unreadable."""
    spec, status = _dict(obj.get("spec")), _dict(obj.get("status"))
    if kind == "Deployment":
        progressing = condition(obj, "Progressing") or {}
        if progressing.get("status") != "True" or progressing.get("reason") not in _ROLLING:
            return None
        strategy = _dict(spec.get("strategy"))
        if strategy.get("type") == "Recreate":
            return wanted
        rolling = _dict(strategy.get("rollingUpdate"))
        unavailable = _scaled(rolling.get("maxUnavailable", "25%"), wanted, round_up=False)
        surge = _scaled(rolling.get("maxSurge", "25%"), wanted, round_up=True)
        if unavailable is None or surge is None:
            return None
        return unavailable if unavailable or surge else 1
    strategy = _dict(spec.get("updateStrategy"))
    rolling = _dict(strategy.get("rollingUpdate"))
    if strategy.get("type") == "OnDelete":
        return None
    if kind == "StatefulSet":
        if not status.get("updateRevision") or status.get("updateRevision") == status.get("currentRevision"):
            return None
        unavailable = _scaled(rolling.get("maxUnavailable", 1), wanted, round_up=False)
        return None if unavailable is None else max(1, unavailable)
    updated = status.get("updatedNumberScheduled", 0)
    if not isinstance(updated, int) or updated >= wanted:
        return None
    return _scaled(rolling.get("maxUnavailable", 1), wanted, round_up=True)


def _rolling_within_budget(snap: Snapshot, obj: Obj, kind: str, wanted: Any, missing: Any) -> bool:
    """True while a rolling update replaces pods as its strategy allows: no more replicas missing than it may
    take down, and every pod not ready (other than those leaving) younger than ROLLOUT_GRACE. The pods being
    replaced are not ready for a moment by design; a rollout that stalls is reported once they stay so (a
    Deployment also by its progress deadline), and the pods' own failures are reported by the pod rules."""
    if not isinstance(wanted, int) or not isinstance(missing, int):
        return False
    budget = _rollout_budget(obj, kind, wanted)
    if budget is None or missing > budget:
        return False
    for pod in _pods_of(snap, obj, kind):
        if pod_is_ready(pod) or pod_is_terminal(pod) or meta(pod).get("deletionTimestamp"):
            continue
        created = meta(pod).get("creationTimestamp")
        since = parse_time(created)
        if since is None or snap.now - since > ROLLOUT_GRACE:
            return False
    return True


# -- Deployments ------------------------------------------------------------------------------------------
def deployments(snap: Snapshot) -> Iterator[Finding]:
    for dep in snap.items("deployments"):
        spec, status = dep.get("spec") or {}, dep.get("status") or {}
        wanted = spec.get("replicas", 1)
        available = status.get("availableReplicas", 0)
        progressing = condition(dep, "Progressing") or {}
        stuck = progressing.get("status") == "False" and progressing.get("reason") == "ProgressDeadlineExceeded"
        if not stuck and (
            wanted == 0
            or available >= wanted
            or spec.get("paused")
            or _rolling_within_budget(snap, dep, "Deployment", wanted, wanted - available)
        ):
            continue
        pods = _pods_of(snap, dep, "Deployment")
        evidence: dict[str, Any] = {
            "desired": wanted,
            "available": available,
            "ready": status.get("readyReplicas", 0),
            "updated": status.get("updatedReplicas", 0),
            "pod_states": _pod_states(pods),
        }
        if stuck:
            evidence["condition"] = progressing.get("message")
            undo = rollback_fix(snap, dep)
            fix = None
            if undo:
                fix, extra = undo
                evidence.update(extra)
            revision = evidence.get("failing_revision")
            yield Finding(
                code="DEPLOY_ROLLOUT_STUCK",
                severity="critical",
                tier=2,
                object=snap.ref(dep, "Deployment"),
                summary=f"rollout stuck (ProgressDeadlineExceeded): {available}/{wanted} available"
                + (f"; revision {revision} introduced the failure" if revision else ""),
                evidence=evidence,
                fix=fix,
                remediation="See the pod findings for why the new pods do not become ready; roll back to the "
                "previous revision to restore service while fixing it.",
            )
        else:
            yield Finding(
                code="DEPLOY_UNAVAILABLE",
                severity="critical" if available == 0 else "warning",
                tier=2,
                object=snap.ref(dep, "Deployment"),
                summary=f"{wanted - available} of {wanted} replicas unavailable",
                evidence=evidence,
                remediation="See the findings on its pods (pod_states shows why they are not ready).",
            )


# -- StatefulSets and DaemonSets -------------------------------------------------------------------------
def statefulsets(snap: Snapshot) -> Iterator[Finding]:
    for sts in snap.items("statefulsets"):
        ns, spec, status = ns_of(sts), sts.get("spec") or {}, sts.get("status") or {}
        service_name = spec.get("serviceName")
        if service_name and snap.covers("services", ns):
            svc = snap.get("services", ns, service_name)
            if svc is None:
                ports = [
                    {"name": p.get("name"), "port": p["containerPort"]}
                    for c in pod_template_spec(sts).get("containers") or []
                    for p in c.get("ports") or []
                ]
                yield Finding(
                    code="STS_SERVICE_MISSING",
                    severity="warning",
                    object=snap.ref(sts, "StatefulSet"),
                    summary=f"governing headless Service {service_name} does not exist",
                    evidence={"serviceName": service_name},
                    remediation=f"Create a headless Service {service_name} (clusterIP: None) selecting the pods, so "
                    "each pod gets its stable DNS name.",
                    fix=Fix(
                        action="create_missing",
                        target=snap.make_ref("Service", service_name, ns),
                        params={"clusterIP": "None", "selector": pod_template_labels(sts), "ports": ports},
                    ),
                )
            elif (svc.get("spec") or {}).get("clusterIP") != "None":
                yield Finding(
                    code="STS_SERVICE_NOT_HEADLESS",
                    severity="warning",
                    object=snap.ref(sts, "StatefulSet"),
                    summary=f"governing Service {service_name} is not headless",
                    evidence={"serviceName": service_name, "clusterIP": (svc.get("spec") or {}).get("clusterIP")},
                    remediation="Use a headless Service (clusterIP: None) as serviceName: per-pod DNS needs it.",
                )
        wanted, ready = spec.get("replicas", 1), status.get("readyReplicas", 0)
        if wanted and ready < wanted and not _rolling_within_budget(snap, sts, "StatefulSet", wanted, wanted - ready):
            yield Finding(
                code="STS_UNAVAILABLE",
                severity="critical" if ready == 0 else "warning",
                tier=2,
                object=snap.ref(sts, "StatefulSet"),
                summary=f"{ready}/{wanted} replicas ready",
                evidence={
                    "desired": wanted,
                    "ready": ready,
                    "pod_states": _pod_states(_pods_of(snap, sts, "StatefulSet")),
                },
                remediation="See the findings on its pods.",
            )


def daemonsets(snap: Snapshot) -> Iterator[Finding]:
    for ds in snap.items("daemonsets"):
        status = ds.get("status") or {}
        counts = {
            k: status.get(k, 0)
            for k in (
                "desiredNumberScheduled",
                "currentNumberScheduled",
                "numberAvailable",
                "numberMisscheduled",
                "numberUnavailable",
            )
        }
        if counts["numberMisscheduled"]:
            yield Finding(
                code="DS_MISSCHEDULED",
                severity="warning",
                object=snap.ref(ds, "DaemonSet"),
                summary=f"{counts['numberMisscheduled']} daemon pod(s) run on nodes they should not",
                evidence=counts,
                remediation="The nodes' labels or taints no longer match the DaemonSet's nodeSelector/affinity/"
                "tolerations: fix the selector or the node labels; the controller then removes them.",
            )
        desired, unavailable = counts["desiredNumberScheduled"], counts["numberUnavailable"]
        if unavailable and not _rolling_within_budget(snap, ds, "DaemonSet", desired, unavailable):
            yield Finding(
                code="DS_UNAVAILABLE",
                severity="critical" if not counts["numberAvailable"] else "warning",
                tier=2,
                object=snap.ref(ds, "DaemonSet"),
                summary=f"{counts['numberUnavailable']} of {counts['desiredNumberScheduled']} daemon pods unavailable",
                evidence={**counts, "pod_states": _pod_states(_pods_of(snap, ds, "DaemonSet"))},
                remediation="See the findings on its pods.",
            )


# -- Jobs and CronJobs -----------------------------------------------------------------------------------
def _last_pod_failure(snap: Snapshot, job: Obj) -> str | None:
    for pod in sorted(_pods_of(snap, job, "Job"), key=lambda p: meta(p).get("creationTimestamp") or "", reverse=True):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
            if term and term.get("exitCode"):
                return (
                    f"pod {name_of(pod)} container {cs.get('name')}: {term.get('reason') or 'Error'} "
                    f"(exit {term.get('exitCode')})"
                )
    return None


def jobs(snap: Snapshot) -> Iterator[Finding]:
    for job in snap.items("jobs"):
        ctrl = snap.controller_of(job)
        if ctrl and ctrl[0] == "CronJob":
            continue  # reported through the CronJob
        spec, status = job.get("spec") or {}, job.get("status") or {}
        failed_cond = condition(job, "Failed")
        evidence = {
            "failed": status.get("failed", 0),
            "succeeded": status.get("succeeded", 0),
            "active": status.get("active", 0),
            "backoffLimit": spec.get("backoffLimit", 6),
            "last_failure": _last_pod_failure(snap, job),
        }
        evidence = present(evidence)
        if failed_cond and failed_cond.get("status") == "True":
            evidence["reason"] = failed_cond.get("reason")
            evidence["message"] = failed_cond.get("message")
            yield Finding(
                code="JOB_FAILED",
                severity="critical",
                object=snap.ref(job, "Job"),
                summary=f"job failed: {failed_cond.get('reason')} after {status.get('failed', 0)} failed pod(s)",
                evidence=evidence,
                remediation="Read the failed pods' logs for the error; fix it and re-run the job "
                "(a Job does not restart once Failed).",
            )
        elif status.get("failed") and not condition(job, "Complete"):
            yield Finding(
                code="JOB_BACKOFF",
                severity="warning",
                object=snap.ref(job, "Job"),
                summary=f"{status['failed']} pod(s) failed so far (backoffLimit {spec.get('backoffLimit', 6)})",
                evidence=evidence,
                remediation="The job is retrying with back-off: read the failed pods' logs now.",
            )


def cronjobs(snap: Snapshot) -> Iterator[Finding]:
    for cj in snap.items("cronjobs"):
        ns, name, spec = ns_of(cj), name_of(cj), cj.get("spec") or {}
        schedule = str(spec.get("schedule") or "")
        problem = schedule_problem(schedule)
        events = [
            e
            for e in snap.events_for("CronJob", ns, name)
            if e.get("reason") in ("InvalidSchedule", "UnparseableSchedule", "InvalidTimeZone")
        ]
        if problem or events:
            yield Finding(
                code="CRONJOB_INVALID_SCHEDULE",
                severity="critical",
                object=snap.ref(cj, "CronJob"),
                summary=f"schedule {schedule!r} is unusable: {problem or events[0].get('message')}",
                evidence={
                    "schedule": schedule,
                    "timeZone": spec.get("timeZone"),
                    "events": event_summary(events) or None,
                },
                remediation="Correct the schedule (minute hour day-of-month month day-of-week).",
            )
            continue
        if spec.get("suspend"):
            yield Finding(
                code="CRONJOB_SUSPENDED",
                severity="info",
                object=snap.ref(cj, "CronJob"),
                summary="suspended: no new jobs are started",
                evidence={"suspend": True, "lastScheduleTime": (cj.get("status") or {}).get("lastScheduleTime")},
                remediation="Set spec.suspend=false when it should run again.",
            )
            continue
        missed = _missed_schedules(snap, cj)
        if missed:
            yield missed
        owned = [j for j in snap.in_ns("jobs", ns) if snap.controller_of(j) == ("CronJob", name)]
        finished = [j for j in owned if _finished(j)]
        if not finished:
            continue
        latest = max(finished, key=lambda j: meta(j).get("creationTimestamp") or "")
        failed = condition(latest, "Failed")
        if failed and failed.get("status") == "True":
            failures = sum(1 for j in finished if (condition(j, "Failed") or {}).get("status") == "True")
            yield Finding(
                code="CRONJOB_LAST_FAILED",
                severity="warning",
                object=snap.ref(cj, "CronJob"),
                summary=f"last run {name_of(latest)} failed ({failed.get('reason')}); {failures} of {len(finished)} "
                "recent runs failed",
                evidence={
                    "job": name_of(latest),
                    "reason": failed.get("reason"),
                    "message": failed.get("message"),
                    "last_failure": _last_pod_failure(snap, latest),
                },
                involves=[snap.ref(latest, "Job")],
                remediation="Read the failed job's pod logs for the error.",
            )


def _missed_schedules(snap: Snapshot, cj: Obj) -> Finding | None:
    """Runs the CronJob controller skipped in the last hour: MissSchedule (a scheduled time passed longer ago
    than startingDeadlineSeconds before the controller could start it; it repeats until the next run) and
    TooManyMissedTimes (more than 100 start times missed, with no startingDeadlineSeconds to bound the
    search: the controller was down long or the clock jumped). A run started after the miss ends the finding."""
    spec, status = _dict(cj.get("spec")), _dict(cj.get("status"))
    last_run = status.get("lastScheduleTime")
    last = parse_time(last_run)
    since = snap.now - MISSED_RECENT
    events = []
    for e in snap.events_for("CronJob", ns_of(cj), name_of(cj)):
        if e.get("reason") not in ("MissSchedule", "TooManyMissedTimes") or not seen_since(e, since):
            continue
        if e.get("reason") == "MissSchedule" and last is not None and not seen_since(e, last):
            continue
        events.append(e)
    if not events:
        return None
    deadline = spec.get("startingDeadlineSeconds")
    many = any(e.get("reason") == "TooManyMissedTimes" for e in events)
    return Finding(
        code="CRONJOB_MISSED_SCHEDULES",
        severity="warning",
        object=snap.ref(cj, "CronJob"),
        summary="more than 100 start times were missed"
        if many
        else f"missed its scheduled run: it was not started within startingDeadlineSeconds ({deadline})",
        evidence={
            k: v
            for k, v in {
                "schedule": spec.get("schedule"),
                "startingDeadlineSeconds": deadline,
                "lastScheduleTime": last_run,
                "events": event_summary(events),
            }.items()
            if v is not None
        },
        remediation="Check that kube-controller-manager runs without long pauses and that the control plane's "
        "clock is right; give spec.startingDeadlineSeconds room for the controller's delay (at least a minute, "
        "or leave it unset), and set it when a long outage should not replay every missed run.",
    )


def _finished(job: Obj) -> bool:
    return any((condition(job, t) or {}).get("status") == "True" for t in ("Complete", "Failed"))


RULES = [deployments, statefulsets, daemonsets, jobs, cronjobs]
