"""The seed scenarios of the fix loop, built on the real test control plane, and a stand-in kubelet.

Shared by the end-to-end tests (`test_scenarios.py`) and `benchmarks/fix_scenarios.py`. Each scenario
builds a broken Deployment `web` (2 replicas, container `app` on port 8080) with the pod states and Events a
kubelet would report, and says what the fixed object must look like. There is no kubelet: `Kubelet` marks
the pods of the Deployment's newest revision Ready (or crash-looping) through the status subresource, and
the Deployment controller derives the rollout status from those pods.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Api = Callable[..., Any]  # ControlPlane.api(method, path, body=None, content_type=...)
MERGE = "application/merge-patch+json"
Obj = dict[str, Any]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def deployment(api: Api, ns: str, name: str = "web") -> Obj:
    return api("GET", f"/apis/apps/v1/namespaces/{ns}/deployments/{name}")


def pods(api: Api, ns: str, selector: str = "app=web") -> list[Obj]:
    return api("GET", f"/api/v1/namespaces/{ns}/pods?labelSelector={selector}")["items"]


def container_status(
    pod: Obj, ready: bool, state: Obj | None = None, restarts: int = 0, last: Obj | None = None
) -> Obj:
    c = pod["spec"]["containers"][0]
    cs: Obj = {
        "name": c["name"],
        "image": c["image"],
        "imageID": "",
        "ready": ready,
        "started": ready,
        "restartCount": restarts,
        "state": state or {"running": {"startedAt": now()}},
    }
    if last:
        cs["lastState"] = {"terminated": last}
    return cs


def set_status(api: Api, ns: str, pod: Obj, ready: bool, phase: str = "Running", **cs: Any) -> None:
    flag = "True" if ready else "False"
    status = {
        "phase": phase,
        "podIP": "10.244.0.10",
        "startTime": now(),
        "containerStatuses": [container_status(pod, ready, **cs)],
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "ContainersReady", "status": flag},
            {"type": "Ready", "status": flag},
        ],
    }
    api(
        "PATCH",
        f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}/status",
        {"status": status},
        content_type=MERGE,
    )


def crashing(pod: Obj, reason: str = "Error", code: int = 1, restarts: int = 5) -> Obj:
    return {
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed"}},
        "restarts": restarts,
        "last": {"reason": reason, "exitCode": code, "startedAt": now(), "finishedAt": now()},
    }


def event(api: Api, ns: str, pod: str, reason: str, message: str, count: int = 5) -> None:
    stamp = now()
    api(
        "POST",
        f"/api/v1/namespaces/{ns}/events",
        {
            "metadata": {"generateName": f"{pod}."},
            "involvedObject": {
                "kind": "Pod",
                "namespace": ns,
                "name": pod,
                "apiVersion": "v1",
                "fieldPath": "spec.containers{app}",
            },
            "reason": reason,
            "message": message,
            "type": "Warning",
            "count": count,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": "kubelet"},
        },
    )


def newest_pods(api: Api, ns: str, name: str = "web") -> list[Obj]:
    """Scheduled, live pods of the Deployment's newest ReplicaSet."""
    dep = deployment(api, ns, name)
    revision = (dep["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision")
    sets = api("GET", f"/apis/apps/v1/namespaces/{ns}/replicasets")["items"]
    new = [
        rs
        for rs in sets
        if (rs["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision") == revision
        and any(o["uid"] == dep["metadata"]["uid"] for o in rs["metadata"].get("ownerReferences", []))
    ]
    if not new:
        return []
    template_hash = new[0]["metadata"]["labels"]["pod-template-hash"]
    return [
        p
        for p in pods(api, ns, f"pod-template-hash={template_hash}")
        if p["spec"].get("nodeName") and not p["metadata"].get("deletionTimestamp")
    ]


def deploy(api: Api, ns: str, container: Obj | None = None, replicas: int = 2, ready: bool = True) -> list[Obj]:
    """Deployment `web`; waits for its pods to be scheduled and, with `ready`, for it to be available."""
    c = {
        "name": "app",
        "image": "shop/web:1.0",
        "ports": [{"containerPort": 8080, "name": "http"}],
        **(container or {}),
    }
    api(
        "POST",
        f"/apis/apps/v1/namespaces/{ns}/deployments",
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [c]}},
            },
        },
    )
    if not ready:
        return []
    found = wait_for(lambda: len(newest_pods(api, ns)) >= replicas and newest_pods(api, ns), "web's pods")
    for p in found:
        set_status(api, ns, p, ready=True)
    wait_for(lambda: deployment(api, ns)["status"].get("availableReplicas", 0) >= replicas, "web available")
    return found


