"""Pure logic on plain data: quantities, pod status reasons, redaction, input validation."""

from decimal import Decimal

import pytest

from errors import InvalidInput
from guard import validate
from guard.mask import MASK, mask_text, redact
from kube import podstatus
from kube.quantity import QuantityError, cores, gib, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100m", Decimal("0.1")),
        ("1.5Gi", Decimal(1610612736)),
        ("2k", Decimal(2000)),
        ("1e3", Decimal(1000)),
        ("12E", Decimal(12 * 10**18)),
        ("128974848", Decimal(128974848)),
        ("129e6", Decimal(129000000)),
        ("123Mi", Decimal(128974848)),
        ("1Ki", Decimal(1024)),
        ("250u", Decimal("0.00025")),
        ("5n", Decimal("5e-9")),
        ("1.5E2", Decimal(150)),
        (".5", Decimal("0.5")),
        ("1Ei", Decimal(2**60)),
    ],
)
def test_quantities_parse_exactly(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


def test_quantity_helpers_convert_units() -> None:
    assert cores("250m") == Decimal("0.25")
    assert gib("512Mi") == Decimal("0.5")
    assert cores(None) == 0


@pytest.mark.parametrize("bad", ["", "1.2.3", "10 Mi", "Gi", "1Zi", "abc"])
def test_bad_quantities_are_rejected_with_the_rule(bad: str) -> None:
    with pytest.raises(QuantityError, match="not a Kubernetes quantity"):
        parse_quantity(bad)


def _pod(statuses=None, init_statuses=None, init_specs=None, phase="Running", **meta):
    return {
        "metadata": {"name": "p", **meta},
        "spec": {"containers": [{"name": "a"}], "initContainers": init_specs or []},
        "status": {
            "phase": phase,
            "containerStatuses": statuses or [],
            "initContainerStatuses": init_statuses or [],
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


@pytest.mark.parametrize(
    ("pod", "reason"),
    [
        (_pod([{"name": "a", "ready": True, "state": {"running": {}}}]), "Running"),
        (_pod([{"name": "a", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]), "CrashLoopBackOff"),
        (_pod([{"name": "a", "state": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}]), "OOMKilled"),
        (
            _pod([{"name": "a", "state": {"waiting": {"reason": "ImagePullBackOff"}}}], phase="Pending"),
            "ImagePullBackOff",
        ),
        (_pod([{"name": "a", "state": {"terminated": {"exitCode": 2}}}]), "ExitCode:2"),
        (_pod([{"name": "a", "state": {"terminated": {"exitCode": 0, "signal": 9}}}]), "Signal:9"),
        (
            _pod([{"name": "a", "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}], phase="Succeeded"),
            "Completed",
        ),
        (
            _pod(
                [],
                [{"name": "i", "state": {"waiting": {"reason": "PodInitializing"}}}],
                [{"name": "i"}],
                phase="Pending",
            ),
            "Init:0/1",
        ),
        (
            _pod(
                [],
                [{"name": "i", "state": {"terminated": {"reason": "Error", "exitCode": 1}}}],
                [{"name": "i"}],
                phase="Pending",
            ),
            "Init:Error",
        ),
        (
            _pod(
                [],
                [{"name": "i", "state": {"waiting": {"reason": "CrashLoopBackOff"}}}],
                [{"name": "i"}],
                phase="Pending",
            ),
            "Init:CrashLoopBackOff",
        ),
        (
            _pod([{"name": "a", "ready": True, "state": {"running": {}}}], deletionTimestamp="2026-01-01T00:00:00Z"),
            "Terminating",
        ),
        (_pod([], phase="Pending"), "Pending"),
        (
            {"status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "reason": "SchedulingGated"}]}},
            "SchedulingGated",
        ),
    ],
)
def test_pod_reason_matches_kubectl(pod: dict, reason: str) -> None:
    assert podstatus.pod_reason(pod) == reason


def test_ready_counts_include_sidecars_and_restarts_add_up() -> None:
    pod = _pod(
        [{"name": "a", "ready": True, "restartCount": 2, "state": {"running": {}}}],
        [{"name": "proxy", "ready": True, "started": True, "restartCount": 1, "state": {"running": {}}}],
        [{"name": "proxy", "restartPolicy": "Always"}],
    )
    assert podstatus.ready_counts(pod) == (2, 2)
    assert podstatus.restarts(pod) == 3
    assert podstatus.pod_reason(pod) == "Running"


def test_last_termination_names_reason_and_exit_code() -> None:
    pod = _pod([{"name": "a", "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}])
    assert podstatus.last_termination(pod) == "OOMKilled (137)"


def test_secret_data_and_credentials_never_survive_redaction() -> None:
    secret = {
        "kind": "Secret",
        "data": {"password": "aHVudGVyMg=="},
        "stringData": {"token": "abc"},
        "metadata": {
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": '{"data": "x"}',
                "example.com/api-token": "t0ps3cret",
                "owner": "team-a",
            }
        },
    }
    out = redact(secret)
    assert "aHVudGVyMg==" not in str(out) and "t0ps3cret" not in str(out) and "abc" not in str(out["stringData"])
    assert out["metadata"]["annotations"]["owner"] == "team-a"
    env = {
        "spec": {
            "containers": [
                {
                    "env": [
                        {"name": "DB_PASSWORD", "value": "hunter2"},
                        {"name": "URL", "value": "postgres://app:s3cr3t@db:5432/x"},
                        {"name": "MODE", "value": "production"},
                    ]
                }
            ]
        }
    }
    masked = redact(env)["spec"]["containers"][0]["env"]
    assert masked[0]["value"] == MASK
    assert "s3cr3t" not in masked[1]["value"] and masked[1]["value"].startswith("postgres://app:")
    assert masked[2]["value"] == "production"


def test_mask_text_hides_tokens_in_free_text() -> None:
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2EifQ.c2lnbmF0dXJlLXZhbHVl"
    text = mask_text(f"login ok token={jwt} api_key: sk-abcdefghijklmnopqrstuvwx user=bob")
    assert jwt not in text and "sk-abcdefghijklmnopqrstuvwx" not in text and "user=bob" in text


@pytest.mark.parametrize(
    "selector",
    ["app=web", "app==web,tier!=db", "env in (prod, stage)", "!canary", "example.com/team notin (a,b)", "app"],
)
def test_valid_label_selectors_pass(selector: str) -> None:
    assert validate.label_selector(selector) == selector


@pytest.mark.parametrize(
    ("selector", "rule"),
    [
        ("app=web=x", "invalid at"),
        ("-bad=1", "name part"),
        ("app in (a", "invalid at"),
        ("app=" + "x" * 64, "at most 63"),
    ],
)
def test_invalid_label_selectors_name_the_rule(selector: str, rule: str) -> None:
    with pytest.raises(InvalidInput, match=rule):
        validate.label_selector(selector)


def test_invalid_names_and_field_selectors_are_rejected() -> None:
    with pytest.raises(InvalidInput, match="DNS-1123 label"):
        validate.namespace("Bad_NS")
    with pytest.raises(InvalidInput, match="DNS-1123 subdomain"):
        validate.object_name("web/1")
    with pytest.raises(InvalidInput, match="field=value"):
        validate.field_selector("status.phase")
    assert validate.field_selector("status.phase=Running,spec.nodeName!=n1")
