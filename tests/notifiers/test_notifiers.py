"""Notifiers against a real HTTP receiver on 127.0.0.1: signed deliveries that verify, retries on 5xx only, masked
text, severity filtering, one failing sink not stopping the others, and the log sink's line."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import pytest
from pydantic import SecretStr

import notifiers
from errors import InvalidInput
from notifiers import (
    DeliveryError,
    LogNotifier,
    Notification,
    Notifier,
    WebhookNotifier,
    deliver,
    from_settings,
    verify_signature,
)
from settings import Settings

SECRET = "test-webhook-signing-key"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook receiver: answers each request with the next scripted status (then 200) and keeps what came."""

    url: str
    statuses: list[int] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.requests.append(Received(self.path, dict(self.headers.items()), body))
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # keep the test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def webhook(url: str, **kw: Any) -> WebhookNotifier:
    return WebhookNotifier(url, SECRET, backoff_seconds=0.01, timeout_seconds=5, **kw)


def note(**kw: Any) -> Notification:
    defaults: dict[str, Any] = {
        "title": "Fix rolled_back",
        "text": "checkout: OOMKilled\nrolled back to revision 3",
        "severity": "critical",
        "human_help": True,
        "thread_id": "t-42",
        "fields": {"cluster": "prod-eu", "namespace": "shop", "plan": "p-7", "outcome": "rolled_back"},
        "links": {"runbook": "https://runbooks.example.com/oom"},
    }
    return Notification(**{**defaults, **kw})


class Failing:
    name = "failing"

    async def send(self, n: Notification) -> None:
        raise RuntimeError("backend said: token=abcdef0123456789abcdef")


class Hanging:
    name = "hanging"

    async def send(self, n: Notification) -> None:
        await anyio.sleep_forever()


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    async def send(self, n: Notification) -> None:
        self.sent.append(n)


async def test_signed_delivery_verifies_and_tampering_is_rejected(receiver: Receiver) -> None:
    n = note()
    results = await deliver([webhook(receiver.url)], n)

    assert [r.status for r in results] == ["sent"]
    [req] = receiver.requests
    assert req.path == "/hook"
    timestamp, signature = req.headers["X-CloudPilot-Timestamp"], req.headers["X-CloudPilot-Signature"]
    assert signature.startswith("sha256=")
    assert verify_signature(SECRET, timestamp, req.body, signature)
    payload = json.loads(req.body)
    assert payload["id"] == n.id == req.headers["X-CloudPilot-Delivery"]
    assert payload["title"] == "Fix rolled_back" and payload["severity"] == "critical" and payload["human_help"]
    assert payload["fields"]["namespace"] == "shop" and payload["thread_id"] == "t-42"
    assert payload["links"] == {"runbook": "https://runbooks.example.com/oom"}

    tampered = req.body.replace(b"rolled back", b"all is well")
    assert tampered != req.body
    assert not verify_signature(SECRET, timestamp, tampered, signature)
    assert not verify_signature("another-key", timestamp, req.body, signature)
    assert not verify_signature(SECRET, str(int(timestamp) + 1), req.body, signature)  # the time is signed too
    assert not verify_signature(SECRET, "not-a-number", req.body, signature)


async def test_stale_or_future_timestamp_is_rejected(receiver: Receiver) -> None:
    await deliver([webhook(receiver.url)], note())
    [req] = receiver.requests
    ts, sig = req.headers["X-CloudPilot-Timestamp"], req.headers["X-CloudPilot-Signature"]
    sent = int(ts)
    assert verify_signature(SECRET, ts, req.body, sig, now=sent + 299)
    assert not verify_signature(SECRET, ts, req.body, sig, now=sent + 301)
    assert not verify_signature(SECRET, ts, req.body, sig, now=sent - 301)
    assert not verify_signature(SECRET, ts, req.body, sig, max_age_seconds=10, now=sent + 11)


async def test_server_error_then_success_is_delivered_after_a_retry(receiver: Receiver) -> None:
    receiver.statuses = [500]
    results = await deliver([webhook(receiver.url)], note())

    assert [r.status for r in results] == ["sent"]
    assert len(receiver.requests) == 2
    first, second = receiver.requests
    assert first.body == second.body  # the same notification, the same id: a receiver can de-duplicate
    assert first.headers["X-CloudPilot-Delivery"] == second.headers["X-CloudPilot-Delivery"]
    for req in receiver.requests:
        assert verify_signature(
            SECRET, req.headers["X-CloudPilot-Timestamp"], req.body, req.headers["X-CloudPilot-Signature"]
        )


async def test_server_errors_are_retried_twice_then_reported(receiver: Receiver) -> None:
    receiver.statuses = [503, 502, 500, 200]
    [result] = await deliver([webhook(receiver.url)], note())

    assert result.status == "failed"
    assert "HTTP 500" in result.reason and "3 attempts" in result.reason
    assert len(receiver.requests) == 3


async def test_client_error_is_not_retried_and_is_reported(receiver: Receiver) -> None:
    receiver.statuses = [400, 200]
    [result] = await deliver([webhook(receiver.url)], note())

    assert result.status == "failed"
    assert "HTTP 400" in result.reason
    assert len(receiver.requests) == 1


