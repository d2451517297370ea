"""The team without a model: the deterministic path the seeds' auto-fix call takes —
diagnose → RCA (when Prometheus is configured) → plan → approval → apply → verify → notify.

The same graph runs it (the researcher and fixer nodes take this path when the run is an autofix, or when no
model is configured); it is reproducible and works offline.
"""

from __future__ import annotations

from typing import Any

from agents.crew import Turn
from engines.remediation.describe import codes_for_text
from tools.diagnose import Diagnosis
from tools.fixloop import PlanView


def _where(request: dict[str, Any]) -> dict[str, Any]:
    args: dict[str, Any] = {"namespace": request["namespace"]}
    if request.get("deployment"):
        args |= {"kind": "Deployment", "name": request["deployment"]}
    if request.get("cluster"):
        args["cluster"] = request["cluster"]
    return args


async def research(turn: Turn, request: dict[str, Any]) -> dict[str, Any]:
    """Diagnose the namespace (or the deployment and what relates to it); add RCA when Prometheus is set up.
    The root cause is the top finding, or the first one the operator's event text points at."""
    answer = await turn.tool("diagnose", _where(request) | {"force_refresh": True})
    if answer.is_error or not isinstance(answer.result, Diagnosis):
        return {"evidence": [], "root_cause": None, "declined": answer.text, "report": answer.text}
    findings = answer.result.findings
    evidence = [f"{f.code} {f.object.short()}: {f.summary}" for f in findings[:10]]
    pointed = codes_for_text(request.get("event")) or set()
    top = next((f for f in findings if f.code in pointed), findings[0] if findings else None)
    root = None if top is None else {"code": top.code, "object": top.object.short(), "summary": top.summary}
    lines = (
        [f"Root cause: {root['code']} {root['object']}: {root['summary']}"]
        if root
        else ["Diagnosis finds nothing wrong."]
    )
    lines += [f"- {e}" for e in evidence[1:5]]
    if root is not None:
        cited = await turn.tool("runbooks_search", {"question": root["summary"], "codes": [root["code"]], "limit": 1})
        hit = next((ln for ln in cited.text.splitlines() if ln.startswith("[")), None)
        if not cited.is_error and hit:
            lines.append(f"Runbook: {hit.split(' — ')[0]}")
    if turn.crew.settings.prometheus.url:
        rca = await turn.tool(
            "rca_namespace", {k: v for k, v in _where(request).items() if k in ("namespace", "cluster")}
        )
        first = rca.text.splitlines()[:4]
        if not rca.is_error:
            evidence.append("RCA: " + " | ".join(first))
        lines.append(
            "RCA: " + (" | ".join(first) if not rca.is_error else f"not available ({first[0] if first else ''})")
        )
    return {"evidence": evidence, "root_cause": root, "report": "\n".join(lines)}


async def plan(turn: Turn, request: dict[str, Any]) -> dict[str, Any]:
    """fix_plan for the request: one combined plan, or the reason nothing can be planned safely."""
    args = _where(request) | ({"event_text": request["event"]} if request.get("event") else {})
    args.pop("force_refresh", None)
    answer = await turn.tool("fix_plan", args)
    if answer.is_error or not isinstance(answer.result, PlanView):
        return {"plan": None, "declined": answer.text}
    view = answer.result
    if not view.changes:
        return {"plan": None, "declined": answer.text}
    return {"plan": plan_summary(view), "declined": None}


def plan_summary(view: PlanView) -> dict[str, Any]:
    """What an approver sees: id, risk, each change's object, actions, reasons, blast radius and diff."""
    changes = [
        {
            "object": c.object,
            "actions": c.actions,
            "risk": c.risk,
            "why": c.why[:5],
            "blast_radius": f"{c.blast.pods_restarted} pod(s) restarted, at most {c.blast.max_unavailable} unavailable",
            "diff": c.diff[:4000],
        }
        for c in view.changes
    ]
    return {
        "plan_id": view.plan_id,
        "cluster": view.cluster,
        "risk": view.risk,
        "expires_at": view.expires_at,
        "title": "; ".join(f"{c['object']}: {', '.join(c['actions'])}" for c in changes),
        "actions": sorted({a for c in changes for a in c["actions"]}),
        "changes": changes,
        "text": view.render().removesuffix(view.next_step).rstrip()[:8000],  # how to approve is the gate's
    }
