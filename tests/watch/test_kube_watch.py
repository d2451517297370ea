"""The Kubernetes watch on a control plane of its own (its API server is restarted mid-watch): every Event version
delivered exactly once across the restart, an expired resourceVersion answered by a relist, nothing repeated."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime import Runtime
from settings import Settings
from tests.cluster.controlplane import ControlPlane
from watch.kube import Watch

pytestmark = [pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def own_cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    if os.environ.get("CLOUDPILOT_TEST_KUBECONFIG"):
        pytest.skip("restarts an API server: needs the suite's own control plane, not an external cluster")
    # etcd compacted every few seconds and watches served by etcd itself, so that an old resourceVersion really
    # expires (410 Gone) instead of being served from the watch cache
    cp = ControlPlane(
        tmp_path_factory.mktemp("watch-cp"), apiserver_args=("--etcd-compaction-interval=3s", "--watch-cache=false")
    )
    cp.start(nodes=1)
    try:
        yield cp
    finally:
        cp.stop()


def event(cp: ControlPlane, ns: str, i: int) -> dict:
    name = f"web-{i}.{uuid.uuid4().hex[:8]}"
    body = {
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {"kind": "Pod", "namespace": ns, "name": f"web-7d9c4b8f6d-x{i:04d}"},
        "reason": "BackOff",
        "message": "Back-off restarting failed container",
        "type": "Warning",
        "count": 1,
    }
    return cp.api("POST", f"/api/v1/namespaces/{ns}/events", body)


class Collector:
    def __init__(self) -> None:
        self.got: list[tuple[str, str, str]] = []  # (type, uid, resourceVersion)
        self.lock = threading.Lock()

    def __call__(self, kind: str, obj: dict) -> None:
        meta = obj.get("metadata") or {}
        with self.lock:
            self.got.append((kind, meta.get("uid", ""), meta.get("resourceVersion", "")))

    def uids(self, kind: str = "ADDED") -> list[str]:
        with self.lock:
            return [u for k, u, _ in self.got if k == kind]

    def wait(self, check, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.got}"
            time.sleep(0.05)


def test_an_api_server_restart_loses_and_repeats_nothing(own_cp: ControlPlane, tmp_path: Path):
    ns = f"w-{uuid.uuid4().hex[:6]}"
    own_cp.api("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    before = [event(own_cp, ns, i)["metadata"]["uid"] for i in range(5)]
    rt = Runtime(Settings(k8s={"kubeconfig": own_cp.kubeconfig, "context": None}, store={"path": tmp_path / "s.db"}))
    watch = Watch(
        rt.clusters.get(), f"/api/v1/namespaces/{ns}/events", timeout_seconds=5
    )  # the server ends each watch request often: each resumes
    got, stop = Collector(), threading.Event()
    thread = threading.Thread(target=watch.run, args=(got, stop), daemon=True)
    thread.start()
    try:
        got.wait(lambda: sorted(got.uids()) == sorted(before), "the existing events")
        during = [event(own_cp, ns, 10 + i)["metadata"]["uid"] for i in range(3)]
        got.wait(lambda: set(during) <= set(got.uids()), "the events made while watching")

        own_cp.restart_apiserver(down_seconds=2)
        after = [event(own_cp, ns, 20 + i)["metadata"]["uid"] for i in range(4)]
        bumped = own_cp.api("GET", f"/api/v1/namespaces/{ns}/events/{event(own_cp, ns, 30)['metadata']['name']}")
        bumped["count"] = 2
        changed = own_cp.api("PUT", f"/api/v1/namespaces/{ns}/events/{bumped['metadata']['name']}", bumped)
        got.wait(
            lambda: set(after) <= set(got.uids()) and changed["metadata"]["uid"] in got.uids("MODIFIED"),
            "the events made after the restart",
        )
    finally:
        stop.set()
        thread.join(90)
        rt.close()
    assert watch.resumes >= 1  # it did lose the connection, and resumed
    versions = [(u, v) for k, u, v in got.got if k != "DELETED"]
    assert len(versions) == len(set(versions)), "an object version was delivered twice"
    assert sorted(got.uids()) == sorted({*before, *during, *after, changed["metadata"]["uid"]})


def test_an_expired_resource_version_is_answered_by_a_relist(own_cp: ControlPlane, tmp_path: Path):
    ns = f"w-{uuid.uuid4().hex[:6]}"
    own_cp.api("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
    made = [event(own_cp, ns, i)["metadata"]["uid"] for i in range(3)]
    rt = Runtime(Settings(k8s={"kubeconfig": own_cp.kubeconfig, "context": None}, store={"path": tmp_path / "s.db"}))
    watch = Watch(rt.clusters.get(), f"/api/v1/namespaces/{ns}/events", timeout_seconds=5)
    got, stop = Collector(), threading.Event()
    old = watch.relist(got)  # as if this process had seen them before it stopped, at version `old`
    for i in range(5):  # history moves on, and the API server compacts it away
        own_cp.api("PATCH", f"/api/v1/namespaces/{ns}", {"metadata": {"labels": {"step": str(i)}}},
                   content_type="application/merge-patch+json")  # fmt: skip
    time.sleep(8)
    thread = threading.Thread(target=watch.run, args=(got, stop, old), daemon=True)
    thread.start()
    try:
        got.wait(lambda: watch.relists >= 2, "a relist after 410 Gone")
        newer = event(own_cp, ns, 9)["metadata"]["uid"]
        got.wait(lambda: newer in got.uids(), "an event after the relist")
    finally:
        stop.set()
        thread.join(60)
        rt.close()
    assert sorted(got.uids()) == sorted([*made, newer])  # the relist repeated nothing it had delivered
