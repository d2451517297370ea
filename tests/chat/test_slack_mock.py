"""The Slack stand-in speaks to the real slack_sdk clients: Web API, auth, rate limits, Socket Mode."""

from __future__ import annotations

import asyncio

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.socket_mode.websockets import SocketModeClient
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook import WebhookClient

from tests.chat.slack_mock import SlackMock, event_body, mention, signed_headers


def test_post_update_and_history_with_metadata() -> None:
    with SlackMock() as slack:
        client = WebClient(token=slack.bot_token, base_url=slack.base_url)
        assert client.auth_test()["user_id"] == "UBOT"
        meta = {"event_type": "incident", "event_payload": {"id": "inc-1"}}
        first = client.chat_postMessage(channel="C1", text="one", metadata=meta)
        client.chat_postMessage(channel="C1", text="reply", thread_ts=first["ts"])
        client.chat_update(channel="C1", ts=first["ts"], text="one, edited", blocks=[{"type": "divider"}])

        history = client.conversations_history(channel="C1", include_all_metadata=True)["messages"]
        assert [m["text"] for m in history] == ["one, edited"]  # replies stay in their thread, as in Slack
        assert history[0]["metadata"] == meta and history[0]["blocks"] == [{"type": "divider"}]
        assert "metadata" not in client.conversations_history(channel="C1")["messages"][0]
        replies = client.conversations_replies(channel="C1", ts=first["ts"])["messages"]
        assert [m["text"] for m in replies] == ["one, edited", "reply"]
        assert [m["text"] for m in slack.messages("C1")] == ["one, edited", "reply"]
        assert [p["text"] for p in slack.posts("C1")] == ["one", "reply"] and len(slack.updates) == 1
        with pytest.raises(SlackApiError, match="message_not_found"):
            client.chat_update(channel="C1", ts="1.2", text="x")


def test_wrong_token_is_invalid_auth() -> None:
    with SlackMock() as slack:
        with pytest.raises(SlackApiError) as caught:
            WebClient(token="xoxb-wrong", base_url=slack.base_url).chat_postMessage(channel="C1", text="x")
        assert caught.value.response["error"] == "invalid_auth" and slack.posts() == []


def test_rate_limited_then_accepted() -> None:
    with SlackMock() as slack:
        slack.fail("chat.postMessage", 2, 429, 1)
        client = WebClient(token=slack.bot_token, base_url=slack.base_url)
        for _ in range(2):
            with pytest.raises(SlackApiError) as caught:
                client.chat_postMessage(channel="C1", text="x")
            assert caught.value.response.status_code == 429
            assert caught.value.response.headers["Retry-After"] == "1"
            assert caught.value.response["error"] == "ratelimited"
        client.chat_postMessage(channel="C1", text="x")
        assert len(slack.rejected) == 2 and len(slack.posts("C1")) == 1


def test_ephemeral_usergroups_form_bodies_response_url_and_503() -> None:
    with SlackMock() as slack:
        slack.usergroups = {"S1": ["U1", "U2"]}
        client = WebClient(token=slack.bot_token, base_url=slack.base_url)
        client.chat_postEphemeral(channel="C1", user="U1", text="only you")
        assert client.usergroups_users_list(usergroup="S1")["users"] == ["U1", "U2"]
        client.api_call("chat.postMessage", data={"channel": "C2", "text": "f", "blocks": '[{"type": "divider"}]'})
        assert slack.posts("C2")[0]["blocks"] == [{"type": "divider"}] and slack.ephemerals[0]["user"] == "U1"
        assert WebhookClient(slack.response_url("r1")).send(text="done", replace_original=True).status_code == 200
        assert slack.responses == [{"id": "r1", "text": "done", "replace_original": True}]
        slack.fail("auth.test", 1, 503, None)
        with pytest.raises(SlackApiError) as caught:
            client.auth_test()
        assert caught.value.response.status_code == 503 and client.auth_test()["ok"]


def test_signed_headers_verify() -> None:
    body = '{"type": "url_verification"}'
    headers = signed_headers(body, "secret")
    assert SignatureVerifier("secret").is_valid_request(body, headers)


async def test_socket_mode_delivers_and_gets_ack() -> None:
    with SlackMock() as slack:
        received: list[SocketModeRequest] = []

        async def listener(client: SocketModeClient, request: SocketModeRequest) -> None:
            received.append(request)
            await client.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))

        web = AsyncWebClient(token=slack.bot_token, base_url=slack.base_url)
        client = SocketModeClient(app_token=slack.app_token, web_client=web)
        client.socket_mode_request_listeners.append(listener)  # type: ignore[arg-type]
        try:
            await client.connect()
            await asyncio.to_thread(slack.wait_connected)
            envelope_id = slack.push("events_api", event_body(mention("status?")))
            ack = await asyncio.to_thread(slack.wait_ack, envelope_id)
        finally:
            await client.close()
        assert ack == {"envelope_id": envelope_id}
        assert received[0].payload["event"]["text"] == "<@UBOT> status?"
