"""A local stand-in for the Feishu/Lark Open API, driven by the real `lark_oapi` SDK through its `domain` seam.

    with FeishuMock(app_id="cli_test", app_secret="secret") as feishu:
        client = lark.Client.builder().app_id("cli_test").app_secret("secret").domain(feishu.domain).build()

HTTP (stdlib threading server): token endpoints, im/v1 messages (create/reply/patch/put, `uuid` idempotency),
custom-bot webhooks (signed), the long-connection endpoint, fault injection. Websocket (websockets' sync server):
lark's pbbp2 `Frame` protocol — ping→pong, `push_event` → data frame, the SDK's answer frame → `wait_response`.
Builders for what Feishu POSTs to an app's event URL: `message_event`, `card_action`, `signed`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import os
import threading
import time
import uuid as uuidlib
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from Crypto.Cipher import AES  # pycryptodome: what lark_oapi's AESCipher uses
from Crypto.Util.Padding import pad
from lark_oapi.ws.pb.pbbp2_pb2 import Frame
from websockets.sync.server import ServerConnection, serve

VERIFICATION_TOKEN = "v-token-mock"
ENCRYPT_KEY = "encrypt-key-mock"
TENANT_TOKEN = "t-mock"
APP_TOKEN = "a-mock"
BOT_OPEN_ID = "ou_bot"
TENANT_KEY = "tk_mock"
CONTROL, DATA = 0, 1  # lark_oapi.ws.enum.FrameType
RATE_LIMITED = {"code": 99991400, "msg": "request trigger frequency limit"}

# (method, path pattern) -> api name usable in `fail()`; ":id" matches one path segment.
ROUTES = [
    ("POST", "/open-apis/auth/v3/tenant_access_token/internal", "auth.tenant_access_token"),
    ("POST", "/open-apis/auth/v3/app_access_token/internal", "auth.app_access_token"),
    ("POST", "/open-apis/im/v1/messages", "im.message.create"),
    ("POST", "/open-apis/im/v1/messages/:id/reply", "im.message.reply"),
    ("PATCH", "/open-apis/im/v1/messages/:id", "im.message.patch"),
    ("PUT", "/open-apis/im/v1/messages/:id", "im.message.update"),
    ("POST", "/open-apis/bot/v2/hook/:id", "bot.hook"),
    ("POST", "/callback/ws/endpoint", "ws.endpoint"),
    ("GET", "/open-apis/contact/v3/group/:id/member/simplelist", "contact.group_member.simplelist"),
]


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any] | None
    headers: dict[str, str]
    api: str | None = None


def _route(method: str, path: str) -> tuple[str | None, str | None]:
    parts = path.rstrip("/").split("/")
    for m, pattern, name in ROUTES:
        pat = pattern.split("/")
        if m == method and len(pat) == len(parts) and all(p in (":id", s) for p, s in zip(pat, parts, strict=True)):
            ids = [s for p, s in zip(pat, parts, strict=True) if p == ":id"]
            return name, (ids[0] if ids else None)
    return None, None


def hook_sign(timestamp: int | str, secret: str) -> str:
    """Custom-bot signature: base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b""))."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


