"""Fixtures of the fix-loop tests: a server that allows writes, and the control plane's raw API."""

from __future__ import annotations

from pathlib import Path

import pytest

from settings import Settings


@pytest.fixture
def settings(tmp_path: Path, cluster) -> Settings:  # overrides tests/conftest.py: writes switched on
    return Settings(
        k8s={"kubeconfig": cluster.kubeconfig, "context": None, "cache_ttl_seconds": 0},
        store={"path": tmp_path / "cloudpilot.db"},
        safety={"allow_write": True, "allow_destructive": True},
    )


@pytest.fixture
def api(cluster):
    return cluster.require_control_plane().api
