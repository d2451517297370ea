"""The chat renderers without a network: Slack blocks and Feishu cards per grade, approval buttons and their
replacement by a status, size limits on huge texts and diffs, escaping of untrusted text for Slack, dropped
non-http links, and `split` / `cut` of long answers."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from notifiers.base import Notification, Proposal
from notifiers.blocks import message
from notifiers.cards import card, size
from notifiers.text import cut, split

GRADES: list[tuple[dict[str, Any], str, str, str]] = [
    ({"severity": "info"}, "info", ":information_source:", "blue"),
    ({"severity": "warning"}, "warning", ":warning:", "orange"),
    ({"severity": "critical"}, "critical", ":rotating_light:", "red"),
    ({"severity": "warning", "human_help": True}, "human-help", ":sos:", "carmine"),
]
HUGE_DIFF = "\n".join(f"+  line {i}: value-{i}" for i in range(5000))


def proposal(**changes: Any) -> Proposal:
    values: dict[str, Any] = {
        "approval_id": "ap-123",
        "plan_id": "plan-9",
        "risk": "medium",
        "title": "Deployment/web: set memory limit",
        "diff": "-  memory: 128Mi\n+  memory: 256Mi",
        "expires_at": "2030-01-01T00:00:00+00:00",
    }
    return Proposal(**{**values, **changes})


def texts(node: Any) -> list[str]:
    """Every string under a "text" key of a Slack payload (mrkdwn and plain_text alike)."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "text" and isinstance(value, str):
                found.append(value)
            else:
                found += texts(value)
    elif isinstance(node, list):
        for item in node:
            found += texts(item)
    return found


def actions(blocks: list[dict[str, Any]], block_id: str) -> list[dict[str, Any]]:
    return [b for b in blocks if b["type"] == "actions" and b.get("block_id") == block_id]


def card_buttons(c: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for e in c["elements"] if e["tag"] == "action" for a in e["actions"]]


@pytest.mark.parametrize(("kwargs", "grade", "emoji", "colour"), GRADES)
def test_grade_sets_emoji_and_colour(kwargs: dict[str, Any], grade: str, emoji: str, colour: str) -> None:
    n = Notification(title="Pod crashlooping", text="body", cluster="prod", namespace="shop", **kwargs)
    fallback, blocks = message(n, count=3)
    assert blocks[0]["type"] == "header"
    assert blocks[0]["text"]["text"] == f"{emoji} Pod crashlooping (×3)"
    assert fallback == f"[{grade}] Pod crashlooping (×3)"
    assert blocks[-1]["elements"][0]["text"] == f"CloudPilot · {grade} · cluster prod · namespace shop"
    c = card(n, count=3)
    assert c["header"]["template"] == colour
    assert c["header"]["title"]["content"] == f"[{grade}] Pod crashlooping (×3)"
    assert c["elements"][-1]["elements"][0]["content"] == f"CloudPilot · {grade} · cluster prod · namespace shop"
    human = "Human intervention needed"
    assert (human in texts(blocks)) == (grade == "human-help")
    assert (human in json.dumps(c, ensure_ascii=False)) == (grade == "human-help")


def test_count_of_one_adds_nothing_and_missing_parts_are_omitted() -> None:
    fallback, blocks = message(Notification(title="t", text="x", cluster="prod"))
    assert fallback == "[info] t"
    assert blocks[-1]["elements"][0]["text"] == "CloudPilot · info · cluster prod"
    assert card(Notification(title="t", text="x"))["header"]["title"]["content"] == "[info] t"


def test_slack_buttons_carry_the_approval_id() -> None:
    _, blocks = message(Notification(title="Fix proposed", text="t", proposal=proposal(destructive=True)))
    [block] = actions(blocks, "cloudpilot_approval")
    approve, reject = block["elements"]
    assert (approve["action_id"], approve["style"], approve["value"]) == ("cloudpilot_approve", "primary", "ap-123")
    assert (reject["action_id"], reject["style"], reject["value"]) == ("cloudpilot_reject", "danger", "ap-123")
    assert approve["confirm"]["title"]["text"] == "Apply this fix?"
    assert "plan-9" in approve["confirm"]["text"]["text"]
    assert "confirm" not in reject
    all_text = texts(blocks)
    assert "*Proposed fix* `plan-9` (risk medium): Deployment/web: set memory limit" in all_text
    assert "```\n-  memory: 128Mi\n+  memory: 256Mi\n```" in all_text
    assert "Expires 2030-01-01T00:00:00+00:00 · destructive: two approvals may be needed" in all_text


def test_slack_status_replaces_the_buttons() -> None:
    n = Notification(title="Fix proposed", text="t", proposal=proposal())
    _, blocks = message(n, status="Approved by <@U1>; applied and verified")
    assert actions(blocks, "cloudpilot_approval") == []
    assert "Approved by <@U1>; applied and verified" in texts(blocks)
    assert not any(b["type"] == "actions" for b in blocks)


