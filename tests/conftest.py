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
from store import Store, open_store
from tests.cluster import states
from tests.cluster.controlplane import ControlPlane
from tests.store.postgres import Postgres


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


STORES = ("sqlite", "postgres")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "stores: run the test on both stores, SQLite and a real PostgreSQL")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked `stores` (directly or by their module's `pytestmark`) that use a store run once per backend."""
    if "store_backend" not in metafunc.fixturenames or not metafunc.definition.get_closest_marker("stores"):
        return
    chosen = any("store_backend" in str(m.args[0]) for m in metafunc.definition.iter_markers("parametrize"))
    if not chosen:  # a test may pick one backend itself
        metafunc.parametrize("store_backend", STORES, indirect=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One PostgreSQL server for the session, started on first use."""
    server = Postgres().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def store_backend(request: pytest.FixtureRequest) -> str:
    """sqlite, unless the test is marked `stores` (then each backend in turn)."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def store_settings(request: pytest.FixtureRequest, tmp_path: Path, store_backend: str) -> dict[str, Any]:
    """The `store` settings of the test's backend: a SQLite file, or a fresh PostgreSQL database."""
    chosen: dict[str, Any] = {"path": tmp_path / "cloudpilot.db"}
    if store_backend == "postgres":
        chosen["url"] = request.getfixturevalue("postgres").database()
    return chosen


@pytest.fixture
def store(store_settings: dict[str, Any]) -> Iterator[Store]:
    """An open store of the test's backend, closed after it."""
    opened = open_store(Settings(store=store_settings))
    yield opened
    opened.close()


@pytest.fixture
def settings(cluster: ClusterEnv, store_settings: dict[str, Any]) -> Settings:
    return Settings(k8s={"kubeconfig": cluster.kubeconfig, "context": None}, store=store_settings)


@pytest.fixture
def write_settings(cluster: ClusterEnv, store_settings: dict[str, Any]) -> Settings:
    """Settings of a server that may change the cluster (and delete); fresh caches for every read."""
    return Settings(
        k8s={"kubeconfig": cluster.kubeconfig, "context": None, "cache_ttl_seconds": 0},
        store=store_settings,
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
    if "store" in rt.__dict__:  # the store it opened (a PostgreSQL pool holds connections)
        rt.store.close()


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
    # the controller manager publishes kube-root-ca.crt into every namespace shortly after it is made;
    # wait for it so that tests counting objects see the namespace as a user would
    states.wait_for(
        lambda: cluster.core.list_namespaced_config_map(name, field_selector="metadata.name=kube-root-ca.crt").items,
        what=f"kube-root-ca.crt in {name}",
    )
    yield name
    try:
        cluster.core.delete_namespace(name)
        cluster.core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
    except kclient.ApiException as e:
        if e.status != 404:  # a test that deleted the namespace itself may see it gone already
            raise
