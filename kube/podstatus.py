"""A pod's status as `kubectl get pods` shows it, computed from the raw pod object."""

from __future__ import annotations

from typing import Any

HEALTHY = frozenset({"Running", "Completed", "Succeeded"})


def pod_reason(pod: dict[str, Any]) -> str:
    """The STATUS column of `kubectl get pods`: Running, Pending, CrashLoopBackOff, OOMKilled, Init:0/1, ..."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Unknown"
    if any(
        isinstance(c, dict) and c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated"
        for c in status.get("conditions") or []
    ):
        reason = "SchedulingGated"  # as kubectl prints a pod held by schedulingGates
    init_specs = spec.get("initContainers") or []
    sidecars = {c["name"] for c in init_specs if c.get("restartPolicy") == "Always"}
    initializing = False
    for i, cs in enumerate(status.get("initContainerStatuses") or []):
        state = cs.get("state") or {}
        term, wait = state.get("terminated"), state.get("waiting")
        if term and term.get("exitCode") == 0:
            continue
        if cs.get("name") in sidecars and cs.get("started"):
            continue
        if term:
            reason = "Init:" + (
                term.get("reason")
                or (f"Signal:{term['signal']}" if term.get("signal") else f"ExitCode:{term.get('exitCode')}")
            )
        elif wait and wait.get("reason") and wait["reason"] != "PodInitializing":
            reason = "Init:" + wait["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break
    if not initializing:
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            state = cs.get("state") or {}
            term, wait = state.get("terminated"), state.get("waiting")
            if wait and wait.get("reason"):
                reason = wait["reason"]
            elif term and term.get("reason"):
                reason = term["reason"]
            elif term:
                reason = f"Signal:{term['signal']}" if term.get("signal") else f"ExitCode:{term.get('exitCode')}"
            elif cs.get("ready") and "running" in state:
                has_running = True
        if reason == "Completed" and has_running:
            reason = "Running" if _condition(status, "Ready") == "True" else "NotReady"
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    return str(reason)


def ready_counts(pod: dict[str, Any]) -> tuple[int, int]:
    """(ready containers, containers), restartable init containers (sidecars) included."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    sidecars = {c["name"] for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"}
    total = len(spec.get("containers") or []) + len(sidecars)
    ready = sum(1 for cs in status.get("containerStatuses") or [] if cs.get("ready"))
    ready += sum(
        1 for cs in status.get("initContainerStatuses") or [] if cs.get("name") in sidecars and cs.get("ready")
    )
    return ready, total


def restarts(pod: dict[str, Any]) -> int:
    status = pod.get("status") or {}
    return sum(
        int(cs.get("restartCount") or 0)
        for key in ("containerStatuses", "initContainerStatuses")
        for cs in status.get(key) or []
    )


def last_termination(pod: dict[str, Any]) -> str | None:
    """The last termination reason with its exit code, e.g. 'OOMKilled (137)', if a container has one."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (cs.get("lastState") or {}).get("terminated")
        if term:
            return f"{term.get('reason') or 'Error'} ({term.get('exitCode')})"
    return None


def is_healthy(reason: str, ready: int, total: int) -> bool:
    """Running with every container ready, or finished successfully."""
    if reason in ("Completed", "Succeeded"):
        return True
    return reason == "Running" and ready == total


def _condition(status: dict[str, Any], kind: str) -> str | None:
    for c in status.get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == kind:
            return str(c.get("status"))
    return None