async def test_redirect_is_not_followed(receiver: Receiver) -> None:
    receiver.statuses = [307]
    [result] = await deliver([webhook(receiver.url)], note())

    assert result.status == "failed" and "307" in result.reason
    assert [r.path for r in receiver.requests] == ["/hook"]


async def test_connection_failure_reports_no_url_credentials_or_secret(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = webhook(f"http://alice:pw-in-url-123@127.0.0.1:{port}/hooks/path-secret-456?sig=query-secret-789")
    caplog.set_level(logging.DEBUG)

    [result] = await deliver([sink], note())

    assert result.status == "failed"
    assert f"http://127.0.0.1:{port}" in result.reason and "3 attempts" in result.reason
    shown = result.reason + repr(sink) + caplog.text
    for secret in ("pw-in-url-123", "path-secret-456", "query-secret-789", "alice", SECRET):
        assert secret not in shown


async def test_secrets_in_text_never_reach_the_receiver(receiver: Receiver) -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib3QifQ.c2lnbmF0dXJlLXZhbHVl"
    n = note(
        title="login failed with password=hunter2",
        text=f"connect failed: password=hunter2\ncurl -H 'Authorization: Bearer {token}' https://api",
        fields={"dsn": "postgres://app:hunter2@db:5432/shop", "namespace": "shop"},
    )
    results = await deliver([webhook(receiver.url)], n)

    assert [r.status for r in results] == ["sent"]
    [req] = receiver.requests
    assert b"hunter2" not in req.body
    assert token.encode() not in req.body
    payload = json.loads(req.body)
    assert "***" in payload["text"] and "***" in payload["title"] and "***" in payload["fields"]["dsn"]
    assert payload["fields"]["namespace"] == "shop"  # masking keeps what is not a credential
    assert "hunter2" in n.text  # the caller's object is untouched; only what leaves is masked


async def test_below_min_severity_is_skipped(receiver: Receiver) -> None:
    recorder = Recorder()
    skipped = await deliver([webhook(receiver.url), recorder], note(severity="info"), "warning")

    assert [r.status for r in skipped] == ["skipped", "skipped"]
    assert receiver.requests == [] and recorder.sent == []

    sent = await deliver([webhook(receiver.url), recorder], note(severity="warning"), "warning")
    assert [r.status for r in sent] == ["sent", "sent"]
    assert len(receiver.requests) == 1 and len(recorder.sent) == 1
    assert [r.status for r in await deliver([recorder], note(severity="warning"), "critical")] == ["skipped"]


async def test_one_failing_sink_does_not_stop_the_others(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder()
    sinks: list[Notifier] = [Failing(), Hanging(), webhook(receiver.url), recorder]

    with anyio.fail_after(10):
        results = await deliver(sinks, note(), timeout_seconds=0.5)

    assert [(r.sink, r.status) for r in results] == [
        ("failing", "failed"),
        ("hanging", "failed"),
        ("webhook", "sent"),
        ("recorder", "sent"),
    ]
    assert "RuntimeError" in results[0].reason and "0.5s" in results[1].reason
    assert len(receiver.requests) == 1 and len(recorder.sent) == 1
    assert "abcdef0123456789abcdef" not in results[0].reason + caplog.text  # the failure's own text is masked
    assert "failing" in caplog.text and "hanging" in caplog.text


async def test_log_sink_writes_one_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="notifiers")
    results = await deliver([LogNotifier()], note(text="first line\nsecond line password=hunter2"))

    assert [r.status for r in results] == ["sent"]
    [record] = [r for r in caplog.records if r.name == "notifiers.log"]
    line = record.getMessage()
    assert record.levelno == logging.CRITICAL
    assert "\n" not in line
    assert "[critical] Fix rolled_back: first line ⏎ second line" in line
    assert "namespace=shop" in line and "thread=t-42" in line and "human help needed" in line
    assert "hunter2" not in line


def test_from_settings_builds_the_configured_sinks() -> None:
    assert [type(s) for s in from_settings(Settings())] == [LogNotifier]
    assert from_settings(Settings(notify={"log": False})) == []

    both = from_settings(Settings(notify={"webhook_url": "https://hooks.example.com/x", "webhook_secret": "k"}))
    assert [type(s) for s in both] == [LogNotifier, WebhookNotifier]
    assert all(isinstance(s, notifiers.Notifier) for s in both)


def test_unsigned_webhook_is_refused() -> None:
    with pytest.raises(InvalidInput, match="webhook_secret"):
        from_settings(Settings(notify={"webhook_url": "https://hooks.example.com/x"}))
    with pytest.raises(InvalidInput, match="signed"):
        WebhookNotifier("https://hooks.example.com/x", SecretStr(""))


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "gopher://h/", "hooks.example.com/x"])
def test_non_http_webhook_url_is_refused(url: str) -> None:
    with pytest.raises(InvalidInput, match="http") as info:
        WebhookNotifier(url, SECRET)
    assert SECRET not in str(info.value)


def test_notification_rejects_an_unknown_severity() -> None:
    with pytest.raises(ValueError, match="severity"):
        Notification("t", "x", severity="fatal")  # type: ignore[arg-type]


async def test_send_raises_a_delivery_error_for_callers_outside_deliver(receiver: Receiver) -> None:
    receiver.statuses = [404]
    with pytest.raises(DeliveryError, match="HTTP 404"):
        await webhook(receiver.url).send(note())
