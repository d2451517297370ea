"""`cloudpilot bot` as a real process: refuses to start with no chat app, and serves the Slack app over HTTP
(uvicorn on loopback) against the local Slack stand-in."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest
import yaml

import cli
from tests.chat.slack_mock import SlackMock, event_body, mention, signed_headers
from tests.cli.process import start, wait_healthy
from tests.serving import free_port

pytestmark = pytest.mark.timeout(120)


def test_no_chat_app_configured_is_a_clear_error(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {"store": {"path": str(tmp_path / "c.db")}, "agents": {"checkpoint_path": str(tmp_path / "t.db")}}
        )
    )
    assert cli.dispatch(["bot", "--config", str(config)]) == 1
    assert "No chat app is configured" in capsys.readouterr().err


def test_the_bot_process_answers_a_signed_mention(tmp_path, cluster):
    port = free_port()
    with SlackMock(bot_token="xoxb-proc") as slack:
        config = tmp_path / "c.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "k8s": {"kubeconfig": str(cluster.kubeconfig)},
                    "store": {"path": str(tmp_path / "c.db")},
                    "agents": {"checkpoint_path": str(tmp_path / "t.db")},
                    "slack": {"bot_token": "xoxb-proc", "signing_secret": "proc-secret", "api_url": slack.base_url},
                    "bots": {"port": port},
                }
            )
        )
        proc = start("bot", "--config", str(config), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_healthy(proc, base, "the bot")
            deadline = time.monotonic() + 30
            body = json.dumps(event_body(mention("pending", user="U0ALICE", channel="C0OPS")))
            unsigned = httpx.post(f"{base}/slack/events", content=body, headers={"Content-Type": "application/json"})
            assert unsigned.status_code == 401
            headers = signed_headers(body, "proc-secret") | {"Content-Type": "application/json"}
            assert httpx.post(f"{base}/slack/events", content=body, headers=headers).status_code == 200
            while not slack.posts("C0OPS"):
                assert time.monotonic() < deadline + 30, "no answer"
                time.sleep(0.1)
            assert slack.posts("C0OPS")[0]["text"] == "No plans are waiting for approval."
        finally:
            proc.terminate()
            output = proc.communicate(timeout=20)[0].decode()
    assert "proc-secret" not in output and "xoxb-proc" not in output
    assert "refused" in output  # the unsigned request was logged
