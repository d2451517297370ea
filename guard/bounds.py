"""Where answers are bounded: text cut to `output.max_chars`, structured content to `output.max_structured_bytes`.

A cut answer says so: the text ends with a note, the structured content carries `truncated: true` and, for
listings paged by offset, a `continue_token` that resumes exactly after the last item kept.
"""

from __future__ import annotations

from typing import Any

import orjson

NOTE = "the answer was larger than the server's output limit; the longest lists were cut"


def clip(text: str, max_chars: int) -> str:
    """Cut text to `max_chars`, saying how much was left out."""
    if len(text) <= max_chars:
        return text
    cut = text.rfind("\n", 0, max_chars)
    cut = cut if cut > max_chars // 2 else max_chars
    return text[:cut] + f"\n… [{len(text) - cut} more characters cut; narrow the query or use limit]"


def size(data: Any) -> int:
    return len(orjson.dumps(data))


def bound(data: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """`data` cut to at most `max_bytes` of JSON by shortening its largest lists and strings; marked truncated."""
    if size(data) <= max_bytes:
        return data
    out = orjson.loads(orjson.dumps(data))  # a private copy to cut
    top_list = _largest_top_list(out)
    for _ in range(64):
        total = size(out)
        if total <= max_bytes:
            break
        target = _largest(out)
        if target is None:
            break
        parent, key, value = target
        if isinstance(value, list):
            keep = max(0, int(len(value) * max_bytes / total * 0.9)) if len(value) > 1 else 0
            parent[key] = value[: min(keep, len(value) - 1)]
        else:
            keep = max(0, min(len(value) - 1, len(value) - (total - max_bytes) - 64))
            parent[key] = value[:keep] + "…[cut]"
    if size(out) > max_bytes:  # pathological shapes: keep only what says why
        out = {}
    out["truncated"] = True
    if top_list is not None:
        _resume(out, data, top_list)
    return out


def _largest(node: Any) -> tuple[Any, Any, Any] | None:
    """The largest cuttable (list with items, or long string) value, as (parent, key, value)."""
    best: tuple[int, tuple[Any, Any, Any] | None] = (256, None)

    def visit(parent: Any, key: Any, value: Any) -> None:
        nonlocal best
        if isinstance(value, list):
            n = size(value)
            if n > best[0] and value:
                best = (n, (parent, key, value))
            for i, v in enumerate(value):
                visit(value, i, v)
        elif isinstance(value, dict):
            for k, v in value.items():
                visit(value, k, v)
        elif isinstance(value, str) and len(value) > best[0]:
            best = (len(value), (parent, key, value))

    for k, v in node.items():
        visit(node, k, v)
    return best[1]


def _largest_top_list(data: dict[str, Any]) -> str | None:
    lists = [(size(v), k) for k, v in data.items() if isinstance(v, list) and v]
    return max(lists)[1] if lists else None


def _resume(out: dict[str, Any], original: dict[str, Any], key: str) -> None:
    """Point an offset-paged listing's continue_token just after the last item kept."""
    page = out.get("page")
    kept, shown = len(out.get(key) or []), len(original.get(key) or [])
    if not isinstance(page, dict) or kept >= shown:
        return
    token = page.get("continue_token")
    end = page.get("total", 0) if token is None else _offset(token)
    if end is None:
        return
    start = end - shown
    page["continue_token"] = f"offset:{start + kept}"
    page["returned"] = kept


def _offset(token: Any) -> int | None:
    kind, _, value = str(token).partition(":")
    return int(value) if kind == "offset" and value.isdigit() else None
