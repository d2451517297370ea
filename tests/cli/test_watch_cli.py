"""`cloudpilot watch --check-policy`: an operator checks the written policy before the pipeline runs it."""

from __future__ import annotations

import subprocess

import httpx
import pytest
import yaml

import cli
from store import Store
from store.incidents import Incidents
from tests.cli.process import start, wait_healthy
from tests.serving import free_port


def config(tmp_path, policy: str | None) -> str:
    settings: dict = {"store": {"path": str(tmp_path / "c.db")}}
    if policy is not None:
        (tmp_path / "policy.yaml").write_text(policy)
        settings["watch"] = {"policy_file": str(tmp_path / "policy.yaml")}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(settings))
    return str(path)


def test_a_valid_policy_is_described(tmp_path, capsys):
    policy = """
rules:
  - name: roll-back-bad-images
    findings: [POD_IMAGE_NOT_FOUND]
    actions: [set_template]
    namespaces: ["shop-*"]
    after_change: rollout
maintenance:
  - {name: weekend, days: [sat], start: "02:00", end: "04:00"}
"""
    assert cli.dispatch(["watch", "--check-policy", "--config", config(tmp_path, policy)]) == 0
    out = capsys.readouterr().out
    assert "rule roll-back-bad-images: set_template for POD_IMAGE_NOT_FOUND in namespaces shop-*" in out
    assert "after a rollout within 30 min" in out and "maintenance window weekend" in out


def test_an_unknown_policy_field_is_a_clear_error(tmp_path, capsys):
    policy = "rules:\n  - {name: r, findings: [POD_CRASHLOOP], actoins: [restart]}\n"
    assert cli.dispatch(["watch", "--check-policy", "--config", config(tmp_path, policy)]) == 1
    err = capsys.readouterr().err
    assert "rules.0.actoins: Extra inputs are not permitted" in err and "actions" in err


def test_no_policy_means_people_decide(tmp_path, capsys):
    assert cli.dispatch(["watch", "--check-policy", "--config", config(tmp_path, None)]) == 0
    assert "every fix waits for a person's approval" in capsys.readouterr().out


def test_a_missing_policy_file_is_named(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {"store": {"path": str(tmp_path / "c.db")}, "watch": {"policy_file": str(tmp_path / "nope.yaml")}}
        )
    )
    assert cli.dispatch(["watch", "--check-policy", "--config", str(path)]) == 1
    assert "nope.yaml cannot be read" in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_the_server_runs_the_pipeline_beside_its_tools(tmp_path, cluster):
    """`watch.in_server`: the MCP server (stdio) also receives alerts and opens incidents, once per process."""
    port = free_port()
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "k8s": {"kubeconfig": str(cluster.kubeconfig)},
                "store": {"path": str(tmp_path / "c.db")},
                "agents": {"checkpoint_path": str(tmp_path / "t.db")},
                "notify": {"log": False},
                "watch": {"in_server": True, "token": "in-server-token", "port": port, "investigate": False,
                          "sources": ["events"]},
            }
        )
    )  # fmt: skip
    # stdin: the MCP stdio transport waits there
    proc = start("--config", str(config), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(proc, base, "the pipeline")
        alert = {
            "status": "firing",
            "alerts": [{"status": "firing", "labels": {"alertname": "Errors", "namespace": "shop", "service": "cart"},
                        "startsAt": "2026-12-04T10:00:00Z", "fingerprint": "f1"}],
        }  # fmt: skip
        sent = httpx.post(f"{base}/alertmanager", json=alert, headers={"Authorization": "Bearer in-server-token"})
        assert sent.status_code == 200 and sent.json()["incidents"] == [1]
    finally:
        proc.terminate()
        _out, err = proc.communicate(timeout=20)
    assert b"in-server-token" not in err
    store = Store(tmp_path / "c.db")
    try:
        assert [r.root for r in Incidents(store).list()] == ["Service shop/cart"]
    finally:
        store.close()


def test_a_bad_policy_stops_the_server_from_starting(tmp_path):
    (tmp_path / "p.yaml").write_text("rules: [{name: r, findings: [X_Y], actions: [reboot]}]\n")
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump({"store": {"path": str(tmp_path / "c.db")},
                        "watch": {"in_server": True, "policy_file": str(tmp_path / "p.yaml")}})
    )  # fmt: skip
    proc = start("--config", str(config), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and b"rules.0.actions" in err and b"set_template" in err
