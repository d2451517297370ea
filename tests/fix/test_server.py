"""The fix tools through MCP (in-memory sessions): listed only when writes are on, approval by elicitation
or by a confirm argument, and an audit log that survives a server restart."""

from __future__ import annotations

import pytest
from mcp import types
from mcp.shared.memory import create_connected_server_and_client_session

from server import build_server
from tests.fix.scenarios import deploy, deployment

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]
CHANGE_TOOLS = {
    "fix_plan",
    "fix_apply",
    "scale",
    "rollout_restart",
    "rollout_undo",
    "set_image",
    "set_resources",
    "set_probe",
    "resource_patch",
    "resource_apply",
    "node_cordon",
    "node_uncordon",
}
DELETE_TOOLS = {"pod_delete", "resource_delete"}
READ_TOOLS = {"fix_plan_show", "audit_list", "audit_get"}


def _with(settings, **safety):
    return settings.model_copy(update={"safety": settings.safety.model_copy(update=safety)})


async def _names(settings) -> set[str]:
    async with create_connected_server_and_client_session(build_server(settings)) as client:
        return {t.name for t in (await client.list_tools()).tools}


async def test_read_only_server_does_not_even_list_the_change_tools(settings) -> None:
    names = await _names(_with(settings, allow_write=False, allow_destructive=False))
    assert not names & (CHANGE_TOOLS | DELETE_TOOLS)
    assert names >= READ_TOOLS
    names = await _names(_with(settings, allow_write=True, allow_destructive=False))
    assert names >= CHANGE_TOOLS and not names & DELETE_TOOLS
    assert await _names(settings) >= (CHANGE_TOOLS | DELETE_TOOLS | READ_TOOLS)


async def test_annotations_mark_deletions_destructive(settings) -> None:
    async with create_connected_server_and_client_session(build_server(settings)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert tools["pod_delete"].annotations.destructiveHint is True
    assert tools["scale"].annotations.readOnlyHint is False and tools["scale"].annotations.destructiveHint is False
    assert tools["audit_list"].annotations.readOnlyHint is True


async def _call(client, tool_name: str, **args):
    return await client.call_tool(tool_name, args)


async def test_elicitation_approves_or_declines(api, namespace, settings) -> None:
    deploy(api, namespace, ready=False)
    answers = iter(
        [types.ElicitResult(action="decline"), types.ElicitResult(action="accept", content={"approve": True})]
    )
    asked: list[str] = []

    async def elicit(context, params):
        asked.append(params.message)
        return next(answers)

    info = types.Implementation(name="test-client", version="9.9")
    async with create_connected_server_and_client_session(
        build_server(settings), elicitation_callback=elicit, client_info=info
    ) as client:
        plan = await _call(client, "scale", kind="Deployment", name="web", namespace=namespace, replicas=0)
        plan_id = plan.structuredContent["plan_id"]
        declined = await _call(client, "fix_apply", plan_id=plan_id)
        assert declined.isError and "declined" in declined.content[0].text
        assert deployment(api, namespace)["spec"]["replicas"] == 2
        applied = await _call(client, "fix_apply", plan_id=plan_id, verify_timeout_seconds=30)
        assert not applied.isError, applied.content[0].text
        assert applied.structuredContent["status"] == "verified"
        assert "elicitation" in applied.structuredContent["approved_by"]
    assert len(asked) == 2 and "+  replicas: 0" in asked[0] and "Apply this plan?" in asked[0]
    assert deployment(api, namespace)["spec"]["replicas"] == 0


async def test_audit_log_survives_a_server_restart(api, namespace, settings) -> None:
    deploy(api, namespace, ready=False)
    info = types.Implementation(name="desktop", version="1.0")
    async with create_connected_server_and_client_session(build_server(settings), client_info=info) as client:
        plan = await _call(client, "scale", kind="Deployment", name="web", namespace=namespace, replicas=0)
        plan_id = plan.structuredContent["plan_id"]
        refused = await _call(client, "fix_apply", plan_id=plan_id)
        assert refused.isError and f"confirm='{plan_id}'" in refused.content[0].text
    # a new server process: same settings, same SQLite file
    async with create_connected_server_and_client_session(build_server(settings), client_info=info) as client:
        applied = await _call(client, "fix_apply", plan_id=plan_id, confirm=plan_id, verify_timeout_seconds=30)
        assert applied.structuredContent["status"] == "verified", applied.content[0].text
    async with create_connected_server_and_client_session(build_server(settings)) as client:
        listed = await _call(client, "audit_list", plan_id=plan_id)
    entries = listed.structuredContent["entries"]
    assert [e["event"] for e in entries][::-1] == ["planned", "refused", "approved", "applied", "verified"]
    assert {e["client"] for e in entries} == {"mcp:desktop 1.0"}
    assert all(e["object"] == f"Deployment {namespace}/web" for e in entries)
