"""Every scenario on the real control plane: the broken state's top finding is the expected code with its
evidence; the healthy twin yields no finding at all."""

from __future__ import annotations

import pytest

from tests.tools.conftest_istio import kube, mesh  # noqa: F401 - fixtures
from tests.tools.diagnosis_scenarios import Kube, Scenario
from tests.tools.scenarios import ALL as SCENARIOS
from tools.diagnose import diagnose

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_broken_state_gives_its_finding_first(scenario: Scenario, kube: Kube, namespace: str, call) -> None:  # noqa: F811
    scenario.build(kube, namespace, True)
    result = await call(diagnose, namespace=namespace, force_refresh=True)
    assert result.findings, result.render()
    top = result.findings[0]
    assert top.code == scenario.code, result.render()
    for key, value in (scenario.evidence or {}).items():
        assert top.evidence.get(key) == value, f"{key}: {top.evidence.get(key)!r} != {value!r}\n{result.render()}"
    if scenario.summary_has:
        assert scenario.summary_has in top.summary, result.render()
    if scenario.subject:
        assert top.object.kind == scenario.subject and top.chain, result.render()
    assert scenario.code in result.render()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_healthy_twin_gives_no_finding(scenario: Scenario, kube: Kube, namespace: str, call) -> None:  # noqa: F811
    scenario.build(kube, namespace, False)
    result = await call(diagnose, namespace=namespace, force_refresh=True)
    assert result.findings == [], result.render()
