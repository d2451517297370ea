"""The agent team's checkpoints on PostgreSQL (when `store.url` is set), so a thread paused at an approval in one
replica is resumed by another.

LangGraph's own `AsyncPostgresSaver` keeps them; its `setup()` (its tables and their migrations) runs under a
session advisory lock, so replicas starting together do not create the same tables at once. Its migrations
include `CREATE INDEX CONCURRENTLY`, which cannot run inside a transaction: hence a session lock, not a
transaction's. And one that is polled for, not waited on: `CREATE INDEX CONCURRENTLY` waits for every open
transaction to end, including a replica's statement waiting for the lock — a deadlock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg.rows import dict_row

from errors import Unreachable
from store.postgres import CONNECT_SECONDS, describe, lock_key, scrub

SETUP_SECONDS = 300.0  # the longest another replica's setup may hold the lock


@asynccontextmanager
async def postgres_saver(url: str) -> AsyncIterator[AsyncPostgresSaver]:
    """A checkpointer on its own connection (the settings LangGraph requires: autocommit, no prepared
    statements, rows as dicts), its tables set up once."""
    try:
        conn: psycopg.AsyncConnection[Any] = await psycopg.AsyncConnection.connect(
            url, autocommit=True, prepare_threshold=0, row_factory=dict_row, connect_timeout=int(CONNECT_SECONDS)
        )
    except psycopg.Error as e:
        raise Unreachable(
            f"Cannot connect to the store at {describe(url)} for the team's checkpoints: {scrub(str(e).strip(), url)}"
        ) from None
    async with conn:
        saver = AsyncPostgresSaver(conn)
        key = lock_key("checkpoints")
        await _lock(conn, key)
        try:
            await saver.setup()
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        yield saver


async def _lock(conn: psycopg.AsyncConnection[Any], key: int) -> None:
    deadline = time.monotonic() + SETUP_SECONDS
    while True:
        cursor = await conn.execute("SELECT pg_try_advisory_lock(%s) AS won", (key,))
        row = await cursor.fetchone()
        if row and row["won"]:
            return
        if time.monotonic() > deadline:
            raise Unreachable("Another replica has been setting up the checkpoint tables for too long.")
        await asyncio.sleep(0.2)
