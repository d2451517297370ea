"""YAML from callers, parsed with bounds: size, aliases, nesting depth and the size aliases expand to.

The parser's event stream is scanned before anything is constructed, so a "billion laughs" document (a few
hundred bytes whose aliases expand to billions of nodes) is rejected after reading its few events, not after
building what it expands to. Error messages quote at most a short prefix of the input.
"""

from __future__ import annotations

from typing import Any

import yaml

from errors import QUOTE_CHARS, InvalidInput
from settings import LimitSettings

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
EXTRA_NODES = 100_000  # aliases may add at most this many nodes to a document once expanded


def load_all(text: str, limits: LimitSettings, what: str = "manifest", max_bytes: int | None = None) -> list[Any]:
    """The documents of `text`, or InvalidInput naming the bound broken (nothing is expanded before the checks)."""
    cap = limits.manifest_bytes if max_bytes is None else max_bytes
    size = len(text.encode("utf-8", "replace"))
    if size > cap:
        raise InvalidInput(f"The {what} is {size:,} bytes; the limit is {cap:,}.", hint="Send a smaller document.")
    try:
        _scan(text, limits, what)
        return list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as e:
        raise InvalidInput(f"The {what} is not valid YAML: {_explain(e)}.") from None


def _scan(text: str, limits: LimitSettings, what: str) -> None:
    aliases = depth = extra = 0
    stack: list[list[Any]] = []  # per open collection: [anchor, nodes it expands to so far]
    sizes: dict[str, int] = {}  # anchor -> nodes its value expands to
    for event in yaml.parse(text, Loader=_Loader):
        added = 0
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > limits.yaml_aliases:
                raise InvalidInput(
                    f"The {what} uses more than {limits.yaml_aliases} YAML aliases (*name).",
                    hint="Write the repeated parts out instead of referring to anchors.",
                )
            if event.anchor not in sizes:
                raise InvalidInput(f"The {what} has a YAML alias to an unknown anchor or to its own enclosing node.")
            added = sizes[event.anchor]
            extra += added
            if extra > EXTRA_NODES:
                raise InvalidInput(f"The {what}'s YAML aliases expand to more than {EXTRA_NODES:,} extra nodes.")
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > limits.yaml_depth:
                raise InvalidInput(f"The {what} is nested deeper than {limits.yaml_depth} levels.")
            stack.append([event.anchor, 1])
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
            anchor, added = stack.pop()
            if anchor:
                sizes[anchor] = added
        elif isinstance(event, yaml.ScalarEvent):
            added = 1
            if event.anchor:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.DocumentEndEvent):
            sizes.clear()  # anchors do not cross documents
        if added and stack:
            stack[-1][1] += added


def _explain(e: yaml.YAMLError) -> str:
    """The parser's problem and position, without the snippet of input it quotes."""
    problem = str(getattr(e, "problem", None) or getattr(e, "context", None) or type(e).__name__)
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return (problem if len(problem) <= QUOTE_CHARS else problem[:QUOTE_CHARS] + "…") + where
