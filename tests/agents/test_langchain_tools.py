"""The agents bind the same catalogue functions as LangChain tools."""

from langchain_core.messages import ToolMessage

from agents.tools import langchain_tools
from tools.overview import Overview


async def test_catalogue_loads_as_langchain_tools_and_one_runs(runtime, namespace):
    tools = {t.name: t for t in langchain_tools(runtime)}
    assert {"cluster_overview", "pods_list", "pod_logs"} <= set(tools)
    assert "clusters_add" not in tools  # read-only settings: mutating tools are not offered to agents either
    assert tools["pods_list"].metadata["readOnlyHint"] is True
    assert set(tools["pods_list"].args) >= {"namespace", "label_selector", "problems_only", "cluster"}
    msg = await tools["cluster_overview"].ainvoke(
        {"type": "tool_call", "id": "call-1", "name": "cluster_overview", "args": {}}
    )
    assert isinstance(msg, ToolMessage) and isinstance(msg.artifact, Overview)
    assert msg.content.startswith("cluster admin") and "nodes:" in msg.content
    bad = await tools["pods_list"].ainvoke(
        {"type": "tool_call", "id": "call-2", "name": "pods_list", "args": {"namespace": "Bad_Name"}}
    )
    assert bad.content.startswith("Error: Namespace 'Bad_Name' is invalid")
