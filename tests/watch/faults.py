"""Faults for the watch tests, made on the real control plane the way a kubelet would report them: a bare Pod whose
image cannot be pulled (set through the status subresource: there is no kubelet) and Warning Events about it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

MERGE = "application/merge-patch+json"


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def broken_pod(api: Any, ns: str, name: str) -> str:
    """Pod `name` (no owner: its own incident root) waiting in ImagePullBackOff; returns the resourceVersion."""
    spec = {"containers": [{"name": "app", "image": "shop/web:2.0-typo"}]}
    api("POST", f"/api/v1/namespaces/{ns}/pods", {"metadata": {"name": name}, "spec": spec})
    return pull_failing(api, ns, name, 'Back-off pulling image "shop/web:2.0-typo"')


def pull_failing(api: Any, ns: str, name: str, message: str) -> str:
    """Set (or set again, with another message) the Pod's container waiting in ImagePullBackOff."""
    waiting = {"reason": "ImagePullBackOff", "message": message}
    status = {"phase": "Pending", "containerStatuses": [
        {"name": "app", "image": "shop/web:2.0-typo", "imageID": "", "ready": False, "started": False,
         "restartCount": 0, "state": {"waiting": waiting}},
    ]}  # fmt: skip
    done = api("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}/status", {"status": status}, content_type=MERGE)
    return str(done["metadata"]["resourceVersion"])


def warning(api: Any, ns: str, pod: str, name: str, count: int = 1) -> dict[str, Any]:
    """A Warning Event `name` (reason BackOff) about the Pod, seen `count` times."""
    now = stamp()
    body = {
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {"kind": "Pod", "namespace": ns, "name": pod, "apiVersion": "v1"},
        "reason": "BackOff",
        "message": 'Back-off pulling image "shop/web:2.0-typo"',
        "type": "Warning",
        "count": count,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "source": {"component": "kubelet"},
    }
    return dict(api("POST", f"/api/v1/namespaces/{ns}/events", body))


def seen_again(api: Any, ns: str, name: str) -> dict[str, Any]:
    """The Event happened once more: the same object, its count up by one (as the kubelet's recorder does)."""
    event = api("GET", f"/api/v1/namespaces/{ns}/events/{name}")
    event["count"] = int(event.get("count") or 1) + 1
    event["lastTimestamp"] = stamp()
    return dict(api("PUT", f"/api/v1/namespaces/{ns}/events/{name}", event))
