"""The tool catalogue: every tool is declared once, as a typed async function, with `@tool`.

`server.py` registers the enabled part of the catalogue with MCP; `agents/` binds the very same functions
as LangChain tools. Registration returns the function unchanged, so it stays callable and testable alone.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from settings import Settings

Access = Literal["read", "write", "destructive"]
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


@dataclass(frozen=True)
class ToolSpec:
    """A catalogue entry: the function plus what a client must know before calling it."""

    fn: Callable[..., Awaitable[Any]]
    name: str
    toolset: str
    access: Access
    idempotent: bool
    title: str

    @property
    def description(self) -> str:
        return inspect.cleandoc(self.fn.__doc__ or "")

    @property
    def hints(self) -> dict[str, bool]:
        """MCP tool annotations, as plain data."""
        return {
            "readOnlyHint": self.access == "read",
            "destructiveHint": self.access == "destructive",
            "idempotentHint": self.idempotent,
            "openWorldHint": True,
        }


CATALOGUE: dict[str, ToolSpec] = {}

# Every module that declares tools. Importing them fills CATALOGUE.
TOOL_MODULES: tuple[str, ...] = (
    "tools.clusters",
    "tools.overview",
    "tools.pods",
    "tools.resources",
    "tools.events",
    "tools.workloads",
    "tools.diagnose",
    "tools.istio",
    "tools.rca",
    "tools.rca_files",
    "tools.forecast",
    "tools.fix",
    "tools.mutations",
    "tools.runbooks",
    "tools.incidents",
    "tools.fleet",
)


def tool(
    toolset: str, *, access: Access = "read", idempotent: bool | None = None, title: str | None = None
) -> Callable[[F], F]:
    """Add the decorated async function to the catalogue under its own name."""

    def register(fn: F) -> F:
        is_async = inspect.iscoroutinefunction(fn)  # a plain bool: no type narrowing of fn
        if not is_async:
            raise TypeError(f"tool {fn.__name__} must be an async function")
        if not fn.__doc__:
            raise TypeError(f"tool {fn.__name__} needs a docstring: it is the model's description")
        if fn.__name__ in CATALOGUE:
            raise ValueError(f"tool {fn.__name__} is declared twice")
        CATALOGUE[fn.__name__] = ToolSpec(
            fn=fn,
            name=fn.__name__,
            toolset=toolset,
            access=access,
            idempotent=(access == "read") if idempotent is None else idempotent,
            title=title or fn.__name__.replace("_", " ").capitalize(),
        )
        return fn

    return register


def load_all() -> dict[str, ToolSpec]:
    """Import every tool module; return the full catalogue."""
    for module in TOOL_MODULES:
        importlib.import_module(module)
    # only the listed modules: a tool module imported from elsewhere (a test) does not join the catalogue
    return {name: spec for name, spec in CATALOGUE.items() if spec.fn.__module__ in TOOL_MODULES}


def enabled_tools(settings: Settings) -> list[ToolSpec]:
    """The tools a server with these settings exposes: its toolsets, and writes only when switched on."""
    safety = settings.safety
    allowed: set[str] = {"read"}
    if safety.allow_write:
        allowed.add("write")
        if safety.allow_destructive:
            allowed.add("destructive")
    wanted = set(settings.server.toolsets)
    return [s for s in load_all().values() if s.toolset in wanted and s.access in allowed]
