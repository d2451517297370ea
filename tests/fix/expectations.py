"""What `fix_plan` should do for each labelled diagnosis scenario (tests/tools/scenarios/):
the plan's actions (`Change.actions()`), or None where the correct answer is to plan nothing and say why —
the right value is the owner's to choose (a missing Secret or ConfigMap, a StorageClass, a quota, a schedule,
an application's own crash) or cannot be told from the cluster. Used by benchmarks/fix_scenarios.py and
benchmarks/agent_eval.py."""

from __future__ import annotations

from tests.tools.scenarios import ALL as SCENARIOS

PLANNED: dict[str, tuple[str, ...]] = {
    "oomkilled": ("set_resources",),  # a larger memory limit
    "bad-image-rollout": ("set_template",),  # roll back to the revision that ran
    "insufficient-cpu": ("set_resources",),  # requests that fit a node
    "liveness-404": ("set_probe",),  # probe the port the container serves
    "readiness-aggressive": ("set_probe",),  # sane probe timing
    "selector-typo": ("set_fields",),  # the Service selector one typo from the pods' labels
    "target-port": ("set_target_port",),  # the port the pods expose
    "node-cordoned": ("cordon",),  # uncordon, for a person to approve (the cordon may be deliberate)
    "hpa-target": ("set_fields",),  # scaleTargetRef to the one workload it can mean
    "pdb-zero": ("set_fields",),  # allow one disruption
    "dr-subset-pods": ("set_fields",),  # the subset's labels to the one version that runs
    "mtls-conflict": ("set_fields",),  # the client TLS mode the PeerAuthentication accepts
    "pod-missing-proxy": ("restart",),  # re-create the pods so the injector adds the sidecar
    "route-backend-port": ("set_fields",),  # the backendRef port to the Service's only port
    "limitrange-default-oom": ("set_resources",),  # an explicit, larger limit in the template
}
# Not planned: "scheduling-gated" (the gate belongs to a queue or operator; lifting it by hand bypasses it) and
# "paused-rollout" (whether a held-back change ships is the owner's decision).

EXPECTED: dict[str, tuple[str, ...] | None] = {s.name: PLANNED.get(s.name) for s in SCENARIOS}
