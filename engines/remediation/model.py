"""What a plan is made of: changes (each a recipe that can be re-run on a fresh object), refusals, blast radius."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engines.diagnosis.model import ObjectRef

Risk = Literal["low", "medium", "high", "critical"]  # critical: cluster-wide privileges, a whole namespace
RISK_RANK: dict[str, int] = {"low": 0, "medium": 1, "high": 2, "critical": 3}
EditAction = Literal[
    "set_probe",  # container; params: probe (liveness|readiness|startup), handler?, timing?
    "set_resources",  # container; params: requests?, limits?
    "set_image",  # container; params: image
    "scale",  # params: replicas
    "restart",  # params: at (timestamp written to the pod template)
    "set_template",  # params: template (a whole pod template), revision
    "cordon",  # params: unschedulable (bool)
    "set_target_port",  # params: port, target_port
    "set_fields",  # params: fields — [[path, value], ...]; a path is a list of keys and list indexes
]


class Edit(BaseModel):
    """One field-level change to an object, applied by `edits.apply_edits`."""

    model_config = ConfigDict(extra="forbid")

    action: EditAction
    container: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    def short(self) -> str:
        shown = {k: v for k, v in self.params.items() if k != "template"}
        args = " ".join(f"{k}={v}" for k, v in shown.items())
        return self.action + (f"[{self.container}]" if self.container else "") + (f" {args}" if args else "")


class Patch(BaseModel):
    """A caller-written patch or manifest (the patch and apply tools)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["strategic", "merge", "json", "apply"]
    body: Any


class Blast(BaseModel):
    """What a change disturbs while it rolls out."""

    model_config = ConfigDict(extra="forbid")

    pods_restarted: int = 0
    max_unavailable: int = 0
    notes: list[str] = Field(default_factory=list)


class Change(BaseModel):
    """One object to change, how, and why. `edits` or `patch` is the recipe; re-running it on the live
    object (after a conflict, say) gives a fresh desired state without re-planning by hand."""

    model_config = ConfigDict(extra="forbid")

    target: ObjectRef
    operation: Literal["update", "delete"] = "update"
    edits: list[Edit] = Field(default_factory=list)
    patch: Patch | None = None
    why: list[str] = Field(default_factory=list)
    expected: str = ""
    evidence: dict[str, Any] = Field(default_factory=dict)
    findings: list[str] = Field(default_factory=list, description="Codes of the findings this change removes.")
    risk: Risk = "medium"
    blast: Blast = Field(default_factory=Blast)

    def actions(self) -> list[str]:
        if self.operation == "delete":
            return ["delete"]
        if self.patch is not None:
            return [f"patch_{self.patch.type}"]
        return [e.action for e in self.edits]


class Refusal(BaseModel):
    """A finding the planner will not change automatically, and why."""

    model_config = ConfigDict(extra="forbid")

    finding: str
    object: ObjectRef
    reason: str


class Plan(BaseModel):
    """The changes that together remove the findings, with their combined risk."""

    model_config = ConfigDict(extra="forbid")

    changes: list[Change] = Field(default_factory=list)
    refused: list[Refusal] = Field(default_factory=list)

    @property
    def risk(self) -> Risk:
        if not self.changes:
            return "low"
        return max((c.risk for c in self.changes), key=lambda r: RISK_RANK[r])
