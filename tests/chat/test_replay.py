"""The replay guard and the thread mapping: pure functions, no network."""

from __future__ import annotations

from bots.chat import thread_key
from bots.replay import MAX_SEEN, ReplayGuard


def test_a_request_is_accepted_once_and_only_while_fresh():
    now = [1_700_000_000.0]
    guard = ReplayGuard(300, clock=lambda: now[0])
    assert guard.refuse(str(int(now[0])), "sig-1") is None
    assert "replayed" in (guard.refuse(str(int(now[0])), "sig-1") or "")
    assert "away from now" in (guard.refuse(str(int(now[0]) - 301), "sig-2") or "")
    assert "away from now" in (guard.refuse(str(int(now[0]) + 301), "sig-3") or "")  # from the future too
    assert guard.refuse(str(int(now[0] * 1000)), "sig-4") is None  # Feishu sends milliseconds
    assert guard.refuse("yesterday", "sig-5") == "no valid timestamp"
    assert guard.refuse(None, "sig-6") == "no valid timestamp"
    now[0] += 301  # the first signature's window has passed: it is forgotten, and its timestamp is stale anyway
    assert "away from now" in (guard.refuse(str(int(now[0]) - 301), "sig-1") or "")


def test_memory_stays_bounded():
    now = [1_700_000_000.0]
    guard = ReplayGuard(300, clock=lambda: now[0])
    for i in range(MAX_SEEN + 10):
        assert guard.refuse(str(int(now[0])), f"s{i}") is None
    assert len(guard._seen) <= MAX_SEEN


def test_chat_threads_map_to_valid_agent_thread_ids():
    assert thread_key("slack", "C123", "1712345678.000100") == "slack:C123:1712345678.000100"
    hostile = thread_key("feishu", "oc_1/../x", "om_1 ; rm -rf")
    assert hostile == "feishu:oc_1-..-x:om_1---rm--rf"
    assert len(thread_key("slack", "C" * 500, "1")) == 128
