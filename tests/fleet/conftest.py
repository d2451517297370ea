"""Fleet fixtures: a second real control plane, a cluster that never answers, and a runtime that sees both."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime import Runtime
from settings import Settings
from store import ClusterRecord
from tests.cluster.controlplane import ADMIN_TOKEN, ControlPlane
from tests.conftest import ClusterEnv


class Silent:
    """A TCP listener that accepts connections and never says a word: a hung API server."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)  # so that the accepting thread sees `close()`
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted.append(conn)

    def close(self) -> None:
        self.closed.set()
        self._thread.join(timeout=10)
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent() -> Iterator[Silent]:
    server = Silent()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def second(tmp_path: Path) -> Iterator[ControlPlane]:
    """A second control plane with one node, stopped after the test (a test may stop it sooner)."""
    cp = ControlPlane(tmp_path / "second").start(nodes=1)
    try:
        yield cp
    finally:
        cp.stop()


def fleet_settings(cluster: ClusterEnv, tmp_path: Path, allow: list[str] | None = None, **k8s: object) -> Settings:
    """Settings reaching the session's cluster through its kubeconfig; `allow`: the only visible namespaces."""
    return Settings(
        k8s={"kubeconfig": cluster.kubeconfig, "context": None, **k8s},
        store={"path": tmp_path / "cloudpilot.db"},
        safety={"namespace_allow": allow or []},
    )


def register(rt: Runtime, name: str, cp: ControlPlane) -> None:
    """Register a control plane the way an operator would: its URL, a token and its CA."""
    ca = (cp.dir / "pki" / "ca.crt").read_text()
    rt.store.add_cluster(ClusterRecord(name=name, server=cp.url, token=ADMIN_TOKEN, ca_cert=ca))