class FeishuMock:
    def __init__(self, app_id: str = "cli_test", app_secret: str = "secret") -> None:
        self.app_id, self.app_secret = app_id, app_secret
        self.hook_secret: dict[str, str] = {}
        self.groups: dict[str, list[str]] = {}  # user group id -> member open_ids
        self.client_config = {"ReconnectCount": -1, "ReconnectInterval": 120, "ReconnectNonce": 30, "PingInterval": 120}
        self.calls: list[Call] = []
        self.rejected: list[Call] = []
        self.patches: list[tuple[str, dict]] = []
        self.hooks: list[tuple[str, dict]] = []
        self.pings = 0
        self._msgs: dict[str, dict] = {}
        self._by_uuid: dict[str, str] = {}
        self._faults: list[list] = []  # [target, remaining, status, reset]
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self._conns: list[ServerConnection] = []
        self._responses: dict[str, dict] = {}
        self._send_lock = threading.Lock()

    # ----------------------------------------------------------------- lifecycle
    def __enter__(self) -> FeishuMock:
        mock = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers, body = mock._handle(self.command, self.path, dict(self.headers), raw)
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json; charset=utf-8", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self._ws = serve(self._ws_handler, "127.0.0.1", 0)
        self.ws_port = self._ws.socket.getsockname()[1]
        self.domain = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._threads = [
            threading.Thread(target=self._http.serve_forever, args=(0.05,), name="feishu-http", daemon=True),
            threading.Thread(target=self._ws.serve_forever, name="feishu-ws", daemon=True),
        ]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            conns = list(self._conns)
        for conn in conns:
            conn.close()
        self._ws.shutdown()
        self._http.shutdown()
        self._http.server_close()
        for t in self._threads:
            t.join(5)

    # ------------------------------------------------------------------ test API
    def fail(self, target: str, times: int = 1, status: int = 429, reset: int = 1) -> None:
        """Next `times` calls whose path starts with `target` (or whose api name is `target`) get `status`."""
        with self._cond:
            self._faults.append([target, times, status, reset])

    def messages(self, chat_id: str | None = None) -> list[dict]:
        with self._cond:
            msgs = [dict(m) for m in self._msgs.values() if chat_id is None or m["chat_id"] == chat_id]
        return [{**m, "content": json.loads(m["content"])} for m in msgs]

    def add_message(self, chat_id: str, text: str) -> str:
        """A person's text message in `chat_id` (what a bot's reply hangs under); returns its message id."""
        now = str(int(time.time() * 1000))
        with self._cond:
            msg = {"message_id": f"om_{next(self._ids)}", "chat_id": chat_id, "msg_type": "text",
                   "content": json.dumps({"text": text}), "root_id": None, "parent_id": None,
                   "reply_in_thread": False, "uuid": None, "create_time": now, "update_time": now,
                   "updated": False}  # fmt: skip
            self._msgs[msg["message_id"]] = msg
        return str(msg["message_id"])

    def wait_connected(self, timeout: float = 10) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._conns, timeout):
                raise TimeoutError("no long-connection client connected")

    def push_event(self, event: dict, type: str = "event") -> str:
        """Send `event` as a data frame to every connected ws client; returns the frame's message_id."""
        message_id = f"msg_{uuidlib.uuid4().hex[:16]}"
        frame = Frame(SeqID=0, LogID=0, service=1, method=DATA, payload=json.dumps(event).encode())
        headers = {"type": type, "message_id": message_id, "trace_id": uuidlib.uuid4().hex, "sum": "1", "seq": "0"}
        for k, v in headers.items():
            frame.headers.add(key=k, value=v)
        with self._cond:
            conns = list(self._conns)
        if not conns:
            raise RuntimeError("no long-connection client connected")
        for conn in conns:
            self._send(conn, frame)
        return message_id

    def wait_response(self, message_id: str, timeout: float = 10) -> dict:
        """The client's answer frame payload, JSON-decoded (the SDK sends {"code": 200[, "data": b64]})."""
        with self._cond:
            if not self._cond.wait_for(lambda: message_id in self._responses, timeout):
                raise TimeoutError(f"no response frame for {message_id}")
            return self._responses[message_id]

    # ----------------------------------------------------------------- websocket
    def _send(self, conn: ServerConnection, frame: Frame) -> None:
        with self._send_lock:
            conn.send(frame.SerializeToString())

    def _ws_handler(self, conn: ServerConnection) -> None:
        with self._cond:
            self._conns.append(conn)
            self._cond.notify_all()
        try:
            for raw in conn:
                frame = Frame()
                frame.ParseFromString(raw if isinstance(raw, bytes) else raw.encode())
                headers = {h.key: h.value for h in frame.headers}
                if frame.method == CONTROL and headers.get("type") == "ping":
                    pong = Frame(SeqID=0, LogID=0, service=frame.service, method=CONTROL)
                    pong.headers.add(key="type", value="pong")
                    pong.payload = json.dumps(self.client_config).encode()
                    self._send(conn, pong)
                    with self._cond:
                        self.pings += 1
                elif frame.method == DATA:
                    with self._cond:
                        self._responses[headers["message_id"]] = {
                            **json.loads(frame.payload or b"{}"),
                            "frame_headers": headers,
                        }
                        self._cond.notify_all()
        finally:
            with self._cond:
                self._conns.remove(conn)

    # ---------------------------------------------------------------------- HTTP
    def _handle(self, method: str, target: str, headers: dict, raw: bytes) -> tuple[int, dict, dict]:
        url = urlsplit(target)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        api, ident = _route(method, url.path)
        call = Call(method, url.path, dict(parse_qsl(url.query)), body, headers, api)
        with self._cond:
            self.calls.append(call)
            for fault in self._faults:
                if fault[1] > 0 and (url.path.startswith(fault[0]) or api == fault[0]):
                    fault[1] -= 1
                    self.rejected.append(call)
                    if fault[2] == 429:
                        return (
                            429,
                            {"x-ogw-ratelimit-limit": "50", "x-ogw-ratelimit-reset": str(fault[3])},
                            RATE_LIMITED,
                        )
                    return fault[2], {}, {"code": fault[2], "msg": HTTPStatus(fault[2]).phrase}
        b = body or {}
        if api is None:
            return 404, {}, {"code": 404, "msg": "404 page not found"}
        if api.startswith("auth."):
            if (b.get("app_id"), b.get("app_secret")) != (self.app_id, self.app_secret):
                return 200, {}, {"code": 10014, "msg": "app secret invalid"}
            return (
                200,
                {},
                {
                    "code": 0,
                    "msg": "ok",
                    "tenant_access_token": TENANT_TOKEN,
                    "app_access_token": APP_TOKEN,
                    "expire": 7200,
                },
            )
        if api == "ws.endpoint":
            if (b.get("AppID"), b.get("AppSecret")) != (self.app_id, self.app_secret):
                return 200, {}, {"code": 10014, "msg": "app secret invalid"}
            url_ = f"ws://127.0.0.1:{self.ws_port}/ws?device_id=d1&service_id=1"
            return 200, {}, {"code": 0, "msg": "ok", "data": {"URL": url_, "ClientConfig": self.client_config}}
        if api == "bot.hook":
            return 200, {}, self._hook(ident or "", b)
        auth = headers.get("Authorization") or headers.get("authorization") or ""
        if not auth:
            return 400, {}, {"code": 99991661, "msg": "Missing access token for authorization."}
        if auth != f"Bearer {TENANT_TOKEN}":
            return 400, {}, {"code": 99991663, "msg": "Invalid access token for authorization."}
        if api == "contact.group_member.simplelist":
            members = self.groups.get(ident or "")
            if members is None:
                return 400, {}, {"code": 42001, "msg": "group not found"}
            listed = [{"member_id": m, "member_type": "user", "member_id_type": "open_id"} for m in members]
            return 200, {}, {"code": 0, "msg": "success", "data": {"memberlist": listed, "has_more": False}}
        with self._cond:
            return self._im(api, ident, call.query, b)

    def _hook(self, token: str, b: dict) -> dict:
        secret = self.hook_secret.get(token)
        if secret is None:
            return {"code": 19001, "msg": "param invalid: incoming webhook access token invalid", "data": {}}
        ts = str(b.get("timestamp", ""))
        fresh = ts.isdigit() and abs(time.time() - int(ts)) < 3600
        if not fresh or not hmac.compare_digest(str(b.get("sign", "")), hook_sign(ts, secret)):
            return {"code": 19021, "msg": "sign match fail or timestamp is not within one hour from current time"}
        with self._cond:
            self.hooks.append((token, b))
        return {"StatusCode": 0, "StatusMessage": "success", "code": 0, "msg": "success", "data": {}}

    def _im(self, api: str, ident: str | None, query: dict, b: dict) -> tuple[int, dict, dict]:
        """Called with the lock held."""
        if api in ("im.message.create", "im.message.reply"):
            if b.get("uuid") and b["uuid"] in self._by_uuid:
                return self._ok(self._msgs[self._by_uuid[b["uuid"]]])
            if api == "im.message.reply":
                parent = self._msgs.get(ident or "")
                if parent is None:
                    return 400, {}, {"code": 230001, "msg": "Your request contains an invalid request parameter."}
                chat_id, root = parent["chat_id"], parent["root_id"] or parent["message_id"]
            else:
                kind = query.get("receive_id_type", "open_id")
                rid = b.get("receive_id", "")
                chat_id = rid if kind == "chat_id" else f"oc_p2p_{rid}"
                root = None
            now = str(int(time.time() * 1000))
            msg = {
                "message_id": f"om_{next(self._ids)}",
                "chat_id": chat_id,
                "msg_type": b.get("msg_type"),
                "content": b.get("content") or "{}",
                "root_id": root,
                "parent_id": ident if api == "im.message.reply" else None,
                "reply_in_thread": bool(b.get("reply_in_thread")),
                "uuid": b.get("uuid"),
                "create_time": now,
                "update_time": now,
                "updated": False,
            }
            self._msgs[msg["message_id"]] = msg
            if msg["uuid"]:
                self._by_uuid[msg["uuid"]] = msg["message_id"]
            return self._ok(msg)
        msg = self._msgs.get(ident or "")
        if msg is None:
            return 400, {}, {"code": 230001, "msg": "Your request contains an invalid request parameter."}
        if api == "im.message.patch":
            if msg["msg_type"] != "interactive":
                return 400, {}, {"code": 230001, "msg": "only interactive (card) messages can be patched"}
            msg.update(content=b.get("content") or "{}", updated=True, update_time=str(int(time.time() * 1000)))
            self.patches.append((msg["message_id"], json.loads(msg["content"])))
            return 200, {}, {"code": 0, "msg": "success", "data": {}}
        if msg["msg_type"] not in ("text", "post") or b.get("msg_type") not in ("text", "post"):
            return 400, {}, {"code": 230001, "msg": "only text/post messages can be edited"}
        msg.update(
            msg_type=b["msg_type"],
            content=b.get("content") or "{}",
            updated=True,
            update_time=str(int(time.time() * 1000)),
        )
        return self._ok(msg)

    def _ok(self, m: dict) -> tuple[int, dict, dict]:
        data = {k: m[k] for k in ("message_id", "root_id", "parent_id", "chat_id", "msg_type", "create_time")}
        data.update(update_time=m["update_time"], updated=m["updated"], deleted=False, body={"content": m["content"]})
        data["sender"] = {"id": self.app_id, "id_type": "app_id", "sender_type": "app", "tenant_key": TENANT_KEY}
        return 200, {}, {"code": 0, "msg": "success", "data": {k: v for k, v in data.items() if v is not None}}


