"""Honest answers: a finding filter that matches nothing is an error, and a selector fix names (and plans) the
workload a typo away, or nothing when no workload is clearly closest."""

from __future__ import annotations

import pytest

from errors import InvalidInput
from tests.fix.scenarios import bad_probe_path
from tools.diagnose import diagnose
from tools.fix import fix_plan

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


async def test_a_codes_filter_that_matches_nothing_is_an_error(api, namespace, call) -> None:
    bad_probe_path(api, namespace)
    with pytest.raises(InvalidInput, match="None of the codes NOPE") as caught:
        await call(fix_plan, namespace=namespace, codes=["NOPE"])
    assert "POD_PROBE_BAD_TARGET" in caught.value.message
    with pytest.raises(InvalidInput, match="points at POD_OOMKILLED"):
        await call(fix_plan, namespace=namespace, event_text="container app OOMKilled")
    plan = await call(fix_plan, namespace=namespace, codes=["NOPE", "POD_PROBE_BAD_TARGET"])
    assert [c.actions for c in plan.changes] == [["set_probe"]]


def _workload(api, namespace: str, name: str, app: str) -> None:
    template = {"metadata": {"labels": {"app": app}}, "spec": {"containers": [{"name": "app", "image": "x:1"}]}}
    body = {"metadata": {"name": name}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": app}}}}
    body["spec"]["template"] = template
    api("POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", body)


def _service(api, namespace: str, name: str, app: str) -> None:
    body = {"metadata": {"name": name}, "spec": {"selector": {"app": app}, "ports": [{"port": 80}]}}
    api("POST", f"/api/v1/namespaces/{namespace}/services", body)


async def _advice(call, namespace: str, service: str):
    report = await call(diagnose, namespace=namespace, kind="Service", name=service)
    finding = next(f for f in report.findings if f.code == "SVC_SELECTOR_NO_PODS")
    plan = await call(fix_plan, namespace=namespace, name=service, kind="Service")
    return finding.remediation, plan


async def test_the_suggested_workload_is_the_one_a_typo_away(api, namespace, call) -> None:
    _workload(api, namespace, "fraud-check", "fraud-check")
    _workload(api, namespace, "payment", "payment")
    _service(api, namespace, "payment", "paymnet")
    remediation, plan = await _advice(call, namespace, "payment")
    assert "closest: Deployment payment has app=payment" in remediation and "fraud-check" not in remediation
    (change,) = plan.changes  # one unambiguous correction: planned, for a person to approve
    assert change.object == f"Service {namespace}/payment" and change.actions == ["set_fields"]
    assert "+    app: payment" in change.diff.splitlines() and "fraud-check" not in change.diff


async def test_no_suggestion_when_nothing_is_clearly_closest(api, namespace, call) -> None:
    _workload(api, namespace, "aaa", "aaa")
    _workload(api, namespace, "bbb", "bbb")
    _service(api, namespace, "orders", "zzz")
    remediation, plan = await _advice(call, namespace, "orders")
    assert "closest" not in remediation and plan.changes == []
    reason = next(r.reason for r in plan.refused if r.finding == "SVC_SELECTOR_NO_PODS")
    assert "closest" not in reason
