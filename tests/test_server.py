"""The MCP server end to end: in memory, over a real stdio subprocess, over streamable HTTP, and through
the MCP Inspector CLI (a client nobody here wrote)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.memory import create_connected_server_and_client_session

from server import build_server
from tests.cluster import states
from tests.serving import free_port

REPO = Path(__file__).resolve().parents[1]
READ_TOOLS = {
    "clusters_list",
    "cluster_info",
    "cluster_overview",
    "namespaces_detail",
    "nodes_detail",
    "pods_list",
    "pod_get",
    "pod_logs",
    "api_resources",
    "resources_list",
    "resource_get",
    "resource_describe",
    "events_list",
    "workloads_list",
    "rollout_status",
    "rollout_history",
    "resource_usage",
    "fleet_overview",
    "fleet_problem_pods",
}


def core_only(settings, **safety):
    return settings.model_copy(
        update={
            "server": settings.server.model_copy(update={"toolsets": ["core"]}),
            "safety": settings.safety.model_copy(update=safety),
        }
    )


async def test_read_only_server_lists_no_mutating_tool(settings):
    async with create_connected_server_and_client_session(build_server(core_only(settings))) as client:
        tools = (await client.list_tools()).tools
    assert {t.name for t in tools} == READ_TOOLS
    for t in tools:
        assert t.annotations.readOnlyHint is True and t.annotations.destructiveHint is False, t.name
        assert t.description and t.outputSchema, t.name


async def test_write_switch_lists_the_mutating_tools(settings):
    read_only = {t.name for t in (await _tools(settings))}
    writing = {t.name: t for t in await _tools(settings, allow_write=True)}
    assert "scale" not in read_only and "fix_apply" not in read_only
    assert {"scale", "fix_plan", "fix_apply"} <= set(writing) and "pod_delete" not in writing
    assert writing["scale"].annotations.readOnlyHint is False


async def _tools(settings, **safety):
    server = build_server(settings.model_copy(update={"safety": settings.safety.model_copy(update=safety)}))
    async with create_connected_server_and_client_session(server) as client:
        return (await client.list_tools()).tools


async def test_tool_call_returns_compact_text_and_structured_content(settings, cluster, namespace):
    states.make_pod(cluster.core, namespace, "crash")
    states.set_pod_status(cluster.core, namespace, "crash", containers=[states.crashloop()])
    async with create_connected_server_and_client_session(build_server(settings)) as client:
        result = await client.call_tool("pods_list", {"namespace": namespace})
    assert not result.isError
    assert result.structuredContent["pods"][0]["status"] == "CrashLoopBackOff"
    text = result.content[0].text
    assert text.startswith(f"1 pods in {namespace}: CrashLoopBackOff 1") and "{" not in text


async def test_errors_come_back_as_tool_errors_a_model_can_act_on(settings, namespace):
    async with create_connected_server_and_client_session(build_server(settings)) as client:
        missing = await client.call_tool("pod_get", {"name": "ghost", "namespace": namespace})
        invalid = await client.call_tool("pods_list", {"label_selector": "a=(b"})
    assert missing.isError and f'pods "ghost" in namespace "{namespace}"' in missing.content[0].text
    assert invalid.isError and "key=value" in invalid.content[0].text


def _env(cluster, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "CLOUDPILOT_STORE__PATH": str(tmp_path / "db.sqlite"),
        "CLOUDPILOT_SERVER__TOOLSETS": '["core"]',
    }


async def test_stdio_subprocess_with_the_sdk_client(cluster, tmp_path):
    params = StdioServerParameters(
        command=sys.executable, args=[str(REPO / "server.py")], env=_env(cluster, tmp_path), cwd=str(REPO)
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        names = {t.name for t in (await client.list_tools()).tools}
        info = await client.call_tool("cluster_info", {})
    assert names == READ_TOOLS
    assert not info.isError and info.structuredContent["nodes_total"] >= 3


async def test_streamable_http_on_loopback(cluster, tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "server.py"), "--transport", "http", "--host", "127.0.0.1", "--port", str(port)],
        env=_env(cluster, tmp_path),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        states.wait_for(lambda: _accepts(port) or proc.poll() is not None, timeout=30, what="the HTTP server")
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        async with (
            streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write, _),
            ClientSession(read, write) as client,
        ):
            await client.initialize()
            overview = await client.call_tool("cluster_overview", {})
        assert not overview.isError and overview.structuredContent["nodes"]["total"] >= 3
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def inspector() -> str:
    """The MCP Inspector CLI installed by .ci/run (or CLOUDPILOT_INSPECTOR)."""
    found = os.environ.get("CLOUDPILOT_INSPECTOR") or str(
        Path.home() / ".cache" / "cloudpilot" / "inspector" / "node_modules" / ".bin" / "mcp-inspector"
    )
    if not Path(found).exists():
        if os.environ.get("CI"):
            pytest.fail(f"MCP Inspector CLI not found at {found}: .ci/run installs it")
        pytest.skip(
            "MCP Inspector CLI not installed (npm install --prefix ~/.cache/cloudpilot/inspector "
            "@modelcontextprotocol/inspector@2.12.0)"
        )
    return found


def test_mcp_inspector_cli_lists_tools_and_calls_the_overview(cluster, tmp_path):
    """Driven by a Claude Desktop config file, shaped as the README shows it."""
    cli = inspector()
    config = tmp_path / "claude_desktop_config.json"
    server_env = {k: v for k, v in _env(cluster, tmp_path).items() if k == "KUBECONFIG" or k.startswith("CLOUDPILOT_")}
    config.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "cloudpilot": {"command": sys.executable, "args": [str(REPO / "server.py")], "env": server_env}
                }
            }
        )
    )
    base = [cli, "--cli", "--config", str(config), "--server", "cloudpilot"]
    env = {k: v for k, v in os.environ.items() if k != "MCP_CATALOG_PATH"}
    listed = subprocess.run(
        [*base, "--method", "tools/list"], env=env, cwd=REPO, capture_output=True, text=True, timeout=90
    )
    assert listed.returncode == 0, listed.stderr
    assert {t["name"] for t in json.loads(listed.stdout)["tools"]} == READ_TOOLS
    called = subprocess.run(
        [*base, "--method", "tools/call", "--tool-name", "cluster_overview", "--tool-arg", "force_refresh=true"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert called.returncode == 0, called.stderr
    payload = json.loads(called.stdout)
    assert payload["structuredContent"]["nodes"]["total"] >= 3 and "nodes:" in payload["content"][0]["text"]


def test_node_is_available_for_the_inspector():
    assert shutil.which("node"), "Node.js is needed by the MCP Inspector CLI"
