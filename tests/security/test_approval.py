"""A model cannot approve its own plans: over HTTP the confirm argument is not an approval, the plan says only
the methods that work, and the audit names the authenticated approver apart from the client's own name."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from errors import NotAllowed
from runtime import Principal, caller
from settings import Settings
from store import AuditLog, Store
from tests.fix.scenarios import deploy, deployment
from tools.fix import audit_get, audit_list, fix_apply
from tools.mutations import scale

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90), pytest.mark.stores]  # store-backed: SQLite, then PostgreSQL
ALICE = Principal("alice (token)", transport="http")


@pytest.fixture
def settings(write_settings: Settings) -> Settings:  # writes switched on
    return write_settings


def _fix(runtime, **values) -> None:
    runtime.settings = runtime.settings.model_copy(update={"fix": runtime.settings.fix.model_copy(update=values)})


async def test_over_http_a_confirm_argument_does_not_approve(api, namespace, call, runtime) -> None:
    deploy(api, namespace, ready=False)
    with caller("mcp:some-model 1.0", None, ALICE):
        plan = await call(scale, kind="Deployment", name="web", namespace=namespace, replicas=0)
        assert "confirm" not in plan.next_step and "A person must approve it" in plan.next_step, plan.next_step
        assert "elicitation" in plan.next_step
        with pytest.raises(NotAllowed, match="does not accept the confirm argument") as caught:
            await call(fix_apply, plan_id=plan.plan_id, confirm=plan.plan_id)
        assert "confirm=" not in str(caught.value)
    assert deployment(api, namespace)["spec"]["replicas"] == 2
    refused = AuditLog(runtime.store).entries(event="refused")[0]
    assert (refused.principal, refused.client) == ("alice (token)", "mcp:some-model 1.0")
    with caller("mcp:desktop 1.0"):  # stdio (the local user): confirm still works
        plan = await call(scale, kind="Deployment", name="web", namespace=namespace, replicas=0)
    assert f"confirm='{plan.plan_id}'" in plan.next_step


async def test_elicitation_approval_names_the_authenticated_approver(api, namespace, call, runtime) -> None:
    deploy(api, namespace, ready=False)
    asked: list[str] = []

    async def ask(message: str) -> bool:
        asked.append(message)
        return True

    with caller("mcp:claims-to-be-admin 9.9", ask, ALICE):
        plan = await call(scale, kind="Deployment", name="web", namespace=namespace, replicas=0)
        result = await call(fix_apply, plan_id=plan.plan_id, verify_timeout_seconds=30)
        assert result.status == "verified" and result.approved_by == "alice (token) via elicitation"
        listed = await call(audit_list, plan_id=plan.plan_id)
    assert asked and "+  replicas: 0" in asked[0]
    approved = next(e for e in listed.entries if e.event == "approved")
    assert approved.approver == "alice (token) via elicitation"
    assert (approved.principal, approved.client) == ("alice (token)", "mcp:claims-to-be-admin 9.9")
    assert "alice (token) via elicitation" in listed.render() and "mcp:claims-to-be-admin 9.9" in listed.render()
    record = (await call(audit_get, entry_id=approved.id)).render()
    assert "approver: alice (token) via elicitation" in record and "principal: alice (token)" in record


async def test_policy_approves_only_when_the_server_accepts_policy(api, namespace, call, runtime) -> None:
    deploy(api, namespace, ready=False)
    _fix(runtime, auto_approve=["scale"], approval=["elicitation"])
    plan = await call(scale, kind="Deployment", name="web", namespace=namespace, replicas=0)
    assert "Pre-approved" not in plan.next_step and "fix.auto_approve" not in plan.next_step
    assert "confirm" not in plan.next_step, plan.next_step
    with pytest.raises(NotAllowed):
        await call(fix_apply, plan_id=plan.plan_id, confirm=plan.plan_id)
    _fix(runtime, approval=["policy"])
    with caller("cli", None, ALICE):
        result = await call(fix_apply, plan_id=plan.plan_id, verify_timeout_seconds=30)
    assert result.approved_by == "policy fix.auto_approve"
    approved = next(e for e in AuditLog(runtime.store).entries(plan_id=plan.plan_id) if e.event == "approved")
    assert approved.approver == "policy fix.auto_approve" and approved.principal == "alice (token)"


def test_audit_files_from_before_are_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, event TEXT NOT NULL,
            plan_id TEXT, cluster TEXT NOT NULL DEFAULT '', identity TEXT NOT NULL DEFAULT '',
            client TEXT NOT NULL DEFAULT '', object TEXT NOT NULL DEFAULT '', diff TEXT NOT NULL DEFAULT '',
            result TEXT NOT NULL DEFAULT '');
        CREATE TABLE plans (id TEXT PRIMARY KEY, created_at TEXT NOT NULL, expires_at TEXT NOT NULL,
            cluster TEXT NOT NULL, status TEXT NOT NULL, body TEXT NOT NULL);
        INSERT INTO audit (at, event, plan_id, client, result) VALUES ('2025-01-01T00:00:00+00:00', 'approved',
            'p-old', 'mcp:old 1.0', 'approved by confirm argument');
        """
    )
    live = {"kind": "Secret", "metadata": {"uid": "u-1"}, "data": {"password": "b2xkLXNlY3JldC12YWx1ZQ=="}}
    body = {"items": [{"path": "/x", "live": live, "desired": live}]}
    db.execute("INSERT INTO plans VALUES ('p-old', 'a', 'b', 'c', 'verified', ?)", (json.dumps(body),))
    db.commit()
    db.close()
    store = Store(path)
    try:
        log = AuditLog(store)
        AuditLog(store)  # opening twice is fine
        old = log.entries()[0]
        assert (old.client, old.principal, old.approver) == ("mcp:old 1.0", "", "")
        log.record("approved", plan_id="p-new", principal="bob (token)", approver="bob (token) via elicitation")
        assert log.entries()[0].approver == "bob (token) via elicitation"
        _, kept = log.plan("p-old")
        assert kept["items"][0] == {"path": "/x", "uid": "u-1"}
    finally:
        store.close()
    wal = Path(f"{path}-wal")
    assert b"b2xkLXNlY3JldC12YWx1ZQ" not in path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
