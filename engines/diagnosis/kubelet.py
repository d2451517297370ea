"""Kubelet-side pod start failures: the runtime cannot create, inspect or start a container (CreateContainerError,
RunContainerError, ImageInspectError, runAsNonRoot with a root image), the pod sandbox or a volume cannot be set
up (FailedCreatePodSandBox, NetworkNotReady, FailedMount, FailedMapVolume, FailedAttachVolume), a lifecycle hook
fails, or the kubelet evicts or preempts pods. Also pods that run with settings the kubelet could not give them:
DNS settings trimmed or cluster DNS missing, an in-place resize refused, a volume reported abnormal (recent
events only: an event older than an hour is history).

These are causes (tier 0): the crash loops, unready pods and unavailable workloads they produce are reported as
symptoms by the generic rules. Missing ConfigMaps and Secrets stay POD_CONFIG_MISSING (pods.py). A sandbox,
mount or attach failure counts only once it has lasted `STUCK_AFTER`: the kubelet retries them, and they often
fail for a moment while a node's network or storage agent starts.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from typing import Any

from engines.diagnosis.common import (
    MI,
    container_spec,
    event_summary,
    fmt_resource,
    owning_deployment,
    pod_finding,
    present,
    quantity,
    rollback_fix,
    seen_since,
)
from engines.diagnosis.model import Finding, Fix, ObjectRef
from engines.diagnosis.snapshot import Obj, Snapshot, meta, name_of, ns_of
from kube.times import parse_time

STUCK_AFTER = timedelta(minutes=3)
RECENT = timedelta(hours=1)  # an event older than this is history (the API server's default event TTL)
EVICTION_WINDOW = timedelta(hours=24)
MESSAGE_CHARS = 400  # of a kubelet or runtime message quoted in evidence
EVICTIONS_REPORTED = 2  # per workload within the window; a bare pod is gone after one

_CREATE = {"CreateContainerError", "RunContainerError", "PreCreateHookError", "PreStartHookError"}
_START_FAILED = {"StartError", "ContainerCannotRun"}  # the terminated reason of a container the runtime never ran
_CONFIG_MISSING = re.compile(r"(configmap|secret) \"[^\"]+\" not found|couldn't find key", re.I)
_NON_ROOT = re.compile(r"runAsNonRoot|non-root policy")
_NON_NUMERIC = re.compile(r"non-numeric user \(([^)]*)\)")
_FIELD_CONTAINER = re.compile(r"spec\.(?:init)?[cC]ontainers\{([^}]+)\}")


# -- safe reading of objects that may hold any shape ----------------------------------------------------------
def _dict(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[Obj]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _count(event: Obj) -> int:
    count = event.get("count") or _dict(event.get("series")).get("count") or 1
    return count if isinstance(count, int) and count > 0 else 1


def _statuses(pod: Obj) -> list[Obj]:
    status = _dict(pod.get("status"))
    return _dicts(status.get("initContainerStatuses")) + _dicts(status.get("containerStatuses"))


def _condition(pod: Obj, kind: str) -> Obj:
    return next((c for c in _dicts(_dict(pod.get("status")).get("conditions")) if c.get("type") == kind), {})


def _pods(snap: Snapshot) -> Iterator[Obj]:
    for pod in snap.unhealthy_pods:
        if isinstance(pod.get("spec"), dict) and isinstance(pod.get("status"), dict):
            yield pod


def _events(snap: Snapshot, pod: Obj, *reasons: str) -> list[Obj]:
    return [e for e in snap.events_for("Pod", ns_of(pod), name_of(pod)) if e.get("reason") in reasons]


def _event_container(event: Obj) -> str | None:
    inv = _dict(event.get("involvedObject") or event.get("regarding"))
    m = _FIELD_CONTAINER.search(_text(inv.get("fieldPath")))
    return m.group(1) if m else None


def _cluster_events(snap: Snapshot, kind: str, name: str | None, *reasons: str) -> list[Obj]:
    """Events of these reasons about a cluster-scoped object (a Node, a PersistentVolume), newest first."""
    return [e for e in snap.events_about(kind, name) if e.get("reason") in reasons] if name else []


def _recent(snap: Snapshot, events: list[Obj], after: datetime | None = None) -> list[Obj]:
    """The events seen within RECENT (and after `after`, e.g. the pod's creation: an older event was about an
    earlier pod of the same name)."""
    since = max(snap.now - RECENT, after) if after is not None else snap.now - RECENT
    return [e for e in events if seen_since(e, since)]


def _node(pod: Obj) -> str | None:
    node = _dict(pod.get("spec")).get("nodeName")
    return node if isinstance(node, str) and node else None


def _fix_target(snap: Snapshot, pod: Obj) -> ObjectRef:
    return snap.owner(pod) or snap.ref(pod, "Pod")


def _minutes(snap: Snapshot, since: datetime) -> str:
    minutes = max(0, int((snap.now - since).total_seconds() // 60))
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def _hint(
    message: str, hints: tuple[tuple[tuple[str, ...], str, str], ...], default: tuple[str, str]
) -> tuple[str, str]:
    low = message.lower()
    return next(((short, fix) for words, short, fix in hints if any(w.lower() in low for w in words)), default)


# -- containers the runtime cannot create, inspect or start -------------------------------------------------
def container_start(snap: Snapshot) -> Iterator[Finding]:
    for pod in _pods(snap):
        for cs in _statuses(pod):
            waiting = _dict(_dict(cs.get("state")).get("waiting"))
            last = _dict(_dict(cs.get("lastState")).get("terminated"))
            reason, message = _text(waiting.get("reason")), _text(waiting.get("message"))
            if reason == "CrashLoopBackOff" and last.get("reason") in _START_FAILED:
                reason, message = _text(last.get("reason")), _text(last.get("message"))
            name = _text(cs.get("name"))
            if reason == "ImageInspectError":
                yield _inspect_failed(snap, pod, cs, message)
            elif reason in _CREATE | _START_FAILED | {"CreateContainerConfigError"}:
                events = _failed_events(snap, pod, name)
                message = message or next((_text(e.get("message")) for e in events), "")
                if _NON_ROOT.search(message):
                    yield _run_as_root(snap, pod, name, message, events)
                elif reason != "CreateContainerConfigError" or (message and not _CONFIG_MISSING.search(message)):
                    yield _create_failed(snap, pod, cs, reason, message, events)


def _failed_events(snap: Snapshot, pod: Obj, container: str) -> list[Obj]:
    """The kubelet's `Failed` "Error: ..." events about this container (not the image pull's)."""
    return [
        e
        for e in _events(snap, pod, "Failed")
        if _text(e.get("message")).startswith("Error:")
        and "ImagePull" not in _text(e.get("message"))
        and _event_container(e) in (None, container)
    ]


_CREATE_HINTS = (
    (
        ("error mounting", "not a directory"),
        "a volume mount conflicts with the image",
        "A volume mount of container {c} conflicts with image {image} (a file mounted over a directory or the "
        "reverse, often a subPath): correct the mountPath/subPath in the pod template.",
    ),
    (
        ("executable file not found", "no such file or directory"),
        "its command is not in the image",
        "The command of container {c} (`command`/`args`, or the image's ENTRYPOINT) names a file image {image} "
        "does not contain: correct the command, or use the image that has it.",
    ),
    (
        ("permission denied",),
        "its command is not executable",
        "The entrypoint of container {c} is not executable: set the file's execute bit in image {image} "
        "(chmod +x), and check it does not run from a volume mounted noexec.",
    ),
    (
        ("exec format error",),
        "the image is built for another CPU architecture",
        "Image {image} is built for another CPU architecture than node {node}: use a multi-arch image or one "
        "built for the node's architecture.",
    ),
    (
        ("already in use", "is reserved for"),
        "a stale container holds its name",
        "The runtime on node {node} still holds a container of that name from an interrupted create: it "
        "usually clears on a retry; if it persists, delete the pod or restart the container runtime on the node.",
    ),
    (
        ("seccomp", "apparmor"),
        "a security profile is missing on the node",
        "A seccomp or AppArmor profile that container {c} names is not installed on node {node}: install it "
        "there, or use a profile the nodes have (RuntimeDefault).",
    ),
)
_CREATE_DEFAULT = (
    "the runtime refused it",
    "The container runtime on node {node} refused container {c}: the message quotes its error; the runtime's "
    "log (containerd or CRI-O) on the node has the rest.",
)
_KUBELET_STEP = (
    "a kubelet step before its start failed",
    "A kubelet step before container {c} starts failed (device plugin, CPU, memory or topology manager): read "
    "the message, and the kubelet's log on node {node}.",
)
_SPEC_PROBLEMS = {"its command is not in the image", "its command is not executable", "a volume mount conflicts"}


def _create_failed(snap: Snapshot, pod: Obj, cs: Obj, reason: str, message: str, events: list[Obj]) -> Finding:
    name = _text(cs.get("name"))
    spec = container_spec(_dict(pod.get("spec")), name) or {}
    image = _text(spec.get("image")) or _text(cs.get("image"))
    if reason in ("PreCreateHookError", "PreStartHookError"):
        short, remediation = _KUBELET_STEP
    else:
        short, remediation = _hint(message, _CREATE_HINTS, _CREATE_DEFAULT)
    remediation = remediation.format(c=name, image=image or "-", node=_node(pod) or "-")
    restarts = cs.get("restartCount")
    evidence: dict[str, Any] = {
        "container": name,
        "reason": reason,
        "message": message[:MESSAGE_CHARS] or None,
        "image": image or None,
        "restarts": restarts if isinstance(restarts, int) and restarts else None,
        "events": event_summary(events) or None,
    }
    fix = None
    dep = owning_deployment(snap, pod) if any(short.startswith(p) for p in _SPEC_PROBLEMS) else None
    undo = rollback_fix(snap, dep) if dep else None
    if undo:
        fix, extra = undo
        evidence.update(extra)
        remediation += " The failure began with the newest revision: rolling back restores the previous one."
    started = reason in ("RunContainerError", "StartError", "ContainerCannotRun")
    return pod_finding(
        snap,
        pod,
        code="POD_CONTAINER_CREATE_FAILED",
        severity="critical",
        summary=f"container {name} cannot be {'started' if started else 'created'} ({reason}): {short}",
        evidence=present(evidence),
        remediation=remediation,
        fix=fix,
    )


def _run_as_root(snap: Snapshot, pod: Obj, name: str, message: str, events: list[Obj]) -> Finding:
    spec = _dict(pod.get("spec"))
    container = container_spec(spec, name) or {}
    pod_sc, own_sc = _dict(spec.get("securityContext")), _dict(container.get("securityContext"))
    set_in = "container" if "runAsNonRoot" in own_sc else "pod"
    non_root = (own_sc if set_in == "container" else pod_sc).get("runAsNonRoot")
    user = own_sc.get("runAsUser", pod_sc.get("runAsUser"))
    image = _text(container.get("image"))
    named = _NON_NUMERIC.search(message)
    if user == 0:
        why = "runAsUser is 0 (root) while runAsNonRoot is set"
    elif named:
        why = f"image {image} runs as non-numeric user {named.group(1)}, which the kubelet cannot check"
    else:
        why = f"runAsNonRoot is set and image {image} runs as root"
    evidence = {
        "container": name,
        "runAsNonRoot": non_root,
        "set_in": set_in if non_root is not None else None,
        "runAsUser": user,
        "image": image or None,
        "message": message[:MESSAGE_CHARS],
        "events": event_summary(events) or None,
    }
    return pod_finding(
        snap,
        pod,
        code="POD_RUN_AS_ROOT",
        severity="critical",
        summary=f"container {name} is refused: {why}",
        evidence=present(evidence),
        remediation=f"Set securityContext.runAsUser of container {name} (or of the pod) to the non-zero UID the "
        "image is built for (e.g. 1000, with fsGroup for writable volumes), or use an image whose Dockerfile sets "
        "a numeric non-root USER. Keep runAsNonRoot: removing it lets the container run as root.",
    )


def _inspect_failed(snap: Snapshot, pod: Obj, cs: Obj, message: str) -> Finding:
    name = _text(cs.get("name"))
    image = _text((container_spec(_dict(pod.get("spec")), name) or {}).get("image")) or _text(cs.get("image"))
    events = [e for e in _events(snap, pod, "InspectFailed") if _event_container(e) in (None, name)]
    message = message or next((_text(e.get("message")) for e in events), "")
    evidence = {
        "container": name,
        "image": image or None,
        "message": message[:MESSAGE_CHARS] or None,
        "events": event_summary(events) or None,
    }
    fix = None
    dep = owning_deployment(snap, pod)
    undo = rollback_fix(snap, dep) if dep else None
    remediation = (
        f"The runtime on node {_node(pod) or '-'} has image {image or '-'} but cannot read its configuration (a "
        "corrupt or partly pulled image, or a format the runtime does not support): remove the image from the "
        "node (crictl rmi) so the next start pulls it again; if every node fails, rebuild and push the image."
    )
    if undo:
        fix, extra = undo
        evidence.update(extra)
        remediation += " The failure began with the newest revision: rolling back restores the previous image."
    return pod_finding(
        snap,
        pod,
        code="POD_IMAGE_INSPECT_FAILED",
        severity="critical",
        summary=f"container {name}: the runtime cannot inspect image {image} (ImageInspectError)",
        evidence=present(evidence),
        remediation=remediation,
        fix=fix,
    )


# -- lifecycle hooks ------------------------------------------------------------------------------------------
_HOOK_EVENTS = {"FailedPostStartHook": "postStart", "FailedPreStopHook": "preStop"}


def hooks(snap: Snapshot) -> Iterator[Finding]:
    """A postStart hook that fails gets its container killed and restarted; a failing preStop hook means the
    container gets no graceful shutdown."""
    for pod in _pods(snap):
        spec = _dict(pod.get("spec"))
        failed: dict[tuple[str, str], list[Obj]] = {}
        for ev in _events(snap, pod, *_HOOK_EVENTS):
            hook = _HOOK_EVENTS[ev["reason"]]
            name = _event_container(ev) or _hook_owner(spec, hook)
            failed.setdefault((name, hook), []).append(ev)
        states = {_text(cs.get("name")): cs for cs in _statuses(pod)}
        for name, cs in states.items():
            if _dict(_dict(cs.get("state")).get("waiting")).get("reason") == "PostStartHookError":
                failed.setdefault((name, "postStart"), [])
        for (name, hook), events in failed.items():
            cs = states.get(name, {})
            if hook == "postStart" and cs.get("ready") is True:
                continue  # the hook passed on the container's latest start
            yield _hook_finding(snap, pod, name, hook, cs, events)


def _hook_owner(spec: Obj, hook: str) -> str:
    """The container an event without a fieldPath is about: the one with that hook, else the first."""
    every = _dicts(spec.get("initContainers")) + _dicts(spec.get("containers"))
    hooked = [c for c in every if _dict(_dict(c.get("lifecycle")).get(hook))]
    return next((_text(c.get("name")) for c in hooked or _dicts(spec.get("containers"))), "")


def _hook_finding(snap: Snapshot, pod: Obj, name: str, hook: str, cs: Obj, events: list[Obj]) -> Finding:
    container = container_spec(_dict(pod.get("spec")), name) or {}
    handler = _dict(_dict(container.get("lifecycle")).get(hook))
    waiting = _dict(_dict(cs.get("state")).get("waiting"))
    last = _dict(_dict(cs.get("lastState")).get("terminated"))
    detail = next((m for e in events if (m := _text(e.get("message"))) and m != "PostStartHook failed"), "")
    hook_error = _text(waiting.get("message")) if waiting.get("reason") == "PostStartHookError" else ""
    evidence = {
        "container": name,
        "hook": hook,
        "handler": handler or None,
        "failures": sum(_count(e) for e in events) or None,
        "restarts": cs.get("restartCount") or None,
        "last_termination": f"{last.get('reason') or 'Error'} (exit {last.get('exitCode')})" if last else None,
        "message": (hook_error or detail)[:MESSAGE_CHARS] or None,
        "events": event_summary(events) or None,
    }
    if hook == "postStart":
        summary = f"the postStart hook of container {name} fails, so the kubelet kills and restarts it"
        remediation = (
            f"Make the postStart hook of container {name} succeed: run its command in the container to see the "
            "error (a missing binary or script, or a call to something not up yet: the hook runs alongside the "
            "entrypoint, not after it). Fix the command, let it tolerate failure, or move the work into the "
            "entrypoint or an init container."
        )
    else:
        summary = f"the preStop hook of container {name} fails, so it stops without a graceful shutdown"
        remediation = (
            f"Fix the preStop hook of container {name} (the command must exist in the image, the HTTP endpoint "
            "must answer) and keep it shorter than terminationGracePeriodSeconds; until then requests in flight "
            "are cut off when pods stop."
        )
    return pod_finding(
        snap,
        pod,
        code="POD_HOOK_FAILED",
        severity="critical" if hook == "postStart" else "warning",
        summary=summary,
        evidence=present(evidence),
        remediation=remediation,
    )


# -- pods stuck ContainerCreating: sandbox, mounts, attachments -------------------------------------------
def _not_started(pod: Obj) -> bool:
    """Scheduled, Pending, and no container has run yet (statuses absent or waiting to be created)."""
    status = _dict(pod.get("status"))
    if meta(pod).get("deletionTimestamp") or status.get("phase") not in ("Pending", None) or not _node(pod):
        return False
    return all(
        set(_dict(cs.get("state"))) <= {"waiting"}
        and _dict(_dict(cs.get("state")).get("waiting")).get("reason")
        in (None, "", "ContainerCreating", "PodInitializing")
        for cs in _statuses(pod)
    )


def _failing_since(pod: Obj, events: list[Obj]) -> datetime | None:
    """When the failure began: the first occurrence of its events, else when the pod was scheduled or created."""
    firsts = [t for e in events if (t := parse_time(e.get("firstTimestamp") or e.get("eventTime")))]
    if firsts:
        return min(firsts)
    return parse_time(_condition(pod, "PodScheduled").get("lastTransitionTime")) or parse_time(
        meta(pod).get("creationTimestamp")
    )


def _stuck(snap: Snapshot, pod: Obj, events: list[Obj]) -> dict[str, Any] | None:
    """Evidence of a failure that has lasted past STUCK_AFTER (None while it may still be a passing one)."""
    since = _failing_since(pod, events)
    if since is not None and snap.now - since < STUCK_AFTER:
        return None
    out: dict[str, Any] = {"attempts": sum(_count(e) for e in events)}
    if since is not None:
        out["failing_for"] = _minutes(snap, since)
    return out


def _group(snap: Snapshot, pod: Obj) -> tuple[str, str, str]:
    owner = snap.owner(pod)
    return (owner.kind, owner.namespace or "", owner.name) if owner else ("Pod", ns_of(pod), name_of(pod))


# Every step of the kubelet before the first container: the network must be ready (NetworkNotReady), DRA
# claims prepared, the sandbox and pod cgroup created, and the runtime must report the sandbox's status
# (FailedPodSandBoxStatus; FailedSync "error determining status" when the runtime's pod status is an error).
_SANDBOX_EVENTS = (
    "FailedCreatePodSandBox",
    "FailedCreatePodContainer",
    "FailedPodSandBoxStatus",
    "NetworkNotReady",
    "FailedPrepareDynamicResources",
    "FailedSync",
)
_PLUGIN = re.compile(r'plugin type="([^"]+)"')
_SANDBOX_HINTS = (
    (
        ("Failed to prepare dynamic resources",),
        "a DRA driver cannot prepare its ResourceClaims",
        "The kubelet plugin of the DRA driver that allocated the pod's ResourceClaims cannot prepare them on "
        "node(s) {nodes}: check that driver's kubelet plugin pod (a DaemonSet) there and its log, and the "
        "claims' status.allocation. The kubelet retries once the driver works.",
    ),
    (
        ("Unable to get pod sandbox status", "error determining status"),
        "the runtime cannot report its status",
        "The container runtime on node(s) {nodes} created the sandbox but cannot report its status: check "
        "containerd or CRI-O on the node (its log, `crictl pods`), restart it if it hangs.",
    ),
    (
        ("no IP addresses available", "failed to allocate", "ipam", "ip pool"),
        "no pod IP address is left",
        "The pod IP range of node(s) {nodes} is used up: release leaked addresses (the network plugin's IPAM) or "
        "enlarge the pool or subnet, then the kubelet's next retry gets an address.",
    ),
    (
        ("RuntimeHandler", "no runtime for", "runtime handler"),
        "the node has no runtime handler for its RuntimeClass",
        "The runtime on node(s) {nodes} has no handler for the pod's RuntimeClass: install it on those nodes, or "
        "give the RuntimeClass a scheduling nodeSelector for the nodes that have it.",
    ),
    (
        ("network", "cni", "plugin type"),
        "the network plugin cannot set up pod networking",
        "The network plugin{plugin} on node(s) {nodes} cannot set up pod networking: check its agent pod on those "
        "nodes (a DaemonSet, e.g. in kube-system): running, ready and able to reach its datastore ('connection "
        "refused' means it is not). Pods start on the kubelet's next retry once it works.",
    ),
)
_SANDBOX_DEFAULT = (
    "the container runtime cannot create it",
    "The container runtime on node(s) {nodes} cannot create the pod's sandbox or cgroup: the message quotes its "
    "error; check containerd or CRI-O and the kubelet's log on the node.",
)


def sandbox(snap: Snapshot) -> Iterator[Finding]:
    groups: dict[tuple[str, str, str], list[tuple[Obj, list[Obj], dict[str, Any]]]] = {}
    for pod in _pods(snap):
        events = _events(snap, pod, *_SANDBOX_EVENTS) if _not_started(pod) else []
        stuck = _stuck(snap, pod, events) if events else None
        if stuck is not None:
            groups.setdefault(_group(snap, pod), []).append((pod, events, stuck))
    for group in groups.values():
        nodes = sorted({n for pod, _, _ in group if (n := _node(pod))})
        for pod, events, stuck in group:
            message = _text(events[0].get("message"))
            plugin = _PLUGIN.search(message)
            short, remediation = _hint(message, _SANDBOX_HINTS, _SANDBOX_DEFAULT)
            remediation = remediation.format(nodes=", ".join(nodes), plugin=f" ({plugin.group(1)})" if plugin else "")
            where = f"node {nodes[0]}" if len(nodes) == 1 else f"{len(nodes)} nodes"
            if len(nodes) == 1:
                remediation += f" Only node {nodes[0]} is affected: cordoning it moves new pods elsewhere meanwhile."
            evidence = {
                "nodes": nodes,
                "plugin": plugin.group(1) if plugin else None,
                "message": message[:MESSAGE_CHARS],
                **stuck,
                "events": event_summary(events),
            }
            yield pod_finding(
                snap,
                pod,
                code="POD_SANDBOX_FAILED",
                severity="critical",
                summary=f"stuck ContainerCreating on {where}: the pod sandbox cannot be created ({short})",
                evidence=present(evidence),
                remediation=remediation,
            )


_VOLUME = re.compile(r'for volume "([^"]+)"')
_UNMOUNTED = re.compile(r"unmounted volumes=\[([^\]]*)\]")
_DRIVER = re.compile(r"driver name (\S+) not found")
_WAITED = re.compile(r"^Unable to attach or mount volumes")
_SOURCES = ("csi", "nfs", "iscsi", "rbd", "cephfs", "glusterfs", "fc", "azureFile", "azureDisk", "hostPath", "local")


def volumes(snap: Snapshot) -> Iterator[Finding]:
    """FailedAttachVolume and FailedMount (other than a missing ConfigMap or Secret) on a pod that has not
    started. The kubelet's generic 'Unable to attach or mount volumes ... timed out' echoes an attach failure, so
    it is only reported when nothing more specific is."""
    for pod in _pods(snap):
        if not _not_started(pod):
            continue
        attach = _events(snap, pod, "FailedAttachVolume")
        mount = [
            e
            for e in _events(snap, pod, "FailedMount", "FailedMapVolume")
            if not _CONFIG_MISSING.search(_text(e.get("message")))
        ]
        specific = [e for e in mount if not _WAITED.search(_text(e.get("message")))]
        stuck = _stuck(snap, pod, attach) if attach else None
        if stuck is not None:
            yield _attach_finding(snap, pod, attach, stuck)
        mount = specific if attach else (specific or mount)
        stuck = _stuck(snap, pod, mount) if mount else None
        if stuck is not None:
            yield _mount_finding(snap, pod, mount, stuck)


def _volume(snap: Snapshot, pod: Obj, message: str) -> dict[str, Any]:
    """The pod volume a message names (by its name in the pod or its PersistentVolume's), with claim and driver."""
    named = _VOLUME.findall(message) or [v.strip() for v in (_UNMOUNTED.findall(message) or [""])[0].split(",")]
    ns = ns_of(pod)
    for vol in _dicts(_dict(pod.get("spec")).get("volumes")):
        vname = _text(vol.get("name"))
        claim = _text(_dict(vol.get("persistentVolumeClaim")).get("claimName"))
        if not claim and "ephemeral" in vol:
            claim = f"{name_of(pod)}-{vname}"
        pvc = snap.get("persistentvolumeclaims", ns, claim) if claim else None
        pv_name = _text(_dict(_dict(pvc).get("spec")).get("volumeName"))
        if vname not in named and (not pv_name or pv_name not in named):
            continue
        pv = _dict(snap.get("persistentvolumes", "", pv_name)) if pv_name else {}
        source = _dict(pv.get("spec")) or vol
        kind = next((s for s in _SOURCES if s in source), None)
        return {
            "volume": vname,
            "claim": claim or None,
            "persistent_volume": pv_name or None,
            "source": kind,
            "driver": _text(_dict(source.get("csi")).get("driver")) or None,
            "access_modes": _dict(_dict(pvc).get("spec")).get("accessModes") or None,
        }
    driver = _DRIVER.search(message)
    return {"volume": named[0] or None, "driver": driver.group(1) if driver else None}


_MOUNT_HINTS = (
    (
        ("not found in the list of registered CSI drivers",),
        "CSI driver {driver} is not registered on node {node}",
        "The node plugin of CSI driver {driver} is not running on node {node}: its DaemonSet (usually in "
        "kube-system) has no ready pod there; check that DaemonSet's nodeSelector, tolerations and log. The "
        "kubelet mounts the volume on its next retry once the driver registers.",
    ),
    (
        ("mount.nfs", "nfs"),
        "the NFS mount fails",
        "Node {node} cannot mount the NFS export of volume {volume}: check the server name and export path, that "
        "the server allows the node's address and port 2049 is open, and that the node has the NFS client.",
    ),
    (
        ("wrong fs type", "bad superblock", "fsck"),
        "the filesystem cannot be mounted",
        "The filesystem of volume {volume} does not match its fsType or is damaged: check fsType in the "
        "PersistentVolume or StorageClass, and repair the disk from a node before using it again.",
    ),
    (
        ("Unable to attach or mount volumes", "timed out waiting"),
        "it did not become ready in time",
        "The kubelet gave up waiting for volume {volume}: look for an attach failure (FailedAttachVolume, the "
        "volume's VolumeAttachment) and at the storage driver's controller and node plugin logs.",
    ),
)
_MOUNT_DEFAULT = (
    "the volume plugin failed",
    "The volume plugin (driver {driver}) failed to mount volume {volume} on node {node}: the message quotes its "
    "error; check the driver's node plugin on that node and the storage behind the volume.",
)


_MISMATCH = (
    "the disk's filesystem is not the one the volume asks for",
    "The disk of volume {volume} holds another filesystem than the fsType its PersistentVolume (or StorageClass) "
    "names, so the kubelet will not mount it: set fsType to the disk's real filesystem, or reformat the disk "
    "only if its data is disposable.",
)


def _mount_finding(snap: Snapshot, pod: Obj, events: list[Obj], stuck: dict[str, Any]) -> Finding:
    message = _text(events[0].get("message"))
    vol = _volume(snap, pod, message)
    pv = vol.get("persistent_volume")
    mismatch = _recent(snap, _cluster_events(snap, "PersistentVolume", pv, "FailedMountOnFilesystemMismatch"))
    short, remediation = _MISMATCH if mismatch else _hint(message, _MOUNT_HINTS, _MOUNT_DEFAULT)
    fields = {"driver": vol.get("driver") or "-", "node": _node(pod) or "-", "volume": pv or vol.get("volume") or "-"}
    evidence = {
        **vol,
        "message": message[:MESSAGE_CHARS],
        "filesystem_mismatch": _text(mismatch[0].get("message"))[:MESSAGE_CHARS] if mismatch else None,
        **stuck,
        "events": event_summary(events),
    }
    return pod_finding(
        snap,
        pod,
        code="POD_MOUNT_FAILED",
        severity="critical",
        summary=f"stuck ContainerCreating: volume {fields['volume']} cannot be mounted ({short.format(**fields)})",
        evidence=present(evidence),
        remediation=remediation.format(**fields),
    )


_ATTACH_HINTS = (
    (
        ("Multi-Attach", "already attached", "already exclusively attached"),
        "it is still attached to another node",
        "Volume {volume} attaches to one node at a time (ReadWriteOnce) and is still attached elsewhere{users}. "
        "Wait for, or delete, the old pod that holds it; if that node is gone, the attach-detach controller "
        "detaches it after 6 minutes (or delete its VolumeAttachment). A Deployment with such a volume needs "
        "strategy Recreate (or a StatefulSet) so old and new pods never overlap; ReadWriteMany storage can be "
        "shared.",
    ),
    (
        ("external-attacher",),
        "the CSI driver's attacher does not answer",
        "The external-attacher of CSI driver {driver} (its controller Deployment) is not running or not working: "
        "check that controller's pods and log.",
    ),
    (
        ("max volume count", "AttachVolumeLimitExceeded", "maximum number of"),
        "the node has reached its volume limit",
        "Node {node} cannot take more attached volumes: spread the pods over more nodes, or use instance types "
        "with a higher volume limit.",
    ),
)
_ATTACH_DEFAULT = (
    "the storage system refused it",
    "The storage system refused to attach volume {volume} to node {node}: the message quotes the cloud or "
    "driver error; check the volume's VolumeAttachment and the CSI controller's log.",
)


def _attach_finding(snap: Snapshot, pod: Obj, events: list[Obj], stuck: dict[str, Any]) -> Finding:
    message = _text(events[0].get("message"))
    vol = _volume(snap, pod, message)
    node = _node(pod) or "-"
    users = _other_users(snap, pod, vol.get("claim"))
    short, remediation = _hint(message, _ATTACH_HINTS, _ATTACH_DEFAULT)
    shown = vol.get("persistent_volume") or vol.get("volume") or "-"
    remediation = remediation.format(
        volume=shown,
        node=node,
        driver=vol.get("driver") or "-",
        users=f" (used by {', '.join(users)})" if users else "",
    )
    evidence = {
        **vol,
        "used_by": users or None,
        "message": message[:MESSAGE_CHARS],
        **stuck,
        "events": event_summary(events),
    }
    return pod_finding(
        snap,
        pod,
        code="POD_VOLUME_ATTACH_FAILED",
        severity="critical",
        summary=f"stuck ContainerCreating: volume {shown} cannot be attached to node {node} ({short})",
        evidence=present(evidence),
        remediation=remediation,
    )


def _other_users(snap: Snapshot, pod: Obj, claim: str | None) -> list[str]:
    """Other live pods of the namespace that use the same claim on another node: 'name (node)'."""
    if not claim:
        return []
    out = []
    for other in snap.in_ns("pods", ns_of(pod)):
        if other is pod or _dict(other.get("status")).get("phase") in ("Succeeded", "Failed"):
            continue
        claims = {
            _dict(v.get("persistentVolumeClaim")).get("claimName")
            for v in _dicts(_dict(other.get("spec")).get("volumes"))
        }
        if claim in claims and _node(other) != _node(pod):
            out.append(f"{name_of(other)} ({_node(other) or 'unscheduled'})")
    return out[:5]


# -- evictions ------------------------------------------------------------------------------------------------
_LOW_ON = re.compile(r"low on resource: ([\w-]+(?:\.[\w-]+)*)")
_HAD_CONDITION = re.compile(r"node had condition: \[?(\w+)")
_USAGE = re.compile(
    r"Container (\S+) was using ([0-9.]+[A-Za-z]*), (?:request is|which exceeds its request of) ([0-9.]+[A-Za-z]*)"
)


def evictions(snap: Snapshot) -> Iterator[Finding]:
    """Pods the kubelet evicted for node pressure, or preempted to admit a critical pod (status reason
    `Preempting`), within the last day: two or more of one workload (its controller replaced them, so the
    workload looks fine while it keeps losing pods), or a bare pod (gone)."""
    groups: dict[tuple[str, str, str, str], list[tuple[Obj, str]]] = {}
    for pod in snap.items("pods"):
        status = _dict(pod.get("status"))
        reason = status.get("reason")
        if status.get("phase") != "Failed" or reason not in ("Evicted", "Preempting"):
            continue
        message = _text(status.get("message"))
        at = _evicted_at(snap, pod)
        if at is not None and snap.now - at <= EVICTION_WINDOW:
            groups.setdefault((str(reason), *_group(snap, pod)), []).append((pod, message))
    for (reason, kind, _, _), group in groups.items():
        if len(group) < (1 if kind == "Pod" else EVICTIONS_REPORTED):
            continue
        yield from _preemption_findings(snap, group) if reason == "Preempting" else _eviction_findings(snap, group)


def _evicted_at(snap: Snapshot, pod: Obj) -> datetime | None:
    """When the kubelet evicted the pod: its DisruptionTarget condition, its containers' end, or the event; a pod
    created within the window was evicted within it."""
    times = [parse_time(_condition(pod, "DisruptionTarget").get("lastTransitionTime"))]
    times += [parse_time(_dict(_dict(cs.get("state")).get("terminated")).get("finishedAt")) for cs in _statuses(pod)]
    times += [parse_time(e.get("lastTimestamp") or e.get("eventTime")) for e in _events(snap, pod, "Evicted")]
    known = [t for t in times if t is not None]
    return max(known) if known else parse_time(meta(pod).get("creationTimestamp"))


def _eviction_findings(snap: Snapshot, group: list[tuple[Obj, str]]) -> Iterator[Finding]:
    resources = Counter(
        m.group(1) if (m := _LOW_ON.search(msg) or _HAD_CONDITION.search(msg)) else "unknown" for _, msg in group
    )
    resource = resources.most_common(1)[0][0]
    nodes = sorted({n for pod, _ in group if (n := _node(pod))})
    usage: dict[str, tuple[Decimal, str, str]] = {}
    for _, msg in group:
        for c, used, request in _USAGE.findall(msg):
            if c not in usage or quantity(used) > usage[c][0]:
                usage[c] = (quantity(used), used, request)
    worst = max(usage.items(), key=lambda kv: kv[1][0] - quantity(kv[1][2]), default=None)
    evidence: dict[str, Any] = {
        "evicted": len(group),
        "resource": resource,
        "nodes": nodes,
        "usage": f"container {worst[0]} used {worst[1][1]}, request {worst[1][2]}" if worst else None,
        "message": group[0][1][:MESSAGE_CHARS] or None,
    }
    pod = group[0][0]
    fix = _request_fix(snap, pod, resource, worst[0], worst[1][0]) if worst else None
    remediation = (
        f"The kubelet on {', '.join(nodes) or 'the node'} evicted these pods under {resource} pressure; it evicts "
        "first the pods using most above their requests. "
        + (
            f"Set the {resource} request of container {worst[0]} close to its real use ({worst[1][1]}) so the "
            "scheduler reserves it, and "
            if worst
            else f"Set {resource} requests close to real use, and "
        )
        + "check the node's headroom (other workloads, eviction thresholds). The Failed pods stay listed until "
        "deleted."
    )
    for pod, _ in group:
        yield pod_finding(
            snap,
            pod,
            code="POD_EVICTED",
            severity="warning",
            summary=f"{len(group)} pods evicted for node {resource} pressure in the last day",
            evidence=present(evidence),
            remediation=remediation,
            fix=fix,
        )


def _preemption_findings(snap: Snapshot, group: list[tuple[Obj, str]]) -> Iterator[Finding]:
    nodes = sorted({n for pod, _ in group if (n := _node(pod))})
    where = ", ".join(nodes) or "the node"
    evidence = {"preempted": len(group), "nodes": nodes, "message": group[0][1][:MESSAGE_CHARS] or None}
    for pod, _ in group:
        yield pod_finding(
            snap,
            pod,
            code="POD_EVICTED",
            severity="warning",
            summary=f"{len(group)} pods preempted by the kubelet to admit a critical pod in the last day",
            evidence=present(evidence),
            remediation=f"The kubelet on {where} had no room for a critical pod (priority system-node-critical or "
            "system-cluster-critical: a static pod or a DaemonSet's) and killed these pods to admit it. Leave room "
            "for such pods: reserve node capacity (kubeReserved/systemReserved), give DaemonSets a higher "
            "PriorityClass so the scheduler places them first, or add nodes. The Failed pods stay listed until "
            "deleted.",
        )


def _request_fix(snap: Snapshot, pod: Obj, resource: str, container: str, used: Decimal) -> Fix | None:
    """Raise the container's request to what it used (rounded up to 64Mi), unless its limit is lower."""
    if resource not in ("memory", "ephemeral-storage") or used <= 0:
        return None
    spec = container_spec(_dict(pod.get("spec")), container)
    if spec is None:
        return None
    step = 64 * MI
    wanted = (used / step).to_integral_value(rounding=ROUND_CEILING) * step
    resources = _dict(spec.get("resources"))
    request = quantity(_dict(resources.get("requests")).get(resource))
    limit = quantity(_dict(resources.get("limits")).get(resource))
    if wanted <= request or (limit and limit < wanted):
        return None
    return Fix(
        action="set_resources",
        target=_fix_target(snap, pod),
        container=container,
        params={"requests": {resource: fmt_resource(resource, wanted)}},
    )


# -- pods running with settings the kubelet could not give them -----------------------------------------------
def _live_pods(snap: Snapshot) -> Iterator[Obj]:
    """Every pod that is not finished, ready or not (these problems do not make a pod unready)."""
    for pod in snap.items("pods"):
        if isinstance(pod.get("spec"), dict) and _dict(pod.get("status")).get("phase") not in ("Succeeded", "Failed"):
            yield pod


def _pod_events(snap: Snapshot, pod: Obj, *reasons: str) -> list[Obj]:
    """This pod's recent events of these reasons (not those of an earlier pod of the same name)."""
    return _recent(snap, _events(snap, pod, *reasons), parse_time(meta(pod).get("creationTimestamp")))


_NAMESERVERS = re.compile(r"applied nameserver line is: (.*)")
_SEARCHES = re.compile(r"applied search line is: (.*)")


def dns_config(snap: Snapshot) -> Iterator[Finding]:
    """The kubelet builds each pod's resolv.conf; when the pod's dnsConfig plus the node's resolv.conf exceed the
    limits (3 nameservers, 32 search domains, 2048 characters) it drops the extra ones (DNSConfigForming), and
    when it has no cluster DNS address a ClusterFirst pod gets the node's resolvers (MissingClusterDNS), so
    Service names do not resolve. The pod runs and looks Ready either way."""
    for pod in _live_pods(snap):
        events = _pod_events(snap, pod, "DNSConfigForming", "MissingClusterDNS")
        if events:
            yield _dns_finding(snap, pod, events)


def _dns_finding(snap: Snapshot, pod: Obj, events: list[Obj]) -> Finding:
    spec = _dict(pod.get("spec"))
    node = _node(pod) or "-"
    dns = _dict(spec.get("dnsConfig"))
    own_servers, own_searches = _texts(dns.get("nameservers")), _texts(dns.get("searches"))
    missing = next((e for e in events if e.get("reason") == "MissingClusterDNS"), None)
    resolv_conf = _recent(snap, _cluster_events(snap, "Node", _node(pod), "CheckLimitsForResolvConf"))
    message = _text((missing or events[0]).get("message"))
    evidence: dict[str, Any] = {
        "dns_policy": spec.get("dnsPolicy") or "ClusterFirst",
        "message": message[:MESSAGE_CHARS],
        "node_resolv_conf": _text(resolv_conf[0].get("message"))[:MESSAGE_CHARS] if resolv_conf else None,
        "events": event_summary(events),
    }
    if missing is not None:
        return pod_finding(
            snap,
            pod,
            code="POD_DNS_CONFIG",
            severity="critical",
            summary=f"the kubelet on node {node} has no cluster DNS address, so the pod uses the node's resolvers "
            "and cannot resolve Service names",
            evidence=present(evidence),
            remediation=f"Set clusterDNS (the DNS Service's ClusterIP, e.g. kube-dns in kube-system) in the kubelet "
            f"configuration of node {node} (or its --cluster-dns flag) and restart the kubelet; then recreate the "
            "pod, which keeps the resolv.conf it was given.",
        )
    servers = _NAMESERVERS.search(message)
    line, limit = ("nameservers", "3 nameservers") if servers else ("search domains", "32 search domains")
    applied = servers or _SEARCHES.search(message)
    evidence["applied"] = applied.group(1)[:MESSAGE_CHARS] if applied else None
    own = own_servers if servers else own_searches
    if own:
        where = f"spec.dnsConfig.{'nameservers' if servers else 'searches'} of the pod ({len(own)} listed)"
    else:
        where = f"the resolv.conf of node {node} (the kubelet's resolvConf setting), which the pod inherits"
    evidence = present(evidence)
    return pod_finding(
        snap,
        pod,
        code="POD_DNS_CONFIG",
        severity="warning",
        summary=f"the kubelet dropped some of the pod's DNS {line}: more than the limit of {limit} (or 2048 "
        "characters of search line)",
        evidence=evidence,
        remediation=f"Names that rely on the dropped {line} do not resolve in this pod. Shorten {where} to fit "
        f"the limit ({limit}; the cluster's own 3 search domains count for ClusterFirst pods), then recreate the "
        "pod.",
    )


def _texts(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def resize_failed(snap: Snapshot) -> Iterator[Finding]:
    """An in-place resize the runtime refused: the kubelet sets PodResizeInProgress with reason Error (and
    records ResizeError) and keeps the old resources; the condition clears once a resize succeeds."""
    for pod in _live_pods(snap):
        cond = _condition(pod, "PodResizeInProgress")
        if cond.get("status") != "True" or cond.get("reason") != "Error":
            continue
        events = _pod_events(snap, pod, "ResizeError")
        message = _text(cond.get("message")) or next((_text(e.get("message")) for e in events), "")
        evidence = {
            "message": message[:MESSAGE_CHARS] or None,
            "since": cond.get("lastTransitionTime"),
            "events": event_summary(events) or None,
        }
        yield pod_finding(
            snap,
            pod,
            code="POD_RESIZE_FAILED",
            severity="warning",
            summary="the kubelet cannot apply the pod's in-place resize: its containers keep the old resources",
            evidence=present(evidence),
            remediation="The container runtime refused the new CPU or memory (the message quotes it; e.g. memory "
            "below what the container uses, or a runtime without in-place resize support). Resize the pod back to "
            "the resources in status.containerStatuses[].allocatedResources (kubectl patch --subresource resize), "
            "or delete the pod so its controller recreates it with the template's resources.",
        )


_VOLUME_NAME = re.compile(r"^Volume (\S+?):")


def volume_health(snap: Snapshot) -> Iterator[Finding]:
    """Volumes whose CSI driver reports them abnormal (CSI volume health): the kubelet records
    VolumeConditionAbnormal on the pod, the external health monitor on the claim. The pod may still run while
    its data is unreachable or damaged."""
    for pod in _live_pods(snap):
        events = _pod_events(snap, pod, "VolumeConditionAbnormal")
        for vol in _dicts(_dict(pod.get("spec")).get("volumes")):
            claim = _text(_dict(vol.get("persistentVolumeClaim")).get("claimName"))
            if claim:
                claim_events = snap.events_for("PersistentVolumeClaim", ns_of(pod), claim)
                events += _recent(snap, [e for e in claim_events if e.get("reason") == "VolumeConditionAbnormal"])
        if not events:
            continue
        message = _text(events[0].get("message"))
        named = _VOLUME_NAME.search(message)
        evidence = {
            "volume": named.group(1) if named else None,
            "message": message[:MESSAGE_CHARS],
            "events": event_summary(events),
        }
        yield pod_finding(
            snap,
            pod,
            code="POD_VOLUME_UNHEALTHY",
            severity="warning",
            summary="the storage driver reports a volume of the pod as abnormal",
            evidence=present(evidence),
            remediation="The CSI driver reports the volume's storage abnormal (the message quotes it: a lost disk, "
            "a full or read-only filesystem, an unreachable backend). Check the storage behind it and the driver's "
            "log; the pod's reads or writes may fail until it is repaired.",
        )


RULES = [container_start, hooks, sandbox, volumes, evictions, dns_config, resize_failed, volume_health]
