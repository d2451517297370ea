"""What a diagnosis rule reports: a `Finding` with its evidence and, where one exists, a structured `Fix`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

Severity = Literal["critical", "warning", "info"]
SEVERITY_RANK: dict[str, int] = {"critical": 0, "warning": 1, "info": 2}

FixAction = Literal[
    "set_probe",  # params: probe (liveness|readiness|startup) and the new probe fields
    "set_resources",  # params: requests / limits, e.g. {"limits": {"memory": "512Mi"}}
    "rollout_undo",  # params: to_revision
    "scale",  # params: replicas
    "set_image",  # params: image
    "create_missing",  # target: the object to create; params: what is known about it (never its data)
    "set_target_port",  # params: port, target_port (a Service port's targetPort)
    "uncordon",  # target: a Node
    "rollout_restart",  # target: a workload whose pods must be re-created (e.g. to get a sidecar)
    "set_fields",  # params: fields [[path, value], ...], expected — a reference with one unambiguous correction
]


class Limits(BaseModel):
    """How long a state that raises no Warning may last before it counts as stuck."""

    model_config = ConfigDict(frozen=True)

    gated_seconds: float = 15 * 60
    paused_seconds: float = 60 * 60
    lb_pending_seconds: float = 15 * 60
    suspended_seconds: float = 24 * 60 * 60
    terminating_seconds: float = 30 * 60


class ObjectRef(BaseModel):
    """Which object a finding or fix is about."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    name: str
    namespace: str | None = None
    cluster: str | None = None

    def short(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name}"


class Fix(BaseModel):
    """A change that removes the cause; fix_plan turns it into a plan."""

    model_config = ConfigDict(extra="forbid")

    action: FixAction
    target: ObjectRef
    container: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    def short(self) -> str:
        args = " ".join(f"{k}={v}" for k, v in self.params.items())
        on = f"{self.target.short()}" + (f" container {self.container}" if self.container else "")
        return f"{self.action} on {on}" + (f": {args}" if args else "")


class Finding(BaseModel):
    """One problem, its evidence and what to do."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="e.g. POD_CRASHLOOP, IST0101.")
    severity: Severity
    object: ObjectRef
    summary: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    remediation: str = ""
    fix: Fix | None = None
    involves: list[ObjectRef] = Field(default_factory=list, description="Other objects involved.")
    tier: int = Field(0, description="0 cause, 1 pod symptom, 2 workload symptom.")
    # Set by a rule when the object to change is not the one showing the symptom (a quota, policy, class,
    # namespace setting); the engine makes it the subject and fills `chain`. Never part of the output.
    cause: SkipJsonSchema[ObjectRef | None] = Field(None, exclude=True)
    chain: list[ObjectRef] = Field(default_factory=list, description="Object to change, then what it breaks.")

    def sort_key(self) -> tuple[int, int, str, str, str]:
        return (SEVERITY_RANK[self.severity], self.tier, self.code, self.object.namespace or "", self.object.name)
