"""The whole team on the real control plane, driven through the real `langchain-openai` client against a local
OpenAI-compatible server that replays scripted answers (streamed, with tool calls): question → researcher
evidence → fixer plan → approval interrupt → approve → applied and verified → notifier; reject; and a restart
of the process between the interrupt and the approval."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.api import Team
from errors import Conflict
from runtime import Runtime
from settings import Settings
from store import AuditLog
from tests.agents.brain import fixing_team, role, tools_offered
from tests.agents.conftest import ALICE, BOB
from tests.fix.scenarios import SCENARIOS, deployment, kubelet
from tests.llm.server import ScriptedLLM
from tools.fixloop import content

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

API_KEY = "sk-test-DO-NOT-LEAK-4f9a1c"
ROOT = Path(__file__).resolve().parents[2]
BAD_PROBE = SCENARIOS[0]  # liveness probe on a path the container does not serve


def with_model(settings: Settings, base_url: str, **llm: object) -> Settings:
    return settings.model_copy(
        update={
            "llm": settings.llm.model_copy(
                update={"base_url": base_url, "model": "scripted", "api_key": API_KEY, "max_retries": 1} | llm
            )
        }
    )


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM(api_key=API_KEY) as server:
        yield server


async def test_question_to_verified_fix_through_the_real_client(api, namespace, settings, llm, recorder):
    BAD_PROBE.build(api, namespace)
    before = deployment(api, namespace)
    llm.respond = fixing_team(namespace, BAD_PROBE.event_text)
    rt = Runtime(with_model(settings, llm.base_url))
    events = []
    try:
        async with Team.open(rt, sinks=[recorder]) as team:
            reply = await team.ask(f"fix the crashing web pods in {namespace}", user=ALICE, on_event=events.append)
            assert reply.status == "awaiting_approval", reply.answer
            assert reply.root_cause["code"] == "POD_PROBE_BAD_TARGET", reply.root_cause
            assert reply.approval.plan_id == reply.plan["plan_id"] and "--- live" in reply.plan["changes"][0]["diff"]
            assert content(deployment(api, namespace)) == content(before)  # nothing changes before the decision
            with kubelet(api, namespace, "ready"):
                done = await team.decide(reply.approval.id, approve=True, decider=BOB, on_event=events.append)
            steps = team.trace(reply.thread_id)
    finally:
        rt.close()
    assert done.outcome["status"] == "verified", done.answer
    assert done.answer.startswith("Done: the fix is verified")
    assert BAD_PROBE.fixed(deployment(api, namespace))
    assert [n.title for n in recorder.sent] == [f"Plan {reply.plan['plan_id']} needs approval", "Fix verified"]

    roles = [role(r) for r in llm.requests]
    assert roles[:2] == ["supervisor", "researcher"] and "fixer" in roles and roles[-1] == "supervisor"
    assert all(r.get("stream") for r in llm.requests)  # streamed answers, tool calls included
    fixer_tools = next(tools_offered(r) for r in llm.requests if role(r) == "fixer")
    assert "fix_plan" in fixer_tools and "fix_apply" not in fixer_tools
    researcher_tools = next(tools_offered(r) for r in llm.requests if role(r) == "researcher")
    assert "diagnose" in researcher_tools and not researcher_tools & {"fix_plan", "fix_apply", "resource_delete"}
    tool_msgs = [m for r in llm.requests for m in r["messages"] if m.get("role") == "tool"]
    assert tool_msgs and all(m["content"].startswith("<untrusted-data source=") for m in tool_msgs)
    assert not any(API_KEY in json.dumps(r) for r in llm.requests)  # the key is a header, never prompt text

    kinds = {e.kind for e in events}
    assert {"handoff", "tool", "approval", "apply", "token"} <= kinds, kinds
    names = [(s.agent, s.kind, s.name) for s in steps]
    assert ("researcher", "tool", "diagnose") in names and ("fixer", "tool", "fix_plan") in names
    assert ("apply", "apply", "fix_apply") in names
    assert any(s.tokens_in > 0 for s in steps if s.kind == "model")
    audit = AuditLog(rt.store).entries(plan_id=reply.plan["plan_id"])
    assert [e.event for e in audit].count("applied") == 1
    assert next(e for e in audit if e.event == "approved").approver == "bob (test) via elicitation"


async def test_reject_through_the_real_client(api, namespace, settings, llm, recorder):
    BAD_PROBE.build(api, namespace)
    before = deployment(api, namespace)
    llm.respond = fixing_team(namespace)
    rt = Runtime(with_model(settings, llm.base_url))
    try:
        async with Team.open(rt, sinks=[recorder]) as team:
            reply = await team.ask(f"fix web in {namespace}", user=ALICE)
            done = await team.decide(reply.approval.id, approve=False, decider=BOB, reason="change freeze")
    finally:
        rt.close()
    assert done.outcome["status"] == "rejected", done.answer
    assert content(deployment(api, namespace)) == content(before)
    events = [(e.event, e.approver, e.result) for e in AuditLog(rt.store).entries(plan_id=reply.plan["plan_id"])]
    assert events[0] == ("rejected", "bob (test)", "rejected by bob (test): change freeze"), events
    assert "applied" not in {e[0] for e in events}


CHILD = """
import asyncio, json, sys
from agents.api import Team
from errors import Conflict
from runtime import Principal, Runtime
from settings import Settings

async def main():
    rt = Runtime(Settings())
    async with Team.open(rt, sinks=[]) as team:
        reply = await team.ask(sys.argv[1], user=Principal("alice (child)", frozenset({"read", "write"}), "agent"))
    rt.close()
    print(json.dumps({"thread": reply.thread_id, "approval": reply.approval.id if reply.approval else None,
                      "status": reply.status}))

