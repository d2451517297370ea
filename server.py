"""CloudPilot's MCP server: registers the tool catalogue and serves it over stdio or streamable HTTP.

python server.py                              # stdio, current kubeconfig context, read-only
python server.py --transport http --port 8000 # streamable HTTP at http://127.0.0.1:8000/mcp
python server.py --allow-write                # also list the mutating tools

Over HTTP the same app also answers /healthz, /readyz and /metrics, and drains on SIGTERM (ops/).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import anyio
from mcp.server.fastmcp import Context, FastMCP
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from mcp.types import Tool as MCPTool
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request

import cli
import prompts
import watch.service as watch
from agents.mcp import agent_tools, close_team
from engines.incidents.policy import Policy
from errors import CloudPilotError, NotAllowed
from guard import access, auth
from guard.pipeline import Pipeline
from ops import logs
from ops.http import Operations, exit_normally_after_drain
from ops.instrument import MeteredCache, ToolCall, metered
from ops.metrics import METRICS, Metrics
from runtime import LOCAL, Principal, Runtime, approval_methods, bind, current
from runtime import principal as calling_principal
from settings import ServerSettings, Settings, load_settings
from tools.catalogue import ToolSpec, enabled_tools
from watch.pipeline import policy_from_settings

try:
    __version__ = version("cloudpilot")
except PackageNotFoundError:  # running from a checkout that was not installed
    __version__ = "0.0.0+checkout"

logger = logging.getLogger("cloudpilot")

INSTRUCTIONS = """CloudPilot: Kubernetes and Istio operations. Start broad (cluster_overview, pods_list with
problems_only, workloads_list), then narrow (pod_get, resource_describe, pod_logs, events_list). Every
cluster-facing tool takes an optional `cluster`; clusters_list shows the choices. Results are compact and
paged: pass continue_token for more. Secrets are never shown. When writes are on, every change is a plan first
(fix_plan from diagnosis, or scale/set_image/...): show its diff to the user, then fix_apply with their confirmation."""


def build_server(
    settings: Settings | None = None, runtime: Runtime | None = None, metrics: Metrics | None = None
) -> FastMCP:
    """An MCP server exposing the tools these settings enable (read-only unless writes are switched on), counted
    in `metrics` (default: the process's `ops.metrics.METRICS`)."""
    settings = settings or Settings()
    runtime = runtime or Runtime(settings)
    metrics = metrics or METRICS
    metrics.build.info({"version": __version__})
    if not isinstance(runtime.cache, MeteredCache):  # hit and miss counts of the snapshots tools share
        runtime.cache = MeteredCache(metrics, runtime.cache)

    @asynccontextmanager
    async def lifespan(served: FastMCP) -> AsyncIterator[None]:
        """The SDK runs this around every MCP session: over stdio the process's one session; over HTTP each
        client's session, or each request when stateless. Only the former closes the runtime here; over HTTP the
        app's own lifespan closes it once, when the server stops (CloudPilotMCP.streamable_http_app), so one
        session's end never drops the cluster connections and the team's database under the others."""
        try:
            yield
        finally:
            if not getattr(served, "serves_http", False):
                await close_runtime(runtime)

    mcp = CloudPilotMCP(
        "cloudpilot",
        instructions=INSTRUCTIONS,
        host=settings.server.host,
        port=settings.server.port,
        lifespan=lifespan,
        log_level=settings.log_level,
        stateless_http=settings.server.stateless_http,  # any replica answers any request (no session to find)
        json_response=settings.server.json_response,
        # Host/Origin checks on every bind; bearer tokens once the store holds one (guard/auth.py)
        **auth.fastmcp_options(settings, runtime.store if settings.store.url or settings.store.path.exists() else None),
    )
    specs = enabled_tools(settings) + agent_tools(settings)
    for spec in specs:
        _register(mcp, spec, runtime)
    mcp.pipeline = Pipeline(runtime, [metered(s) for s in specs])  # metered: notes the error type of a failure
    mcp.specs = {s.name: s for s in specs}
    mcp.metrics = metrics
    mcp.ops = Operations(runtime, metrics)
    mcp._mcp_server.version = __version__

    @mcp.prompt(name="triage_namespace", description="Find what is wrong in a namespace, read-only.")
    def triage_namespace(namespace: str, cluster: str | None = None) -> str:
        return prompts.load("triage").format(
            namespace=namespace, cluster_clause=f" of cluster `{cluster}`" if cluster else ""
        )

    return mcp


class CloudPilotMCP(FastMCP):
    """FastMCP whose tools/list and tools/call go through CloudPilot's guarded pipeline (guard/pipeline.py)."""

    pipeline: Pipeline
    specs: dict[str, ToolSpec]
    metrics: Metrics
    ops: Operations

    serves_http = False  # set by streamable_http_app: the app, not each MCP session, then closes the runtime

    def streamable_http_app(self) -> Starlette:
        """FastMCP's app plus /healthz, /readyz, /metrics and the drain on SIGTERM (ops/http.py); the runtime is
        closed when the app stops."""
        app = super().streamable_http_app()
        self.ops.install(app, mcp_path=self.settings.streamable_http_path, auth=self.settings.auth)
        self.serves_http = True
        inner = app.router.lifespan_context
        runtime = self.pipeline.runtime

        @asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[Any]:
            try:
                async with inner(app) as state:
                    yield state
            finally:
                await close_runtime(runtime)

        app.router.lifespan_context = lifespan
        return app

    def principal(self) -> Principal:
        """The caller of the request in progress, narrowed by the per-identity policy (guard/access.py)."""
        return _principal(self.get_context(), self.pipeline.runtime.settings.server)

    async def list_tools(self) -> list[MCPTool]:
        allowed = {s.name for s in self.pipeline.visible(self.principal())}
        return [t for t in await super().list_tools() if t.name in allowed]

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> CallToolResult:  # type: ignore[override]
        ctx = self.get_context()

        async def progress(done: float, total: float | None, message: str | None) -> None:
            await ctx.report_progress(done, total, message)

        principal = self.principal()
        call = ToolCall(self.metrics, name, self.specs, principal)
        with logs.context(principal=principal.name, tool=call.tool), call.measure():
            answer = await self.pipeline.call(
                name,
                arguments,
                principal=principal,
                client=_client_of(ctx),
                confirm=_no_elicitation if self.settings.stateless_http else _elicitation(ctx),
                progress=progress,
            )
            call.done(answer.is_error)
        return CallToolResult(
            content=[TextContent(type="text", text=answer.text)],
            structuredContent=answer.structured,
            isError=answer.is_error,
        )


def _register(mcp: FastMCP, spec: ToolSpec, runtime: Runtime) -> None:
    """Declare a tool's name, description, annotations and schemas to MCP; calls never reach `spec.fn` directly
    (CloudPilotMCP.call_tool routes them through the pipeline)."""
    mcp.add_tool(
        bind(spec, runtime),
        name=spec.name,
        title=spec.title,
        description=spec.description,
        annotations=ToolAnnotations(title=spec.title, **spec.hints),
        structured_output=True,
    )
    # Every conversation pays for the schemas: drop pydantic's per-field "title" (it repeats the name).
    registered = mcp._tool_manager.get_tool(spec.name)
    if registered is not None:
        registered.parameters = {**_untitled(registered.parameters), "additionalProperties": False}
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


def _principal(ctx: Context, server: ServerSettings) -> Principal:  # type: ignore[type-arg]
    """The authenticated caller: the HTTP token's identity, else the local user who started the server (stdio)."""
    try:
        request = ctx.request_context.request
    except ValueError:  # outside a request (tools/list from an in-memory client)
        request = None
    if request is None:
        return access.apply(server, replace(LOCAL, transport="stdio"), ["local"])
    found = auth.principal_of(ctx, server)
    if found is not None:
        return found
    unauthenticated = replace(LOCAL, name=f"{LOCAL.name} (unauthenticated HTTP)", transport="http")
    return access.apply(server, unauthenticated, ["local"])


class Approval(BaseModel):
    """What a user answers when CloudPilot asks to apply a plan."""

    approve: bool = Field(description="Apply the plan shown?")


def _client_of(ctx: Context) -> str:  # type: ignore[type-arg]
    """How the client names itself (unverified): its MCP clientInfo, else (a stateless server never sees the
    initialize of the client's session) its HTTP User-Agent."""
    params = ctx.session.client_params
    info = params.clientInfo if params else None
    if info:
        return f"mcp:{info.name[:60]} {info.version[:20]}"
    try:
        request = ctx.request_context.request
    except ValueError:  # outside a request
        request = None
    agent = request.headers.get("user-agent") if isinstance(request, Request) else None
    return f"http:{agent[:80]}" if agent else "mcp:unknown client"


def _elicitation(ctx: Context) -> Callable[[str], Awaitable[bool | None]] | None:  # type: ignore[type-arg]
    """Ask the user through MCP elicitation, when the client declared it can."""
    params = ctx.session.client_params
    if not params or not params.capabilities.elicitation:
        return None

    async def ask(message: str) -> bool | None:
        answer = await ctx.elicit(message, schema=Approval)
        return answer.action == "accept" and bool(answer.data and answer.data.approve)

    return ask


async def _no_elicitation(message: str) -> bool | None:
    """A stateless server's answer to "ask the user": it cannot (the question and its answer would travel in
    requests that may reach different replicas, and no client capabilities are known), so the call says so at
    once, unless the confirm argument may still approve (fix.approval), rather than waiting for an answer."""
    runtime = current()
    if "confirm" in approval_methods(runtime.settings, calling_principal().transport):
        return None
    raise NotAllowed(
        "This server keeps no MCP session (server.stateless_http), so it cannot ask you to approve through your "
        "client (MCP elicitation); nothing was applied.",
        hint="Approve outside the MCP client: an operator's pre-approval policy (fix.auto_approve) applies matching "
        "plans; the agent team's plans (agents_autofix) are approved with `cloudpilot approvals approve ID` or a "
        "chat bot's Approve button. Or use a server with server.stateless_http off.",
    )


async def close_runtime(runtime: Runtime) -> None:
    """Close the team's checkpoint database and the cluster connections; a cancelled server still does."""
    with anyio.CancelScope(shield=True):
        await close_team(runtime)
    runtime.close()


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
    p.add_argument(
        "--insecure-no-auth",
        action="store_true",
        default=None,
        help="serve HTTP on a non-loopback address with no bearer token configured (never in production)",
    )
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
    put("server", "insecure_no_auth", args.insecure_no_auth)
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
    logs.configure(settings.log_level, settings.server.log_format)  # masked, text or JSON, uvicorn's too
    runtime = Runtime(settings)
    policy = None
    if settings.watch.in_server:
        try:  # a policy that does not hold stops the start, not the pipeline later
            policy = policy_from_settings(runtime)
        except CloudPilotError as e:
            sys.exit(f"cloudpilot: {e}")
    server = build_server(settings, runtime)
    if settings.server.transport == "http":
        try:
            warning = auth.check_binding(settings, tokens_configured=server.settings.auth is not None)
        except auth.BindRefused as e:
            sys.exit(f"cloudpilot: {e}")
        if warning:
            logger.warning(warning)
        logger.info("HTTP bearer tokens %s", "required" if server.settings.auth else "off (no token in the store)")
    logger.info(
        "serving %d tools over %s (writes %s)",
        len(enabled_tools(settings)),
        settings.server.transport,
        "on" if settings.safety.allow_write else "off",
    )
    anyio.run(serve, server, runtime, policy)


async def serve(server: FastMCP, runtime: Runtime, policy: Policy | None = None) -> None:
    """The MCP transport, and beside it, once per process, the event pipeline when `watch.in_server` is on (the
    server's own lifespan runs once per MCP session over HTTP), with the `policy` checked at start.

    Over HTTP, SIGTERM drains: no new connections, tool calls in flight finish (at most
    `server.shutdown_grace_seconds`), then the process exits with status 0."""
    async with anyio.create_task_group() as tg:
        if runtime.settings.watch.in_server:
            tg.start_soon(_watch, runtime, policy)
        if runtime.settings.server.transport == "stdio":
            await server.run_stdio_async()
        elif isinstance(server, CloudPilotMCP):
            server.ops.arm(runtime.settings.server.shutdown_grace_seconds)
            with exit_normally_after_drain(server.ops):
                await server.run_streamable_http_async()
            logger.info("stopped")
        else:
            await server.run_streamable_http_async()
        tg.cancel_scope.cancel()


async def _watch(runtime: Runtime, policy: Policy | None) -> None:
    try:
        await watch.serve(runtime, policy)
    except Exception:  # the tools go on serving without it
        logger.exception("the event pipeline (watch.in_server) stopped")


if __name__ == "__main__":
    main()
