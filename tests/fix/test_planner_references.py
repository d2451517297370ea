"""References one typo away from the one thing they can mean — a Service selector, an HPA's scaleTargetRef, a
DestinationRule subset, an mTLS mode against the namespace's PeerAuthentication, a PodDisruptionBudget that
allows no disruption — are planned as changes, applied only with approval, and verified by diagnosis; where
the right value is ambiguous (or the owner's to choose), nothing is planned for them."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.tools.conftest_istio import kube, mesh  # noqa: F401 - fixtures
from tests.tools.diagnosis_scenarios import (
    Kube,
    _hpa,
    _pdb,
    dr_subset_pods,
    hpa_target,
    mtls_conflict,
    pdb_zero,
    selector_typo,
)
from tools.diagnose import diagnose
from tools.fix import fix_apply, fix_plan

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

CASES: list[tuple[str, Callable[[Kube, str, bool], None], str, str, str]] = [
    # name, builder, finding, object, a line the diff must show
    ("selector-typo", selector_typo, "SVC_SELECTOR_NO_PODS", "Service {ns}/web", "+    app: web"),
    ("hpa-target", hpa_target, "HPA_TARGET_MISSING", "HorizontalPodAutoscaler {ns}/web", "+    name: web"),
    ("dr-subset-pods", dr_subset_pods, "ISTIO_SUBSET_NO_PODS", "DestinationRule {ns}/web", "+      version: v1"),
    ("mtls-conflict", mtls_conflict, "IST0113", "DestinationRule {ns}/web", "+      mode: ISTIO_MUTUAL"),
    ("pdb-zero", pdb_zero, "PDB_BLOCKS_DISRUPTIONS", "PodDisruptionBudget {ns}/web", "+  minAvailable: 1"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_one_unambiguous_correction_is_planned_applied_and_verified(case, kube: Kube, namespace, call):  # noqa: F811
    _, build, code, obj, line = case
    build(kube, namespace, True)
    plan = await call(fix_plan, namespace=namespace, codes=[code])
    text = plan.render()
    (change,) = [c for c in plan.changes if c.object == obj.format(ns=namespace)]
    assert change.actions == ["set_fields"] and any(w.startswith(code) for w in change.why), text
    assert line in change.diff.splitlines(), change.diff
    assert change.blast.pods_restarted == 0, text  # a reference is corrected in place: no rollout

    result = await call(fix_apply, plan_id=plan.plan_id, confirm=plan.plan_id, verify_timeout_seconds=60)
    assert result.status == "verified", result.render()
    after = await call(diagnose, namespace=namespace, force_refresh=True)
    assert code not in {f.code for f in after.findings}, after.render()


async def test_an_ambiguous_selector_or_scale_target_is_not_guessed(kube: Kube, namespace, call):  # noqa: F811
    for name in ("web", "wbf", "wbz"):
        kube.deploy(namespace, name)
    kube.service(namespace, "front", selector={"app": "wbe"})  # one edit from both 'web' and 'wbf'
    _hpa(kube, namespace, "wbx")  # one edit from both 'wbf' and 'wbz'
    found = await call(diagnose, namespace=namespace, force_refresh=True)
    codes = {f.code: f for f in found.findings}
    assert {"SVC_SELECTOR_NO_PODS", "HPA_TARGET_MISSING"} <= set(codes), found.render()
    assert codes["SVC_SELECTOR_NO_PODS"].fix is None and codes["HPA_TARGET_MISSING"].fix is None
    plan = await call(fix_plan, namespace=namespace, codes=["SVC_SELECTOR_NO_PODS", "HPA_TARGET_MISSING"])
    assert plan.changes == [], plan.render()
    assert {r.finding for r in plan.refused} == {"SVC_SELECTOR_NO_PODS", "HPA_TARGET_MISSING"}, plan.render()
    assert all("no safe automatic change" in r.reason for r in plan.refused), plan.render()


async def test_a_single_pod_budget_is_the_owners_call(kube: Kube, namespace, call):  # noqa: F811
    kube.deploy(namespace, "web", replicas=1)
    _pdb(kube, namespace, "web", 1, expected_pods=1)
    found = await call(diagnose, namespace=namespace, force_refresh=True)
    pdb = next(f for f in found.findings if f.code == "PDB_BLOCKS_DISRUPTIONS")
    assert pdb.fix is None  # allowing the only pod to be evicted means accepting downtime: not ours to decide


def test_the_expectations_name_every_labelled_scenario():
    from tests.fix.expectations import EXPECTED, PLANNED
    from tests.tools.scenarios import ALL

    assert set(EXPECTED) == {s.name for s in ALL} and len(ALL) == len(EXPECTED) and set(PLANNED) <= set(EXPECTED)