asyncio.run(main())
"""


async def test_restart_between_interrupt_and_approval_applies_exactly_once(
    api, namespace, settings, llm, recorder, tmp_path
):
    BAD_PROBE.build(api, namespace)
    llm.respond = fixing_team(namespace, BAD_PROBE.event_text)
    chosen = with_model(settings, llm.base_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDPILOT_")} | {
        "CLOUDPILOT_K8S__KUBECONFIG": str(chosen.k8s.kubeconfig),
        "CLOUDPILOT_K8S__CACHE_TTL_SECONDS": "0",
        "CLOUDPILOT_STORE__PATH": str(chosen.store.path),
        "CLOUDPILOT_SAFETY__ALLOW_WRITE": "true",
        "CLOUDPILOT_AGENTS__CHECKPOINT_PATH": str(chosen.agents.checkpoint_path),
        "CLOUDPILOT_NOTIFY__LOG": "false",
        "CLOUDPILOT_LLM__BASE_URL": llm.base_url,
        "CLOUDPILOT_LLM__MODEL": "scripted",
        "CLOUDPILOT_LLM__API_KEY": API_KEY,
    }
    child = subprocess.run(
        [sys.executable, "-c", CHILD, f"fix web in {namespace}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    first = json.loads(child.stdout.strip().splitlines()[-1])
    assert first["status"] == "awaiting_approval" and first["approval"], first  # the first process has exited

    rt = Runtime(chosen)  # a new process's view: new store and checkpoint connections
    try:
        async with Team.open(rt, sinks=[recorder]) as team:
            assert [a.id for a in team.pending()] == [first["approval"]]
            with kubelet(api, namespace, "ready"):
                done = await team.decide(first["approval"], approve=True, decider=BOB)
            assert done.thread_id == first["thread"] and done.outcome["status"] == "verified", done.answer
            with pytest.raises(Conflict, match="already approved"):
                await team.decide(first["approval"], approve=True, decider=BOB)
    finally:
        rt.close()
    plan = done.plan["plan_id"]
    applied = [e for e in AuditLog(rt.store).entries(plan_id=plan) if e.event == "applied"]
    assert len(applied) == 1
    assert BAD_PROBE.fixed(deployment(api, namespace))


async def test_a_decision_claimed_before_a_crash_resumes_once(api, namespace, team, runtime):
    """The process died after recording the decision but before the thread resumed: deciding again resumes it
    with the recorded decision, once; a third call is refused."""
    BAD_PROBE.build(api, namespace)
    async with team() as t:
        reply = await t.autofix(namespace, deployment="web", user=ALICE)
        assert t.crew.approvals.claim(reply.approval.id, True, "bob (test)", "ok")  # ... and then the crash
        with kubelet(api, namespace, "ready"):
            done = await t.decide(reply.approval.id, approve=True, decider=BOB)
        assert done.outcome["status"] == "verified", done.answer
        with pytest.raises(Conflict, match="already approved"):
            await t.decide(reply.approval.id, approve=True, decider=BOB)
    applied = [e for e in AuditLog(runtime.store).entries(plan_id=reply.plan["plan_id"]) if e.event == "applied"]
    assert len(applied) == 1


async def test_coder_analyses_with_the_engines_and_the_sandbox(settings, llm):
    """Supervisor → coder: a forecast through the engine's tool, then a small calculation in the sandbox."""
    from tests.agents.brain import tool_results
    from tests.llm.server import Call, Text, ToolCalls

    series = [100 + (i % 24) * 5 for i in range(24 * 7)]

    def respond(request):
        who, results = role(request), tool_results(request)
        if who == "supervisor":
            if "Report from the coder" in str(request["messages"]):
                return Text("Analysis: " + str(request["messages"][-1]["content"])[-400:])
            return ToolCalls([Call("transfer_to_coder", {"task": "How high will load go tomorrow?"})])
        if who == "coder" and not results:
            return ToolCalls(
                [Call("forecast_series", {"values": series, "step_seconds": 3600, "horizon_minutes": 1440})]
            )
        if who == "coder" and len(results) == 1:  # a call with the wrong argument name first
            return ToolCalls([Call("python_sandbox", {"source": "print(1)"})])
        if who == "coder" and len(results) == 2:
            assert "Invalid arguments for python_sandbox: code" in results[-1], results[-1]
            code = "import numpy as np, pandas as pd\nprint('peak', int(np.max(pd.Series(DATA['v']))))"
            return ToolCalls([Call("python_sandbox", {"code": code, "data": {"v": series}})])
        return Text(f"forecast done; sandbox said: {results[-1][-200:]}")

    llm.respond = respond
    chosen = with_model(settings, llm.base_url)
    chosen = chosen.model_copy(update={"agents": chosen.agents.model_copy(update={"sandbox": True})})
    rt = Runtime(chosen)
    try:
        async with Team.open(rt, sinks=[]) as team:
            reply = await team.ask("how high will load go tomorrow?", user=ALICE)
    finally:
        rt.close()
    coder_tools = next(tools_offered(r) for r in llm.requests if role(r) == "coder")
    assert {"forecast_series", "python_sandbox"} <= coder_tools and not coder_tools & {"fix_plan", "pod_logs"}
    tool_texts = [m["content"] for r in llm.requests for m in r["messages"] if m.get("role") == "tool"]
    assert any("forecast" in t.lower() for t in tool_texts[:1]), tool_texts
    assert reply.status == "answered", reply.answer
    assert "sandbox said" in reply.answer and "peak 215" in reply.answer, reply.answer