class Kubelet:
    """Marks the newest revision's pods as a kubelet would: Ready, or crash-looping (`mode='crash'`)."""

    def __init__(self, api: Api, ns: str, mode: str = "ready") -> None:
        self.api, self.ns, self.mode = api, ns, mode
        self.stop = threading.Event()
        self.seen: set[str] = set()
        self.errors: list[BaseException] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                for p in newest_pods(self.api, self.ns):
                    uid = p["metadata"]["uid"]
                    if uid in self.seen:
                        continue
                    if self.mode == "ready":
                        set_status(self.api, self.ns, p, ready=True)
                    else:
                        set_status(self.api, self.ns, p, ready=False, **crashing(p))
                    self.seen.add(uid)
            except RuntimeError as e:  # a pod deleted between list and patch: look again
                self.errors.append(e)
            self.stop.wait(0.1)


@contextmanager
def kubelet(api: Api, ns: str, mode: str = "ready", *, only_new: bool = False) -> Iterator[Kubelet]:
    """`only_new`: leave the pods there now as they are (a broken revision stays broken until it is replaced)."""
    k = Kubelet(api, ns, mode)
    if only_new:
        k.seen = {p["metadata"]["uid"] for p in newest_pods(api, ns)}
    thread = threading.Thread(target=k.run, daemon=True)
    thread.start()
    try:
        yield k
    finally:
        k.stop.set()
        thread.join(5)


# -- the seed scenarios ----------------------------------------------------------------------------------------
def bad_probe_path(api: Api, ns: str) -> None:
    probe = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10}
    for p in deploy(api, ns, {"livenessProbe": probe}):
        set_status(
            api,
            ns,
            p,
            ready=True,
            restarts=4,
            last={"reason": "Error", "exitCode": 137, "startedAt": now(), "finishedAt": now()},
        )
        event(
            api,
            ns,
            p["metadata"]["name"],
            "Unhealthy",
            "Liveness probe failed: HTTP probe failed with statuscode: 404",
            count=12,
        )


def probe_too_frequent(api: Api, ns: str) -> None:
    probe = {
        "httpGet": {"path": "/ready", "port": 8080},
        "periodSeconds": 1,
        "timeoutSeconds": 1,
        "failureThreshold": 1,
    }
    for p in deploy(api, ns, {"readinessProbe": probe}):
        set_status(api, ns, p, ready=False)
        event(
            api,
            ns,
            p["metadata"]["name"],
            "Unhealthy",
            'Readiness probe failed: Get "http://10.244.0.10:8080/ready": context deadline exceeded '
            "(Client.Timeout exceeded while awaiting headers)",
            count=40,
        )


def requests_too_high(api: Api, ns: str) -> None:
    deploy(api, ns, {"resources": {"requests": {"cpu": "64", "memory": "64Mi"}}}, replicas=1, ready=False)
    wait_for(
        lambda: any(
            c.get("reason") == "Unschedulable" for p in pods(api, ns) for c in p["status"].get("conditions", [])
        ),
        "the scheduler to give up",
    )


def oom_killed(api: Api, ns: str) -> None:
    for p in deploy(api, ns, {"resources": {"limits": {"memory": "128Mi"}}}):
        set_status(api, ns, p, ready=False, **crashing(p, "OOMKilled", 137, restarts=3))


