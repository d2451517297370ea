"""A plan is not a way to read secrets, and nothing secret is kept at rest: dry-run diffs, plans, API errors
and audit rows mask what read tools mask, wherever a change would move it; SQLite holds no secret value."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from errors import CloudPilotError, InvalidInput, NotAllowed
from settings import Settings
from store import AuditLog
from tests.fix.scenarios import deploy, deployment, kubelet
from tools.fix import audit_get, audit_list, fix_apply, fix_plan_show
from tools.mutations import resource_delete, resource_patch, rollout_undo, set_image

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]
PASSWORD = "s3cr3t-Horse-Battery-7"  # a Secret's value
ENV_TOKEN = "envtok-Staple-Correct-9"  # a Deployment's credential-like env value
ENV = [{"name": "DB_PASSWORD", "value": ENV_TOKEN}, {"name": "LOG_LEVEL", "value": "info"}]
ENV_PATH = "/spec/template/spec/containers/0/env/0"


@pytest.fixture
def settings(write_settings: Settings) -> Settings:  # writes switched on
    return write_settings


def _encoded(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


FORMS = (PASSWORD, _encoded(PASSWORD), ENV_TOKEN)


def _secret(api, namespace: str) -> None:
    meta = {"name": "db", "annotations": {"owner": "payments"}}  # so that a copy into the annotations would work
    body = {"metadata": meta, "type": "Opaque", "data": {"password": _encoded(PASSWORD)}}
    api("POST", f"/api/v1/namespaces/{namespace}/secrets", body)


def _assert_clean(text: str) -> None:
    for value in FORMS:
        assert value not in text, f"{value!r} leaked"


async def _refused(call, **patch) -> CloudPilotError:
    with pytest.raises(CloudPilotError) as caught:
        await call(resource_patch, **patch)
    _assert_clean(str(caught.value))
    return caught.value


async def test_copy_move_or_test_of_a_secret_value_is_refused(api, namespace, call, runtime) -> None:
    _secret(api, namespace)
    for kind in ("Secret", "secrets"):
        for op in (
            {"op": "copy", "from": "/data/password", "path": "/metadata/annotations/x"},
            {"op": "move", "from": "/data", "path": "/metadata/annotations"},
            {"op": "test", "path": "/data/password", "value": _encoded("guess")},
        ):
            error = await _refused(call, kind=kind, name="db", namespace=namespace, patch=[op], patch_type="json")
            assert isinstance(error, NotAllowed) and "masks" in error.message, error.message
    with pytest.raises(NotAllowed, match="does not write Secret data"):
        patch = {"data": {"password": _encoded("new-value-123")}}
        await call(resource_patch, kind="Secret", name="db", namespace=namespace, patch=patch, patch_type="merge")
    secret = api("GET", f"/api/v1/namespaces/{namespace}/secrets/db")
    assert secret["metadata"]["annotations"] == {"owner": "payments"}
    assert secret["data"]["password"] == _encoded(PASSWORD)
    refusals = AuditLog(runtime.store).entries(event="refused")
    assert len(refusals) == 7
    for entry in refusals:
        _assert_clean(entry.result + entry.diff)


async def test_a_masked_env_value_cannot_be_copied_or_unmasked(api, namespace, call) -> None:
    deploy(api, namespace, {"env": ENV}, ready=False)
    base = {"kind": "Deployment", "name": "web", "namespace": namespace, "patch_type": "json"}
    copy = {"op": "copy", "from": f"{ENV_PATH}/value", "path": "/metadata/annotations/x"}
    assert "masks" in (await _refused(call, **base, patch=[copy])).message
    whole = {"op": "copy", "from": "/spec/template/spec/containers/0/env", "path": "/metadata/annotations/x"}
    assert "masks" in (await _refused(call, **base, patch=[whole])).message
    rename = {"op": "replace", "path": f"{ENV_PATH}/name", "value": "PLAIN"}  # the value would show unmasked
    error = await _refused(call, **base, patch=[rename])
    assert "would show values CloudPilot masks" in error.message and f"{ENV_PATH}/value" in error.message
    guess = {"metadata": {"annotations": {"note": ENV_TOKEN}}}  # a patch carrying a masked value
    error = await _refused(call, kind="Deployment", name="web", namespace=namespace, patch=guess, patch_type="merge")
    assert "contains a value CloudPilot masks" in error.message
    assert deployment(api, namespace)["spec"]["template"]["spec"]["containers"][0]["env"] == ENV


async def test_api_errors_are_masked(api, namespace, call) -> None:
    template = {
        "metadata": {"labels": {"app": "b"}, "annotations": {"api-token": ENV_TOKEN}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "app", "image": "busybox:1.36", "env": ENV}]},
    }
    job = {
        "metadata": {"name": "b"},
        "spec": {"manualSelector": True, "selector": {"matchLabels": {"app": "b"}}, "template": template},
    }
    api("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", job)
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "busybox:1.37"}]}}}}
    with pytest.raises(InvalidInput) as caught:  # a Job's template is immutable: the refusal quotes the template
        await call(resource_patch, kind="Job", name="b", namespace=namespace, patch=patch)
    assert "spec.template" in caught.value.message and '"api-token":"***"' in caught.value.message
    _assert_clean(str(caught.value))


async def test_a_secrets_diff_names_keys_and_sizes_only(api, namespace, call) -> None:
    _secret(api, namespace)
    labelled = await call(
        resource_patch, kind="Secret", name="db", namespace=namespace, patch={"metadata": {"labels": {"team": "a"}}}
    )
    assert "+    team: a" in labelled.changes[0].diff
    _assert_clean(labelled.render())
    deleted = await call(resource_delete, kind="Secret", name="db", namespace=namespace)
    assert f"# data.password: removed ({len(PASSWORD)} bytes)" in deleted.changes[0].diff
    _assert_clean(deleted.render())


async def test_plans_and_audit_rows_at_rest_hold_no_secret_value(api, namespace, call, runtime, settings) -> None:
    _secret(api, namespace)
    deploy(api, namespace, {"env": ENV})
    image = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "shop/web:1.1"}]}}}}
    api("PATCH", f"/apis/apps/v1/namespaces/{namespace}/deployments/web", image, "application/merge-patch+json")
    plans = [
        await call(
            resource_patch, kind="Secret", name="db", namespace=namespace, patch={"metadata": {"labels": {"a": "b"}}}
        ),
        await call(set_image, kind="Deployment", name="web", namespace=namespace, image="shop/web:1.2"),
        await call(rollout_undo, name="web", namespace=namespace),  # the older template holds the env value too
    ]
    copy = {"op": "copy", "from": "/data/password", "path": "/metadata/annotations/x"}
    await _refused(call, kind="Secret", name="db", namespace=namespace, patch=[copy], patch_type="json")
    with kubelet(api, namespace):
        result = await call(fix_apply, plan_id=plans[2].plan_id, confirm=plans[2].plan_id, verify_timeout_seconds=40)
    assert result.status == "verified", result.render()
    assert deployment(api, namespace)["spec"]["template"]["spec"]["containers"][0]["image"] == "shop/web:1.0"
    shown = [(await call(fix_plan_show, plan_id=p.plan_id)).render() for p in plans]
    records = (await call(audit_list, limit=100)).entries
    shown += [(await call(audit_get, entry_id=e.id)).render() for e in records]
    for text in shown:
        _assert_clean(text)
    database = Path(settings.store.path)
    stored = database.read_bytes() + (Path(f"{database}-wal").read_bytes() if Path(f"{database}-wal").exists() else b"")
    assert b"p-" in stored  # the plans are there ...
    for value in FORMS:
        assert value.encode() not in stored, f"{value!r} is in the SQLite file"  # ... without the values
