"""Remediation planning: turn diagnosis findings into a plan of concrete, explained changes.

Pure: works on plain objects (decoded JSON) handed in by the caller; knows nothing of MCP or the
Kubernetes client. `tools/fix.py` runs the plan through the dry-run → approve → apply → verify loop.
"""

from engines.remediation.edits import EditError, apply_edits
from engines.remediation.model import Blast, Change, Edit, Patch, Plan, Refusal
from engines.remediation.planner import Context, make_plan

__all__ = [
    "Blast",
    "Change",
    "Context",
    "Edit",
    "EditError",
    "Patch",
    "Plan",
    "Refusal",
    "apply_edits",
    "make_plan",
]
