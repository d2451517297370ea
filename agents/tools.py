"""The catalogue as LangChain tools: the very functions the MCP server registers, through the same guarded
pipeline (arguments checked, permission checked, answers masked and bounded).

Each tool answers the model with the compact text rendering and keeps the structured (masked) result as the
ToolMessage artifact, exactly as MCP clients get text plus structured content.
"""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool, StructuredTool

from guard.pipeline import Pipeline
from runtime import LOCAL, Principal, Runtime
from tools.catalogue import ToolSpec, enabled_tools


def langchain_tools(runtime: Runtime, principal: Principal = LOCAL, client: str = "agent") -> list[BaseTool]:
    """Every tool the runtime's settings enable and `principal` may use, as LangChain tools."""
    pipeline = Pipeline(runtime, enabled_tools(runtime.settings))
    return [as_langchain_tool(pipeline, spec, principal, client) for spec in pipeline.visible(principal)]


def as_langchain_tool(pipeline: Pipeline, spec: ToolSpec, principal: Principal, client: str) -> BaseTool:
    signature_of = pipeline.function(spec.name)

    async def run(**kwargs: Any) -> tuple[str, Any]:
        answer = await pipeline.call(spec.name, kwargs, principal=principal, client=client)
        return answer.text, answer.result  # errors come back as text the model can act on

    run.__signature__ = signature_of.__signature__  # type: ignore[attr-defined]
    run.__annotations__ = signature_of.__annotations__
    run.__name__ = spec.name
    run.__doc__ = spec.description
    return StructuredTool.from_function(
        coroutine=run,
        name=spec.name,
        description=spec.description,
        response_format="content_and_artifact",
        metadata=spec.hints,
    )
