"""Scripted models for the team's tests: functions that answer a chat-completions request the way a capable
model would at each step (which agent is asking is in the system prompt), so the whole graph runs through the
real `langchain-openai` client against `tests.llm.server.ScriptedLLM`. They prove the plumbing, not the
intelligence."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.llm.server import Call, Step, Text, ToolCalls


def role(request: dict[str, Any]) -> str:
    system = str(request["messages"][0].get("content") or "")
    for name in ("supervisor", "researcher", "fixer", "coder"):
        if f"CloudPilot's {name}" in system or f"the {name} of CloudPilot" in system:
            return name
    if "You are the supervisor" in system:
        return "supervisor"
    if "data analyst" in system:
        return "coder"
    return "?"


def tool_results(request: dict[str, Any]) -> list[str]:
    return [str(m.get("content") or "") for m in request["messages"] if m.get("role") == "tool"]


def said(request: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content") or "") for m in request["messages"] if m.get("role") == "user")


def tools_offered(request: dict[str, Any]) -> set[str]:
    return {t["function"]["name"] for t in request.get("tools") or []}


def plan_id(text: str) -> str | None:
    found = re.search(r"\bp-[0-9a-f]{10}\b", text)
    return found.group(0) if found else None


def finding(text: str) -> tuple[str, str] | None:
    """The top finding (code, object) in a diagnose result's text."""
    found = re.search(r"^1\. \[\w+\] (\S+) (\w+ \S+?): ", text, re.M)
    return (found.group(1), found.group(2)) if found else None


def fixing_team(namespace: str, event: str = "") -> Any:
    """Supervisor → researcher (diagnose) → supervisor → fixer (fix_plan) → [approval] → supervisor answers."""

    def respond(request: dict[str, Any]) -> Step:
        who, results = role(request), tool_results(request)
        if who == "supervisor":
            heard = said(request)
            if "Report from the researcher" not in heard:
                return ToolCalls(
                    [Call("transfer_to_researcher", {"task": f"Find why Deployment web in {namespace} fails."})]
                )
            if "Report from the fixer" not in heard:
                return ToolCalls(
                    [Call("transfer_to_fixer", {"task": f"Plan a fix for Deployment web in {namespace}."})]
                )
            system = str(request["messages"][0]["content"])
            outcome = re.search(r"Outcome: (\w+)", system)
            return Text(f"Done: the fix is {outcome.group(1) if outcome else 'waiting'}. " + heard[-300:])
        if who == "researcher":
            if not results:
                return ToolCalls([Call("diagnose", {"namespace": namespace, "kind": "Deployment", "name": "web"})])
            top = finding(results[-1])
            return Text(f"Root cause: {top[0]} {top[1]}" if top else "Nothing found.")
        if who == "fixer":
            if not results:
                args = {"namespace": namespace, "name": "web"} | ({"event_text": event} if event else {})
                return ToolCalls([Call("fix_plan", args)])
            return Text(f"Plan {plan_id(results[-1])} is ready for review.")
        return Text("?")

    return respond


def dumps(value: Any) -> str:
    return json.dumps(value)
