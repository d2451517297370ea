"""A scripted OpenAI-compatible chat-completions server on 127.0.0.1, for driving the real `ChatOpenAI` client.

A test gives the server a script, either a list of steps answered in order or a function that picks the step from
the request (the conversation so far: which agent's system prompt, the last tool result, the tools offered):

    with ScriptedLLM([ToolCalls([Call("pods_list", {"namespace": "web"})]), Text("2 pods run.")]) as llm:
        model = ChatOpenAI(base_url=llm.base_url, api_key=llm.api_key, model="scripted")
        ...
        assert "web" in json.dumps(llm.requests[1]["messages"])

    llm.respond = lambda request: Text("hi") if request["messages"][0]["role"] == "system" else Status(500)

Steps: `Text`, `ToolCalls` (of `Call`s, arguments a dict or a raw string sent as is), and faults: `Status` (an
HTTP error with OpenAI's error body), `Garbage` (200 and a body that is not JSON), `Hang` (answer only after a
delay; other requests are served meanwhile, and closing the server ends the wait). `Text` and `ToolCalls` take a
`Usage`; without one, token counts are estimated from lengths (4 characters a token).

Answers are plain JSON, or OpenAI's server-sent events when the request says `"stream": true`: a role chunk,
content and tool-call deltas (id and name first, then the arguments in several pieces), a chunk with the
finish_reason, a usage chunk if `stream_options.include_usage` was asked for, then `data: [DONE]`.

Every chat request body is kept in `requests` (also those refused for a wrong key), and a request without
`Authorization: Bearer <api_key>` gets a 401. A script that raises or runs out answers 400 (not retried by the
client) naming the problem, and the traceback is kept in `errors`.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)

Request = dict[str, Any]


@dataclass(frozen=True)
class Usage:
    """Token counts reported for one answer."""

    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Text:
    """An assistant message with text and no tool calls (finish_reason "stop")."""

    content: str
    usage: Usage | None = None


@dataclass(frozen=True)
class Call:
    """One tool call. `args` as a string is sent verbatim, so a test can send malformed JSON."""

    name: str
    args: Mapping[str, Any] | str = field(default_factory=dict)
    id: str | None = None  # default: call_1, call_2, ... unique per server


@dataclass(frozen=True)
class ToolCalls:
    """An assistant message asking for tool calls (finish_reason "tool_calls"), with optional text besides."""

    calls: Sequence[Call]
    content: str = ""
    usage: Usage | None = None


@dataclass(frozen=True)
class Status:
    """An HTTP error with OpenAI's error body. The client retries 408, 409, 429 and 5xx."""

    code: int
    message: str = "scripted failure"
    headers: Mapping[str, str] = field(default_factory=dict)  # e.g. {"retry-after-ms": "10"}


@dataclass(frozen=True)
class Garbage:
    """A 200 whose body is not JSON (as an SSE data line when the request streams)."""

    body: str = "<html><body>502 Bad Gateway</body></html>"


@dataclass(frozen=True)
class Hang:
    """Wait `seconds`, then answer `then` (if the client is still there)."""

    seconds: float
    then: Step = Text("(a late answer)")


Step = Text | ToolCalls | Status | Garbage | Hang
Respond = Callable[[Request], Step]
Script = Sequence[Step] | Respond


class ScriptExhausted(LookupError):
    """A list script got more requests than it has steps."""


def _from_list(steps: Sequence[Step]) -> Respond:
    remaining = list(steps)
    total = len(remaining)

    def respond(request: Request) -> Step:
        if not remaining:
            raise ScriptExhausted(f"the script's {total} steps are used up")
        return remaining.pop(0)

    return respond


