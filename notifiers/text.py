"""Plain-text helpers shared by the chat renderers: `split` a long answer into message-sized pieces (code fences
kept balanced), `cut` a text to a size with a note saying how many lines were left out, and `fenced`, a code block
that fits a size.
"""

from __future__ import annotations

from urllib.parse import urlsplit

FENCE = "```"
FENCE_LINE_CHARS = 20  # a fence opener longer than this, or more than a language tag, is reopened as a bare ```
MIN_FENCE_LIMIT = 32  # below this a piece has no room to close and reopen a fence: fences are left as they fall
TEXT_NOTE = "… {n} more lines cut"
DIFF_NOTE = "… {n} more lines: see the plan with `cloudpilot approvals` or the fix_plan_show tool"
SEPARATORS = ("\n\n", "\n", " ")  # where a piece may end, best first


def split(text: str, limit: int) -> list[str]:
    """`text` in pieces of at most `limit` characters, cut at blank lines, else line ends, else spaces, else anywhere.

    A ``` code block open at a cut is closed at the end of the piece and reopened at the start of the next (those
    characters count toward `limit`). Whitespace at a cut is dropped; empty pieces are never returned.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    fences = limit >= MIN_FENCE_LIMIT
    pieces: list[str] = []
    opener = ""  # the fence line open where `rest` starts, "" when outside a code block
    rest = text.lstrip("\n")
    while rest:
        head = opener + "\n" if opener else ""
        body, rest, opener = _piece(rest, limit - len(head), opener, fences)
        if body.strip():
            pieces.append(head + body + ("\n" + FENCE if opener else ""))
        rest = rest.lstrip("\n")
    return pieces


def cut(text: str, limit: int, note: str) -> str:
    """`text` if it fits in `limit` characters, else its first lines that fit and a last line `note`.

    `note` may hold "{n}", replaced by the number of lines left out (a line shown only in part counts as left out).
    When not even the first line fits, as much of it as fits is shown, ending in "…".
    """
    if len(text) <= limit:
        return text
    lines = text.split("\n")
    kept: list[str] = []
    used = 0
    for line in lines:
        left = len(lines) - len(kept) - 1
        if used + len(line) + 1 + len(_note(note, left)) > limit:
            break
        kept.append(line)
        used += len(line) + 1
    tail = _note(note, len(lines) - len(kept))
    if not kept:
        room = limit - len(tail) - 1
        if room < 2:
            return tail[:limit]
        kept = [lines[0][: room - 1] + "…"]
    return "\n".join([*kept, tail])


def fenced(text: str, limit: int, note: str) -> str:
    """`text` in a ``` code block of at most `limit` characters; when cut, `note` follows the block (see `cut`)."""
    room = limit - len(f"{FENCE}\n\n{FENCE}\n")
    shown = cut(text, room, note)
    if shown == text:
        return f"{FENCE}\n{text}\n{FENCE}"
    code, _, tail = shown.rpartition("\n")
    return f"{FENCE}\n{code}\n{FENCE}\n{tail}"


def _piece(text: str, room: int, opener: str, fences: bool) -> tuple[str, str, str]:
    """The next piece of `text` (its body), what is left, and the fence open after it ("" when `fences` is off);
    the piece, with the closing fence it then needs, fits in `room`."""
    take = room
    while True:
        end, resume = _cut_point(text, take)
        body = text[:end].rstrip()
        after = _fence_after(body, opener) if fences else ""
        close = len("\n" + FENCE) if after else 0
        if len(body) + close <= room or take <= 1:
            return body, text[resume:], after
        take = max(1, min(take, len(body)) - close)


def _cut_point(text: str, take: int) -> tuple[int, int]:
    """Where a piece of at most `take` characters ends, and where the next one resumes (after the separator)."""
    if len(text) <= take:
        return len(text), len(text)
    window = text[: take + 1]
    for least in (take // 2, 1):
        for sep in SEPARATORS:
            at = window.rfind(sep)
            if at >= least:
                return at, at + len(sep)
    return take, take


def _fence_after(body: str, opener: str) -> str:
    """The fence line still open at the end of `body`, given the one open at its start ("" for none)."""
    for line in body.split("\n"):
        stripped = line.strip()
        if stripped.startswith(FENCE):
            opener = "" if opener else _opener(stripped)
    return opener


def _opener(line: str) -> str:
    """How to reopen the code block `line` opened: with its language tag ("```yaml"), else a bare fence (any other
    text on the line is content, shown once)."""
    tag = line[len(FENCE) :]
    return line if len(line) <= FENCE_LINE_CHARS and (tag.isalnum() or not tag) else FENCE


def _note(note: str, n: int) -> str:
    return note.replace("{n}", str(n))


def web_url(url: str) -> bool:
    """Only http(s) links become buttons (no javascript:, no file:, no slack:// deep links from cluster text)."""
    parts = urlsplit(url)
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)
