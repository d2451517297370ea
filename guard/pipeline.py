"""The one path every tool call takes, whoever calls (the MCP server, CloudPilot's agents):

    check arguments → check permission → run the tool → mask → bound → answer

A failure at any step is an answer too: an error message that is masked and bounded like any output, says
what to change, and carries no traceback or internal names. Nothing registers a tool any other way, so no
tool can skip a step.
"""

from __future__ import annotations

import difflib
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import anyio
from pydantic import ValidationError

from errors import CloudPilotError, InvalidInput, NotAllowed, quote
from guard import bounds, mask
from guard.arguments import Arguments
from runtime import Confirm, Principal, Progress, Runtime, bind, caller, progress_to
from tools.catalogue import ToolSpec
from tools.results import Result

logger = logging.getLogger("cloudpilot.calls")

ERROR_CHARS = 2_000
OFF_LOOP_BYTES = 64_000  # answers larger than this are masked in a worker thread, never on the event loop


@dataclass(frozen=True)
class Answer:
    """What a caller gets back: compact text, the same data structured (None for errors), and whether it failed."""

    text: str
    structured: dict[str, Any] | None
    is_error: bool = False
    result: Result | None = None  # the masked result model, for in-process callers (agents)


@dataclass(frozen=True)
class _Entry:
    spec: ToolSpec
    fn: Callable[..., Awaitable[Any]]
    arguments: Arguments


class Pipeline:
    """The guarded tools of one runtime."""

    def __init__(self, runtime: Runtime, specs: Iterable[ToolSpec]) -> None:
        self.runtime = runtime
        self._tools: dict[str, _Entry] = {}
        for spec in specs:
            fn = bind(spec, runtime)
            self._tools[spec.name] = _Entry(spec, fn, Arguments(spec.name, fn))

    @property
    def specs(self) -> list[ToolSpec]:
        return [e.spec for e in self._tools.values()]

    def function(self, name: str) -> Callable[..., Awaitable[Any]]:
        """The tool's bound function, for its signature (callers must still go through `call`)."""
        return self._tools[name].fn

    def visible(self, principal: Principal) -> list[ToolSpec]:
        """The tools this caller may use: a read-only caller is not even shown the write tools."""
        return [e.spec for e in self._tools.values() if principal.allows(e.spec)]

    async def call(
        self,
        name: str,
        arguments: Any,
        *,
        principal: Principal,
        client: str,
        confirm: Confirm | None = None,
        progress: Progress | None = None,
    ) -> Answer:
        try:
            entry = self._entry(name, principal)
            kwargs = entry.arguments.check(arguments, self.runtime.settings.limits)
            with progress_to(progress), caller(client, confirm, principal):
                result = await entry.fn(**kwargs)
            return await self._answer(result)
        except CloudPilotError as e:
            logger.info("tool %s refused for %s: %s", name, principal.name, e)
            return self._error(str(e))
        except Exception:
            reference = secrets.token_hex(4)
            logger.exception("tool %s failed for %s (reference %s)", name, principal.name, reference)
            return self._error(
                f"CloudPilot failed inside {name} (reference {reference}); the server log has the details. "
                "Try again; if it persists, tell an operator the reference."
            )

    def _entry(self, name: str, principal: Principal) -> _Entry:
        entry = self._tools.get(name)
        if entry is not None and principal.may(entry.spec.access) and not principal.allows(entry.spec):
            raise NotAllowed(
                f"{name} is in toolset {entry.spec.toolset!r}, which the access policy does not give {principal.name}.",
                hint="Ask an operator to add the toolset to your rule in server.access_rules.",
            )
        if entry is None or not principal.may(entry.spec.access):
            if entry is not None:
                raise NotAllowed(
                    f"{name} needs {entry.spec.access!r} access; {principal.name} has "
                    f"{', '.join(sorted(principal.scopes)) or 'none'}.",
                    hint="Ask an operator for a token with that scope, or use a read tool.",
                )
            names = [s.name for s in self.visible(principal)]
            close = difflib.get_close_matches(str(name), names, n=1, cutoff=0.6)
            raise InvalidInput(
                f"There is no tool {quote(name, 60)}" + (f"; did you mean {close[0]!r}?" if close else "."),
                hint="tools/list shows the tools this server offers you.",
            )
        return entry

    async def _answer(self, result: Any) -> Answer:
        settings = self.runtime.settings
        if not isinstance(result, Result):
            text = mask.mask_text(bounds.clip(str(result), settings.output.max_chars))
            return Answer(text=text, structured=None)
        data = result.model_dump(mode="json")
        if bounds.size(data) > OFF_LOOP_BYTES:
            shown, structured = await anyio.to_thread.run_sync(self._shape, result, data)
        else:
            shown, structured = self._shape(result, data)
        return Answer(text=shown[0], structured=structured, result=shown[1])

    def _shape(self, result: Result, data: dict[str, Any]) -> tuple[tuple[str, Result], dict[str, Any]]:
        """Mask, render from the masked data, bound: ((text, masked model), structured content)."""
        out = self.runtime.settings.output
        data = bounds.bound(data, out.max_structured_bytes * 4)  # never mask more than a bounded answer needs
        masked = mask.redact(data)
        try:
            model = type(result).model_validate({k: v for k, v in masked.items() if k != "truncated"})
        except ValidationError:  # masking made a field invalid: render the original, then mask its text
            model = result
        text = model.render()
        text = mask.mask_text(text[: out.max_chars + 2_000])
        structured = bounds.bound(masked, out.max_structured_bytes)
        if structured.get("truncated"):
            page = structured.get("page") or {}
            token = page.get("continue_token") if isinstance(page, dict) else None
            more = f" pass continue_token={token!r} for the rest" if token else " narrow the query or use limit"
            text = f"[{bounds.NOTE};{more}]\n" + text
        else:
            structured.pop("truncated", None)
        return (bounds.clip(text, out.max_chars), model), structured

    def _error(self, message: str) -> Answer:
        text = mask.mask_text(message[: ERROR_CHARS * 2])
        return Answer(text="Error: " + bounds.clip(text, ERROR_CHARS), structured=None, is_error=True)