# ------------------------------------------------------------- what Feishu POSTs to the app's event URL
def _header(event_type: str, token: str, app_id: str) -> dict:
    return {
        "event_id": uuidlib.uuid4().hex,
        "event_type": event_type,
        "create_time": str(int(time.time() * 1000)),
        "token": token,
        "app_id": app_id,
        "tenant_key": TENANT_KEY,
    }


def message_event(
    text: str,
    open_id: str = "ou_1",
    chat_id: str = "oc_1",
    chat_type: str = "group",
    message_id: str | None = None,
    root_id: str | None = None,
    mentions: bool = True,
    token: str = VERIFICATION_TOKEN,
    app_id: str = "cli_test",
) -> dict:
    """An `im.message.receive_v1` (schema 2.0) event; with `mentions` the text is prefixed by the bot's @-key."""
    message = {
        "message_id": message_id or f"om_in_{uuidlib.uuid4().hex[:12]}",
        "root_id": root_id,
        "parent_id": root_id,
        "create_time": str(int(time.time() * 1000)),
        "chat_id": chat_id,
        "chat_type": chat_type,
        "message_type": "text",
        "content": json.dumps({"text": f"@_user_1 {text}" if mentions else text}),
    }
    if mentions:
        message["mentions"] = [
            {"key": "@_user_1", "id": {"open_id": BOT_OPEN_ID}, "name": "CloudPilot", "tenant_key": TENANT_KEY}
        ]
    sender = {
        "sender_id": {"open_id": open_id, "user_id": f"u_{open_id}", "union_id": f"on_{open_id}"},
        "sender_type": "user",
        "tenant_key": TENANT_KEY,
    }
    return {
        "schema": "2.0",
        "header": _header("im.message.receive_v1", token, app_id),
        "event": {"sender": sender, "message": {k: v for k, v in message.items() if v is not None}},
    }


