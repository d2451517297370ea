"""Helpers that put real objects into states a kubelet would report (there is no kubelet in tests)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as kclient


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_pod(
    core: kclient.CoreV1Api,
    namespace: str,
    name: str,
    *,
    image: str = "nginx:1.27",
    node: str | None = "node-1",
    labels: dict[str, str] | None = None,
    containers: list[dict] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """Create a pod (bound to `node` directly, so no scheduler is involved)."""
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {"app": name}},
        "spec": {"containers": containers or [{"name": "main", "image": image}], **spec},
    }
    if node:
        body["spec"]["nodeName"] = node
    return core.api_client.sanitize_for_serialization(core.create_namespaced_pod(namespace, body))


def set_pod_status(
    core: kclient.CoreV1Api,
    namespace: str,
    name: str,
    *,
    phase: str = "Running",
    containers: list[dict[str, Any]] | None = None,
    ready: bool | None = None,
    **extra: Any,
) -> None:
    """Patch the status subresource; `containers` are containerStatuses (name/image filled in if missing)."""
    pod = core.read_namespaced_pod(name, namespace)
    statuses = []
    for spec_c, st in zip(pod.spec.containers, containers or [{}] * len(pod.spec.containers), strict=False):
        statuses.append(
            {
                "name": spec_c.name,
                "image": spec_c.image,
                "imageID": "",
                "restartCount": 0,
                "ready": False,
                "started": False,
                "state": {"waiting": {"reason": "ContainerCreating"}},
                **st,
            }
        )
    all_ready = all(s["ready"] for s in statuses) if ready is None else ready
    status = {
        "phase": phase,
        "containerStatuses": statuses,
        "startTime": now(),
        "conditions": [
            {"type": "Ready", "status": "True" if all_ready else "False", "lastTransitionTime": now()},
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now()},
        ],
        **extra,
    }
    core.patch_namespaced_pod_status(name, namespace, {"status": status})


def running(restarts: int = 0, ready: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "ready": ready,
        "started": True,
        "restartCount": restarts,
        "state": {"running": {"startedAt": now()}},
        **extra,
    }


def crashloop(restarts: int = 5, reason: str = "Error", exit_code: int = 1) -> dict[str, Any]:
    return {
        "ready": False,
        "restartCount": restarts,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}},
        "lastState": {"terminated": {"reason": reason, "exitCode": exit_code, "startedAt": now(), "finishedAt": now()}},
    }


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    return {"ready": False, "restartCount": 0, "state": {"waiting": {"reason": reason, "message": message}}}


def terminated(reason: str, exit_code: int) -> dict[str, Any]:
    return {
        "ready": False,
        "restartCount": 0,
        "state": {"terminated": {"reason": reason, "exitCode": exit_code, "startedAt": now(), "finishedAt": now()}},
    }


def make_event(
    core: kclient.CoreV1Api,
    namespace: str,
    kind: str,
    name: str,
    reason: str,
    message: str,
    type_: str = "Warning",
    count: int = 1,
    when: str | None = None,
) -> None:
    ts = when or now()
    core.create_namespaced_event(
        namespace,
        {
            "metadata": {"generateName": f"{name}."},
            "involvedObject": {"kind": kind, "name": name, "namespace": namespace, "apiVersion": "v1"},
            "reason": reason,
            "message": message,
            "type": type_,
            "count": count,
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "source": {"component": "tests"},
        },
    )


def wait_for(check: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll `check()` until it returns something truthy (no blind sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.1)


def deployment(name: str, image: str = "web:1", replicas: int = 1, **spec: Any) -> dict[str, Any]:
    """A Deployment body whose pods are labelled app=<name>, with a change-cause naming the image."""
    return {
        "metadata": {"name": name, "annotations": {"kubernetes.io/change-cause": f"deploy {image}"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
            **spec,
        },
    }
