"""Result models and compact text renderings, made for a model with a token budget."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field

from errors import InvalidInput
from guard.bounds import clip as clip  # re-exported: tools cut their own text too
from kube.times import parse_time

T = TypeVar("T")
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class Result(BaseModel):
    """Base of every tool result: structured content plus a compact `render()` for the text channel."""

    model_config = ConfigDict(extra="forbid")

    truncated: bool | None = Field(
        None, description="True when the answer was cut to the server's output limit (see page.continue_token)."
    )

    def render(self) -> str:
        return orjson.dumps(self.model_dump(mode="json", exclude_none=True)).decode()


class Page(BaseModel):
    """Where a listing stands: how many exist, how many are shown, and how to get the next page."""

    total: int
    returned: int
    continue_token: str | None = None

    def footer(self) -> str:
        if self.continue_token:
            return f"(showing {self.returned} of {self.total}; pass continue_token={self.continue_token!r} for more)"
        return f"({self.returned} of {self.total})" if self.returned < self.total else ""


def paginate(rows: list[T], limit: int, continue_token: str | None) -> tuple[list[T], Page]:
    """One page of an in-memory listing; the token is the offset of the next page."""
    start = 0
    if continue_token:
        kind, _, value = continue_token.partition(":")
        if kind != "offset" or not value.isdigit():
            raise InvalidInput(
                f"continue_token {continue_token!r} was not issued by this tool; omit it to start from the first page."
            )
        start = int(value)
    shown = rows[start : start + limit]
    token = f"offset:{start + limit}" if start + limit < len(rows) else None
    return shown, Page(total=len(rows), returned=len(shown), continue_token=token)


ALIGN_MAX_ROWS = 100


def table(headers: list[str], rows: list[list[Any]], align: bool | None = None) -> str:
    """A plain, left-aligned text table, as `kubectl get` prints. Past ALIGN_MAX_ROWS rows the columns are
    separated by one space instead of aligned: padding would be a third of a long listing's tokens."""
    if not rows:
        return "(none)"
    cells = [[_cell(c) for c in row] for row in rows]
    if not (len(cells) <= ALIGN_MAX_ROWS if align is None else align):
        return "\n".join(" ".join(r) for r in [[h.replace(" ", "-") for h in headers], *cells])
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "-"
    return str(value)


def age(timestamp: str | None, now: datetime | None = None) -> str:
    """kubectl-style age: 45s, 12m, 5h, 3d, 2y."""
    then = parse_time(timestamp)
    if then is None:
        return "-"
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    for unit, size in (("y", 365 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size * (2 if unit != "m" else 1):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def render_object(obj: Any, output: str) -> str:
    """YAML or JSON text of an (already redacted) object."""
    if output == "json":
        return orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode()
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def select_fields(obj: dict[str, Any], paths: list[str]) -> dict[str, Any]:
    """Keep only the dotted `paths` of `obj` (plus its name and namespace)."""
    out: dict[str, Any] = {}
    for path in ["metadata.name", "metadata.namespace", *paths]:
        node: Any = obj
        keys = path.split(".")
        for k in keys:
            node = node.get(k) if isinstance(node, dict) else None
            if node is None:
                break
        if node is None:
            continue
        cur = out
        for k in keys[:-1]:
            cur = cur.setdefault(k, {})
        cur[keys[-1]] = node
    return out


def strip_managed(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    return obj
