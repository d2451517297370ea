"""Where tool arguments are checked: names, sizes, numbers and types, before anything runs.

Every message names the argument, says what is accepted and quotes at most a short prefix of what was sent,
so a model can correct its call and a hostile caller learns nothing about the server.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from typing import Any, get_args

import orjson
from mcp.server.fastmcp.utilities.func_metadata import FuncMetadata, func_metadata
from pydantic import ValidationError

from errors import InvalidInput, quote
from settings import LimitSettings

MAX_NUMBER = 1e15  # beyond any count, byte size or timestamp a tool takes; 1e308 and 2**64 are mistakes
MAX_DEPTH = 32


def _takes_text(annotation: Any) -> bool:
    """`str`, or a union with `str` in it (`str | None`)."""
    return annotation is str or str in get_args(annotation)


class Arguments:
    """The argument checker of one tool, built once from its signature."""

    def __init__(self, tool: str, fn: Callable[..., Any]) -> None:
        self.tool = tool
        self.meta: FuncMetadata = func_metadata(fn)
        self.names = tuple(self.meta.arg_model.model_fields)
        # Arguments that take text are never JSON-decoded first: an uploaded OTLP JSON document or a time
        # given as "1767225600" must arrive as the string that was sent.
        self.text = {n for n, f in self.meta.arg_model.model_fields.items() if _takes_text(f.annotation)}

    def check(self, arguments: Any, limits: LimitSettings) -> dict[str, Any]:
        """The keyword arguments to call the tool with, or InvalidInput saying what to change."""
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise InvalidInput(f"{self.tool}: arguments must be an object of named arguments, got {quote(arguments)}.")
        self._known(arguments)
        for name, value in arguments.items():
            _scan(name, value, limits.argument_chars, 0)
        size = len(orjson.dumps(arguments, default=str))
        if size > limits.arguments_bytes:
            raise InvalidInput(
                f"{self.tool}: the arguments are {size:,} bytes; the limit is {limits.arguments_bytes:,}.",
                hint="Send less: page with limit/continue_token or narrow the query.",
            )
        try:
            decoded = self.meta.pre_parse_json({k: v for k, v in arguments.items() if k not in self.text})
            parsed = self.meta.arg_model.model_validate({**arguments, **decoded})
        except ValidationError as e:
            raise InvalidInput(self._explain(e), hint=self._usage()) from None
        return parsed.model_dump_one_level()

    def _known(self, arguments: dict[str, Any]) -> None:
        unknown = [k for k in arguments if k not in self.names]
        if not unknown:
            return
        parts = []
        for name in unknown[:5]:
            close = difflib.get_close_matches(str(name), self.names, n=1, cutoff=0.6)
            parts.append(f"{quote(name, 40)}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise InvalidInput(
            f"{self.tool} has no argument {', '.join(parts)}.",
            hint=self._usage(),
        )

    def _usage(self) -> str:
        return f"Valid arguments of {self.tool}: {', '.join(self.names) or 'none'}."

    def _explain(self, error: ValidationError) -> str:
        lines = []
        for item in error.errors(include_url=False)[:5]:
            where = ".".join(str(p) for p in item.get("loc", ()) if p != "__root__") or "arguments"
            message = _plain(item.get("msg", "is invalid"), item.get("type", ""))
            got = item.get("input")
            shown = "" if item.get("type") == "missing" else f" (got {quote(got, 60)})"
            lines.append(f"argument {where!r}: {message}{shown}")
        more = error.error_count() - len(lines)
        if more > 0:
            lines.append(f"and {more} more problem(s)")
        return f"{self.tool}: " + "; ".join(lines) + "."


def _plain(message: str, kind: str) -> str:
    """pydantic's wording without its jargon ('Input should be …' → 'must be …')."""
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a valid field"
    message = message.replace("Input should be", "must be").replace("Value error, ", "")
    return message[:1].lower() + message[1:]


def _scan(path: str, value: Any, max_chars: int, depth: int) -> None:
    """Refuse values no tool can mean: non-finite or astronomically large numbers, huge strings, deep nesting."""
    if depth > MAX_DEPTH:
        raise InvalidInput(f"argument {path!r} is nested deeper than {MAX_DEPTH} levels.")
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(f"argument {path!r} must be a finite number, got {value!r}.")
        if abs(value) > MAX_NUMBER:
            raise InvalidInput(
                f"argument {path!r} is {quote(value, 30)}: numbers beyond {MAX_NUMBER:g} are not accepted.",
                hint="Pass a realistic value (a count, a number of seconds or bytes).",
            )
    elif isinstance(value, str):
        if len(value) > max_chars:
            raise InvalidInput(
                f"argument {path!r} is {len(value):,} characters; the limit is {max_chars:,}.",
                hint="Send less, or narrow the request.",
            )
    elif isinstance(value, dict):
        for k, v in value.items():
            _scan(f"{path}.{k}", v, max_chars, depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _scan(f"{path}[{i}]", v, max_chars, depth + 1)
