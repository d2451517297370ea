"""The agent team at a terminal: `cloudpilot autofix`, `approvals`, `trace` and `chat`, run as the console
script's dispatcher runs them, on the real control plane."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import cli
from store import AuditLog, Store
from tests.fix.scenarios import SCENARIOS, deployment, kubelet
from tools.fixloop import content

pytestmark = pytest.mark.timeout(120)
BAD_PROBE = SCENARIOS[0]


@pytest.fixture
def config(tmp_path: Path, cluster) -> Path:
    path = tmp_path / "cloudpilot.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "k8s": {"kubeconfig": str(cluster.kubeconfig), "cache_ttl_seconds": 0},
                "store": {"path": str(tmp_path / "cloudpilot.db")},
                "safety": {"allow_write": True},
                "agents": {"checkpoint_path": str(tmp_path / "threads.db")},
                "notify": {"log": False},
                "fix": {"verify_timeout_seconds": 40},
            }
        )
    )
    return path


def test_autofix_leaves_the_plan_pending_then_approvals_apply_it(api, namespace, config, capsys, tmp_path):
    BAD_PROBE.build(api, namespace)
    before = deployment(api, namespace)
    assert cli.dispatch(["autofix", namespace, "--deployment", "web", "--config", str(config)]) == 0
    out = capsys.readouterr()
    assert "Root cause: POD_PROBE_BAD_TARGET" in out.out
    assert "diagnose(" in out.err  # progress lines
    approval = re.search(r"cloudpilot approvals approve (ap-[0-9a-f]+)", out.out).group(1)
    assert content(deployment(api, namespace)) == content(before)  # not a TTY: nothing applied, nothing asked

    assert cli.dispatch(["approvals", "list", "--config", str(config)]) == 0
    assert approval in capsys.readouterr().out
    assert cli.dispatch(["approvals", "reject", approval, "--config", str(config)]) == 2  # a reason is required
    assert "needs --reason" in capsys.readouterr().err

    with kubelet(api, namespace, "ready"):
        assert cli.dispatch(["approvals", "approve", approval, "--reason", "ok", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "[verified]" in out
    assert BAD_PROBE.fixed(deployment(api, namespace))
    store = Store(tmp_path / "cloudpilot.db")
    try:
        approved = [e for e in AuditLog(store).entries() if e.event == "approved"]
    finally:
        store.close()
    assert len(approved) == 1 and approved[0].approver.endswith("via elicitation")
    assert approved[0].approver.startswith("local user")

    assert cli.dispatch(["approvals", "approve", approval, "--config", str(config)]) == 1  # decided already
    assert "already approved" in capsys.readouterr().err
    (thread_id,) = _threads(tmp_path)
    assert cli.dispatch(["trace", thread_id, "--config", str(config)]) == 0
    trace = capsys.readouterr().out
    assert "diagnose" in trace and "fix_plan" in trace and "fix_apply" in trace


def _threads(tmp_path: Path) -> set[str]:
    store = Store(tmp_path / "cloudpilot.db")
    try:
        return {r["thread_id"] for r in store.execute("SELECT thread_id FROM approvals")}
    finally:
        store.close()


def test_chat_without_a_model_says_how_to_configure_one(config, monkeypatch, capsys):
    lines = iter(["why is checkout slow?", "/quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert cli.dispatch(["chat", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "No language model is configured" in out and "CLOUDPILOT_LLM__BASE_URL" in out


def test_autofix_on_a_terminal_asks_inline(api, namespace, config, monkeypatch, capsys):
    BAD_PROBE.build(api, namespace)
    monkeypatch.setattr("cli.team.interactive", lambda: True)
    answers = iter(["n", "not now"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    before = deployment(api, namespace)
    assert cli.dispatch(["autofix", namespace, "--deployment", "web", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "rejected by local user" in out and "nothing was applied" in out
    assert content(deployment(api, namespace)) == content(before)