def bad_image_after_rollout(api: Api, ns: str) -> None:
    deploy(api, ns)
    image = "shop/web:2.0-typo"
    api(
        "PATCH",
        f"/apis/apps/v1/namespaces/{ns}/deployments/web",
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}},
        content_type=MERGE,
    )
    new = wait_for(
        lambda: [p for p in newest_pods(api, ns) if p["spec"]["containers"][0]["image"] == image],
        "the new revision's pod",
    )
    for p in new:
        set_status(
            api,
            ns,
            p,
            ready=False,
            phase="Pending",
            state={"waiting": {"reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}"'}},
        )
        event(
            api,
            ns,
            p["metadata"]["name"],
            "Failed",
            f'Failed to pull image "{image}": rpc error: code = NotFound desc = failed to resolve reference: '
            f"{image}: not found",
        )


def multi_cause_crashloop(api: Api, ns: str) -> None:
    probe = {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 2, "failureThreshold": 1}
    container = {"livenessProbe": probe, "resources": {"limits": {"memory": "128Mi"}}}
    for p in deploy(api, ns, container):
        set_status(api, ns, p, ready=False, **crashing(p, "OOMKilled", 137, restarts=6))
        event(
            api,
            ns,
            p["metadata"]["name"],
            "Unhealthy",
            "Liveness probe failed: HTTP probe failed with statuscode: 404",
            count=9,
        )


def _app(dep: Obj) -> Obj:
    return dep["spec"]["template"]["spec"]["containers"][0]


@dataclass(frozen=True)
class Scenario:
    name: str
    build: Callable[[Api, str], None]
    codes: set[str]  # the findings the plan must address
    actions: list[str]  # the plan's edits on Deployment web, in order
    fixed: Callable[[Obj], bool]  # the Deployment after the fix
    event_text: str


SCENARIOS = [
    Scenario(
        "bad-probe-path",
        bad_probe_path,
        {"POD_PROBE_BAD_TARGET"},
        ["set_probe"],
        lambda d: (
            _app(d)["livenessProbe"].get("tcpSocket") == {"port": 8080} and "httpGet" not in _app(d)["livenessProbe"]
        ),
        "Liveness probe failed: HTTP probe failed with statuscode: 404",
    ),
    Scenario(
        "probe-too-frequent",
        probe_too_frequent,
        {"POD_PROBE_AGGRESSIVE"},
        ["set_probe"],
        lambda d: (
            _app(d)["readinessProbe"]["periodSeconds"] >= 10
            and _app(d)["readinessProbe"]["timeoutSeconds"] >= 3
            and _app(d)["readinessProbe"]["failureThreshold"] >= 3
        ),
        "Readiness probe failed: context deadline exceeded",
    ),
    Scenario(
        "requests-too-high",
        requests_too_high,
        {"POD_INSUFFICIENT_RESOURCES"},
        ["set_resources"],
        lambda d: _cores(_app(d)["resources"]["requests"]["cpu"]) <= 3.6,
        "0/3 nodes are available: 3 Insufficient cpu",
    ),
    Scenario(
        "oom-killed",
        oom_killed,
        {"POD_OOMKILLED"},
        ["set_resources"],
        lambda d: _app(d)["resources"]["limits"]["memory"] == "256Mi",
        "container app OOMKilled",
    ),
    Scenario(
        "bad-image-after-rollout",
        bad_image_after_rollout,
        {"POD_IMAGE_NOT_FOUND"},
        ["set_template"],
        lambda d: _app(d)["image"] == "shop/web:1.0",
        "ImagePullBackOff after the 2.0 rollout",
    ),
    Scenario(
        "multi-cause-crashloop",
        multi_cause_crashloop,
        {"POD_OOMKILLED", "POD_PROBE_BAD_TARGET"},
        ["set_resources", "set_probe"],
        lambda d: (
            _app(d)["resources"]["limits"]["memory"] == "256Mi"
            and _app(d)["livenessProbe"].get("tcpSocket") == {"port": 8080}
            and _app(d)["livenessProbe"]["failureThreshold"] >= 3
        ),
        "CrashLoopBackOff: Back-off restarting failed container app",
    ),
]


def _cores(value: str) -> float:
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)
