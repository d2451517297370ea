"""Creation refusals on plain dicts: each admission step names the object to change, and the engine's cause
chain makes that object the subject with the workloads as its symptoms."""

from __future__ import annotations

from typing import Any

import pytest

from engines.diagnosis.engine import chain_causes
from engines.diagnosis.model import Finding, ObjectRef
from tests.diagnosis.world import codes, cond, fresh, meta, namespace, only, replicaset

Obj = dict[str, Any]


def refused(message: str, *, deployments: tuple[str, ...] = ("web",)) -> dict[str, list[Obj]]:
    w = fresh()
    w["replicasets"] = [
        replicaset(f"{d}-abc", deployment_name=d, conditions=[cond("ReplicaFailure", "True", "FailedCreate", message)])
        for d in deployments
    ]
    return w


def test_quota_is_the_subject_and_the_deployment_its_symptom() -> None:
    msg = 'pods "web-abc-x" is forbidden: exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2'
    f = only(refused(msg), "QUOTA_EXCEEDED")
    assert f.object == ObjectRef(kind="ResourceQuota", name="compute", namespace="shop", cluster="test")
    assert [o.kind for o in f.chain] == ["ResourceQuota", "Deployment"] and f.tier == 0
    assert "affects Deployment shop/web" in f.summary and f.evidence["message"] == msg
    assert "cause" not in f.model_dump()


def test_one_quota_breaking_two_workloads_is_one_finding() -> None:
    msg = 'pods "x" is forbidden: exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2'
    f = only(refused(msg, deployments=("web", "api")), "QUOTA_EXCEEDED")
    assert [o.name for o in f.chain] == ["compute", "web", "api"]
    assert {o.name for o in f.involves} >= {"web", "api"}


def test_limit_range_named_when_one_bounds_the_resource() -> None:
    w = refused('pods "x" is forbidden: maximum memory usage per Container is 256Mi, but limit is 512Mi')
    w["limitranges"] = [
        {"metadata": meta("cpu-only"), "spec": {"limits": [{"type": "Container", "max": {"cpu": "2"}}]}},
        {"metadata": meta("mem"), "spec": {"limits": [{"type": "Container", "max": {"memory": "256Mi"}}]}},
    ]
    f = only(w, "LIMITRANGE_REJECTS")
    assert (f.object.kind, f.object.name) == ("LimitRange", "mem") and f.evidence["resource"] == "memory"


def test_limit_range_unknown_keeps_the_workload_as_subject() -> None:
    w = refused('pods "x" is forbidden: minimum cpu usage per Container is 100m, but request is 50m')
    w["limitranges"] = [{"metadata": meta("broken"), "spec": {"limits": "not a list of limits"}}]
    f = only(w, "LIMITRANGE_REJECTS")
    assert f.object.kind == "Deployment" and f.chain == [] and f.evidence["limit_range"] is None


def test_pod_security_points_at_the_namespace_label() -> None:
    w = refused(
        'pods "x" is forbidden: violates PodSecurity "restricted:latest": privileged (container "app" must not '
        "set securityContext.privileged=true)"
    )
    w["namespaces"] = [namespace("shop", {"pod-security.kubernetes.io/enforce": "restricted"})]
    f = only(w, "POD_SECURITY_REJECTS")
    assert f.object == ObjectRef(kind="Namespace", name="shop", cluster="test")
    assert f.evidence["enforce"] == "restricted" and "privileged" in f.evidence["violations"]


@pytest.mark.parametrize(
    ("message", "code", "kind", "name", "ns"),
    [
        ('pods "x" is forbidden: no PriorityClass with name critical-apps was found', "PRIORITYCLASS_MISSING",
         "PriorityClass", "critical-apps", None),
        ('pods "x" is forbidden: pod rejected: RuntimeClass "gvisor" not found', "RUNTIMECLASS_MISSING",
         "RuntimeClass", "gvisor", None),
        ('pods "x" is forbidden: error looking up service account shop/robot: serviceaccount "robot" not found',
         "SERVICEACCOUNT_MISSING", "ServiceAccount", "robot", "shop"),
    ],
)  # fmt: skip
def test_missing_class_or_account_is_the_subject(message: str, code: str, kind: str, name: str, ns: str) -> None:
    f = only(refused(message), code)
    assert (f.object.kind, f.object.name, f.object.namespace) == (kind, name, ns)
    assert f.chain[-1].kind == "Deployment"


def test_unreachable_webhook_names_its_configuration() -> None:
    w = refused(
        'Internal error occurred: failed calling webhook "pods.policy.example.com": failed to call webhook: Post '
        '"https://policy.shop.svc:443/validate?timeout=10s": service "policy" not found'
    )
    w["validatingwebhookconfigurations"] = [
        {"metadata": meta("other", None), "webhooks": [{"name": "x.example.com"}, "junk"]},
        {"metadata": meta("shop-policy", None), "webhooks": [{"name": "pods.policy.example.com"}]},
    ]
    f = only(w, "ADMISSION_WEBHOOK_FAILS")
    assert (f.object.kind, f.object.name) == ("ValidatingWebhookConfiguration", "shop-policy")
    assert f.evidence["unreachable"] is True


def test_unexplained_refusal_stays_on_the_workload() -> None:
    f = only(refused('pods "x" is forbidden: something new'), "WORKLOAD_FAILED_CREATE")
    assert f.object.kind == "Deployment" and f.chain == []


def test_no_refusal_no_finding() -> None:
    assert codes(fresh()) == []


def _finding(name: str, cause: ObjectRef | None, severity: str = "warning") -> Finding:
    return Finding(
        code="X", severity=severity, object=ObjectRef(kind="Deployment", name=name, namespace="a"), summary="s",
        cause=cause, tier=2,
    )  # fmt: skip


def test_chain_keeps_findings_without_a_cause_and_merges_by_cause() -> None:
    quota = ObjectRef(kind="ResourceQuota", name="q", namespace="a")
    plain = _finding("c", None)
    out = chain_causes([_finding("a", quota), plain, _finding("b", quota, "critical"), _finding("d", quota)])
    assert out[1] is plain and len(out) == 2
    merged = out[0]
    assert merged.object == quota and merged.severity == "critical" and merged.tier == 0
    assert "affects Deployment a/a, Deployment a/b, Deployment a/d" in merged.summary
    five = chain_causes([_finding(str(i), quota) for i in range(5)])[0]
    assert five.summary.endswith("and 2 more)") and len(five.chain) == 6


def test_a_cause_equal_to_the_object_is_no_chain() -> None:
    f = _finding("a", ObjectRef(kind="Deployment", name="a", namespace="a"))
    (out,) = chain_causes([f])
    assert out.chain == [] and out.cause is None and out.summary == "s"


def test_a_jobs_refusal_counts_while_recent_and_not_days_later() -> None:
    from tests.diagnosis.world import event, ts

    w = fresh()
    w["jobs"] = [{"kind": "Job", "metadata": meta("report"), "spec": {}, "status": {}}]
    msg = 'pods "report-x" is forbidden: exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2'
    w["events"] = [event("Job", "report", "FailedCreate", msg)]
    assert only(w, "QUOTA_EXCEEDED").chain[-1].kind == "Job"
    w["events"][0]["lastTimestamp"] = ts(3 * 24 * 60)
    assert codes(w) == []