def test_card_buttons_carry_the_approval_id_and_status_replaces_them() -> None:
    n = Notification(title="Fix proposed", text="t", proposal=proposal())
    approve, reject = card_buttons(card(n))
    assert (approve["type"], approve["value"]) == ("primary", {"action": "approve", "approval_id": "ap-123"})
    assert (reject["type"], reject["value"]) == ("danger", {"action": "reject", "approval_id": "ap-123"})
    assert approve["confirm"]["title"]["content"] == "Apply this fix?"
    assert "plan-9" in approve["confirm"]["text"]["content"]
    decided = card(n, status="Rejected by Ann")
    assert card_buttons(decided) == []
    assert {"tag": "markdown", "content": "Rejected by Ann"} in decided["elements"]


def test_slack_huge_text_and_diff_stay_within_limits() -> None:
    fields = {f"field {i}": "v" * 3000 for i in range(25)}
    text = "\n".join(f"log line {i} " + "x" * 90 for i in range(1000))  # 1,000 lines, about 100,000 characters
    assert len(text) > 99_000
    n = Notification(title="T" * 500, text=text, fields=fields, proposal=proposal(diff=HUGE_DIFF))
    fallback, blocks = message(n, count=2)
    assert len(blocks) <= 50
    assert len(fallback) <= 3000
    assert len(blocks[0]["text"]["text"]) <= 150
    assert blocks[0]["text"]["text"].endswith("… (×2)")
    body = [b["text"]["text"] for b in blocks if b["type"] == "section" and "text" in b]
    assert all(len(t) <= 3000 for t in body)
    field_sections = [b["fields"] for b in blocks if b["type"] == "section" and "fields" in b]
    assert [len(f) for f in field_sections] == [10, 10, 5]
    assert all(len(f["text"]) <= 2000 for fs in field_sections for f in fs)
    text_sections = [t for t in body if t.startswith("log line")]
    assert len(text_sections) <= 3
    shown = sum(t.count("log line") for t in text_sections)
    assert text_sections[-1].endswith(f"… {1000 - shown} more lines cut")
    [diff] = [t for t in body if t.startswith("```")]
    shown_diff = diff.count("+  line ")
    assert 0 < shown_diff < 5000
    note = f"… {5000 - shown_diff} more lines: see the plan with `cloudpilot approvals` or the fix_plan_show tool"
    assert diff.endswith("```\n" + note)


def test_slack_one_huge_line_is_cut_within_limits() -> None:
    _, blocks = message(Notification(title="t", text="y" * 100_000))
    body = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert 1 <= len(body) <= 3
    assert all(len(t) <= 3000 for t in body)
    assert body[-1].endswith("… 1 more lines cut")


def test_slack_many_fields_never_pass_fifty_blocks() -> None:
    n = Notification(title="t", text="x", fields={f"k{i}": "v" for i in range(1000)}, proposal=proposal())
    _, blocks = message(n)
    assert len(blocks) == 50
    assert all(len(b.get("fields", [])) <= 10 for b in blocks)
    shown = sum(len(b.get("fields", [])) for b in blocks)
    assert f"… {1000 - shown} more fields cut" in texts(blocks)


def test_card_huge_text_and_diff_stay_under_the_size_cap() -> None:
    text = "\n".join(f"日志 {i} " + "字" * 95 for i in range(1000))  # about 100,000 characters, 3 bytes each
    n = Notification(title="t", text=text, fields={"a": "b"}, proposal=proposal(diff=HUGE_DIFF))
    c = card(n)
    assert size(c) < 28_000
    assert len(json.dumps(c, ensure_ascii=False).encode()) == size(c)
    body = c["elements"][0]["content"]
    assert len(body) <= 5000
    shown = body.count("日志 ")
    assert 0 < shown < 1000
    assert body.endswith(f"… {1000 - shown} more lines cut")
    [diff] = [e["content"] for e in c["elements"] if e["tag"] == "markdown" and e["content"].startswith("```")]
    assert len(diff) <= 4000
    shown_diff = diff.count("+  line ")
    assert diff.endswith(
        f"… {5000 - shown_diff} more lines: see the plan with `cloudpilot approvals` or the fix_plan_show tool"
    )
    assert card_buttons(c)[0]["value"]["approval_id"] == "ap-123"


def test_card_ascii_text_is_cut_to_five_thousand_characters() -> None:
    c = card(Notification(title="t", text="z" * 100_000))
    assert c["elements"][0]["content"] == "z" * 4980 + "…\n… 1 more lines cut"
    assert len(c["elements"][0]["content"]) == 5000


def test_card_fields_are_short_lark_md() -> None:
    c = card(Notification(title="t", text="x", fields={"cluster": "prod", "root cause": "OOM"}))
    [div] = [e for e in c["elements"] if e["tag"] == "div"]
    assert div["fields"] == [
        {"is_short": True, "text": {"tag": "lark_md", "content": "**cluster**\nprod"}},
        {"is_short": True, "text": {"tag": "lark_md", "content": "**root cause**\nOOM"}},
    ]


