"""Feishu/Lark interactive card rendering of a `Notification` (card JSON v1): `card` gives the card as a dict, small
enough for Feishu (text and diff are cut harder until the serialised card fits).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any

from notifiers.base import Notification, Proposal
from notifiers.text import DIFF_NOTE, TEXT_NOTE, cut, fenced, web_url

MAX_CARD_BYTES = 28_000  # Feishu: a card is at most 30 KB; this leaves room for the envelope around it
TEXT_CHARS = 5000  # ours: the body's markdown at most
DIFF_CHARS = 4000  # ours: the diff's code block at most
FLOOR_CHARS = 200  # ours: text and diff are cut no shorter than this before fields and links go
TITLE_CHARS = 200  # ours: the header title at most
PLAIN_CHARS = 1000  # ours: a proposal title, a status or a note at most
LINK_BUTTONS = 5  # ours: more than 5 link buttons is noise

_AT = re.compile(r"<(?=/?at\b)", re.IGNORECASE)
COLOUR = {"info": "blue", "warning": "orange", "critical": "red", "human-help": "carmine"}


@dataclass(frozen=True)
class _Budget:
    """How much of the notification a card shows: text and diff characters, fields and links."""

    text: int
    diff: int
    fields: int
    links: int


def card(n: Notification, count: int = 1, status: str = "") -> dict[str, Any]:
    """The interactive card for `n`, serialised (json.dumps, ensure_ascii=False) under `MAX_CARD_BYTES` bytes.

    Args:
        n: The notification (masking is the caller's, see `notifiers.base.prepared`).
        count: How many times the alert was seen; above 1 the title says "(×count)".
        status: The decision already taken on `n.proposal` (our own markdown): shown instead of the buttons.
    """
    budget: _Budget | None = _Budget(TEXT_CHARS, DIFF_CHARS, len(n.fields), LINK_BUTTONS)
    while budget is not None:
        built = _card(n, count, status, budget)
        if size(built) < MAX_CARD_BYTES:
            return built
        budget = _smaller(budget)
    return built


def size(c: dict[str, Any]) -> int:
    """The card's size in bytes as sent."""
    return len(json.dumps(c, ensure_ascii=False).encode())


def _smaller(b: _Budget) -> _Budget | None:
    """The next smaller budget: text and diff first, then fields, then links; None when nothing is left to cut."""
    if b.text > FLOOR_CHARS or b.diff > FLOOR_CHARS:
        return replace(b, text=max(b.text * 2 // 3, FLOOR_CHARS), diff=max(b.diff * 2 // 3, FLOOR_CHARS))
    if b.fields:
        return replace(b, fields=b.fields // 2)
    if b.links:
        return replace(b, links=0)
    return None


def _card(n: Notification, count: int, status: str, b: _Budget) -> dict[str, Any]:
    suffix = f" (×{count})" if count > 1 else ""
    title = _clip(f"[{n.grade}] {n.title}", TITLE_CHARS) + suffix
    elements: list[dict[str, Any]] = []
    if n.text:
        elements.append(_markdown(cut(n.text, b.text, TEXT_NOTE)))
    fields = list(n.fields.items())[: b.fields]
    if fields:
        elements.append({"tag": "div", "fields": [_field(label, value) for label, value in fields]})
    if n.human_help:
        elements.append(_note("Human intervention needed"))
    if n.proposal:
        elements += _proposal(n.proposal, status, b.diff)
    links = _links(n.links, b.links)
    if links:
        elements.append(links)
    elements.append(_note(_footer(n)))
    return {
        "config": {"wide_screen_mode": True, "update_multi": True},
        "header": {"template": COLOUR[n.grade], "title": {"tag": "plain_text", "content": title}},
        "elements": elements,
    }


def _field(label: str, value: str) -> dict[str, Any]:
    return {
        "is_short": True,
        "text": {"tag": "lark_md", "content": defuse(_clip(f"**{label}**\n{value}", PLAIN_CHARS))},
    }


def _proposal(p: Proposal, status: str, diff_chars: int) -> list[dict[str, Any]]:
    """The fix: what it is, its diff, when it expires, and the buttons (or, once decided, `status`)."""
    line = _clip(f"**Proposed fix** {p.plan_id} (risk {p.risk}): {p.title}", PLAIN_CHARS)
    elements: list[dict[str, Any]] = [{"tag": "hr"}, _markdown(line)]
    if p.diff:
        elements.append(_markdown(fenced(p.diff, diff_chars, DIFF_NOTE)))
    if p.terms():
        elements.append(_note(p.terms()))
    elements.append(_markdown(_clip(status, PLAIN_CHARS)) if status else _buttons(p))
    return elements


def _buttons(p: Proposal) -> dict[str, Any]:
    confirm = {"title": _plain("Apply this fix?"), "text": _plain(_clip(f"Apply plan {p.plan_id}?", PLAIN_CHARS))}
    approve = {
        "tag": "button",
        "text": _plain("Approve"),
        "type": "primary",
        "value": {"action": "approve", "approval_id": p.approval_id},
        "confirm": confirm,
    }
    reject = {
        "tag": "button",
        "text": _plain("Reject"),
        "type": "danger",
        "value": {"action": "reject", "approval_id": p.approval_id},
    }
    return {"tag": "action", "actions": [approve, reject]}


def _links(links: dict[str, str], most: int) -> dict[str, Any] | None:
    """Up to `most` link buttons; a URL that is not http(s) is dropped."""
    usable = [(label, url.strip()) for label, url in links.items()]
    buttons = [
        {"tag": "button", "text": _plain(_clip(label, TITLE_CHARS) or "Link"), "type": "default", "url": url}
        for label, url in usable
        if web_url(url)
    ][:most]
    return {"tag": "action", "actions": buttons} if buttons else None


def _footer(n: Notification) -> str:
    return _clip(n.footer, PLAIN_CHARS)


def _markdown(content: str) -> dict[str, Any]:
    return {"tag": "markdown", "content": defuse(content)}


def defuse(text: str) -> str:
    """Cluster text must not @-mention anyone: `<at id=all>` in a pod's log would page the whole group."""
    return _AT.sub("‹", text)


def _note(text: str) -> dict[str, Any]:
    return {"tag": "note", "elements": [_plain(text)]}


def _plain(text: str) -> dict[str, Any]:
    return {"tag": "plain_text", "content": text}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
