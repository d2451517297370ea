"""The catalogue as LangChain tools: the very functions the MCP server registers, bound to one runtime.

Each tool answers the model with the compact text rendering and keeps the structured result as the
ToolMessage artifact, exactly as MCP clients get text plus structured content.
"""

from __future__ import annotations

from typing import Any

from langchain_core.tools import BaseTool, StructuredTool

from errors import CloudPilotError
from runtime import Runtime, bind
from tools.catalogue import ToolSpec, enabled_tools
from tools.results import Result, clip


def langchain_tools(runtime: Runtime) -> list[BaseTool]:
    """Every tool the runtime's settings enable, as LangChain tools (for `bind_tools` / `ToolNode`)."""
    return [as_langchain_tool(spec, runtime) for spec in enabled_tools(runtime.settings)]


def as_langchain_tool(spec: ToolSpec, runtime: Runtime) -> BaseTool:
    bound = bind(spec, runtime)
    max_chars = runtime.settings.output.max_chars

    async def run(**kwargs: Any) -> tuple[str, Any]:
        try:
            result = await bound(**kwargs)
        except CloudPilotError as e:  # the model reads the error and can act on it
            return f"Error: {e}", None
        text = result.render() if isinstance(result, Result) else str(result)
        return clip(text, max_chars), result

    run.__signature__ = bound.__signature__  # type: ignore[attr-defined]
    run.__annotations__ = bound.__annotations__
    run.__name__ = spec.name
    run.__doc__ = spec.description
    return StructuredTool.from_function(
        coroutine=run,
        name=spec.name,
        description=spec.description,
        response_format="content_and_artifact",
        metadata=spec.hints,
    )
