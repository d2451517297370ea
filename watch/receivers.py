"""HTTP receivers: `POST /alertmanager` (Alertmanager's webhook, firing and resolved) and `POST /events` (a generic
JSON event from any other system), both behind a bearer token (`watch.token`; Alertmanager sends it with
`http_config: {authorization: {credentials: ...}}`), with a body-size cap. Bad input gets 400 and a message saying
what is wrong; it never stops the pipeline."""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from engines.incidents import AlertmanagerError, Signal, signals_from_alertmanager
from errors import InvalidInput
from watch.pipeline import Pipeline
from watch.signals import from_generic

logger = logging.getLogger(__name__)


def receivers(pipeline: Pipeline, cluster: str, token: str, max_body: int) -> Starlette:
    """The receivers' app. `cluster` names signals that do not say which cluster they come from."""

    async def read(request: Request) -> Any:
        given = request.headers.get("authorization", "")
        if not token or not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            client = request.client.host if request.client else "?"
            logger.warning("receiver request from %s refused: no or wrong bearer token", client)
            raise _Refused(401, "A bearer token is required (watch.token).")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body:
                raise _Refused(413, f"The body is larger than {max_body} bytes (watch.max_body_bytes).")
        try:
            return json.loads(body)
        except ValueError:
            raise _Refused(400, "The body is not JSON.") from None

    async def take(signals: list[Signal]) -> JSONResponse:
        changes = [await pipeline.take(s) for s in signals]
        opened = sorted({c.incident.ref for c in changes if c is not None})
        return JSONResponse({"signals": len(signals), "incidents": opened})

    async def alertmanager(request: Request) -> JSONResponse:
        try:
            return await take(signals_from_alertmanager(await read(request), cluster))
        except AlertmanagerError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except _Refused as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)

    async def events(request: Request) -> JSONResponse:
        try:
            payload = await read(request)
            items = payload if isinstance(payload, list) else [payload]
            if len(items) > 1000:
                raise InvalidInput("At most 1000 events in one request.")
            return await take([from_generic(item, cluster) for item in items])
        except InvalidInput as exc:
            return JSONResponse({"error": exc.message, "hint": exc.hint}, status_code=400)
        except _Refused as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)

    async def health(_: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "signals": pipeline.taken, "open": len(pipeline.grouper.open)})

    return Starlette(
        routes=[
            Route("/alertmanager", alertmanager, methods=["POST"]),
            Route("/events", events, methods=["POST"]),
            Route("/healthz", health, methods=["GET"]),
        ]
    )


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message
