"""One real Jaeger (in-memory storage) for the session; the binary comes from scripts/build-jaeger.sh."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.tracing.harness import BUILD_HINT, JaegerServer, jaeger_binary


@pytest.fixture(scope="session")
def jaeger() -> Iterator[JaegerServer]:
    binary = jaeger_binary()
    if not os.access(binary, os.X_OK):
        pytest.fail(f"No Jaeger binary at {binary}: {BUILD_HINT}.", pytrace=False)
    with JaegerServer(binary) as server:
        yield server
