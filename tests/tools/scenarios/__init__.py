"""Every labelled diagnosis scenario: the first 62 (`tests/tools/diagnosis_scenarios.py`) and the ones chosen
from the coverage tables' gaps (`benchmarks/coverage.md`), one module per area. Each has a healthy twin."""

from __future__ import annotations

from tests.tools.diagnosis_scenarios import SCENARIOS as OLD
from tests.tools.diagnosis_scenarios import Scenario, paused_rollout, scheduling_gated
from tests.tools.scenarios import admission, cluster, gateway_api, istio_config, kubelet

QUIET = [
    Scenario("scheduling-gated", "POD_SCHEDULING_GATED", scheduling_gated, {"scheduling_gates": ["example.com/queue"]}),
    Scenario("paused-rollout", "DEPLOY_PAUSED_WITH_CHANGES", paused_rollout, {"updated": 0, "desired": 1}),
]
NEW: list[Scenario] = [
    *QUIET,
    *kubelet.SCENARIOS,
    *admission.SCENARIOS,
    *cluster.SCENARIOS,
    *gateway_api.SCENARIOS,
    *istio_config.SCENARIOS,
]
ALL: list[Scenario] = [*OLD, *NEW]
