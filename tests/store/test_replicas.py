"""Two replicas on one PostgreSQL store: a plan the team made in one waits for its approval, which a person gives
through the other — a separate process (`cloudpilot approvals approve`), with its own connections — and that
process applies it to the real cluster. The first replica's thread then shows the fix done."""

from __future__ import annotations

import os
import subprocess  # nosec B404
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.api import Team
from agents.approvals import Approvals
from runtime import Runtime
from settings import Settings
from store import AuditLog
from store.postgres import PostgresStore
from tests.agents.conftest import ALICE, Recorder, team_settings
from tests.fix.scenarios import SCENARIOS, deployment, kubelet
from tools.fixloop import content

pytestmark = [pytest.mark.timeout(240)]
BAD_PROBE = SCENARIOS[0]


@pytest.mark.parametrize("store_backend", ["postgres"], indirect=True)
async def test_an_approval_pending_in_one_replica_is_approved_and_applied_through_the_other(
    api: Any, namespace: str, write_settings: Settings, tmp_path: Path, store_settings: dict[str, Any]
) -> None:
    settings = team_settings(write_settings, tmp_path / "a")  # replica A: checkpoint_path unused (PostgreSQL)
    BAD_PROBE.build(api, namespace)
    before = deployment(api, namespace)
    replica_a = Runtime(settings)
    try:
        assert isinstance(replica_a.store, PostgresStore)
        async with Team.open(replica_a, model=None, sinks=[Recorder()]) as team:
            asked = await team.autofix(namespace, deployment="web", event=BAD_PROBE.event_text, user=ALICE)
            assert asked.status == "awaiting_approval" and asked.approval is not None, asked.answer
            assert content(deployment(api, namespace)) == content(before)  # waiting: nothing changed

            config = tmp_path / "replica-b.yaml"  # replica B: the same store, nothing else shared
            config.write_text(yaml.safe_dump(replica_b_settings(settings, tmp_path / "b", store_settings["url"])))
            with kubelet(api, namespace, "ready"):
                done = cloudpilot("approvals", "approve", asked.approval.id, "--reason", "ok", "--config", str(config))
            assert done.returncode == 0, done.stdout + done.stderr
            assert "[verified]" in done.stdout, done.stdout
            assert BAD_PROBE.fixed(deployment(api, namespace))

            events = AuditLog(replica_a.store).entries(plan_id=asked.plan["plan_id"])  # type: ignore[index]
            by_event = {e.event: e for e in events}
            assert {"planned", "approved", "applied", "verified"} <= set(by_event), [e.event for e in events]
            assert by_event["planned"].principal.startswith("alice (test)"), by_event["planned"]
            assert by_event["approved"].approver.startswith("local user"), by_event["approved"]
            decided = Approvals(replica_a.store).get(asked.approval.id)
            assert team.pending() == [] and decided is not None and decided.status == "approved"

            snapshot = await team.graph.aget_state({"configurable": {"thread_id": asked.thread_id}})
            assert not snapshot.interrupts  # A's thread no longer waits: B resumed it from the shared checkpoint
            assert (snapshot.values.get("outcome") or {}).get("status") == "verified", snapshot.values.get("outcome")
    finally:
        replica_a.close()
        replica_a.store.close()
    assert not (tmp_path / "a" / "threads.db").exists() and not (tmp_path / "b").exists()


def replica_b_settings(settings: Settings, home: Path, url: str) -> dict[str, Any]:
    return {
        "k8s": {"kubeconfig": str(settings.k8s.kubeconfig), "cache_ttl_seconds": 0},
        "store": {"path": str(home / "unused.db"), "url": url},
        "safety": {"allow_write": True},
        "agents": {"checkpoint_path": str(home / "threads.db")},
        "notify": {"log": False},
        "fix": {"verify_timeout_seconds": 40},
    }


def cloudpilot(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "import sys, cli; sys.exit(cli.dispatch(sys.argv[1:]))", *args]
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=root, env=env)  # nosec B603
