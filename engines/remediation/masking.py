"""What a planned change may not reveal: the values read tools mask (Secret data, credential-like env values and
annotations), wherever the change moves them.

`redact` masks by place (a Secret's data, an env var named like a password). A change can move a value to an
unmasked place (a JSON-patch `copy` into an annotation, an env var renamed), so the values masked in the object
before or after the change are collected here and masked everywhere: in diffs, stored plans and error messages.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from guard import mask
from guard.mask import MASK, mask_text, redact

Obj = dict[str, Any]
SECRET_FIELDS = ("data", "stringData")
MIN_INSIDE = 6  # values at least this long are also masked inside longer text; shorter ones only as whole values


def hidden_values(obj: Obj | None) -> set[str]:
    """The strings of `obj` that `redact` masks, plus the decoded text of a Secret's data."""
    if not obj:
        return set()
    out: set[str] = set()
    _collect(obj, redact(obj), out, hidden=True)
    if obj.get("kind") == "Secret":
        for value in (obj.get("data") or {}).values():
            text = _decoded(value)
            if text:
                out.add(text)
    out.discard("")
    return out


def visible_values(obj: Obj | None) -> set[str]:
    """The strings of `obj` that `redact` leaves as they are."""
    out: set[str] = set()
    if obj:
        _collect(obj, redact(obj), out, hidden=False)
    return out


def _collect(plain: Any, shown: Any, out: set[str], hidden: bool) -> None:
    if isinstance(plain, dict):
        for key, value in plain.items():
            _collect(value, shown.get(key) if isinstance(shown, dict) else None, out, hidden)
    elif isinstance(plain, list):
        for i, value in enumerate(plain):
            _collect(value, shown[i] if isinstance(shown, list) and i < len(shown) else None, out, hidden)
    elif isinstance(plain, str) and (plain != shown) == hidden:
        out.add(plain)


def _decoded(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def is_hidden(obj: Obj | None, pointer: str) -> bool:
    """Whether the value at a JSON pointer of `obj` (or anything under it) is masked by `redact`."""
    return bool(obj) and mask.hidden(obj, pointer)


def masked_read(obj: Obj | None, ops: Any) -> tuple[str, str, str] | None:
    """(op, "from" or "path", pointer) of the first JSON-patch operation that reads a masked value of `obj`: a
    copy or move from it, or a test of it (which would confirm a guess). ValueError for a malformed pointer."""
    for op in ops if isinstance(ops, list) else []:
        name = op.get("op") if isinstance(op, dict) else None
        where = "from" if name in ("copy", "move") else "path" if name == "test" else None
        pointer = op.get(where) if where else None
        if isinstance(pointer, str) and is_hidden(obj, pointer):
            return str(name), str(where), pointer
    return None


def writes_secret_data(patch_type: str, body: Any) -> bool:
    """Whether a patch (or manifest) of a Secret sets or removes anything in its data or stringData."""
    if patch_type == "json":
        for op in body if isinstance(body, list) else []:
            pointer = op.get("path") if isinstance(op, dict) else None  # reads ("from") are judged by masked_read
            if isinstance(pointer, str) and (pointer in ("", "/") or pointer.split("/")[1] in SECRET_FIELDS):
                return True
        return False
    return isinstance(body, dict) and any(k in body for k in SECRET_FIELDS)


def scrub(obj: Any, values: set[str]) -> Any:
    """A copy of `obj` in which every string equal to one of `values` (or, for long values, containing one)
    is masked."""
    if isinstance(obj, dict):
        return {k: scrub(v, values) for k, v in obj.items()}
    if isinstance(obj, list):
        return [scrub(v, values) for v in obj]
    if isinstance(obj, str) and values:
        if obj in values:
            return MASK
        return _replace(obj, [v for v in values if len(v) >= MIN_INSIDE])
    return obj


def scrub_text(text: str, values: set[str]) -> str:
    """Free text (an API error, a message) with credential-like values and every one of `values` masked."""
    text = mask_text(text)
    forms = set()
    for v in values:
        if len(v) >= 4:
            forms |= {v, json.dumps(v)[1:-1]}  # as written, and as quoted inside a JSON or Go string
    return _replace(text, list(forms))


def _replace(text: str, values: list[str]) -> str:
    for v in sorted(values, key=len, reverse=True):
        if v in text:
            text = text.replace(v, MASK)
    return text


def carries(body: Any, values: set[str]) -> bool:
    """Whether a caller's patch or manifest holds one of `values` (a whole string, or inside a longer one)."""
    if isinstance(body, dict):
        return any(carries(v, values) for v in body.values())
    if isinstance(body, list):
        return any(carries(v, values) for v in body)
    if isinstance(body, str):
        return body in values or any(len(v) >= MIN_INSIDE and v in body for v in values)
    return False


def exposures(before: Obj | None, after: Obj | None) -> list[str]:
    """JSON pointers of `after` where a value masked in `before` would be shown unmasked (moved, or its env var
    renamed), leaving out values `before` already shows somewhere."""
    secret = hidden_values(before) - visible_values(before)
    if not secret or not after:
        return []
    found: list[str] = []
    _exposed(after, redact(after), "", secret, found)
    return found


def _exposed(plain: Any, shown: Any, where: str, secret: set[str], found: list[str]) -> None:
    if isinstance(plain, dict):
        for key, value in plain.items():
            part = str(key).replace("~", "~0").replace("/", "~1")
            _exposed(value, shown.get(key) if isinstance(shown, dict) else None, f"{where}/{part}", secret, found)
    elif isinstance(plain, list):
        for i, value in enumerate(plain):
            inner = shown[i] if isinstance(shown, list) and i < len(shown) else None
            _exposed(value, inner, f"{where}/{i}", secret, found)
    elif isinstance(plain, str) and plain == shown and plain in secret:
        found.append(where)


def secret_key_changes(before: Obj | None, after: Obj | None) -> list[str]:
    """For a Secret: which data keys a change adds, changes or removes, with their sizes (never their values)."""
    lines = []
    for part in SECRET_FIELDS:
        old, new = (before or {}).get(part) or {}, (after or {}).get(part) or {}
        for key in sorted(set(old) | set(new)):
            a, b = old.get(key), new.get(key)
            if a == b:
                continue
            if a is None:
                lines.append(f"# {part}.{key}: added ({_size(b, part)})")
            elif b is None:
                lines.append(f"# {part}.{key}: removed ({_size(a, part)})")
            else:
                lines.append(f"# {part}.{key}: changed ({_size(a, part)} → {_size(b, part)})")
    return lines


def _size(value: Any, part: str) -> str:
    text = value if isinstance(value, str) else ""
    if part == "data":
        try:
            return f"{len(base64.b64decode(text, validate=True))} bytes"
        except binascii.Error:
            pass
    return f"{len(text.encode())} bytes"
