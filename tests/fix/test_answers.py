"""Honest answers: a finding filter that matches nothing is an error, and a suggested selector fix names the
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


async def _advice(call, namespace: str, service: str) -> tuple[str, str]:
    report = await call(diagnose, namespace=namespace, kind="Service", name=service)
    finding = next(f for f in report.findings if f.code == "SVC_SELECTOR_NO_PODS")
    plan = await call(fix_plan, namespace=namespace, name=service, kind="Service")
    reason = next(r.reason for r in plan.refused if r.finding == "SVC_SELECTOR_NO_PODS")
    return finding.remediation, reason


async def test_the_suggested_workload_is_the_one_a_typo_away(api, namespace, call) -> None:
    _workload(api, namespace, "fraud-check", "fraud-check")
    _workload(api, namespace, "payment", "payment")
    _service(api, namespace, "payment", "paymnet")
    for text in await _advice(call, namespace, "payment"):
        assert "closest: Deployment payment has app=payment" in text, text
        assert "fraud-check" not in text


async def test_no_suggestion_when_nothing_is_clearly_closest(api, namespace, call) -> None:
    _workload(api, namespace, "aaa", "aaa")
    _workload(api, namespace, "bbb", "bbb")
    _service(api, namespace, "orders", "zzz")
    for text in await _advice(call, namespace, "orders"):
        assert "closest" not in text, text
