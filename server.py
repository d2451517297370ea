"""CloudPilot's MCP server: registers the tool catalogue and serves it over stdio or streamable HTTP.

python server.py                              # stdio, current kubeconfig context, read-only
python server.py --transport http --port 8000 # streamable HTTP at http://127.0.0.1:8000/mcp
python server.py --allow-write                # also list the mutating tools
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from mcp.server.fastmcp import Context, FastMCP
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

import cli
import prompts
from errors import CloudPilotError
from runtime import Runtime, bind, caller, progress_to
from settings import Settings, load_settings
from tools.catalogue import ToolSpec, enabled_tools
from tools.results import Result, clip

logger = logging.getLogger("cloudpilot")

INSTRUCTIONS = """CloudPilot: Kubernetes and Istio operations. Start broad (cluster_overview, pods_list with
problems_only, workloads_list), then narrow (pod_get, resource_describe, pod_logs, events_list). Every
cluster-facing tool takes an optional `cluster`; clusters_list shows the choices. Results are compact and
paged: pass continue_token for more. Secrets are never shown. When writes are on, every change is a plan first
(fix_plan from diagnosis, or scale/set_image/...): show its diff to the user, then fix_apply with their confirmation."""


def build_server(settings: Settings | None = None, runtime: Runtime | None = None) -> FastMCP:
    """An MCP server exposing the tools these settings enable (read-only unless writes are switched on)."""
    settings = settings or Settings()
    runtime = runtime or Runtime(settings)

    @asynccontextmanager
    async def lifespan(_: FastMCP) -> AsyncIterator[None]:
        try:
            yield
        finally:
            runtime.close()

    mcp = FastMCP(
        "cloudpilot",
        instructions=INSTRUCTIONS,
        host=settings.server.host,
        port=settings.server.port,
        lifespan=lifespan,
        log_level=settings.log_level,
    )
    for spec in enabled_tools(settings):
        _add(mcp, spec, runtime)

    @mcp.prompt(name="triage_namespace", description="Find what is wrong in a namespace, read-only.")
    def triage_namespace(namespace: str, cluster: str | None = None) -> str:
        return prompts.load("triage").format(
            namespace=namespace, cluster_clause=f" of cluster `{cluster}`" if cluster else ""
        )

    return mcp


def _add(mcp: FastMCP, spec: ToolSpec, runtime: Runtime) -> None:
    mcp.add_tool(
        mcp_tool(spec, runtime),
        name=spec.name,
        title=spec.title,
        description=spec.description,
        annotations=ToolAnnotations(title=spec.title, **spec.hints),
        structured_output=True,
    )
    # Every conversation pays for the schemas: drop pydantic's per-field "title" (it repeats the name).
    registered = mcp._tool_manager.get_tool(spec.name)
    if registered is not None:
        registered.parameters = _untitled(registered.parameters)
        if registered.fn_metadata.output_schema is not None:
            registered.fn_metadata.output_schema = _untitled(registered.fn_metadata.output_schema)


def _untitled(schema: Any) -> Any:
    if isinstance(schema, dict):
        props = schema.get("properties")
        out = {k: _untitled(v) for k, v in schema.items() if k != "title" or not isinstance(v, str)}
        if isinstance(props, dict):  # a property may itself be named "title"
            out["properties"] = {k: _untitled(v) for k, v in props.items()}
        return out
    if isinstance(schema, list):
        return [_untitled(v) for v in schema]
    return schema


def mcp_tool(spec: ToolSpec, runtime: Runtime) -> Callable[..., Awaitable[CallToolResult]]:
    """Wrap a catalogue function for MCP: text channel = compact rendering, structured channel = the model,
    progress notifications forwarded, and errors logged at this boundary."""
    bound = bind(spec, runtime)
    signature = inspect.signature(bound)
    returns = signature.return_annotation
    max_chars = runtime.settings.output.max_chars

    async def call(ctx: Context, **kwargs: Any) -> CallToolResult:  # type: ignore[type-arg]
        async def progress(done: float, total: float | None, message: str | None) -> None:
            await ctx.report_progress(done, total, message)

        try:
            with progress_to(progress), caller(_client_of(ctx), _elicitation(ctx)):
                result = await bound(**kwargs)
        except CloudPilotError as e:
            logger.info("tool %s refused: %s", spec.name, e)
            raise
        except Exception:
            logger.exception("tool %s failed", spec.name)
            raise
        text = result.render() if isinstance(result, Result) else str(result)
        return CallToolResult(
            content=[TextContent(type="text", text=clip(text, max_chars))],
            structuredContent=result.model_dump(mode="json"),
        )

    params = [
        *signature.parameters.values(),
        inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context),
    ]
    call.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=params, return_annotation=Annotated[CallToolResult, returns]
    )
    call.__annotations__ = {**bound.__annotations__, "ctx": Context, "return": Annotated[CallToolResult, returns]}
    call.__name__ = spec.name
    call.__doc__ = spec.description
    return call


class Approval(BaseModel):
    """What a user answers when CloudPilot asks to apply a plan."""

    approve: bool = Field(description="Apply the plan shown?")


def _client_of(ctx: Context) -> str:  # type: ignore[type-arg]
    params = ctx.session.client_params
    info = params.clientInfo if params else None
    return f"mcp:{info.name} {info.version}" if info else "mcp:unknown client"


def _elicitation(ctx: Context) -> Callable[[str], Awaitable[bool | None]] | None:  # type: ignore[type-arg]
    """Ask the user through MCP elicitation, when the client declared it can."""
    params = ctx.session.client_params
    if not params or not params.capabilities.elicitation:
        return None

    async def ask(message: str) -> bool | None:
        answer = await ctx.elicit(message, schema=Approval)
        return answer.action == "accept" and bool(answer.data and answer.data.approve)

    return ask


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="cloudpilot", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--transport", choices=["stdio", "http"], help="default: stdio")
    p.add_argument("--host", help="HTTP bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTP port (default 8000)")
    p.add_argument("--config", type=Path, help="YAML settings file")
    p.add_argument("--kubeconfig", type=Path, help="kubeconfig file (default $KUBECONFIG, ~/.kube/config)")
    p.add_argument("--context", help="default kubeconfig context")
    p.add_argument("--allow-write", action="store_true", default=None, help="list and allow mutating tools")
    p.add_argument("--allow-destructive", action="store_true", default=None, help="also allow deleting tools")
    p.add_argument("--toolsets", help="comma-separated toolsets to expose (core,istio,diagnose,rca,fix)")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}

    def put(group: str, key: str, value: Any) -> None:
        if value is not None:
            overrides.setdefault(group, {})[key] = value

    put("server", "transport", args.transport)
    put("server", "host", args.host)
    put("server", "port", args.port)
    put("server", "toolsets", args.toolsets.split(",") if args.toolsets else None)
    put("k8s", "kubeconfig", args.kubeconfig)
    put("k8s", "context", args.context)
    put("safety", "allow_write", args.allow_write)
    put("safety", "allow_destructive", args.allow_destructive)
    if args.log_level:
        overrides["log_level"] = args.log_level
    return load_settings(args.config, **overrides)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    code = cli.dispatch(argv)
    if code is not None:
        sys.exit(code)
    args = parse_args(argv)
    try:
        settings = settings_from_args(args)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"cloudpilot: invalid settings: {e}")
    logging.basicConfig(
        stream=sys.stderr, level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    server = build_server(settings)
    logger.info(
        "serving %d tools over %s (writes %s)",
        len(enabled_tools(settings)),
        settings.server.transport,
        "on" if settings.safety.allow_write else "off",
    )
    server.run("stdio" if settings.server.transport == "stdio" else "streamable-http")


if __name__ == "__main__":
    main()
