"""Diffs shown in plans: server bookkeeping left out, secrets never shown."""

from __future__ import annotations

from tools.fixloop import content, diff


def test_diff_leaves_out_status_and_bookkeeping() -> None:
    before = {
        "kind": "Deployment",
        "metadata": {"name": "web", "resourceVersion": "1", "generation": 1, "managedFields": [{"manager": "x"}]},
        "spec": {"replicas": 2},
        "status": {"replicas": 2},
    }
    after = {
        **before,
        "metadata": {**before["metadata"], "resourceVersion": "2", "generation": 2},
        "spec": {"replicas": 3},
        "status": {"replicas": 3},
    }
    expected = "--- live\n+++ after\n@@ -3,3 +3,3 @@\n   name: web\n spec:\n-  replicas: 2\n+  replicas: 3"
    assert diff(before, after) == expected
    assert content(after)["metadata"] == {"name": "web"}


def test_diff_never_shows_secret_values() -> None:
    before = {"kind": "Secret", "metadata": {"name": "db"}, "data": {"password": "c2VjcmV0"}}
    after = {"kind": "Secret", "metadata": {"name": "db"}, "data": {"password": "bG9uZ2VyLXNlY3JldA=="}}
    text = diff(before, after)
    assert text == "# data.password: changed (6 bytes → 13 bytes)"  # which keys change, with sizes: no values
    env_before = {
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"env": [{"name": "API_TOKEN", "value": "abc123456789"}]},
    }
    env_after = {**env_before, "spec": {"env": [{"name": "API_TOKEN", "value": "xyz987654321"}]}}
    text = diff(env_before, env_after)
    assert text == "# masked values (secret data or credential-like settings) change too"  # said, not shown
    assert "abc123" not in text and "xyz987" not in text


def test_diff_masks_a_masked_value_wherever_it_moves() -> None:
    before = {
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"env": [{"name": "DB_PASSWORD", "value": "hunter2-long"}]},
    }
    after = {**before, "metadata": {"name": "web", "annotations": {"note": "hunter2-long", "other": "x hunter2-long"}}}
    text = diff(before, after)
    assert "hunter2" not in text and "+    note: '***'" in text and "x ***" in text
