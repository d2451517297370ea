"""Slack Block Kit rendering of a `Notification`: `message` gives the fallback text and the blocks, within Slack's
limits, with every text that comes from the notification escaped (it is untrusted cluster text: no mention, no
link it writes itself reaches Slack as markup).
"""

from __future__ import annotations

from typing import Any

from notifiers.base import Notification, Proposal
from notifiers.text import DIFF_NOTE, TEXT_NOTE, cut, fenced, split, web_url

HEADER_CHARS = 150  # Slack: a header block's text is at most 150 characters
SECTION_CHARS = 3000  # Slack: a section's text is at most 3,000 characters
FIELD_CHARS = 2000  # Slack: each text in a section's fields is at most 2,000 characters
FIELDS_PER_SECTION = 10  # Slack: a section holds at most 10 fields
MAX_BLOCKS = 50  # Slack: a message holds at most 50 blocks
CONTEXT_CHARS = 3000  # Slack: a context element's text is at most 3,000 characters
BUTTON_TEXT_CHARS = 75  # Slack: a button's text is at most 75 characters
BUTTON_URL_CHARS = 3000  # Slack: a button's url is at most 3,000 characters
BUTTON_VALUE_CHARS = 2000  # Slack: a button's value is at most 2,000 characters
CONFIRM_TEXT_CHARS = 300  # Slack: a confirm dialog's text is at most 300 characters
FALLBACK_CHARS = 3000  # Slack truncates a message's text at 40,000 characters; a notification line needs far less
TEXT_SECTIONS = 3  # ours: the body takes at most this many sections, then a cut note
LINK_BUTTONS = 5  # ours: an actions block could hold 25 elements; more than 5 links is noise

EMOJI = {"info": ":information_source:", "warning": ":warning:", "critical": ":rotating_light:", "human-help": ":sos:"}
APPROVAL_BLOCK = "cloudpilot_approval"
APPROVE_ACTION = "cloudpilot_approve"
REJECT_ACTION = "cloudpilot_reject"


def message(n: Notification, count: int = 1, status: str = "") -> tuple[str, list[dict[str, Any]]]:
    """The fallback text and the Block Kit blocks for `n`.

    Args:
        n: The notification (its texts are escaped here; masking is the caller's, see `notifiers.base.prepared`).
        count: How many times the alert was seen; above 1 the title says "(×count)".
        status: The decision already taken on `n.proposal` (our own mrkdwn, e.g. "Approved by <@U1>"): shown
            instead of the Approve / Reject buttons, unescaped.
    """
    suffix = f" (×{count})" if count > 1 else ""
    fallback = _clip(f"[{n.grade}] {escape(n.title)}", FALLBACK_CHARS - len(suffix)) + suffix
    head = [_header(n, suffix), *_body(n.text)]
    if n.human_help:
        head.append(_context("Human intervention needed"))
    tail = _proposal(n.proposal, status) if n.proposal else []
    links = _links(n.links)
    if links:
        tail.append(links)
    tail.append(_context(_footer(n)))
    room = MAX_BLOCKS - len(head) - len(tail)
    blocks = [*head, *_fields(n.fields, room), *tail]  # at most MAX_BLOCKS: the fields take what room is left
    return fallback, blocks


def escape(text: str) -> str:
    """`text` with Slack's control characters &, < and > written as entities, so it shows as written."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _header(n: Notification, suffix: str) -> dict[str, Any]:
    title = _clip(f"{EMOJI[n.grade]} {escape(n.title)}", HEADER_CHARS - len(suffix)) + suffix
    return {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}}


def _body(text: str) -> list[dict[str, Any]]:
    """The text in at most `TEXT_SECTIONS` sections, its end cut with a note when it does not fit."""
    escaped = escape(text)
    budget = TEXT_SECTIONS * SECTION_CHARS
    while True:
        pieces = split(cut(escaped, budget, TEXT_NOTE), SECTION_CHARS)
        if len(pieces) <= TEXT_SECTIONS:
            return [_section(p) for p in pieces]
        budget = budget * 9 // 10


def _fields(fields: dict[str, str], room: int) -> list[dict[str, Any]]:
    """The fields in sections of `FIELDS_PER_SECTION`, at most `room` blocks (the last one a cut note if needed)."""
    texts = [_clip(f"*{escape(label)}*\n{escape(value)}", FIELD_CHARS) for label, value in fields.items()]
    chunks = [texts[i : i + FIELDS_PER_SECTION] for i in range(0, len(texts), FIELDS_PER_SECTION)]
    if len(chunks) > room:
        chunks = chunks[: max(room - 1, 0)]
        left = len(texts) - sum(len(c) for c in chunks)
        return [*map(_field_section, chunks), _context(f"… {left} more fields cut")] if room > 0 else []
    return [_field_section(c) for c in chunks]


def _proposal(p: Proposal, status: str) -> list[dict[str, Any]]:
    """The fix: what it is, its diff, when it expires, and the buttons (or, once decided, `status`)."""
    line = f"*Proposed fix* `{escape(p.plan_id)}` (risk {escape(p.risk)}): {escape(p.title)}"
    blocks = [_section(_clip(line, SECTION_CHARS))]
    if p.diff:
        blocks.append(_section(fenced(escape(p.diff), SECTION_CHARS, DIFF_NOTE)))
    if p.terms():
        blocks.append(_context(escape(p.terms())))
    blocks.append(_section(_clip(status, SECTION_CHARS)) if status else _buttons(p))
    return blocks


def _buttons(p: Proposal) -> dict[str, Any]:
    confirm = {
        "title": _plain("Apply this fix?"),
        "text": {"type": "mrkdwn", "text": _clip(f"Apply plan `{escape(p.plan_id)}`?", CONFIRM_TEXT_CHARS)},
        "confirm": _plain("Apply"),
        "deny": _plain("Cancel"),
    }
    value = p.approval_id[:BUTTON_VALUE_CHARS]
    approve = {
        "type": "button",
        "text": _plain("Approve"),
        "style": "primary",
        "action_id": APPROVE_ACTION,
        "value": value,
        "confirm": confirm,
    }
    reject = {"type": "button", "text": _plain("Reject"), "style": "danger", "action_id": REJECT_ACTION, "value": value}
    return {"type": "actions", "block_id": APPROVAL_BLOCK, "elements": [approve, reject]}


def _links(links: dict[str, str]) -> dict[str, Any] | None:
    """Up to `LINK_BUTTONS` link buttons; a URL that is not http(s), or too long for a button, is dropped."""
    usable = [(label, url.strip()) for label, url in links.items()]
    usable = [(label, url) for label, url in usable if web_url(url) and len(url) <= BUTTON_URL_CHARS]
    buttons = [
        {
            "type": "button",
            "text": _plain(_clip(escape(label), BUTTON_TEXT_CHARS) or "Link"),
            "url": url,
            "action_id": f"cloudpilot_link_{i}",
        }
        for i, (label, url) in enumerate(usable[:LINK_BUTTONS])
    ]
    return {"type": "actions", "elements": buttons} if buttons else None


def _footer(n: Notification) -> str:
    return escape(n.footer)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _field_section(texts: list[str]) -> dict[str, Any]:
    return {"type": "section", "fields": [{"type": "mrkdwn", "text": t} for t in texts]}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(text, CONTEXT_CHARS)}]}


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def _clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters with "…", never ending in half an entity such as "&am"."""
    if len(text) <= limit:
        return text
    kept = text[: limit - 1]
    amp = kept.rfind("&", max(len(kept) - 5, 0))
    if amp >= 0 and ";" not in kept[amp:]:
        kept = kept[:amp]
    return kept + "…"
