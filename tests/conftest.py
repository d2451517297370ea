"""Shared fixtures: a real control plane (or an existing cluster), settings, a runtime, test namespaces.

Point the suite at an existing cluster (kind, minikube) with `CLOUDPILOT_TEST_KUBECONFIG=/path/to/kubeconfig`;
otherwise one control plane is started for the whole session and stopped after it.
"""

from __future__ import annotations

import inspect
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as kclient
from kubernetes import config as kconfig

from runtime import Runtime, use
from settings import Settings
from tests.cluster.controlplane import ControlPlane


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """Run every `async def` test under anyio: marked before parametrization, so parameters are kept."""
    if collector.funcnamefilter(name) and inspect.iscoroutinefunction(obj):  # type: ignore[attr-defined]
        pytest.mark.anyio(obj)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class ClusterEnv:
    """The cluster the tests run against."""

    kubeconfig: Path
    control_plane: ControlPlane | None  # None when pointed at an existing cluster
    api: kclient.ApiClient

    @property
    def core(self) -> kclient.CoreV1Api:
        return kclient.CoreV1Api(self.api)

    @property
    def apps(self) -> kclient.AppsV1Api:
        return kclient.AppsV1Api(self.api)

    @property
    def custom(self) -> kclient.CustomObjectsApi:
        return kclient.CustomObjectsApi(self.api)

    def require_control_plane(self) -> ControlPlane:
        if self.control_plane is None:
            pytest.skip("needs the suite's own control plane (fake nodes/kubelet), not an existing cluster")
        return self.control_plane


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterEnv]:
    external = os.environ.get("CLOUDPILOT_TEST_KUBECONFIG")
    if external:
        yield ClusterEnv(Path(external), None, kconfig.new_client_from_config(external))
        return
    cp = ControlPlane(tmp_path_factory.mktemp("controlplane")).start(nodes=3)
    api = kconfig.new_client_from_config(str(cp.kubeconfig))
    try:
        yield ClusterEnv(cp.kubeconfig, cp, api)
    finally:
        api.close()
        cp.stop()


@pytest.fixture
def settings(tmp_path: Path, cluster: ClusterEnv) -> Settings:
    return Settings(k8s={"kubeconfig": cluster.kubeconfig, "context": None}, store={"path": tmp_path / "cloudpilot.db"})


@pytest.fixture
def write_settings(tmp_path: Path, cluster: ClusterEnv) -> Settings:
    """Settings of a server that may change the cluster (and delete); fresh caches for every read."""
    return Settings(
        k8s={"kubeconfig": cluster.kubeconfig, "context": None, "cache_ttl_seconds": 0},
        store={"path": tmp_path / "cloudpilot.db"},
        safety={"allow_write": True, "allow_destructive": True},
    )


@pytest.fixture
def api(cluster: ClusterEnv) -> Any:
    """The control plane's raw API (for builders that set states no client library would)."""
    return cluster.require_control_plane().api


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime(settings)
    yield rt
    rt.close()


@pytest.fixture
def call(runtime: Runtime) -> Callable[..., Awaitable[Any]]:
    """`await call(tool_fn, **kwargs)` runs a catalogue function with the test runtime current."""

    async def run(fn: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
        with use(runtime):
            return await fn(**kwargs)

    return run


@pytest.fixture
def namespace(cluster: ClusterEnv) -> Iterator[str]:
    """A fresh namespace, deleted after the test (pods force-deleted: there is no kubelet to confirm)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.core.create_namespace(kclient.V1Namespace(metadata=kclient.V1ObjectMeta(name=name)))
    yield name
    try:
        cluster.core.delete_namespace(name)
        cluster.core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
    except kclient.ApiException as e:
        if e.status != 404:  # a test that deleted the namespace itself may see it gone already
            raise
