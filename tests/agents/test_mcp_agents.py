"""The agent team through MCP (toolset `agents`, in-memory sessions): listed only when switched on, progress
while it works, and approvals that a model cannot give itself — only the client's user (elicitation) or, where
the server accepts it, the local user's own call."""

from __future__ import annotations

import pytest
from mcp import types
from mcp.shared.memory import create_connected_server_and_client_session

from server import build_server
from store import AuditLog, Store
from tests.fix.scenarios import SCENARIOS, deployment, kubelet
from tools.fixloop import content

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]
BAD_PROBE = SCENARIOS[0]
AGENT_TOOLS = {"agents_ask", "agents_autofix", "approvals_list", "approval_decide", "thread_trace"}


def _server(settings, **fix):
    return build_server(settings.model_copy(update={"fix": settings.fix.model_copy(update=fix)}))


async def test_the_toolset_is_listed_only_when_switched_on(settings):
    async with create_connected_server_and_client_session(build_server(settings)) as client:
        assert {t.name for t in (await client.list_tools()).tools} >= AGENT_TOOLS
    off = settings.model_copy(
        update={"server": settings.server.model_copy(update={"toolsets": ["core", "diagnose", "fix"]})}
    )
    async with create_connected_server_and_client_session(build_server(off)) as client:
        assert not AGENT_TOOLS & {t.name for t in (await client.list_tools()).tools}
    read_only = settings.model_copy(update={"safety": settings.safety.model_copy(update={"allow_write": False})})
    async with create_connected_server_and_client_session(build_server(read_only)) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert {"agents_ask", "approvals_list", "thread_trace"} <= names and not {
        "agents_autofix",
        "approval_decide",
    } & names


async def test_autofix_then_a_model_cannot_approve_but_the_user_can(api, namespace, settings):
    BAD_PROBE.build(api, namespace)
    before = deployment(api, namespace)
    progress: list[str] = []

    async def on_progress(done, total, message):
        progress.append(message or "")

    # a client that cannot ask its user, on a server that does not take a tool call's word for it
    async with create_connected_server_and_client_session(_server(settings, approval=["elicitation"])) as client:
        started = await client.call_tool(
            "agents_autofix", {"namespace": namespace, "deployment": "web"}, progress_callback=on_progress
        )
        assert not started.isError, started.content[0].text
        approval = started.structuredContent["approval_id"]
        assert started.structuredContent["status"] == "awaiting_approval"
        listed = await client.call_tool("approvals_list", {})
        assert approval in listed.content[0].text
        refused = await client.call_tool("approval_decide", {"approval_id": approval, "approve": True})
        assert refused.isError and "needs the user's own confirmation" in refused.content[0].text
    assert content(deployment(api, namespace)) == content(before)
    assert any("diagnose(" in p for p in progress) and any("approval" in p for p in progress), progress

    asked: list[str] = []

    async def elicit(context, params):
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"approve": True})

    async with create_connected_server_and_client_session(
        _server(settings, approval=["elicitation"]), elicitation_callback=elicit
    ) as client:
        with kubelet(api, namespace, "ready"):
            done = await client.call_tool("approval_decide", {"approval_id": approval, "approve": True})
        assert not done.isError, done.content[0].text
        assert done.structuredContent["outcome"] == "verified"
        trace = await client.call_tool("thread_trace", {"thread_id": done.structuredContent["thread_id"]})
    assert len(asked) == 1 and "--- live" in asked[0] and BAD_PROBE.fixed(deployment(api, namespace))
    assert "fix_plan" in trace.content[0].text and "fix_apply" in trace.content[0].text
    store = Store(settings.store.path)
    try:
        approver = next(e.approver for e in AuditLog(store).entries() if e.event == "approved")
    finally:
        store.close()
    assert approver.startswith("local user") and approver.endswith("via elicitation")


async def test_a_user_who_declines_rejects_and_nothing_is_applied(api, namespace, settings):
    BAD_PROBE.build(api, namespace)
    before = deployment(api, namespace)

    async def decline(context, params):
        return types.ElicitResult(action="decline")

    async with create_connected_server_and_client_session(
        _server(settings, approval=["elicitation"]), elicitation_callback=decline
    ) as client:
        started = await client.call_tool("agents_autofix", {"namespace": namespace, "deployment": "web"})
        approval = started.structuredContent["approval_id"]
        done = await client.call_tool("approval_decide", {"approval_id": approval, "approve": True})
        assert done.structuredContent["outcome"] == "rejected", done.content[0].text
        again = await client.call_tool("approval_decide", {"approval_id": approval, "approve": True})
        assert again.isError and "already rejected" in again.content[0].text
        unknown = await client.call_tool("approval_decide", {"approval_id": "ap-0", "approve": False})
        assert unknown.isError and "no approval 'ap-0'" in unknown.content[0].text
    assert content(deployment(api, namespace)) == content(before)


async def test_agents_ask_without_a_model_explains_how_to_configure_one(settings):
    async with create_connected_server_and_client_session(build_server(settings)) as client:
        answer = await client.call_tool("agents_ask", {"question": "why is checkout slow?"})
    assert not answer.isError and "CLOUDPILOT_LLM__BASE_URL" in answer.content[0].text