def test_slack_escapes_untrusted_text() -> None:
    evil = "<!channel> see <https://evil|click> & <@U999>"
    n = Notification(
        title=evil,
        text=evil,
        fields={evil: evil},
        links={evil: "https://ok.example"},
        cluster="<!here>",
        namespace="a>b",
        proposal=proposal(title=evil, diff=evil, plan_id="<!everyone>"),
    )
    fallback, blocks = message(n)
    payload = json.dumps(blocks) + fallback
    assert "<!" not in payload
    assert "<https" not in payload
    assert "<@" not in payload
    assert "&lt;!channel&gt; see &lt;https://evil|click&gt; &amp; &lt;@U999&gt;" in texts(blocks)
    assert fallback == "[info] &lt;!channel&gt; see &lt;https://evil|click&gt; &amp; &lt;@U999&gt;"
    assert blocks[-1]["elements"][0]["text"] == "CloudPilot · info · cluster &lt;!here&gt; · namespace a&gt;b"


def test_non_http_links_are_dropped() -> None:
    links = {
        "runbook": "https://runbooks.example/oom",
        "script": "javascript:alert(1)",
        "file": "file:///etc/passwd",
        "dash": "http://grafana.example/d/1",
        "bare": "grafana.example",
    }
    links.update({f"more {i}": f"https://x.example/{i}" for i in range(5)})
    n = Notification(title="t", text="x", links=links)
    _, blocks = message(n)
    [link_block] = [b for b in blocks if b["type"] == "actions"]
    urls = [e["url"] for e in link_block["elements"]]
    assert urls == [
        "https://runbooks.example/oom",
        "http://grafana.example/d/1",
        "https://x.example/0",
        "https://x.example/1",
        "https://x.example/2",
    ]
    assert [e["text"]["text"] for e in link_block["elements"][:2]] == ["runbook", "dash"]
    buttons = card_buttons(card(n))
    assert [b["url"] for b in buttons] == urls
    assert all(b["type"] == "default" for b in buttons)


def test_split_empty_and_short() -> None:
    assert split("", 100) == []
    assert split("\n\n  \n", 100) == []
    assert split("hello world", 100) == ["hello world"]


def test_split_prefers_blank_lines_then_line_ends() -> None:
    text = "a" * 40 + "\n\n" + "b" * 30 + "\n" + "c" * 20
    assert split(text, 80) == ["a" * 40, "b" * 30 + "\n" + "c" * 20]
    assert split("one two three four", 9) == ["one two", "three", "four"]


def test_split_one_huge_word() -> None:
    pieces = split("w" * 10_000, 3000)
    assert [len(p) for p in pieces] == [3000, 3000, 3000, 1000]


def fence_lines(piece: str) -> int:
    return sum(1 for line in piece.split("\n") if line.strip().startswith("```"))


def test_split_keeps_every_character_and_balances_fences() -> None:
    prose = " ".join(f"word{i}" for i in range(400))
    code = "\n".join(f"    step {i}: run something long enough" for i in range(300))
    text = f"{prose}\n\n```yaml\n{code}\n```\n\nAfter the block.\n\n```\n{'x' * 2500}\n```\nend"
    for limit in (40, 200, 1000, 3000):
        pieces = split(text, limit)
        assert len(pieces) > 1
        assert all(0 < len(p) <= limit for p in pieces)
        assert all(fence_lines(p) % 2 == 0 for p in pieces), limit
        joined = "".join(re.sub(r"```\w*", "", p) for p in pieces)
        assert re.sub(r"\s", "", joined) == re.sub(r"\s", "", re.sub(r"```\w*", "", text))
    reopened = split(text, 1000)
    assert any(p.startswith("```yaml\n    step") for p in reopened)


def test_cut_counts_lines_left_out() -> None:
    text = "\n".join(f"line {i}" for i in range(100))
    assert cut(text, 10_000, "… {n} cut") == text
    out = cut(text, 60, "… {n} more lines cut")
    assert len(out) <= 60
    kept = out.split("\n")[:-1]
    assert kept == [f"line {i}" for i in range(len(kept))]
    assert out.split("\n")[-1] == f"… {100 - len(kept)} more lines cut"
    assert cut("abcdefghij" * 10, 30, "… {n} cut") == "abcdefghijabcdefghija…\n… 1 cut"


def test_cluster_text_cannot_mention_anyone_in_feishu():
    from notifiers import Notification
    from notifiers.cards import card

    n = Notification(
        title="t", text='log: <at id=all></at> and <AT user_id="ou_x">x</at>', fields={"pod": "<at id=all></at>"}
    )
    shown = json.dumps(card(n), ensure_ascii=False)
    assert "<at" not in shown.lower() and "‹at id=all>" in shown
