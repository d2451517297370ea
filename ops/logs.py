"""The server's log lines: text or JSON (`server.log_format`), masked, with the caller and tool when known.

Every record goes through one stderr handler on the root logger, uvicorn's too, and that handler's first filter is
guard/mask.py's `MaskingFilter`: the message, its arguments and any traceback are rendered and masked before a
formatter sees them. A JSON line is one object:

    {"time": "2026-01-02T03:04:05.678Z", "level": "INFO", "logger": "cloudpilot.calls",
     "message": "tool pod_get refused for alice (token): ...", "principal": "alice (token)", "tool": "pod_get"}

`principal` and `tool` are set by the MCP server around each tool call (`context`), so anything logged during
the call, in worker threads too, carries them.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

from guard.mask import MaskingFilter, mask_text

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
HANDLER_NAME = "cloudpilot"
QUIET_PATHS = ("/healthz", "/readyz", "/metrics")  # probes and scrapes: not worth an access line each

_principal: ContextVar[str | None] = ContextVar("cloudpilot_log_principal", default=None)
_tool: ContextVar[str | None] = ContextVar("cloudpilot_log_tool", default=None)


@contextlib.contextmanager
def context(*, principal: str | None = None, tool: str | None = None) -> Iterator[None]:
    """Log lines written inside carry this caller and tool."""
    tokens = (_principal.set(principal), _tool.set(tool))
    try:
        yield
    finally:
        _principal.reset(tokens[0])
        _tool.reset(tokens[1])


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in a message or traceback are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        principal, tool = _principal.get(), _tool.get()
        if principal:
            line["principal"] = principal
        if tool:
            line["tool"] = tool
        if record.exc_info and not record.exc_text:  # a record that did not pass the masking filter
            record.exc_text = mask_text(self.formatException(record.exc_info))
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return orjson.dumps(line, default=str).decode()


class QuietProbes(logging.Filter):
    """Drop uvicorn's access lines for probes and scrapes below WARNING (a kubelet probes every few seconds)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "uvicorn.access" or record.levelno >= logging.WARNING:
            return True
        args = record.args if isinstance(record.args, tuple) else ()
        path = str(args[2]) if len(args) > 2 else ""
        return path.split("?", 1)[0] not in QUIET_PATHS


def configure(level: str, fmt: str = "text") -> logging.Handler:
    """Send every log record (uvicorn's included) through one masked stderr handler in format `fmt`; returns it.
    Like `logging.basicConfig`, it is installed only on a root logger without handlers of someone else's."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(QuietProbes())
    handler.addFilter(MaskingFilter())  # logs never carry what tool answers may not
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.set_name(HANDLER_NAME)
    root = logging.getLogger()
    others = False
    for old in list(root.handlers):
        if old.get_name() == HANDLER_NAME:  # ours, from an earlier call
            root.removeHandler(old)
        else:  # put there by whoever embeds the server (a test's log capture): kept, and masked too
            others = True
            if not any(isinstance(f, MaskingFilter) for f in old.filters):
                old.addFilter(MaskingFilter())
    if not others:  # as logging.basicConfig: the process's own handler only when nobody installed one
        root.addHandler(handler)
        root.setLevel(level)
    _route_uvicorn_to_root()
    return handler


def _route_uvicorn_to_root() -> None:
    """uvicorn configures its loggers with handlers of its own, unmasked and in its own format, whenever a server
    is made (`uvicorn.Config(log_config=LOGGING_CONFIG)` by default, FastMCP's included). Its default config keeps
    the levels and sends the records on to the root handler instead."""
    try:
        from uvicorn.config import LOGGING_CONFIG
    except ImportError:  # pragma: no cover - uvicorn is a dependency
        return
    LOGGING_CONFIG["handlers"] = {}
    for logger in LOGGING_CONFIG.get("loggers", {}).values():
        logger["handlers"] = []
        logger["propagate"] = True
