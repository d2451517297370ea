"""Servers the tests start on 127.0.0.1: a free port, and an ASGI app served by uvicorn in the test's event loop."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def uvicorn_serving(app: Any, port: int, started_within: float) -> AsyncIterator[None]:
    """`app` served on 127.0.0.1:`port` until the block ends; fails if it has not started within the given
    seconds (a hang guard, not a measurement)."""
    web = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(web.serve)
        with anyio.fail_after(started_within):
            while not web.started:
                await anyio.sleep(0.02)
        try:
            yield
        finally:
            web.should_exit = True