def card_action(
    value: dict,
    open_id: str = "ou_1",
    message_id: str = "om_1",
    chat_id: str = "oc_1",
    token: str = VERIFICATION_TOKEN,
    app_id: str = "cli_test",
) -> dict:
    """A `card.action.trigger` (schema 2.0) callback for a button carrying `value`."""
    return {
        "schema": "2.0",
        "header": _header("card.action.trigger", token, app_id),
        "event": {
            "operator": {
                "tenant_key": TENANT_KEY,
                "open_id": open_id,
                "user_id": f"u_{open_id}",
                "union_id": f"on_{open_id}",
            },
            "token": f"c-{uuidlib.uuid4().hex}",
            "action": {"value": value, "tag": "button"},
            "host": "im_message",
            "context": {"open_message_id": message_id, "open_chat_id": chat_id},
        },
    }


def encrypt(plaintext: bytes, encrypt_key: str) -> str:
    """base64(iv + AES-256-CBC(sha256(encrypt_key), PKCS7(plaintext))) — the inverse of lark_oapi's AESCipher."""
    iv = os.urandom(16)
    cipher = AES.new(hashlib.sha256(encrypt_key.encode()).digest(), AES.MODE_CBC, iv)
    return base64.b64encode(iv + cipher.encrypt(pad(plaintext, 16))).decode()


def signed(
    body: dict, encrypt_key: str | None, timestamp: int | None = None, nonce: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """The raw body and headers Feishu sends: encrypted + X-Lark-Signature when an Encrypt Key is configured."""
    ts, nonce = str(timestamp if timestamp is not None else int(time.time())), nonce or uuidlib.uuid4().hex
    raw = json.dumps(body).encode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "X-Lark-Request-Timestamp": ts,
        "X-Lark-Request-Nonce": nonce,
    }
    if encrypt_key:
        raw = json.dumps({"encrypt": encrypt(raw, encrypt_key)}).encode()
        headers["X-Lark-Signature"] = hashlib.sha256((ts + nonce + encrypt_key).encode() + raw).hexdigest()
    return raw, headers
