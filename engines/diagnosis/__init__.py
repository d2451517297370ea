"""Deterministic diagnosis of a cluster: rules over a snapshot of raw objects → ranked findings with evidence.

Pure: no MCP and no Kubernetes client. `tools.diagnose` gathers the snapshot and exposes the tools.

    report = run(Snapshot({"pods": [...], "events": [...], ...}, scope={"shop"}))
    report.findings  # ranked: severity, then causes before symptoms
"""

from engines.diagnosis.engine import AREAS, Report, run
from engines.diagnosis.model import Finding, Fix, ObjectRef, Severity
from engines.diagnosis.snapshot import KINDS, Snapshot

__all__ = ["AREAS", "KINDS", "Finding", "Fix", "ObjectRef", "Report", "Severity", "Snapshot", "run"]
