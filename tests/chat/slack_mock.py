"""A local stand-in for Slack: Web API, response_url receiver and Socket Mode, for the real slack_sdk / slack_bolt.

    with SlackMock() as slack:
        client = WebClient(token=slack.bot_token, base_url=slack.base_url)
        client.chat_postMessage(channel="C1", text="hi")
        assert slack.messages("C1")[0]["text"] == "hi"

The clients are pointed at it through their own seams (`base_url`, `apps.connections.open`); nothing is patched.
Like Slack, `conversations.history` lists top-level messages only and returns `metadata` only when asked
with `include_all_metadata`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from slack_sdk.signature import SignatureVerifier
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

BOT_USER, BOT_ID, TEAM, APP_ID = "UBOT", "BBOT", "T1", "A1"


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    headers: dict[str, str]


class ApiError(Exception):
    """Answered as `{"ok": false, "error": ...}` with HTTP 200, as Slack does."""


@dataclass
class _Fault:
    status: int
    retry_after: int | None
    body: str | None
    times: int = 1  # ignored for storms
    until: float = 0.0  # storms only

    def response(self) -> tuple[int, dict[str, str], bytes]:
        headers = {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}
        if self.body is not None:
            kind = "application/json; charset=utf-8" if self.body.startswith("{") else "text/plain"
            return self.status, {**headers, "Content-Type": kind}, self.body.encode()
        if self.status == 429:
            body = json.dumps({"ok": False, "error": "ratelimited"}).encode()
            return 429, {**headers, "Content-Type": "application/json"}, body
        return self.status, {**headers, "Content-Type": "text/plain"}, b"upstream down"


def _truthy(value: Any) -> bool:
    return value in (True, 1, "1", "true", "True")


class SlackMock:
    def __init__(self, bot_token: str = "xoxb-test", app_token: str = "xapp-test") -> None:
        self.bot_token, self.app_token = bot_token, app_token
        self.usergroups: dict[str, list[str]] = {}
        self.calls: list[Call] = []
        self.rejected: list[Call] = []  # refused by fail() / fail_all(), never dispatched
        self.updates: list[dict[str, Any]] = []
        self.ephemerals: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []  # bodies POSTed to response_url(id), with "id" added
        self.acks: list[dict[str, Any]] = []
        self._lock = threading.Condition(threading.RLock())
        self._channels: dict[str, list[dict[str, Any]]] = {}
        self._posts: list[dict[str, Any]] = []
        self._faults: dict[str, _Fault] = {}
        self._last_ts = 0
        self._storm: _Fault | None = None
        self._seq = itertools.count(1)
        self._ws_links = itertools.count(1)
        self._clients: set[ServerConnection] = set()
        self._http: ThreadingHTTPServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ws_stop: asyncio.Event | None = None
        self._threads: list[threading.Thread] = []
        self.port = self.ws_port = 0

    # ---- lifecycle -------------------------------------------------------------------------------------------

    def __enter__(self) -> SlackMock:
        http = self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        http.daemon_threads = True
        self.port = http.server_address[1]
        ready = threading.Event()
        self._threads = [
            threading.Thread(target=lambda: http.serve_forever(0.05), name="slack-mock-http", daemon=True),
            threading.Thread(target=lambda: asyncio.run(self._ws_main(ready)), name="slack-mock-ws", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        if not ready.wait(10):
            raise RuntimeError("the Socket Mode server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._ws_stop is not None:
            self._loop.call_soon_threadsafe(self._ws_stop.set)
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        for thread in self._threads:
            thread.join(10)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def response_url(self, id: str) -> str:
        return f"http://127.0.0.1:{self.port}/respond/{id}"

    # ---- inspection -------------------------------------------------------------------------------------------

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Current state of the channel (after updates, replies included), oldest first."""
        with self._lock:
            return json.loads(json.dumps(self._channels.get(channel, [])))

    def posts(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Every accepted chat.postMessage, as posted."""
        with self._lock:
            return [dict(p) for p in self._posts if channel is None or p["channel"] == channel]

    # ---- fault injection --------------------------------------------------------------------------------------

    def fail(
        self, method: str, times: int, status: int = 429, retry_after: int | None = 1, body: str | None = None
    ) -> None:
        """The next `times` calls of `method` ("respond" for response_url) answer `status` instead."""
        with self._lock:
            self._faults[method] = _Fault(status, retry_after, body, times=times)

    def fail_all(self, status: int = 429, retry_after: int | None = 1, seconds: float = 1.0) -> None:
        """Every call answers `status` for the next `seconds`."""
        with self._lock:
            self._storm = _Fault(status, retry_after, None, until=time.monotonic() + seconds)

    def _take_fault(self, method: str) -> _Fault | None:
        with self._lock:
            if self._storm is not None and time.monotonic() < self._storm.until:
                return self._storm
            fault = self._faults.get(method)
            if fault is None or fault.times <= 0:
                return None
            fault.times -= 1
            return fault

    # ---- Web API ---------------------------------------------------------------------------------------------

    def _api(self, method: str, params: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        with self._lock:
            self.calls.append(Call(method, params, headers))
            auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
            token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else params.get("token")
            expected = self.app_token if method == "apps.connections.open" else self.bot_token
            if token != expected:
                return {"ok": False, "error": "invalid_auth"}
            handler = getattr(self, "_api_" + method.replace(".", "_"), None)
            if handler is None:
                return {"ok": False, "error": "unknown_method"}
            try:
                return {"ok": True, **handler(params)}
            except ApiError as e:
                return {"ok": False, "error": str(e)}

    def _next_ts(self) -> str:
        """Like Slack's: the current time in microseconds, unique and increasing (so `oldest` filters work)."""
        micros = max(int(time.time() * 1_000_000), self._last_ts + 1)
        self._last_ts = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _find(self, channel: str, ts: str) -> dict[str, Any]:
        for message in self._channels.get(channel, []):
            if message["ts"] == ts:
                return message
        raise ApiError("message_not_found")

    def _api_auth_test(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"url": "https://mock.slack.com/", "team": "mock", "user": "bot", "team_id": TEAM,
                "user_id": BOT_USER, "bot_id": BOT_ID, "is_enterprise_install": False}  # fmt: skip

    def _api_chat_postMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = p.get("channel")
        if not channel:
            raise ApiError("channel_not_found")
        if not p.get("text") and not p.get("blocks"):
            raise ApiError("no_text")
        extra = {key: p[key] for key in ("blocks", "metadata") if p.get(key)}
        message = self._store(channel, p.get("text", ""), BOT_USER, None, p.get("thread_ts") or None, extra)
        self._posts.append({"channel": channel, **message})
        return {"channel": channel, "ts": message["ts"], "message": dict(message)}

    def _store(self, channel: str, text: str, user: str, ts: str | None, thread_ts: str | None, extra: dict) -> dict:
        message = {"type": "message", "user": user, "ts": ts or self._next_ts(), "text": text, **extra}
        if user == BOT_USER:
            message["bot_id"] = BOT_ID
        if thread_ts:  # a parent that is not stored (e.g. a user's message from an event) is fine, as in Slack
            message["thread_ts"] = thread_ts
            parent = next((m for m in self._channels.get(channel, []) if m["ts"] == thread_ts), None)
            if parent is not None:
                parent["thread_ts"] = thread_ts
                parent["reply_count"] = parent.get("reply_count", 0) + 1
        self._channels.setdefault(channel, []).append(message)
        return message

    def add_message(
        self, channel: str, text: str, user: str = "U1", ts: str | None = None, thread_ts: str | None = None
    ) -> dict[str, Any]:
        """Seed a message someone else wrote, so that history and replies show it."""
        with self._lock:
            return dict(self._store(channel, text, user, ts, thread_ts, {}))

    def _api_chat_update(self, p: dict[str, Any]) -> dict[str, Any]:
        message = self._find(p.get("channel", ""), p.get("ts", ""))
        for key in ("text", "blocks", "metadata"):
            if key in p:
                message[key] = p[key]
        message["edited"] = {"user": BOT_USER, "ts": self._next_ts()}
        self.updates.append({"channel": p["channel"], "ts": p["ts"], "text": p.get("text"), "blocks": p.get("blocks")})
        return {"channel": p["channel"], "ts": p["ts"], "text": message["text"], "message": dict(message)}

    def _api_chat_postEphemeral(self, p: dict[str, Any]) -> dict[str, Any]:
        if not p.get("channel") or not p.get("user"):
            raise ApiError("channel_not_found" if not p.get("channel") else "user_not_in_channel")
        ts = self._next_ts()
        self.ephemerals.append({"channel": p["channel"], "user": p["user"], "text": p.get("text", ""),
                                "blocks": p.get("blocks"), "thread_ts": p.get("thread_ts"), "ts": ts})  # fmt: skip
        return {"message_ts": ts}

    def _api_conversations_history(self, p: dict[str, Any]) -> dict[str, Any]:
        oldest, latest = float(p.get("oldest") or 0), float(p.get("latest") or "inf")
        inclusive, limit = _truthy(p.get("inclusive")), int(p.get("limit") or 100)

        def wanted(m: dict[str, Any]) -> bool:
            ts = float(m["ts"])
            top_level = m.get("thread_ts", m["ts"]) == m["ts"]  # replies stay in their thread
            return top_level and (oldest <= ts <= latest if inclusive else oldest < ts < latest)

        hits = [m for m in reversed(self._channels.get(p.get("channel", ""), [])) if wanted(m)]
        keep_metadata = _truthy(p.get("include_all_metadata"))
        out = [{k: v for k, v in m.items() if keep_metadata or k != "metadata"} for m in hits[:limit]]
        return {"messages": json.loads(json.dumps(out)), "has_more": len(hits) > limit}

    def _api_conversations_replies(self, p: dict[str, Any]) -> dict[str, Any]:
        channel, ts = p.get("channel", ""), p.get("ts", "")
        thread = [m for m in self._channels.get(channel, []) if ts in (m["ts"], m.get("thread_ts"))]
        if not thread:
            raise ApiError("thread_not_found")
        return {"messages": json.loads(json.dumps(thread)), "has_more": False}

    def _api_usergroups_users_list(self, p: dict[str, Any]) -> dict[str, Any]:
        if p.get("usergroup") not in self.usergroups:
            raise ApiError("no_such_subteam")
        return {"users": list(self.usergroups[p["usergroup"]])}

    def _api_apps_connections_open(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"url": f"ws://127.0.0.1:{self.ws_port}/link?n={next(self._ws_links)}"}

    # ---- Socket Mode -------------------------------------------------------------------------------------------

    async def _ws_main(self, ready: threading.Event) -> None:
        self._loop, self._ws_stop = asyncio.get_running_loop(), asyncio.Event()
        async with serve(self._ws_session, "127.0.0.1", 0) as server:
            self.ws_port = next(iter(server.sockets)).getsockname()[1]
            ready.set()
            await self._ws_stop.wait()

    async def _ws_session(self, ws: ServerConnection) -> None:
        hello = {"type": "hello", "num_connections": 1, "connection_info": {"app_id": APP_ID},
                 "debug_info": {"host": "mock"}}  # fmt: skip
        await ws.send(json.dumps(hello))
        with self._lock:
            self._clients.add(ws)
            self._lock.notify_all()
        try:
            async for raw in ws:
                with self._lock:
                    self.acks.append(json.loads(raw))
                    self._lock.notify_all()
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self._clients.discard(ws)

    def wait_connected(self, timeout: float = 10) -> None:
        with self._lock:
            if not self._lock.wait_for(lambda: self._clients, timeout):
                raise TimeoutError("no Socket Mode client connected")

    def push(self, payload_type: str, payload: dict[str, Any], accepts_response_payload: bool | None = None) -> str:
        """Send an envelope ("events_api" | "interactive" | "slash_commands") to every connected client."""
        envelope_id = str(uuid.uuid4())
        if accepts_response_payload is None:
            accepts_response_payload = payload_type != "events_api"
        envelope = {
            "envelope_id": envelope_id,
            "type": payload_type,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
            "retry_attempt": 0,
            "retry_reason": "",
        }
        self._send_all(envelope)
        return envelope_id

    def disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the clients to reconnect, as Slack does every few hours."""
        self._send_all({"type": "disconnect", "reason": reason, "debug_info": {"host": "mock"}})

    def _send_all(self, message: dict[str, Any]) -> None:
        with self._lock:
            clients = list(self._clients)
        if not clients or self._loop is None:
            raise RuntimeError("no Socket Mode client connected (call wait_connected() first)")
        asyncio.run_coroutine_threadsafe(_broadcast(clients, json.dumps(message)), self._loop).result(10)

    def wait_ack(self, envelope_id: str, timeout: float = 10) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            return next((a for a in self.acks if a.get("envelope_id") == envelope_id), None)

        with self._lock:
            if not self._lock.wait_for(find, timeout):
                raise TimeoutError(f"no ack for envelope {envelope_id}")
            return find()  # type: ignore[return-value]


async def _broadcast(clients: list[ServerConnection], raw: str) -> None:
    await asyncio.gather(*(client.send(raw) for client in clients))


def _handler_for(mock: SlackMock) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.do_POST()

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = dict(self.headers.items())
            if url.path.startswith("/respond/"):
                self._answer("respond", headers, lambda: self._respond(url.path.removeprefix("/respond/"), raw))
            elif url.path.startswith("/api/"):
                method = url.path.removeprefix("/api/")
                params = {**dict(parse_qsl(url.query)), **self._parse_body(raw)}
                self._answer(method, headers, lambda: mock._api(method, params, headers), params)
            else:
                self._send(404, {"Content-Type": "text/plain"}, b"not found")

        def _parse_body(self, raw: bytes) -> dict[str, Any]:
            if not raw:
                return {}
            if "json" in (self.headers.get("Content-Type") or ""):
                return json.loads(raw)
            params: dict[str, Any] = dict(parse_qsl(raw.decode(), keep_blank_values=True))
            for key in ("blocks", "metadata"):
                if isinstance(params.get(key), str) and params[key][:1] in "[{":
                    params[key] = json.loads(params[key])
            return params

        def _respond(self, id: str, raw: bytes) -> dict[str, Any]:
            with mock._lock:
                mock.responses.append({"id": id, **json.loads(raw or b"{}")})
            return {"ok": True}

        def _answer(self, method: str, headers: dict[str, str], run: Any, params: dict[str, Any] | None = None) -> None:
            fault = mock._take_fault(method)
            if fault is not None:
                with mock._lock:
                    mock.rejected.append(Call(method, params or {}, headers))
                self._send(*fault.response())
            else:
                self._send(200, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(run()).encode())

        def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

    return Handler


# ---- payloads for tests that post to a bot's HTTP endpoint (or push them over Socket Mode) ----------------------

_ids = itertools.count(1)


def signed_headers(body: bytes | str, signing_secret: str, timestamp: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = SignatureVerifier(signing_secret).generate_signature(timestamp=str(timestamp), body=body)
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": signature or ""}


def event_body(event: dict[str, Any], team_id: str = TEAM, event_id: str | None = None) -> dict[str, Any]:
    """An `event_callback` envelope: the body of an Events API request, and the payload of an events_api push."""
    return {"token": "mock-verification-token", "team_id": team_id, "api_app_id": APP_ID, "event": event,
            "type": "event_callback", "event_id": event_id or f"Ev{next(_ids):08d}", "event_time": int(time.time()),
            "authorizations": [{"enterprise_id": None, "team_id": team_id, "user_id": BOT_USER, "is_bot": True,
                                "is_enterprise_install": False}],
            "is_ext_shared_channel": False}  # fmt: skip


def _ts(ts: str | None) -> str:
    return ts or f"{int(time.time())}.{next(_ids):06d}"


def mention(
    text: str, user: str = "U1", channel: str = "C1", ts: str | None = None, thread_ts: str | None = None
) -> dict[str, Any]:
    """An app_mention event; `<@UBOT> ` is put in front of `text` unless it already mentions someone."""
    ts = _ts(ts)
    event = {"type": "app_mention", "user": user, "text": text if "<@" in text else f"<@{BOT_USER}> {text}",
             "ts": ts, "channel": channel, "event_ts": ts, "team": TEAM}  # fmt: skip
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


def dm(text: str, user: str, channel: str = "D1", ts: str | None = None) -> dict[str, Any]:
    ts = _ts(ts)
    return {"type": "message", "channel_type": "im", "user": user, "text": text, "ts": ts, "channel": channel,
            "event_ts": ts, "team": TEAM}  # fmt: skip


def block_action(action_id: str, value: str, user: str = "U1", channel: str = "C1",
                 message_ts: str = "1700000000.000100", response_url: str | None = None,
                 blocks: list[dict[str, Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    """A `block_actions` payload for one button click; pass `response_url=slack.response_url(id)` to catch respond()."""
    message: dict[str, Any] = {"type": "message", "ts": message_ts, "user": BOT_USER, "bot_id": BOT_ID}
    if blocks is not None:
        message["blocks"] = blocks
    payload = {"type": "block_actions", "user": {"id": user, "username": user.lower(), "team_id": TEAM},
               "api_app_id": APP_ID, "token": "mock-verification-token", "team": {"id": TEAM, "domain": "mock"},
               "container": {"type": "message", "message_ts": message_ts, "channel_id": channel,
                             "is_ephemeral": False},
               "channel": {"id": channel, "name": channel.lower()}, "message": message,
               "trigger_id": f"{next(_ids)}.trigger",
               "actions": [{"action_id": action_id, "block_id": f"b-{action_id}", "value": value, "type": "button",
                            "action_ts": f"{time.time():.6f}"}]}  # fmt: skip
    if response_url is not None:
        payload["response_url"] = response_url
    return payload


def slash(
    command: str, text: str, user: str = "U1", channel: str = "C1", response_url: str | None = None
) -> dict[str, Any]:
    """The form fields of a slash command (urlencode them for HTTP; push the dict as-is over Socket Mode)."""
    fields = {"token": "mock-verification-token", "team_id": TEAM, "team_domain": "mock", "channel_id": channel,
              "channel_name": channel.lower(), "user_id": user, "user_name": user.lower(), "command": command,
              "text": text, "api_app_id": APP_ID, "trigger_id": f"{next(_ids)}.trigger"}  # fmt: skip
    if response_url is not None:
        fields["response_url"] = response_url
    return fields