class ScriptedLLM:
    """The server; a context manager that listens on 127.0.0.1 at a free port while open."""

    def __init__(self, script: Script = (), *, api_key: str = "sk-scripted-test", model: str = "scripted") -> None:
        self.api_key = api_key
        self.model = model  # listed by GET /v1/models; chat answers echo the model each request names
        self.requests: list[Request] = []
        self.errors: list[str] = []
        self._respond: Respond = _from_list(())
        self.respond = script
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._ids = itertools.count(1)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def respond(self) -> Respond:
        """The function answering each request; assign a function or a list of steps."""
        return self._respond

    @respond.setter
    def respond(self, script: Script) -> None:
        self._respond = script if callable(script) else _from_list(script)

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("ScriptedLLM is not running: use it as a context manager")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> ScriptedLLM:
        self._closing.clear()
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="scripted-llm", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._httpd is None:
            return
        self._closing.set()  # wakes every Hang; their connections are dropped unanswered
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = self._thread = None

    # What a request gets -------------------------------------------------------------------------------------

    def _step(self, request: Request, authorized: bool) -> Step:
        with self._lock:  # one script call at a time, in arrival order; a Hang waits outside the lock
            self.requests.append(request)
            if not authorized:
                return Status(401, "Incorrect API key provided.")
            try:
                return self._respond(request)
            except Exception as e:
                self.errors.append(traceback.format_exc())
                logger.exception("ScriptedLLM: the script failed on request %d", len(self.requests))
                return Status(400, f"ScriptedLLM: the script failed: {e!r}", {"x-should-retry": "false"})

    def _wait(self, hang: Hang) -> bool:
        """Sleep through a Hang; False if the server closed meanwhile."""
        return not self._closing.wait(hang.seconds)

    def _call_ids(self, step: ToolCalls) -> list[str]:
        with self._lock:
            return [c.id or f"call_{next(self._ids)}" for c in step.calls]


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, llm: ScriptedLLM) -> None:
        self.llm = llm
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.0"  # one request per connection: the end of a stream is the end of the connection

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("ScriptedLLM: " + format, *args)

    def _authorized(self) -> bool:
        return self.headers.get("Authorization") == f"Bearer {self.server.llm.api_key}"

    def do_GET(self) -> None:
        if not self._authorized():
            self._send_step(Status(401, "Incorrect API key provided."), {})
        elif self.path.rstrip("/") == "/v1/models":
            model = {"id": self.server.llm.model, "object": "model", "created": 0, "owned_by": "scripted"}
            self._send_json(200, {"object": "list", "data": [model]})
        else:
            self._send_step(Status(404, f"no route {self.path}"), {})

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send_step(Status(404, f"no route {self.path}"), {})
            return
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            request = json.loads(raw)
        except ValueError:
            self._send_step(Status(400, "the request body is not JSON"), {})
            return
        llm = self.server.llm
        step = llm._step(request, self._authorized())
        while isinstance(step, Hang):
            if not llm._wait(step):
                return
            step = step.then
        try:
            self._send_step(step, request)
        except (BrokenPipeError, ConnectionResetError):
            logger.debug("ScriptedLLM: the client left before the answer (%s)", type(step).__name__)

    def _send_step(self, step: Step, request: Request) -> None:
        if isinstance(step, Status):
            kind = "server_error" if step.code >= 500 else "invalid_request_error"
            code = "invalid_api_key" if step.code == 401 else None
            body = {"error": {"message": step.message, "type": kind, "param": None, "code": code}}
            self._send_json(step.code, body, step.headers)
        elif isinstance(step, Garbage):
            if request.get("stream"):
                self._send_raw(200, "text/event-stream", f"data: {step.body}\n\n".encode())
            else:
                self._send_raw(200, "application/json", step.body.encode())
        elif isinstance(step, Text | ToolCalls):
            answer = _Answer(self.server.llm, step, request)
            if request.get("stream"):
                self._send_stream(answer.chunks())
            else:
                self._send_json(200, answer.completion())
        else:
            raise TypeError(f"not a step: {step!r}")

    def _send_json(self, code: int, body: object, headers: Mapping[str, str] | None = None) -> None:
        self._send_raw(code, "application/json", json.dumps(body).encode(), headers)

    def _send_raw(self, code: int, content_type: str, data: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, chunks: Iterator[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


class _Answer:
    """One Text or ToolCalls step rendered as a chat.completion or as chat.completion.chunk events."""

    def __init__(self, llm: ScriptedLLM, step: Text | ToolCalls, request: Request) -> None:
        self.step = step
        self.request = request
        self.id = f"chatcmpl-scripted-{len(llm.requests)}"
        self.created = int(time.time())
        self.model = str(request.get("model") or llm.model)
        self.calls = (
            [(i, c.name, _arguments(c)) for i, c in zip(llm._call_ids(step), step.calls, strict=True)]
            if isinstance(step, ToolCalls)
            else []
        )
        self.finish_reason = "tool_calls" if isinstance(step, ToolCalls) else "stop"

    def usage(self) -> dict[str, int]:
        u = self.step.usage or Usage(
            prompt_tokens=max(1, len(json.dumps(self.request.get("messages", []))) // 4),
            completion_tokens=max(1, (len(self.step.content) + sum(len(n) + len(a) for _, n, a in self.calls)) // 4),
        )
        return {
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "total_tokens": u.prompt_tokens + u.completion_tokens,
        }

    def completion(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.step.content or None, "refusal": None}
        if isinstance(self.step, Text):
            message["content"] = self.step.content
        if self.calls:
            message["tool_calls"] = [
                {"id": i, "type": "function", "function": {"name": n, "arguments": a}} for i, n, a in self.calls
            ]
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": self.finish_reason}
        return {**self._envelope("chat.completion"), "choices": [choice], "usage": self.usage()}

    def chunks(self) -> Iterator[dict[str, Any]]:
        with_usage = bool((self.request.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return {**self._envelope("chat.completion.chunk"), "choices": [choice]} | (
                {"usage": None} if with_usage else {}
            )

        yield chunk({"role": "assistant", "content": "", "refusal": None})
        for piece in _pieces(self.step.content):
            yield chunk({"content": piece})
        for index, (call_id, name, arguments) in enumerate(self.calls):
            head = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
            yield chunk({"tool_calls": [head]})
            for piece in _pieces(arguments):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        yield chunk({}, self.finish_reason)
        if with_usage:
            yield {**self._envelope("chat.completion.chunk"), "choices": [], "usage": self.usage()}

    def _envelope(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model, "system_fingerprint": None}


def _arguments(call: Call) -> str:
    return call.args if isinstance(call.args, str) else json.dumps(dict(call.args))


def _pieces(text: str, parts: int = 3) -> list[str]:
    """`text` cut into up to `parts` consecutive pieces, as a model streams it."""
    size = max(1, -(-len(text) // parts))
    return [text[i : i + size] for i in range(0, len(text), size)]
